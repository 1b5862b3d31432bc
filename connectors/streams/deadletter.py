"""Input dead letters: entries (or samples) the worker could not use, kept in ``wearfhir:in:dead`` with the reason.

An undecodable or unknown-version entry is copied whole (its fields, so it can be replayed once the worker is
fixed or upgraded); samples that arrived for windows whose state is gone are re-encoded as an entry of their
own (``late``): the reason tells the operator to re-import them with ``wearfhir import``, which recomputes whole
windows. Stream entries hold PHI exactly as the input streams do; logs get ids, reasons and counts only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

from connectors.streams.producer import INPUT_DEAD_LETTERS

__all__ = ["InputDeadLetter", "list_input_dead_letters", "replay_input_dead_letters", "write_input_dead_letters"]

LATE_MESSAGE = ("{n} {metric} samples arrived for windows whose state is gone (older than the worker's horizon): "
                "they were not folded into any summary. Re-import the source file with `wearfhir import FILE "
                "--fhir URL` (it recomputes whole windows and writes the same ids), or raise --horizon")


@dataclass(frozen=True)
class InputDeadLetter:
    """One dead-lettered entry or group of samples."""

    reason: str  # undecodable | unknown_version | unknown_metric | unknown_origin | unprocessable | late
    message: str
    stream: str
    entry_id: str
    producer: str = ""
    patient: str = ""
    metric: str = ""
    samples: int = 0
    fields: dict[bytes, bytes] = field(default_factory=dict)  # what can be replayed (entry fields)

    def record(self) -> dict[bytes, bytes]:
        head = {b"reason": self.reason, b"message": self.message, b"stream": self.stream, b"entry": self.entry_id,
                b"producer": self.producer, b"patient": self.patient, b"metric": self.metric,
                b"samples": str(self.samples), b"at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
        out = {k: v.encode() for k, v in head.items()}
        out.update({b"entry." + k: v for k, v in self.fields.items()})
        return out


def write_input_dead_letters(client: redis.Redis, letters: Iterable[InputDeadLetter]) -> int:
    """Add the letters to ``wearfhir:in:dead`` (one pipeline); returns how many."""
    pipe = client.pipeline(transaction=False)
    count = 0
    for letter in letters:
        pipe.xadd(INPUT_DEAD_LETTERS, letter.record())  # type: ignore[arg-type]
        count += 1
    if count:
        pipe.execute()
    return count


def list_input_dead_letters(client: redis.Redis, reasons: set[str] | None = None
                            ) -> list[tuple[str, dict[bytes, bytes]]]:
    """The dead letters (id, fields) in ``wearfhir:in:dead``, oldest first, optionally of some reasons only."""
    out = []
    letters: Any = client.xrange(INPUT_DEAD_LETTERS)
    for letter_id, fields in letters:
        reason = fields.get(b"reason", b"").decode()
        if reasons is None or reason in reasons:
            out.append((letter_id.decode() if isinstance(letter_id, bytes) else str(letter_id), fields))
    return out


def replay_input_dead_letters(client: redis.Redis, reasons: set[str]) -> tuple[int, int]:
    """Put the entries of dead letters with these reasons back on their input streams (a new entry each), and
    remove those letters; returns (replayed, skipped: letters without a replayable entry). ``late`` letters are
    never replayed here: their windows' state is gone, they go through ``wearfhir import`` instead."""
    replayed = skipped = 0
    for letter_id, fields in list_input_dead_letters(client, reasons - {"late"}):
        entry = {key[len(b"entry."):]: value for key, value in fields.items() if key.startswith(b"entry.")}
        stream = fields.get(b"stream", b"").decode()
        if not entry or not stream.startswith("wearfhir:in:"):
            skipped += 1
            continue
        pipe = client.pipeline(transaction=True)
        pipe.xadd(stream, entry)  # type: ignore[arg-type]
        pipe.xdel(INPUT_DEAD_LETTERS, letter_id)
        pipe.execute()
        replayed += 1
    return replayed, skipped
