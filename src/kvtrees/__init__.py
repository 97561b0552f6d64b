"""kvtrees: an embeddable storage engine with etcd's data model over two C engines
(an on-disk B+tree and a fractal tree).

    eng = kvtrees.open_engine(path, engine="btree")   # raw ordered bytes -> bytes
    db  = kvtrees.open(path, engine="fractal")        # MVCC store with etcd semantics
"""

from __future__ import annotations

import importlib
import importlib.util

__version__ = "0.1.0"

from . import errors  # noqa: E402
from .errors import (  # noqa: E402,F401
    ClosedError, CompactedError, CorruptionError, EngineMismatchError, FatalError,
    FutureRevisionError, InvalidArgumentError, KvtreesError, LeaseNotFoundError,
    LockedError, NoSpaceError, ReadOnlyError, StorageError, TooLargeError,
    UnsupportedVersionError,
)
from .options import Options  # noqa: E402
from ._native import ffi as _ffi, lib as _lib  # noqa: E402

_native_version = _ffi.string(_lib.kvt_version()).decode()
if _native_version != __version__:
    raise ImportError(f"kvtrees: compiled native library is version {_native_version}, "
                      f"the Python package {__version__}: rebuild (pip install -e .)")

from ._engine import Batch, Engine, FaultVFS, open_engine  # noqa: E402,F401

__all__ = [
    "__version__", "open_engine", "Engine", "Batch", "Options", "errors", "KvtreesError",
    "CorruptionError", "LockedError", "ClosedError", "EngineMismatchError", "CompactedError",
    "FutureRevisionError", "LeaseNotFoundError", "TooLargeError", "NoSpaceError",
    "ReadOnlyError", "StorageError", "FatalError",
]

# Modules written alongside this one: exported when present. A module that exists but
# fails to import is a real bug and raises; only a missing module is skipped.
_OPTIONAL_EXPORTS = {
    "store": ("open", "Store", "Status"),
    "mvcc": ("KeyValue", "RangeResult", "PutResult", "DeleteResult"),
    "watch": ("Event", "PutEvent", "DeleteEvent"),
    "lease": ("Lease",),
    "concurrency": ("Lock", "Election", "Etcd3Lock", "etcd3_lock"),
}


def _export_optional() -> None:
    for mod, names in _OPTIONAL_EXPORTS.items():
        if importlib.util.find_spec(f"{__name__}.{mod}") is None:
            continue
        m = importlib.import_module(f"{__name__}.{mod}")
        for name in names:
            if hasattr(m, name):
                globals()[name] = getattr(m, name)
                __all__.append(name)


_export_optional()


def __getattr__(name: str):
    """kvtrees.serve(...) (docs/SERVER.md), imported on first use: the server needs
    the `server` extra (grpcio, protobuf, bcrypt), plain store users do not."""
    if name == "serve":
        from .server import serve
        return serve
    raise AttributeError("module 'kvtrees' has no attribute %r" % name)
