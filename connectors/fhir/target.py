"""The FHIR server to write to: settings, the configured client, and who the Patient is on that server."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from connectors.fhir.auth import DEFAULT_SMART_SCOPE, BearerAuth, SmartBackendAuth, read_secret
from connectors.fhir.client import FhirClient, RetryPolicy, token_param
from mappers.context import FhirContext
from mappers.ids import resource_id
from wearfhir.errors import ConfigError

__all__ = ["FhirTarget", "build_client", "resolve_patient"]


class FhirTarget(BaseModel):
    """Where and how to write FHIR resources."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    bundle_size: int = Field(default=500, ge=1, le=5000)
    concurrency: int = Field(default=4, ge=1, le=64)
    gzip: bool = False
    timeout: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=8, ge=1, le=50)
    auth: Literal["none", "bearer", "basic", "smart"] = "none"
    token_env: str = "WEARFHIR_FHIR_TOKEN"  # noqa: S105 - the name of a variable, not a secret
    token_file: Path | None = None
    basic_user: str | None = None
    password_env: str = "WEARFHIR_FHIR_PASSWORD"  # noqa: S105 - the name of a variable, not a secret
    password_file: Path | None = None
    smart_client_id: str | None = None
    smart_key: Path | None = None
    smart_alg: Literal["RS384", "ES384"] = "RS384"
    smart_kid: str | None = None
    smart_token_url: str | None = None
    smart_scope: str = DEFAULT_SMART_SCOPE
    ca_bundle: Path | None = None
    dead_letters: Path = Path("dead-letters.ndjson")
    redis_url: str | None = None

    @property
    def verify(self) -> bool | str:
        """TLS verification: always on; a custom CA bundle when given."""
        return str(self.ca_bundle) if self.ca_bundle else True


def _auth(target: FhirTarget) -> httpx.Auth | None:
    if target.auth == "none":
        return None
    if target.auth == "bearer":
        return BearerAuth(read_secret(target.token_env, target.token_file, "bearer token"))
    if target.auth == "basic":
        if not target.basic_user:
            raise ConfigError("--auth basic needs --basic-user (the password comes from an env var or a file)")
        return httpx.BasicAuth(target.basic_user, read_secret(target.password_env, target.password_file,
                                                              "password"))
    if not target.smart_client_id or not target.smart_key:
        raise ConfigError("--auth smart needs --smart-client-id and --smart-key (a PEM private key file)")
    try:
        key = target.smart_key.read_bytes()
    except OSError:
        raise ConfigError(f"cannot read the SMART private key {target.smart_key}") from None
    return SmartBackendAuth(target.url, target.smart_client_id, key, alg=target.smart_alg, kid=target.smart_kid,
                            token_url=target.smart_token_url, scope=target.smart_scope, verify=target.verify)


def build_client(target: FhirTarget) -> FhirClient:
    """A pooled client for ``target`` (connections sized to the number of Bundles in flight)."""
    if target.ca_bundle is not None and not target.ca_bundle.is_file():
        raise ConfigError(f"CA bundle {target.ca_bundle} does not exist")
    return FhirClient(target.url, auth=_auth(target), timeout=target.timeout, verify=target.verify,
                      gzip_requests=target.gzip, retry=RetryPolicy(max_attempts=target.max_attempts),
                      max_connections=target.concurrency + 2)


def resolve_patient(client: FhirClient, ctx: FhirContext, patient: str | None, identifier: str | None,
                    create: bool) -> str:
    """The ``Patient/id`` the data belongs to on the server; checked once, never guessed.

    ``patient`` must exist. Or ``identifier`` (``SYSTEM|VALUE``) is looked up; with ``create`` a missing
    Patient is created under an id derived from the identifier (so a second run finds the same one).
    """
    if patient:
        if client.read(patient) is None:
            raise ConfigError(
                f"{patient} does not exist on {client.base_url}. Create the Patient there first, or pass "
                "--patient-identifier SYSTEM|VALUE (add --create-patient to create it)")
        return patient
    if not identifier or "|" not in identifier:
        raise ConfigError("--patient-identifier must be SYSTEM|VALUE, e.g. https://hospital.example/mrn|12345")
    system, value = identifier.split("|", 1)
    if not system or not value:
        raise ConfigError("--patient-identifier must be SYSTEM|VALUE with both parts")
    found = client.search("Patient", {"identifier": token_param(system, value)})
    if len(found) > 1:
        raise ConfigError(f"{len(found)} Patients carry that identifier on {client.base_url}: use --patient "
                          "Patient/ID to say which one")
    if found:
        return f"Patient/{found[0]['id']}"
    if not create:
        raise ConfigError(f"no Patient with that identifier on {client.base_url}: add --create-patient to "
                          "create it, or use --patient Patient/ID")
    patient_id = resource_id("patient", ctx.system("patient"), identifier)
    client.put({"resourceType": "Patient", "id": patient_id, "identifier": [{"system": system, "value": value}]})
    return f"Patient/{patient_id}"
