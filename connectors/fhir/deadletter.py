"""Dead letters: resources a FHIR server refused, kept durably with the server's OperationOutcome.

A dead letter holds the resource itself (it is what a replay re-sends), so the store is PHI: the file is
created ``0600`` and nothing here logs a resource body. ``wearfhir dlq list`` prints ids, types, statuses
and the server's diagnostics; ``wearfhir dlq replay`` re-sends and removes what then lands.

Two stores: an NDJSON file (the ``import`` default: ``<out or cwd>/dead-letters.ndjson``) and a Redis
stream (``wearfhir:dlq``) when Redis is configured.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from connectors.fhir.client import Rejected

__all__ = ["DeadLetter", "DeadLetterStore", "FileDeadLetters", "RedisDeadLetters", "open_store"]

REDIS_STREAM = "wearfhir:dlq"


@dataclass(frozen=True)
class DeadLetter:
    """One refused resource: where it was sent, the answer, and the resource to re-send."""

    key: str  # store-specific handle (line number, stream id)
    server: str
    status: int
    message: str
    outcome: dict[str, Any] | None
    resource: dict[str, Any]
    at: str

    @property
    def reference(self) -> str:
        return f"{self.resource.get('resourceType')}/{self.resource.get('id')}"

    def record(self) -> dict[str, Any]:
        return {"server": self.server, "status": self.status, "message": self.message, "outcome": self.outcome,
                "resource": self.resource, "at": self.at}

    @classmethod
    def from_record(cls, key: str, data: dict[str, Any]) -> DeadLetter:
        """A stored dead letter (what :meth:`record` wrote) under its store's ``key``."""
        return cls(key, data["server"], data["status"], data["message"], data.get("outcome"), data["resource"],
                   data["at"])

    @classmethod
    def of(cls, rejected: Rejected, server: str) -> DeadLetter:
        return cls("", server, rejected.status, rejected.message, rejected.outcome, rejected.resource,
                   datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))


class DeadLetterStore(Protocol):
    """Where dead letters go."""

    def add(self, letters: Iterable[DeadLetter]) -> int: ...
    def list(self) -> list[DeadLetter]: ...
    def remove(self, keys: Iterable[str]) -> None: ...
    def describe(self) -> str: ...


class FileDeadLetters:
    """Dead letters as NDJSON lines in a ``0600`` file; appends are flushed and fsynced."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def describe(self) -> str:
        return str(self.path)

    def add(self, letters: Iterable[DeadLetter]) -> int:
        lines = [orjson.dumps(letter.record()) + b"\n" for letter in letters]
        if not lines:
            return 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as fh:
            fh.write(b"".join(lines))
            fh.flush()
            os.fsync(fh.fileno())
        return len(lines)

    def _read(self) -> Iterator[DeadLetter]:
        if not self.path.exists():
            return
        with self.path.open("rb") as fh:
            for number, line in enumerate(fh, 1):
                if line.strip():
                    yield DeadLetter.from_record(str(number), orjson.loads(line))

    def list(self) -> list[DeadLetter]:
        return list(self._read())

    def remove(self, keys: Iterable[str]) -> None:
        gone = set(keys)
        if not gone:
            return
        keep = [letter for letter in self._read() if letter.key not in gone]
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(b"".join(orjson.dumps(letter.record()) + b"\n" for letter in keep))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)


class RedisDeadLetters:
    """Dead letters as entries of a Redis stream (durable as the Redis deployment is)."""

    def __init__(self, url: str, stream: str = REDIS_STREAM) -> None:
        import redis

        self._redis = redis.Redis.from_url(url)
        self.url = url
        self.stream = stream

    def describe(self) -> str:
        return f"redis stream {self.stream}"

    def add(self, letters: Iterable[DeadLetter]) -> int:
        count = 0
        with self._redis.pipeline(transaction=True) as pipe:
            for letter in letters:
                pipe.xadd(self.stream, {"letter": orjson.dumps(letter.record())})
                count += 1
            if count:
                pipe.execute()
        return count

    def list(self) -> list[DeadLetter]:
        return [DeadLetter.from_record(entry_id.decode(), orjson.loads(fields[b"letter"]))
                for entry_id, fields in self._redis.xrange(self.stream)]

    def remove(self, keys: Iterable[str]) -> None:
        ids = list(keys)
        if ids:
            self._redis.xdel(self.stream, *ids)


def open_store(redis_url: str | None, file: Path) -> DeadLetterStore:
    """The Redis stream when Redis is configured, else the file."""
    return RedisDeadLetters(redis_url) if redis_url else FileDeadLetters(file)
