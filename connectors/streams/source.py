"""The worker's Bytewax input: one partition per shard stream, plain ``XREAD`` from the id in the snapshot.

No consumer group: Bytewax's recovery rewinds every partition and every key's state to one committed epoch,
so the read position must live in that same snapshot (see ../shared/notes/bytewax-redis-worker.md §2). Reads
never block (``next_batch`` must not); an empty read backs off, growing to ``idle_backoff``. The id of a snapshot
is published as committed (``wearfhir:committed``) at the partition's first read after it: Bytewax lets a
partition read in epoch N+1 only once everything up to epoch N has gone through the dataflow and been
committed. The committed id drives lag metrics and trimming: ``XTRIM MINID`` only up to a committed id at least
``backup_seconds`` old (a restore from an older recovery backup must find its entries) and never past
``retain_seconds`` of history.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import redis
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors.streams.producer import COMMITTED_KEY, stream_key

__all__ = ["Drain", "PartitionState", "RedisStreamSource", "StreamEntry"]

log = logging.getLogger("wearfhir.worker.input")


class StreamEntry(NamedTuple):
    """One entry read from an input stream."""

    shard: int
    stream: str
    entry_id: str
    fields: dict[bytes, bytes]


class PartitionState(NamedTuple):
    """What a partition keeps in the recovery snapshot."""

    last_id: str  # the last entry read (the next read starts after it)
    read: int  # entries read from this stream over its life (for lag: entries-added minus this)


def _id_ms(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


def _id_less(a: str, b: str) -> bool:
    ams, _, aseq = a.partition("-")
    bms, _, bseq = b.partition("-")
    return (int(ams), int(aseq or 0)) < (int(bms), int(bseq or 0))


class Drain:
    """A graceful stop (SIGTERM): stop reading, let the epoch in progress commit, then exit without a replay.

    Once asked, partitions read nothing more; a partition's second snapshot after that proves the epoch that
    holds its last reads committed (it could not start the next epoch otherwise). When every partition of this
    process has seen that, ``on_drained`` runs (the worker exits 0 there: a restart replays nothing).
    """

    def __init__(self, on_drained: Any = None) -> None:
        self.requested = False
        self._parts: dict[int, int] = {}
        self._on_drained = on_drained

    def request(self) -> None:
        if not self.requested:
            log.info("drain requested: reading stops; exiting once the current epoch has committed")
        self.requested = True

    def register(self, shard: int) -> None:
        self._parts[shard] = 0

    def snapshotted(self, shard: int) -> None:
        if not self.requested:
            return
        self._parts[shard] = self._parts.get(shard, 0) + 1
        if all(count >= 2 for count in self._parts.values()) and self._on_drained is not None:
            done, self._on_drained = self._on_drained, None
            done()


class _StreamPartition(StatefulSourcePartition[StreamEntry, PartitionState]):
    def __init__(self, source: RedisStreamSource, shard: int, state: PartitionState | None) -> None:
        self._source = source
        self._shard = shard
        self._key = stream_key(shard)
        self._client = redis.Redis.from_url(source.redis_url, socket_timeout=10, socket_connect_timeout=5)
        self._state = state or PartitionState("0-0", 0)
        self._committed: str | None = None  # the last snapshot's id: committed once the partition may read again
        self._commit_pending = False
        self._history: deque[tuple[float, str]] = deque()  # (wall time, committed id), for trimming
        self._delay = 0.0
        self._awake: datetime | None = None
        self._last_snapshot = time.monotonic()
        if source.drain is not None:
            source.drain.register(shard)
        self._check_ids()

    def _check_ids(self) -> None:
        """Alarm when the stream's newest id is below the resume id (a Redis restored from an older copy, or a
        replica behind): entries added with lower ids would be skipped."""
        try:
            info = self._client.xinfo_stream(self._key)
        except redis.ResponseError:
            return  # no such stream yet
        except redis.RedisError as exc:
            log.warning("shard %d: could not check the stream (%s)", self._shard, type(exc).__name__)
            return
        newest = info.get("last-generated-id")
        newest = newest.decode() if isinstance(newest, bytes) else str(newest)
        if newest and _id_less(newest, self._state.last_id):
            log.error("shard %d: the stream's newest id %s is below the resumed position %s: entries added with "
                      "lower ids will be skipped; was Redis restored from an older copy?", self._shard, newest,
                      self._state.last_id)

    def next_batch(self) -> list[StreamEntry]:
        if self._commit_pending:  # reading in epoch N+1 is allowed only once epoch N has committed
            self._commit_pending = False
            try:
                self._publish()
            except redis.RedisError as exc:
                log.warning("shard %d: could not publish progress (%s)", self._shard, type(exc).__name__)
        if self._source.drain is not None and self._source.drain.requested:
            self._back_off(0.2)
            return []
        if self._source.stop is not None and self._source.stop():
            raise StopIteration
        try:
            response: Any = self._client.xread({self._key: self._state.last_id}, count=self._source.read_count)
        except redis.RedisError as exc:
            self._back_off(self._source.error_backoff)
            log.warning("shard %d: Redis read failed (%s); retrying", self._shard, type(exc).__name__)
            self._source.report("redis", False, type(exc).__name__)
            return []
        self._source.report("redis", True, "")
        if not response:
            self._back_off(self._source.idle_backoff)
            return []
        self._delay, self._awake = 0.0, None
        messages = response[0][1]
        out = [StreamEntry(self._shard, self._key, mid.decode() if isinstance(mid, bytes) else str(mid), fields)
               for mid, fields in messages]
        self._state = PartitionState(out[-1].entry_id, self._state.read + len(out))
        metrics = self._source.metrics
        if metrics is not None:
            metrics.entries_read(self._shard, len(out))
            metrics.read_position(self._shard, self._state.last_id)
        return out

    def _back_off(self, ceiling: float) -> None:
        self._delay = min(ceiling, max(0.005, self._delay * 2))
        self._awake = datetime.now(UTC) + timedelta(seconds=self._delay)

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> PartitionState:
        now = time.monotonic()
        metrics = self._source.metrics
        if metrics is not None:
            metrics.epoch_time(now - self._last_snapshot)
        self._last_snapshot = now
        self._committed = self._state.last_id
        self._commit_pending = True
        if self._source.drain is not None:
            self._source.drain.snapshotted(self._shard)
        return self._state

    def _publish(self) -> None:
        """Publish the last snapshot's id as committed, update lag, and trim what is safely behind."""
        committed = self._committed
        metrics = self._source.metrics
        if committed is not None and committed != "0-0":
            self._client.hset(COMMITTED_KEY, self._key, committed)
            if metrics is not None:
                metrics.committed(self._shard, committed)
            self._history.append((time.time(), committed))
        if metrics is not None:
            try:
                added = int(self._client.xinfo_stream(self._key).get("entries-added", 0))
                metrics.lag(self._shard, max(0, added - self._state.read))
            except redis.ResponseError:
                pass
        self._trim()

    def _trim(self) -> None:
        source = self._source
        if source.retain_seconds is None:
            return
        now = time.time()
        usable = None
        while self._history and self._history[0][0] <= now - source.backup_seconds:
            usable = self._history.popleft()[1]
        if usable is None:
            return
        self._history.appendleft((now - source.backup_seconds, usable))  # still the newest usable id
        floor = f"{int((now - source.retain_seconds) * 1000)}-0"
        minid = usable if _id_less(usable, floor) else floor
        self._client.xtrim(self._key, minid=minid, approximate=True)

    def close(self) -> None:
        self._client.close()


class RedisStreamSource(FixedPartitionedSource[StreamEntry, PartitionState]):
    """All ``shards`` input streams; Bytewax spreads them over the cluster's workers."""

    def __init__(self, redis_url: str, shards: int, *, read_count: int = 64, idle_backoff: float = 0.2,
                 error_backoff: float = 2.0, backup_seconds: float = 3600.0, retain_seconds: float | None = 7 * 86400,
                 metrics: Any = None, drain: Drain | None = None, stop: Any = None) -> None:
        self.redis_url = redis_url
        self.drain = drain
        self.stop = stop  # a callable: True ends the input (tests, one-shot runs); None: run forever
        self.shards = shards
        self.read_count = read_count
        self.idle_backoff = idle_backoff
        self.error_backoff = error_backoff
        self.backup_seconds = backup_seconds
        self.retain_seconds = retain_seconds
        self.metrics = metrics

    def report(self, component: str, ok: bool, detail: str) -> None:
        if self.metrics is not None:
            self.metrics.set_ready(component, ok, detail)
            self.metrics.heartbeat()

    def list_parts(self) -> list[str]:
        return [stream_key(shard) for shard in range(self.shards)]

    def build_part(self, step_id: str, for_part: str, resume_state: PartitionState | None) -> _StreamPartition:
        shard = int(for_part.rsplit(":", 1)[1])
        if resume_state is not None and not isinstance(resume_state, PartitionState):
            resume_state = PartitionState(*resume_state)
        return _StreamPartition(self, shard, resume_state)
