"""A terminal progress bar (bytes and records/s) fed by a source's progress callback."""

from __future__ import annotations

import sys
from types import TracebackType

from tqdm import tqdm

__all__ = ["ImportProgress"]


class ImportProgress:
    """Shows bytes read and records/s on stderr when it is a terminal (or when forced)."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.total: int | None = None
        self._bar: tqdm | None = None
        self._records = 0

    def __enter__(self) -> ImportProgress:
        return self

    def update(self, bytes_read: int, records: int) -> None:
        """Callback for sources: absolute bytes and records read so far."""
        if not self.enabled:
            return
        if self._bar is None:
            self._bar = tqdm(total=self.total, unit="B", unit_scale=True, unit_divisor=1024,
                             desc="reading", file=sys.stderr, dynamic_ncols=True)
        self._bar.update(bytes_read - self._bar.n)
        elapsed = self._bar.format_dict.get("elapsed") or 0
        if elapsed:
            self._bar.set_postfix_str(f"{records:,} records, {records / elapsed:,.0f} rec/s", refresh=False)
        self._records = records

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.close()
