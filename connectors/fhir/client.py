"""FHIR REST client for writes: transaction Bundles of PUTs, retries with backoff, bisection of rejections.

* Each resource is written as ``PUT Resource/<deterministic id>`` inside a ``transaction`` Bundle, with
  ``Prefer: return=minimal``; only each entry's ``response.status`` / ``location`` is read, never a
  returned resource (HAPI and sekmet differ there). Replaying a Bundle any number of times leaves one
  resource per id.
* Timeouts, connection errors, 429, 5xx and 409 are retried with exponential backoff and full jitter,
  honouring ``Retry-After``, up to ``max_attempts``; then :class:`ServiceError`.
* A 4xx rejection of a transaction (the whole Bundle is rolled back) is narrowed down by splitting the
  Bundle in halves until the guilty resources are alone; the rest lands, the guilty ones come back as
  :class:`Rejected` with the server's OperationOutcome.

Health data is PHI: log lines carry counts, statuses and resource ids, never bodies.
"""

from __future__ import annotations

import email.utils
import gzip
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from wearfhir.errors import ServiceError

__all__ = ["BundleResult", "FhirClient", "Rejected", "RetryPolicy", "outcome_text", "token_param"]

log = logging.getLogger("wearfhir.fhir")

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
FHIR_JSON = "application/fhir+json"


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter (sleep uniform in [0, min(cap, base·2^attempt)])."""

    max_attempts: int = 8
    base_seconds: float = 0.5
    cap_seconds: float = 30.0
    max_retry_after: float = 120.0  # a Retry-After longer than this is clipped

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        jitter = rng.uniform(0.0, min(self.cap_seconds, self.base_seconds * (2 ** attempt)))
        if retry_after is not None:
            return max(min(retry_after, self.max_retry_after), jitter)
        return jitter


@dataclass(frozen=True)
class Rejected:
    """A resource the server refused on its own (after bisection), with the server's explanation."""

    resource: dict[str, Any]
    status: int
    outcome: dict[str, Any] | None

    @property
    def reference(self) -> str:
        return f"{self.resource.get('resourceType')}/{self.resource.get('id')}"

    @property
    def message(self) -> str:
        return outcome_text(self.outcome) or f"HTTP {self.status}"


@dataclass
class BundleResult:
    """What happened to the resources of one or more transactions."""

    created: int = 0
    updated: int = 0  # 200 OK: updated, or unchanged (HAPI answers 200 for a no-op update too)
    retries: int = 0
    bundles: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    failed: bool = False  # the writes stopped on a service error (already raised to the caller)

    def add(self, other: BundleResult) -> None:
        self.created += other.created
        self.updated += other.updated
        self.retries += other.retries
        self.bundles += other.bundles
        self.rejected.extend(other.rejected)


def outcome_text(outcome: dict[str, Any] | None) -> str:
    """The diagnostics of an OperationOutcome, joined (server text; no resource values are added here)."""
    if not outcome:
        return ""
    parts = [str(i.get("diagnostics") or i.get("details", {}).get("text") or i.get("code", ""))
             for i in outcome.get("issue", []) if isinstance(i, dict)]
    return "; ".join(p for p in parts if p)


def token_param(system: str, value: str) -> str:
    """A ``system|value`` token search parameter with FHIR's escapes (``\\``, ``|``, ``,``, ``$``)."""
    def escape(text: str) -> str:
        for char in ("\\", "|", ",", "$"):
            text = text.replace(char, "\\" + char)
        return text

    return f"{escape(system)}|{escape(value)}"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time()) if when else None


class FhirClient:
    """Writes resources to one FHIR server. Thread-safe: one pooled ``httpx.Client`` shared by workers."""

    def __init__(self, base_url: str, *, auth: httpx.Auth | None = None, timeout: float = 60.0,
                 connect_timeout: float = 10.0, verify: bool | str = True, gzip_requests: bool = False,
                 retry: RetryPolicy | None = None, max_connections: int = 8,
                 sleep: Callable[[float], None] = time.sleep, seed: int | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.gzip_requests = gzip_requests
        self._sleep = sleep
        self._rng = random.Random(seed)  # noqa: S311 - backoff jitter, not cryptography
        self._rng_lock = threading.Lock()
        self._http = httpx.Client(
            base_url=self.base_url,
            auth=auth,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            verify=verify,
            headers={"Accept": FHIR_JSON, "User-Agent": "wearfhir"},
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> FhirClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plain requests ------------------------------------------------------------------------------------
    def request(self, method: str, url: str, *, json_body: Any = None, params: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> tuple[httpx.Response, int]:
        """Send with retries on transient failures; returns (final response, retries used).

        A final response may still be a 4xx (the caller decides); transient failures that outlast the
        retry budget raise :class:`ServiceError`.
        """
        content = None
        send_headers = dict(headers or {})
        if json_body is not None:
            content = orjson.dumps(json_body)
            send_headers["Content-Type"] = FHIR_JSON
            if self.gzip_requests:
                content = gzip.compress(content, compresslevel=1)
                send_headers["Content-Encoding"] = "gzip"
        retries = 0
        for attempt in range(self.retry.max_attempts):
            failure: str
            retry_after = None
            try:
                response = self._http.request(method, url, content=content, params=params, headers=send_headers)
            except httpx.TimeoutException as exc:
                failure = f"timeout ({type(exc).__name__})"
            except httpx.TransportError as exc:
                failure = f"connection error ({type(exc).__name__})"
            else:
                if response.status_code not in RETRYABLE_STATUS:
                    return response, retries
                failure = f"HTTP {response.status_code}"
                retry_after = _retry_after(response)
            if attempt + 1 >= self.retry.max_attempts:
                where = f"{self.base_url}/{url.split('?')[0].lstrip('/')}"
                raise ServiceError(f"{method} {where} failed {attempt + 1} times, "
                                   f"last: {failure}. Nothing was lost: rerun the import when the server is "
                                   "healthy (writes are idempotent)")
            with self._rng_lock:
                delay = self.retry.delay(attempt, retry_after, self._rng)
            log.warning("%s %s: %s, retry %d in %.1f s", method, url.split("?")[0] or "/", failure, attempt + 1,
                        delay)  # no query string: searches may carry identifiers
            retries += 1
            self._sleep(delay)
        raise AssertionError("unreachable")

    def read(self, reference: str) -> dict[str, Any] | None:
        """GET ``Type/id``; None if it does not exist."""
        response, _ = self.request("GET", reference)
        if response.status_code in (404, 410):
            return None
        self._raise_for(response, f"reading {reference}")
        return orjson.loads(response.content)  # type: ignore[no-any-return]

    def search(self, resource_type: str, params: dict[str, str]) -> list[dict[str, Any]]:
        """Every match of a search (follows ``link[next]`` as an opaque URL)."""
        found: list[dict[str, Any]] = []
        response, _ = self.request("GET", resource_type, params=params)
        while True:
            self._raise_for(response, f"searching {resource_type}")
            bundle = orjson.loads(response.content)
            found.extend(e["resource"] for e in bundle.get("entry", []) if "resource" in e)
            nxt = next((link["url"] for link in bundle.get("link", []) if link.get("relation") == "next"), None)
            if not nxt:
                return found
            response, _ = self.request("GET", nxt)

    def put(self, resource: dict[str, Any]) -> int:
        """PUT one resource (``Prefer: return=minimal``); returns the HTTP status."""
        url = f"{resource['resourceType']}/{resource['id']}"
        response, _ = self.request("PUT", url, json_body=resource, headers={"Prefer": "return=minimal"})
        self._raise_for(response, f"writing {url}")
        return response.status_code

    @staticmethod
    def _raise_for(response: httpx.Response, what: str) -> None:
        if response.status_code >= 400:
            try:
                text = outcome_text(orjson.loads(response.content))
            except orjson.JSONDecodeError:
                text = ""
            raise ServiceError(f"{what}: HTTP {response.status_code} {text}".rstrip())

    # -- transactions ----------------------------------------------------------------------------------------
    def bundle(self, resources: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """A transaction Bundle of ``PUT Type/id`` entries (``fullUrl`` absolute, as Bundle.entry requires)."""
        return {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"fullUrl": f"{self.base_url}/{r['resourceType']}/{r['id']}", "resource": r,
                       "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources],
        }

    def transaction(self, resources: Sequence[dict[str, Any]]) -> BundleResult:
        """Write ``resources`` in one transaction; on a 4xx, bisect so the good ones land (see module doc)."""
        result = BundleResult()
        if not resources:
            return result
        response, retries = self.request("POST", "", json_body=self.bundle(resources),
                                         headers={"Prefer": "return=minimal"})
        result.retries += retries
        result.bundles += 1
        status = response.status_code
        if status < 300:
            self._count(response, len(resources), result)
            return result
        outcome = None
        try:
            outcome = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            pass
        if status in (401, 403):
            raise ServiceError(f"the FHIR server refused the credentials (HTTP {status}): "
                               f"{outcome_text(outcome) or 'check the auth options'}")
        if len(resources) == 1:
            log.warning("rejected %s/%s: HTTP %d", resources[0]["resourceType"], resources[0]["id"], status)
            result.rejected.append(Rejected(resources[0], status, outcome))
            return result
        half = len(resources) // 2
        log.info("transaction of %d rejected (HTTP %d): splitting to find the refused resources",
                 len(resources), status)
        result.add(self.transaction(resources[:half]))
        result.add(self.transaction(resources[half:]))
        return result

    @staticmethod
    def _count(response: httpx.Response, expected: int, result: BundleResult) -> None:
        bundle = orjson.loads(response.content)
        entries = bundle.get("entry", [])
        if len(entries) != expected:
            raise ServiceError(f"transaction response has {len(entries)} entries for {expected} writes")
        for entry in entries:
            code = str(entry.get("response", {}).get("status", "")).split(" ", 1)[0]
            if code == "201":
                result.created += 1
            elif code in ("200", "204"):
                result.updated += 1
            else:
                raise ServiceError(f"transaction succeeded but an entry answered {code or 'nothing'}")
