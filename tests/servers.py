"""Real servers for tests, started from packages: the FHIR server (sekmet + HAPI strictness), Redis, a fault proxy."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until(check: Callable[[], bool], what: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{out[-3000:]}")
        try:
            if check():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{what} did not start within {timeout:.0f} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class FhirServer:
    """A running test FHIR server."""

    base_url: str
    port: int
    settings: dict[str, Any]

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30.0, **kwargs)

    def count(self, resource_type: str, system: str, value: str, client: httpx.Client | None = None) -> int:
        """How many resources carry the identifier ``system`` / ``value``: the idempotency check."""
        from connectors.fhir.client import token_param

        with (client or self.client()) as c:
            response = c.get(f"/{resource_type}",
                             params={"identifier": token_param(system, value), "_summary": "count"})
            response.raise_for_status()
            return int(response.json()["total"])

    def total(self, resource_type: str, client: httpx.Client | None = None, **params: str) -> int:
        with (client or self.client()) as c:
            response = c.get(f"/{resource_type}", params={**params, "_summary": "count"})
            response.raise_for_status()
            return int(response.json()["total"])


@contextmanager
def fhir_server(tmp: Path, **overrides: Any) -> Iterator[FhirServer]:
    """Start sekmet-fhir (simulator off, no traffic log, temp-file SQLite) behind HAPI strictness."""
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    settings: dict[str, Any] = {
        "base_url": base,
        "host": "127.0.0.1",
        "port": port,
        "data_dir": str(tmp),
        "db_path": str(tmp / "fhir.db"),
        "simulator": {"enabled": False},
        "log_inbound": False,
        "own_private_key_path": str(tmp / "sekmet_private.pem"),
        "validation": {"inbound": "strict"},
    }
    settings.update(overrides)
    env = dict(os.environ, WEARFHIR_TEST_SEKMET=json.dumps(settings), PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "tests.fhir_server:app_factory", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning", "--no-access-log"],
        cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _wait_until(lambda: httpx.get(f"{base}/metadata", timeout=2).status_code == 200, "FHIR server", proc)
    try:
        yield FhirServer(base, port, settings)
    finally:
        _stop(proc)


@dataclass
class RedisServer:
    """A running redis-server; ``restart()`` stops it and starts it again on the same port and directory."""

    port: int
    command: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        port = self.port

        def ping() -> bool:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")

        _wait_until(ping, "redis-server", self.proc, timeout=20)

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None

    def restart(self, down_seconds: float = 0.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()


@contextmanager
def redis_server(tmp: Path, aof: bool = False) -> Iterator[RedisServer]:
    """Start ``redis-server`` (Debian package; ``make test`` installs it) on a free loopback port; ``aof`` turns on
    the append-only file with ``appendfsync always`` (a restart keeps every acknowledged write)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed: run `make test` (it installs it with apt-get)")
    port = free_port()
    persistence = ["--appendonly", "yes", "--appendfsync", "always"] if aof else ["--appendonly", "no"]
    server = RedisServer(port, [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", *persistence,
                                "--dir", str(tmp)])
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --- fault-injecting proxy ------------------------------------------------------------------------------

FAULTS = ("429", "503", "409", "stall", "reset")


@dataclass
class FaultProxy:
    """An HTTP proxy in front of the FHIR server that misbehaves on a schedule the test chooses.

    ``schedule`` is a queue of actions applied to the next requests (``None`` = forward), after which
    ``every`` (if set) injects ``every_fault`` on each n-th request. Actions: ``429`` (with Retry-After),
    ``503``, ``409`` (OperationOutcome), ``stall`` (no answer for ``stall_seconds``, then close), ``reset``
    (TCP RST). ``seen`` counts what happened.
    """

    upstream: str
    port: int = 0
    schedule: deque[str | None] = field(default_factory=deque)
    every: int = 0
    every_faults: tuple[str, ...] = FAULTS
    retry_after: str = "1"
    stall_seconds: float = 5.0
    seen: Counter[str] = field(default_factory=Counter)
    _requests: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    def _next_action(self) -> str | None:
        self._requests += 1
        if self.schedule:
            return self.schedule.popleft()
        if self.every and self._requests % self.every == 0:
            return self.every_faults[(self._requests // self.every) % len(self.every_faults)]
        return None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      client: httpx.AsyncClient) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = [tuple(line.split(":", 1)) for line in lines[1:] if ":" in line]
                length = next((int(v) for k, v in headers if k.strip().lower() == "content-length"), 0)
                body = await reader.readexactly(length) if length else b""
                action = self._next_action()
                self.seen[action or "forwarded"] += 1
                if action == "reset":
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                if action == "stall":
                    await asyncio.sleep(self.stall_seconds)
                    writer.close()
                    return
                if action in ("429", "503", "409"):
                    status = {"429": "429 Too Many Requests", "503": "503 Service Unavailable",
                              "409": "409 Conflict"}[action]
                    payload = (b'{"resourceType":"OperationOutcome","issue":[{"severity":"error",'
                               b'"code":"conflict","diagnostics":"injected fault"}]}')
                    extra = f"Retry-After: {self.retry_after}\r\n" if action == "429" else ""
                    writer.write(f"HTTP/1.1 {status}\r\nContent-Type: application/fhir+json\r\n{extra}"
                                 f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
                    await writer.drain()
                    continue
                forward = {k.strip(): v.strip() for k, v in headers
                           if k.strip().lower() not in ("host", "content-length", "connection")}
                response = await client.request(method, self.upstream.rstrip("/") + target.split("/fhir", 1)[1],
                                                headers=forward, content=body)
                out = [f"HTTP/1.1 {response.status_code} {response.reason_phrase}"]
                out += [f"{k}: {v}" for k, v in response.headers.items()
                        if k.lower() not in ("content-length", "transfer-encoding", "connection",
                                             "content-encoding")]
                out.append(f"Content-Length: {len(response.content)}")
                writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + response.content)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client went away, or the proxy is shutting down
        finally:
            if not writer.is_closing():
                writer.close()


@contextmanager
def fault_proxy(upstream: str) -> Iterator[FaultProxy]:
    """Run a :class:`FaultProxy` on a free port in a background thread."""
    proxy = FaultProxy(upstream)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def serve() -> None:
        client = httpx.AsyncClient(timeout=60.0)
        server = await asyncio.start_server(lambda r, w: proxy._handle(r, w, client), "127.0.0.1", 0)
        proxy.port = server.sockets[0].getsockname()[1]
        stop = state["stop"] = asyncio.Event()
        ready.set()
        await stop.wait()
        server.close()
        handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await client.aclose()

    thread = threading.Thread(target=lambda: loop.run_until_complete(serve()), daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield proxy
    finally:
        loop.call_soon_threadsafe(state["stop"].set)
        thread.join(10)
        loop.close()
