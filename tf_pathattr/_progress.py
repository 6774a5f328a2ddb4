"""A progress bar on stderr with a total and an ETA (tqdm when installed, else a plain line)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable

__all__ = ["progress", "PlainProgress"]


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0) + 0.5)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class PlainProgress:
    """``done/total, rate, ETA`` redrawn on one stderr line (at most twice a second); the fallback without tqdm.

    The ETA is ``(total - done) / rate`` with ``rate = done / elapsed``.
    """

    def __init__(self, iterable=None, total: int | None = None, desc: str = "", unit: str = "it", file=None):
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.file = file if file is not None else sys.stderr
        if self.total is None and iterable is not None and hasattr(iterable, "__len__"):
            self.total = len(iterable)
        self.n, self.start, self._drawn = 0, time.perf_counter(), 0.0

    def line(self) -> str:
        elapsed = time.perf_counter() - self.start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        head = f"{self.desc}: " if self.desc else ""
        if self.total:
            eta = _clock((self.total - self.n) / rate) if rate > 0 else "?"
            pct = 100.0 * self.n / self.total
            return f"{head}{self.n}/{self.total} {self.unit} ({pct:.0f}%), {rate:.1f} {self.unit}/s, ETA {eta}"
        return f"{head}{self.n} {self.unit}, {rate:.1f} {self.unit}/s, {_clock(elapsed)} elapsed"

    def update(self, k: int = 1) -> None:
        self.n += k
        now = time.perf_counter()
        if now - self._drawn >= 0.5 or (self.total and self.n >= self.total):
            self._drawn = now
            print("\r" + self.line(), end="", file=self.file, flush=True)

    def close(self) -> None:
        print("\r" + self.line(), file=self.file, flush=True)

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()


def progress(iterable: Iterable | None = None, total: int | None = None, desc: str = "", unit: str = "it"):
    """A progress bar over ``iterable`` (or updated by hand with ``.update(k)`` / ``.close()``).

    With ``total`` known it shows ``done/total`` and the ETA. tqdm draws it when installed.
    """
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is in the dev extra
        return PlainProgress(iterable, total=total, desc=desc, unit=unit)
    return tqdm(iterable, total=total, desc=desc or None, unit=unit, file=sys.stderr)
