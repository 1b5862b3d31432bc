"""A local fake of Google's Fitness REST endpoints and OAuth token endpoint, with scriptable faults, for tests."""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "google-fit" / "rest"
USERS = "/fitness/v1/users/me/"

# Google's standard JSON error bodies (FORMAT.md §2): {"error": {"code", "message", "status", "errors": [...]}}
_ERRORS: dict[str, tuple[int, str, str, str]] = {  # kind -> (status, reason, google status, message)
    "401": (401, "authError", "UNAUTHENTICATED", "Request had invalid authentication credentials."),
    "429": (429, "rateLimitExceeded", "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Read requests'."),
    "403rate": (403, "rateLimitExceeded", "PERMISSION_DENIED", "Rate Limit Exceeded"),
    "403user": (403, "userRateLimitExceeded", "PERMISSION_DENIED", "User Rate Limit Exceeded"),
    "forbidden": (403, "forbidden", "PERMISSION_DENIED", "The caller does not have permission"),
    "insufficientPermissions": (403, "insufficientPermissions", "PERMISSION_DENIED",
                                "Request had insufficient authentication scopes."),
    "404": (404, "notFound", "NOT_FOUND", "DataSourceId not found."),
    "500": (500, "backendError", "INTERNAL", "Internal error encountered."),
    "503": (503, "backendError", "UNAVAILABLE", "The service is currently unavailable."),
}


def error_body(kind: str) -> tuple[int, bytes]:
    status, reason, google_status, message = _ERRORS[kind]
    body = {"error": {"code": status, "message": message, "status": google_status,
                      "errors": [{"message": message, "domain": "global", "reason": reason}]}}
    return status, json.dumps(body).encode()


def data_source(stream_id: str, fields: list[tuple[str, str]]) -> dict[str, Any]:
    """A ``DataSource`` in the discovery document's shape, for listings the tests build."""
    kind, data_type = stream_id.split(":", 2)[:2]
    return {"dataStreamId": stream_id, "dataStreamName": stream_id.rsplit(":", 1)[-1], "type": kind,
            "dataType": {"name": data_type, "field": [{"name": n, "format": f} for n, f in fields]},
            "application": {"packageName": "com.google.android.gms"}}


def point(data_type: str, start_ns: int, end_ns: int, *values: dict[str, Any], origin: str = "") -> dict[str, Any]:
    """A REST ``DataPoint``: int64 nanos as strings, positional ``value[]``."""
    return {"startTimeNanos": str(start_ns), "endTimeNanos": str(end_ns), "dataTypeName": data_type,
            "originDataSourceId": origin, "value": list(values), "modifiedTimeMillis": str(end_ns // 1_000_000)}


@dataclass
class Seen:
    """One request the fake answered: method, unquoted path, query, the bearer token and the status sent."""

    method: str
    path: str
    query: dict[str, str]
    token: str | None
    status: int = 0


@dataclass
class FitFake:
    """State of the fake: the listing, points per stream, tokens, scripted faults and the request log."""

    port: int = 0
    listing: bytes = b'{"dataSource": []}'
    points: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    access_tokens: set[str] = field(default_factory=set)
    refresh_tokens: set[str] = field(default_factory=set)
    dead_refresh_tokens: set[str] = field(default_factory=set)  # answered 400 invalid_grant
    forbidden: dict[str, str] = field(default_factory=dict)  # data type -> fault kind (persistent)
    faults: deque[tuple[str, str, str | None]] = field(default_factory=deque)  # (path part, kind, Retry-After)
    seen: list[Seen] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/fitness/v1/users/"

    @property
    def token_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def load_listing(self, path: Path) -> None:
        self.listing = path.read_bytes()

    def set_listing(self, sources: list[dict[str, Any]]) -> None:
        self.listing = json.dumps({"dataSource": sources}).encode()

    def add_body(self, path: Path) -> dict[str, Any]:
        """Serve the points of a real ``datasets.get`` body under its own ``dataSourceId``."""
        body: dict[str, Any] = json.loads(path.read_bytes())
        self.points.setdefault(body["dataSourceId"], []).extend(body.get("point", []))
        return body

    def fail(self, path_part: str, kind: str, retry_after: str | None = None, times: int = 1) -> None:
        """Answer the next ``times`` requests whose path contains ``path_part`` with the fault ``kind``."""
        for _ in range(times):
            self.faults.append((path_part, kind, retry_after))

    def dataset_requests(self, stream: str | None = None) -> list[Seen]:
        return [s for s in self.seen if "/datasets/" in s.path and (stream is None or f"/{stream}/" in s.path)]

    # ---- answers ------------------------------------------------------------------------------------------
    def _fault(self, path: str) -> tuple[str, str | None] | None:
        with self.lock:
            for i, (part, kind, retry_after) in enumerate(self.faults):
                if part in path:
                    del self.faults[i]
                    return kind, retry_after
        return None

    def _dataset(self, stream: str, dataset_id: str, query: dict[str, str]) -> dict[str, Any]:
        start_text, _, end_text = dataset_id.partition("-")
        start, end = int(start_text), int(end_text)
        # points whose interval overlaps the range; limit applied from the end, next pages go back in time
        found = sorted((p for p in self.points.get(stream, [])
                        if int(p["startTimeNanos"]) <= end and int(p["endTimeNanos"]) >= start),
                       key=lambda p: (int(p["endTimeNanos"]), int(p["startTimeNanos"])))
        limit = int(query.get("limit") or 0) or len(found) or 1
        page = int(query["pageToken"].removeprefix("page-")) if query.get("pageToken") else 0
        stop = len(found) - page * limit
        chunk = found[max(0, stop - limit):max(0, stop)]
        body: dict[str, Any] = {"minStartTimeNs": str(start), "maxEndTimeNs": str(end), "dataSourceId": stream}
        if chunk:
            body["point"] = chunk
        if stop - limit > 0:
            body["nextPageToken"] = f"page-{page + 1}"
        return body

    def answer(self, method: str, raw_path: str, headers: Any, form: dict[str, str]) -> tuple[int, dict[str, str],
                                                                                              bytes]:
        split = urlsplit(raw_path)
        query = {k: v[0] for k, v in parse_qs(split.query).items()}
        segments = [unquote(s) for s in split.path.split("/")]
        path = "/".join(segments)
        auth = headers.get("Authorization") or ""
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
        seen = Seen(method, path, query, token)
        with self.lock:
            self.seen.append(seen)
        status, extra, body = self._answer(method, path, segments, query, token, form)
        seen.status = status
        return status, extra, body

    def _answer(self, method: str, path: str, segments: list[str], query: dict[str, str], token: str | None,
                form: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if method == "POST" and path == "/token":
            return self._token(form)
        if not path.startswith(USERS):
            return 404, {}, b'{"error": {"code": 404, "message": "Not Found"}}'
        if token is None or token not in self.access_tokens:
            status, body = error_body("401")
            return status, {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'}, body
        fault = self._fault(path)
        if fault is not None:
            kind, retry_after = fault
            status, body = error_body(kind)
            return status, ({"Retry-After": retry_after} if retry_after is not None else {}), body
        rest = segments[len(USERS.split("/")) - 1:]  # after .../users/me/
        if method == "GET" and rest == ["dataSources"]:
            return 200, {}, self.listing
        if method == "GET" and len(rest) == 4 and rest[0] == "dataSources" and rest[2] == "datasets":
            stream = rest[1]
            data_type = stream.split(":", 2)[1] if stream.count(":") >= 2 else ""
            if data_type in self.forbidden:
                status, body = error_body(self.forbidden[data_type])
                return status, {}, body
            listed = {s.get("dataStreamId") for s in json.loads(self.listing).get("dataSource", [])}
            if stream not in self.points and stream not in listed:
                status, body = error_body("404")
                return status, {}, body
            return 200, {}, json.dumps(self._dataset(stream, rest[3], query)).encode()
        return 404, {}, b'{"error": {"code": 404, "message": "Not Found"}}'

    def _token(self, form: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            self.token_requests.append(form)
            refresh = form.get("refresh_token", "")
            if form.get("grant_type") != "refresh_token":
                return 400, {}, b'{"error": "unsupported_grant_type"}'
            if refresh in self.dead_refresh_tokens:
                return 400, {}, b'{"error": "invalid_grant", "error_description": "Token has been expired or revoked."}'
            if refresh not in self.refresh_tokens:
                return 400, {}, b'{"error": "invalid_grant", "error_description": "Bad Request"}'
            access = f"access-{len(self.issued) + 1}"
            self.issued.append(access)
            self.access_tokens.add(access)
        body = {"access_token": access, "expires_in": 3599, "token_type": "Bearer",
                "scope": "https://www.googleapis.com/auth/fitness.activity.read"}
        return 200, {}, json.dumps(body).encode()


def _handler(fake: FitFake) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _reply(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode() if length else ""
            form = {k: v[0] for k, v in parse_qs(raw).items()}
            status, extra, body = fake.answer(method, self.path, self.headers, form)
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            for key, value in extra.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._reply("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._reply("POST")

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
            pass

    return Handler


@contextmanager
def fit_server() -> Iterator[FitFake]:
    """Run a :class:`FitFake` on a free loopback port in a background thread."""
    fake = FitFake()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    fake.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
