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

import redis

from connectors.streams.producer import INPUT_DEAD_LETTERS

__all__ = ["InputDeadLetter", "write_input_dead_letters"]

LATE_MESSAGE = ("{n} {metric} samples arrived for windows whose state is gone (older than the worker's horizon): "
                "they were not folded into any summary. Re-import the source file with `wearfhir import FILE "
                "--fhir URL` (it recomputes whole windows and writes the same ids), or raise --horizon")


@dataclass(frozen=True)
class InputDeadLetter:
    """One dead-lettered entry or group of samples."""

    reason: str  # undecodable | unknown_version | late
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
