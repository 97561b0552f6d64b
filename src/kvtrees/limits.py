"""Limits and defaults, taken from the native library (native/include/kvt_limits.h and
the engine registry), so C and Python cannot disagree."""

from ._native import ffi, lib

__all__ = ["MAX_KEY", "MAX_VALUE", "MAX_RECORD", "DEFAULT_CACHE", "DEFAULT_WAL_LIMIT",
           "ENGINES"]

MAX_KEY: int = lib.KVT_MAX_KEY                 # bytes of an engine key
MAX_VALUE: int = lib.KVT_MAX_VALUE             # bytes of a value
MAX_RECORD: int = lib.KVT_MAX_RECORD           # bytes of one batch (one log record)
DEFAULT_CACHE: int = lib.KVT_DEFAULT_CACHE     # page cache bytes
DEFAULT_WAL_LIMIT: int = lib.KVT_DEFAULT_WAL_LIMIT


def _engines() -> tuple:
    names = []
    while True:
        p = lib.kvt_engine_at(len(names))
        if p == ffi.NULL:
            return tuple(names)
        names.append(ffi.string(p).decode())


ENGINES: tuple = _engines()                    # ("btree", "fractal")
