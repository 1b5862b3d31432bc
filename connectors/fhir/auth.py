"""Authentication to the FHIR server as ``httpx.Auth`` flows: bearer, basic, SMART Backend Services.

Secrets never come from the command line (shell history, ``ps``): a bearer token or password is read from
an environment variable or a file. SMART Backend Services (hl7.org/fhir/smart-app-launch/backend-services)
signs a client assertion (RS384 or ES384) with the client's private key, exchanges it for an access token
at the token endpoint (discovered from ``.well-known/smart-configuration`` unless given), and caches the
token until shortly before it expires. No token or secret is ever logged.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Generator
from pathlib import Path
from typing import Any

import httpx

from wearfhir.errors import ConfigError, ServiceError

__all__ = ["BearerAuth", "SmartBackendAuth", "read_secret"]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DEFAULT_SMART_SCOPE = "system/Observation.write system/Device.write system/Patient.read system/Patient.write"


def read_secret(env: str | None, file: Path | None, what: str) -> str:
    """A secret from an environment variable or a file (first line); a clear error if neither has it."""
    if file is not None:
        try:
            value = file.read_text(encoding="utf-8").splitlines()[0].strip()
        except (OSError, IndexError):
            raise ConfigError(f"cannot read the {what} from {file}") from None
        if value:
            return value
        raise ConfigError(f"{file} is empty: expected the {what} on its first line")
    if env and os.environ.get(env):
        return os.environ[env]
    raise ConfigError(f"no {what}: set the environment variable {env} or give a file")


class BearerAuth(httpx.Auth):
    """A static bearer token."""

    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request


class SmartBackendAuth(httpx.Auth):
    """OAuth2 client credentials with a signed JWT assertion; the access token is cached and renewed."""

    def __init__(self, fhir_base: str, client_id: str, private_key_pem: bytes, *, alg: str = "RS384",
                 kid: str | None = None, token_url: str | None = None, scope: str = DEFAULT_SMART_SCOPE,
                 verify: bool | str = True, renew_before: float = 60.0) -> None:
        if alg not in ("RS384", "ES384"):
            raise ConfigError(f"SMART Backend Services signs with RS384 or ES384, not {alg}")
        self._base = fhir_base.rstrip("/")
        self._client_id = client_id
        self._key = private_key_pem
        self._alg = alg
        self._kid = kid
        self._token_url = token_url
        self._scope = scope
        self._verify = verify
        self._renew_before = renew_before
        self._token: str | None = None
        self._expires = 0.0
        self._lock = threading.Lock()
        self.tokens_fetched = 0

    def _discover(self, http: httpx.Client) -> str:
        response = http.get(f"{self._base}/.well-known/smart-configuration")
        if response.status_code != 200:
            raise ConfigError(f"no SMART configuration at {self._base}/.well-known/smart-configuration "
                              f"(HTTP {response.status_code}): give the token endpoint explicitly")
        url = response.json().get("token_endpoint")
        if not url:
            raise ConfigError("the SMART configuration has no token_endpoint: give it explicitly")
        return str(url)

    def _assertion(self, token_url: str) -> str:
        import jwt

        now = int(time.time())
        claims = {"iss": self._client_id, "sub": self._client_id, "aud": token_url, "exp": now + 300,
                  "iat": now, "jti": uuid.uuid4().hex}
        headers: dict[str, Any] = {"typ": "JWT"}
        if self._kid:
            headers["kid"] = self._kid
        return jwt.encode(claims, self._key, algorithm=self._alg, headers=headers)

    def token(self, force: bool = False) -> str:
        """The cached access token, fetched anew when missing, near expiry, or ``force``d."""
        with self._lock:
            if not force and self._token and time.monotonic() < self._expires - self._renew_before:
                return self._token
            with httpx.Client(timeout=30.0, verify=self._verify) as http:
                token_url = self._token_url = self._token_url or self._discover(http)
                response = http.post(token_url, data={
                    "grant_type": "client_credentials",
                    "scope": self._scope,
                    "client_assertion_type": ASSERTION_TYPE,
                    "client_assertion": self._assertion(token_url),
                })
            if response.status_code != 200:
                try:
                    detail = response.json().get("error_description") or response.json().get("error")
                except ValueError:
                    detail = None
                raise ServiceError(f"SMART token request refused (HTTP {response.status_code}): "
                                   f"{detail or 'no detail'}")
            body = response.json()
            self._token = str(body["access_token"])
            self._expires = time.monotonic() + float(body.get("expires_in", 300))
            self.tokens_fetched += 1
            return self._token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        response = yield request
        if response.status_code == 401:  # revoked or expired early: one fresh token, one retry
            request.headers["Authorization"] = f"Bearer {self.token(force=True)}"
            yield request
