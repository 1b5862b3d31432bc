"""The test FHIR server: sekmet-fhir 0.1.1 wrapped in an ASGI middleware that adds HAPI FHIR's strictness.

HAPI (the production target) rejects what sekmet accepts in four places (DESIGN §5); the middleware does
the same, with HAPI's message codes, so the sink is tested against the stricter behaviour:

* ``Content-Encoding: gzip`` request bodies are decoded (sekmet would read the compressed bytes);
* a reference to a resource that neither exists nor is written in the same Bundle → 400 (HAPI-1094);
* a purely numeric client-assigned id → 400 (HAPI-0960);
* the same resource twice in one transaction → 400 (HAPI-0535).

Run as ``uvicorn --factory tests.fhir_server:app_factory``; settings come from ``WEARFHIR_TEST_SEKMET``
(JSON for sekmet's ``Settings``).
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

NUMERIC = re.compile(r"[0-9]+")
LOCAL_REFERENCE = re.compile(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})")


def _outcome(code: str, text: str) -> bytes:
    return json.dumps({"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": code, "diagnostics": text}]}).encode()


def _references(node: Any, path: str) -> Iterator[tuple[str, str]]:
    """(reference, FHIRPath-ish location) of every literal ``reference`` in a resource."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield value, path
            else:
                yield from _references(value, f"{path}.{key}")
    elif isinstance(node, list):
        for item in node:
            yield from _references(item, path)


class HapiStrictness:
    """ASGI middleware: HAPI's defaults where sekmet is laxer (see the module docstring)."""

    def __init__(self, app: ASGIApp, base_path: str = "/fhir") -> None:
        self.app = app
        self.base = base_path.rstrip("/")
        self._known: set[str] = set()  # references seen to exist (resources are never deleted by wearfhir)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT"):
            await self.app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"content-encoding", b"content-length")]
        if dict(scope["headers"]).get(b"content-encoding", b"").lower() == b"gzip":
            try:
                body = gzip.decompress(body)
            except OSError:
                await self._reject(send, 400, "invalid", "HAPI-0450: request body is not valid gzip")
                return
        headers.append((b"content-length", str(len(body)).encode()))
        scope = dict(scope, headers=headers)
        problem = await self._check(scope, body)
        if problem is not None:
            await self._reject(send, 400, *problem)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _check(self, scope: Scope, body: bytes) -> tuple[str, str] | None:
        path = scope["path"]
        if not path.startswith(self.base):
            return None
        try:
            resource = json.loads(body) if body else None
        except ValueError:
            return None  # sekmet answers malformed JSON itself
        if not isinstance(resource, dict):
            return None
        segments = [s for s in path[len(self.base):].split("/") if s]
        if scope["method"] == "POST" and not segments and resource.get("resourceType") == "Bundle":
            return await self._check_bundle(scope, resource)
        if scope["method"] == "PUT" and len(segments) == 2:
            if NUMERIC.fullmatch(segments[1]):
                return ("processing", f"HAPI-0960: Can not create resource with ID[{segments[1]}], no resource "
                        "with this ID exists and clients may only assign IDs which contain at least one "
                        "non-numeric character")
            return await self._check_references(scope, [resource], {f"{segments[0]}/{segments[1]}"})
        return None

    async def _check_bundle(self, scope: Scope, bundle: dict[str, Any]) -> tuple[str, str] | None:
        if bundle.get("type") != "transaction":
            return None
        written: set[str] = set()
        resources = []
        for entry in bundle.get("entry") or []:
            request = entry.get("request") or {}
            url = str(request.get("url", "")).split("?")[0]
            if request.get("method") == "PUT":
                if url.count("/") == 1 and NUMERIC.fullmatch(url.split("/")[1]):
                    return ("processing", f"HAPI-0960: Can not create resource with ID[{url.split('/')[1]}], "
                            "clients may only assign IDs which contain at least one non-numeric character")
                if url in written:
                    return ("processing", f"HAPI-0535: Transaction bundle contains multiple resources with "
                            f"ID: {url}")
                written.add(url)
            if entry.get("fullUrl"):
                written.add(entry["fullUrl"])
            if isinstance(entry.get("resource"), dict):
                resources.append(entry["resource"])
        return await self._check_references(scope, resources, written)

    async def _check_references(self, scope: Scope, resources: list[dict[str, Any]], written: set[str]
                                ) -> tuple[str, str] | None:
        for resource in resources:
            for reference, where in _references(resource, resource.get("resourceType", "Resource")):
                if reference in written or reference in self._known or reference.startswith(("urn:", "#")):
                    continue
                if not LOCAL_REFERENCE.fullmatch(reference):
                    continue  # absolute and logical references are not checked (as in HAPI's defaults)
                if await self._exists(scope, reference):
                    self._known.add(reference)
                    continue
                return ("processing", f"HAPI-1094: Resource {reference} not found, specified in path: {where}")
        return None

    async def _exists(self, scope: Scope, reference: str) -> bool:
        """Ask the wrapped server (an in-process GET) whether ``reference`` exists."""
        status = 0

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        headers = [(k, v) for k, v in scope["headers"] if k in (b"authorization", b"host")]
        get = dict(scope, method="GET", path=f"{self.base}/{reference}", raw_path=f"{self.base}/{reference}".encode(),
                   query_string=b"", headers=headers)
        await self.app(get, receive, send)
        return status == 200

    @staticmethod
    async def _reject(send: Send, status: int, code: str, text: str) -> None:
        body = _outcome(code, text)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/fhir+json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def app_factory() -> ASGIApp:
    """sekmet (simulator and traffic log off) behind HapiStrictness, configured from the environment."""
    from sekmet.config import Settings, set_settings
    from sekmet.main import create_app

    settings = Settings.model_validate(json.loads(os.environ.get("WEARFHIR_TEST_SEKMET", "{}")))
    set_settings(settings)
    return HapiStrictness(create_app(settings))
