"""Options shared by kvtrees.open() and kvtrees.open_engine(), validated in Python.

Defaults (see docs): cache_size 64 MiB, sync "commit", sync_interval_ms 100,
page_size 4096 (B+tree page), node_size 0 and basement_size 0 (the fractal
engine's defaults), direct_io False, read_only False, wal_limit 64 MiB (the log
size that triggers a checkpoint), mmap True (B+tree pages missing from the cache are
read through a read-only mapping of the data file; False: pread only; ignored with
direct_io).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

__all__ = ["Options", "make_options", "SYNC_MODES", "ENGINES"]

MiB = 1024 * 1024
SYNC_MODES = {"commit": 0, "interval": 1, "none": 2}
from .limits import DEFAULT_CACHE, DEFAULT_WAL_LIMIT, ENGINES  # noqa: E402


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _pow2_in(v: int, lo: int, hi: int) -> bool:
    return lo <= v <= hi and v & (v - 1) == 0


@dataclass
class Options:
    """Tuning and mode options; every field is checked by validate()."""

    cache_size: int = DEFAULT_CACHE
    sync: str = "commit"
    sync_interval_ms: int = 100
    page_size: int = 4096
    node_size: int = 0
    basement_size: int = 0
    direct_io: bool = False
    read_only: bool = False
    wal_limit: int = DEFAULT_WAL_LIMIT
    engine: Optional[str] = None
    mmap: bool = True

    def validate(self) -> "Options":
        """Raise TypeError/ValueError for a bad field; return self."""
        for name in ("cache_size", "sync_interval_ms", "page_size", "node_size",
                     "basement_size", "wal_limit"):
            v = getattr(self, name)
            if not _is_int(v):
                raise TypeError(f"{name} must be an int, not {type(v).__name__}")
            if v < 0 or v >= 1 << 63:
                raise ValueError(f"{name} must be >= 0, got {v}")
        for name in ("direct_io", "read_only", "mmap"):
            v = getattr(self, name)
            if _is_int(v) and v in (0, 1):
                setattr(self, name, bool(v))
            elif not isinstance(v, bool):
                raise TypeError(f"{name} must be a bool")
        if not isinstance(self.sync, str):
            raise TypeError("sync must be a str")
        if self.sync not in SYNC_MODES:
            raise ValueError(f"sync must be one of {sorted(SYNC_MODES)}, got {self.sync!r}")
        if self.cache_size < 256 * 1024:
            raise ValueError("cache_size must be at least 256 KiB")
        if not 0 < self.sync_interval_ms < 1 << 32:
            raise ValueError("sync_interval_ms must be in 1..2**32-1")
        if not _pow2_in(self.page_size, 4096, MiB):
            raise ValueError(f"page_size must be a power of two in 4096..1 MiB, got {self.page_size}")
        if self.basement_size and not _pow2_in(self.basement_size, 4096, MiB):
            raise ValueError("basement_size must be 0 or a power of two in 4096..1 MiB")
        if self.node_size >= 1 << 32:
            raise ValueError("node_size must be below 4 GiB")
        if self.wal_limit == 0:
            raise ValueError("wal_limit must be > 0")
        if self.engine is not None:
            if not isinstance(self.engine, str):
                raise TypeError("engine must be a str or None")
            if self.engine not in ENGINES:
                raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        return self


_FIELDS = {f.name for f in dataclasses.fields(Options)}


def make_options(options: Optional[Options] = None, **kwargs: Any) -> Options:
    """An Options from an optional Options object plus keyword overrides, validated."""
    if options is not None and not isinstance(options, Options):
        raise TypeError(f"options must be a kvtrees.Options, not {type(options).__name__}")
    unknown = set(kwargs) - _FIELDS
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
    base = options if options is not None else Options()
    return dataclasses.replace(base, **kwargs).validate()
