"""The producer side of the worker's input: patients' samples → entries on the sharded input streams.

Used by ``wearfhir enqueue`` (an export file into the streams), and by the front door and the pollers. The
number of shards is fixed at deployment and stored in Redis (``wearfhir:config`` ``shards``): every producer and
worker reads it there, so they always agree on which stream holds a patient.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import redis

from connectors.streams.codec import MAX_ENTRY_SAMPLES, encode_entry, split_samples
from mappers.sample import Sample

__all__ = ["CONFIG_KEY", "DEFAULT_SHARDS", "INPUT_DEAD_LETTERS", "StreamProducer", "configured_shards",
           "default_producer_id", "shard_of", "stream_key"]

DEFAULT_SHARDS = 16
CONFIG_KEY = "wearfhir:config"
INPUT_PREFIX = "wearfhir:in:"
INPUT_DEAD_LETTERS = "wearfhir:in:dead"  # entries the worker could not use, with the reason
COMMITTED_KEY = "wearfhir:committed"  # stream → the last id whose epoch the worker committed


def stream_key(shard: int) -> str:
    """The input stream of a shard: ``wearfhir:in:{shard}``."""
    return f"{INPUT_PREFIX}{shard}"


def shard_of(patient: str, shards: int) -> int:
    """The shard of a patient: a stable hash (BLAKE2b, the same in every process and language), mod ``shards``."""
    digest = hashlib.blake2b(patient.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


def configured_shards(client: redis.Redis, wanted: int | None = None) -> int:
    """The deployment's shard count: set once (``wanted``, else the default) and read by everyone after.

    Asking for another count than the one set raises: changing it would move patients between streams.
    """
    if wanted is not None and wanted < 1:  # checked before anything is stored: the count is set once
        raise ValueError(f"the number of input shards must be at least 1, not {wanted}")
    client.hsetnx(CONFIG_KEY, "shards", str(wanted or DEFAULT_SHARDS))
    stored = int(client.hget(CONFIG_KEY, "shards") or DEFAULT_SHARDS)
    if wanted is not None and wanted != stored:
        raise ValueError(f"this Redis is set up with {stored} input shards, not {wanted}: the count is fixed at "
                         "deployment (a patient's data must stay in one stream)")
    return stored


def default_producer_id(kind: str) -> str:
    """A producer id naming the program, host and process (no user data)."""
    return f"{kind}:{socket.gethostname()}:{os.getpid()}"


@dataclass
class StreamProducer:
    """Adds sample batches to the input streams, pipelined; counts what it added."""

    client: redis.Redis
    producer: str
    shards: int = 0  # 0: read (or set) the deployment's count
    pipeline_entries: int = 64
    entries: int = 0
    samples: int = 0
    bytes: int = 0
    ids: list[str] = field(default_factory=list)
    keep_ids: bool = False

    def __post_init__(self) -> None:
        self.shards = configured_shards(self.client, self.shards or None)
        self._pipe = self.client.pipeline(transaction=False)
        self._queued = 0

    def add(self, patient: str, samples: Sequence[Sample], *, timezone: str | None, origin: str,
            identity: str = "value") -> None:
        """Queue ``samples`` of one patient (cut into entries of at most 1,000); ``flush`` sends what is left."""
        key = stream_key(shard_of(patient, self.shards))
        for part in split_samples(samples, MAX_ENTRY_SAMPLES):
            fields = encode_entry(patient, part, timezone=timezone, origin=origin, producer=self.producer,
                                  identity=identity)
            self._pipe.xadd(key, fields)  # type: ignore[arg-type]
            self._queued += 1
            self.entries += 1
            self.samples += len(part)
            self.bytes += len(fields[b"data"])
            if self._queued >= self.pipeline_entries:
                self.flush()

    def add_all(self, patient: str, batches: Iterable[Sequence[Sample]], *, timezone: str | None, origin: str,
                identity: str = "value") -> None:
        for samples in batches:
            self.add(patient, samples, timezone=timezone, origin=origin, identity=identity)

    def flush(self) -> list[str]:
        """Send the queued entries; returns their stream ids."""
        if not self._queued:
            return []
        added = [i.decode() if isinstance(i, bytes) else str(i) for i in self._pipe.execute()]
        self._queued = 0
        if self.keep_ids:
            self.ids.extend(added)
        return added
