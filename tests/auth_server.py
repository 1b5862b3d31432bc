"""A small SMART App Launch 2 authorization server in front of the test FHIR server (for the viewer's browser tests).

One ASGI app, :class:`SmartGate`, wraps the test FHIR server (sekmet behind HAPI strictness, see
``tests/fhir_server.py``) in the same process, so the tokens it issues are checked in memory:

* ``GET /fhir/.well-known/smart-configuration`` — the SMART discovery document (public);
* ``GET /auth/authorize`` — checks the request (``response_type=code``, the client id and its redirect URI,
  ``aud`` = the FHIR base, a PKCE ``S256`` challenge, and for an EHR launch a ``launch`` id the test issued),
  auto-approves the fixed test patient and redirects back with a one-time code and the ``state``;
* ``POST /auth/token`` — exchanges the code once, checks ``redirect_uri``, ``client_id`` and that
  ``BASE64URL(SHA256(code_verifier))`` equals the challenge, and returns a bearer token with ``patient``;
* ``/fhir/...`` — refuses (401, ``WWW-Authenticate: Bearer``) every request without a token it issued or the
  loader's service token; CORS preflights pass through to sekmet (which answers CORS itself);
* ``GET /auth/log`` — what happened (counts, the PKCE method seen, refusals) for the tests to assert.

Run as ``uvicorn --factory tests.auth_server:app_factory``; sekmet's settings come from ``WEARFHIR_TEST_SEKMET``
and the gate's from ``WEARFHIR_TEST_SMART`` (JSON for :class:`SmartSettings`). :func:`smart_fhir_server` starts it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx

from tests.fhir_server import ASGIApp, Receive, Scope, Send
from tests.servers import ROOT, _stop, _wait_until, free_port

SCOPES_SUPPORTED = ["openid", "fhirUser", "launch", "launch/patient", "patient/Observation.rs",
                    "patient/Patient.rs", "patient/Device.rs"]


@dataclass
class SmartSettings:
    """The gate's configuration: the server's public origin, the test client and the patient it approves."""

    origin: str  # e.g. http://127.0.0.1:8123 (the FHIR base is origin + /fhir)
    client_id: str = "wearfhir-viewer"
    redirect_uris: list[str] = field(default_factory=list)  # empty: any redirect URI (tests set it)
    patient: str = "viewer-patient"  # the id (not the reference) put in the token response
    launch_ids: list[str] = field(default_factory=lambda: ["launch-1"])  # EHR launch contexts the "EHR" issued
    service_token: str = ""  # a token the test itself uses to load data (never given to the browser)


def s256(verifier: str) -> str:
    """The PKCE S256 challenge of ``verifier`` (RFC 7636 §4.2)."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


class SmartGate:
    """ASGI app: SMART authorization endpoints plus a bearer-token check in front of ``fhir`` (see the module doc)."""

    def __init__(self, fhir: ASGIApp, settings: SmartSettings) -> None:
        self.fhir = fhir
        self.settings = settings
        self.base = settings.origin.rstrip("/") + "/fhir"
        self._codes: dict[str, dict[str, Any]] = {}
        self._tokens: dict[str, dict[str, Any]] = {}
        self.log: Counter[str] = Counter()
        self.methods: list[str] = []  # code_challenge_method of each authorize request
        self.scopes: list[str] = []  # scope of each authorize request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.fhir(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        if method == "OPTIONS":  # CORS preflight: no credentials are sent on it
            if path.startswith("/auth/"):
                await self._send(send, 204, b"", "text/plain")
            else:
                await self.fhir(scope, receive, send)
            return
        if path == "/fhir/.well-known/smart-configuration" and method == "GET":
            await self._json(send, 200, self._configuration())
        elif path == "/auth/authorize" and method == "GET":
            await self._authorize(scope, send)
        elif path == "/auth/token" and method == "POST":
            await self._token(await _body(receive), send)
        elif path == "/auth/log" and method == "GET":
            await self._json(send, 200, {"counts": dict(self.log), "methods": self.methods, "scopes": self.scopes})
        elif path.startswith("/fhir"):
            if self._authorised(scope):
                self.log["fhir_ok"] += 1
                await self.fhir(scope, receive, send)
            else:
                self.log["fhir_refused"] += 1
                await self._send(send, 401, json.dumps({"resourceType": "OperationOutcome", "issue": [
                    {"severity": "error", "code": "login", "diagnostics": "a bearer token is required"}]}).encode(),
                    "application/fhir+json", [(b"www-authenticate", b'Bearer realm="wearfhir-test"')])
        else:
            await self._send(send, 404, b"not found", "text/plain")

    def _configuration(self) -> dict[str, Any]:
        origin = self.settings.origin.rstrip("/")
        return {
            "issuer": origin + "/auth",
            "authorization_endpoint": origin + "/auth/authorize",
            "token_endpoint": origin + "/auth/token",
            "grant_types_supported": ["authorization_code"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "scopes_supported": SCOPES_SUPPORTED,
            "response_types_supported": ["code"],
            "capabilities": ["launch-ehr", "launch-standalone", "client-public", "context-ehr-patient",
                             "context-standalone-patient", "permission-patient", "permission-v2"],
        }

    def _authorised(self, scope: Scope) -> bool:
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        if not header.lower().startswith("bearer "):
            return False
        token = header[7:].strip()
        return token in self._tokens or (bool(self.settings.service_token) and token == self.settings.service_token)

    async def _authorize(self, scope: Scope, send: Send) -> None:
        query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode("latin-1")).items()}
        self.log["authorize"] += 1
        self.methods.append(query.get("code_challenge_method", ""))
        self.scopes.append(query.get("scope", ""))
        redirect = query.get("redirect_uri", "")
        problem = None
        if query.get("response_type") != "code":
            problem = "unsupported_response_type"
        elif query.get("client_id") != self.settings.client_id:
            problem = "unauthorized_client"
        elif self.settings.redirect_uris and redirect not in self.settings.redirect_uris:
            problem = "invalid_request: redirect_uri"
        elif query.get("aud", "").rstrip("/") != self.base:
            problem = "invalid_request: aud"
        elif query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            problem = "invalid_request: PKCE S256 required"
        elif "launch" in query and query["launch"] not in self.settings.launch_ids:
            problem = "invalid_request: unknown launch"
        elif "launch" not in query and "launch/patient" not in query.get("scope", "").split():
            problem = "invalid_scope: standalone launch without launch/patient"
        if problem is not None:
            self.log["authorize_refused"] += 1
            await self._send(send, 400, problem.encode(), "text/plain")
            return
        code = secrets.token_urlsafe(24)
        self._codes[code] = {"challenge": query["code_challenge"], "redirect_uri": redirect,
                             "client_id": query["client_id"], "scope": query.get("scope", "")}
        location = redirect + ("&" if "?" in redirect else "?") + urlencode({"code": code,
                                                                             "state": query.get("state", "")})
        await self._send(send, 302, b"", "text/plain", [(b"location", location.encode())])

    async def _token(self, body: bytes, send: Send) -> None:
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8")).items()}
        self.log["token"] += 1
        grant = self._codes.pop(form.get("code", ""), None)  # a code works once
        valid = (grant is not None and form.get("grant_type") == "authorization_code"
                 and form.get("redirect_uri") == grant["redirect_uri"] and form.get("client_id") == grant["client_id"]
                 and s256(form.get("code_verifier", "")) == grant["challenge"])  # PKCE: the verifier hashes to it
        if grant is None or not valid:
            self.log["token_refused"] += 1
            await self._json(send, 400, {"error": "invalid_grant"})
            return
        token = secrets.token_urlsafe(32)
        self._tokens[token] = {"patient": self.settings.patient, "scope": grant["scope"]}
        await self._json(send, 200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600,
                                     "scope": grant["scope"], "patient": self.settings.patient})

    async def _json(self, send: Send, status: int, payload: dict[str, Any]) -> None:
        await self._send(send, status, json.dumps(payload).encode(), "application/json",
                         [(b"cache-control", b"no-store")])

    @staticmethod
    async def _send(send: Send, status: int, body: bytes, content_type: str,
                    extra: list[tuple[bytes, bytes]] | None = None) -> None:
        headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()),
                   (b"access-control-allow-origin", b"*"), (b"access-control-allow-headers", b"*"),
                   (b"access-control-allow-methods", b"GET, POST, OPTIONS"), *(extra or [])]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def _body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += bytes(message.get("body", b""))
        if not message.get("more_body"):
            return body


def app_factory() -> ASGIApp:
    """The test FHIR server (``tests.fhir_server.app_factory``) behind a :class:`SmartGate` configured from the env."""
    from tests.fhir_server import app_factory as fhir_app_factory

    settings = SmartSettings(**json.loads(os.environ["WEARFHIR_TEST_SMART"]))
    return SmartGate(fhir_app_factory(), settings)


@dataclass
class SmartFhirServer:
    """A running FHIR server behind the SMART gate."""

    origin: str
    settings: SmartSettings

    @property
    def base_url(self) -> str:
        return self.origin + "/fhir"

    def client(self) -> httpx.Client:
        """A client with the loader's service token (for the test's own reads and writes)."""
        return httpx.Client(base_url=self.base_url, timeout=30.0,
                            headers={"Authorization": f"Bearer {self.settings.service_token}"})

    def log(self) -> dict[str, Any]:
        return dict(httpx.get(self.origin + "/auth/log", timeout=5).json())


@contextmanager
def smart_fhir_server(tmp: Path, **overrides: Any) -> Iterator[SmartFhirServer]:
    """Start sekmet + HAPI strictness + the SMART gate on a free port (``overrides`` go to :class:`SmartSettings`)."""
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    sekmet = {"base_url": origin + "/fhir", "host": "127.0.0.1", "port": port, "data_dir": str(tmp),
              "db_path": str(tmp / "fhir.db"), "simulator": {"enabled": False}, "log_inbound": False,
              "own_private_key_path": str(tmp / "sekmet_private.pem"), "validation": {"inbound": "strict"}}
    settings = SmartSettings(origin=origin, service_token=secrets.token_urlsafe(16), **overrides)
    env = dict(os.environ, WEARFHIR_TEST_SEKMET=json.dumps(sekmet), WEARFHIR_TEST_SMART=json.dumps(asdict(settings)),
               PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "tests.auth_server:app_factory", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning", "--no-access-log"],
        cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _wait_until(lambda: httpx.get(f"{origin}/fhir/.well-known/smart-configuration", timeout=2).status_code == 200,
                "SMART FHIR server", proc)
    try:
        yield SmartFhirServer(origin, settings)
    finally:
        _stop(proc)
