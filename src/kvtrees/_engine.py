"""The raw ordered key-value engine: the only module that calls the native library.

>>> import tempfile, kvtrees
>>> with kvtrees.open_engine(tempfile.mkdtemp()) as eng:
...     eng.put(b"a", b"1"); eng.get(b"a")
b'1'

Every C call releases the GIL (cffi API mode); the C layer does its own locking, so an
Engine may be shared by threads. Iterators and batches are tied to their engine: after
engine.close() they raise ClosedError instead of touching freed memory.
"""

from __future__ import annotations

import os
import threading
import struct as _struct
from itertools import chain as _chain_mod
import weakref
from operator import itemgetter as _itemgetter
from typing import Any, Iterable, Iterator, Mapping, Optional, Tuple, Union

from ._native import ffi, lib
from ._pack import pack_puts as _pack_puts
from .errors import ClosedError, check, error_from_code
from .options import SYNC_MODES, Options, make_options

__all__ = ["Engine", "Batch", "open_engine", "FaultVFS", "MAX_KEY", "MAX_VALUE"]

from .limits import MAX_KEY, MAX_VALUE  # noqa: E402  (kvt_limits.h)
from .errors import TooLargeError as _TooLargeError  # noqa: E402
KeyLike = Union[bytes, bytearray, memoryview]
Pairs = Iterable[Tuple[KeyLike, KeyLike]]

_OK = lib.KVT_OK
_NOTFOUND = lib.KVT_NOTFOUND
_EBUFSMALL = lib.KVT_EBUFSMALL
_kvt_get = lib.kvt_get
_buffer = ffi.buffer
_unpack = ffi.unpack
_next_many = lib.kvt_iter_next_many
_batch_put = lib.kvt_batch_put
_put_many = lib.kvt_put_many
_batch_put_many = lib.kvt_batch_put_many
_iter_new = lib.kvt_iter_new
_iter_free = lib.kvt_iter_free
_NO_BOUND = (ffi.NULL, 0)
_weakref = weakref.ref


def _new_chunk():
    return ffi.new("kvt_chunk *")


_new = ffi.new
_CHUNK_T = ffi.typeof("kvt_chunk *")
_new_lock = threading.Lock


_EMPTY = iter(())
_chain = _chain_mod.from_iterable
_GET_BUF = 4096          # initial per-thread get buffer; grows on demand
_GET_BUF_KEEP = 1 << 20  # larger buffers are dropped after use


def _closed(what: str = "engine") -> ClosedError:
    return ClosedError(f"{what} is closed")


def _key(key: Any) -> bytes:
    """Validate a key: bytes-like, non-empty, <= 4 KiB. Returns bytes."""
    if type(key) is not bytes:
        if isinstance(key, str):
            raise TypeError("keys must be bytes, not str (encode it first)")
        if isinstance(key, (bytearray, memoryview)):
            key = bytes(key)
        elif isinstance(key, bytes):
            key = bytes(key)
        else:
            raise TypeError(f"keys must be bytes, not {type(key).__name__}")
    n = len(key)
    if n == 0:
        raise ValueError("keys must not be empty")
    if n > MAX_KEY:
        from .errors import TooLargeError
        raise TooLargeError(f"key of {n} bytes exceeds the {MAX_KEY}-byte limit")
    return key


def _value(value: Any):
    """Validate a value; returns (C-passable object, length). No copy for buffers."""
    if type(value) is bytes:
        n = len(value)
        obj = value
    elif isinstance(value, str):
        raise TypeError("values must be bytes, not str (encode it first)")
    elif isinstance(value, (bytes, bytearray, memoryview)):
        mv = memoryview(value)
        if not mv.contiguous:
            value = bytes(mv)
            mv = memoryview(value)
        n = mv.nbytes
        obj = ffi.from_buffer("uint8_t[]", mv) if n else b""
    else:
        raise TypeError(f"values must be bytes, not {type(value).__name__}")
    if n > MAX_VALUE:
        from .errors import TooLargeError
        raise TooLargeError(f"value of {n} bytes exceeds the {MAX_VALUE}-byte limit")
    return obj, n


def _pack(pairs: Any) -> bytes:
    """The kvt_put_many buffer of pairs (a mapping gives its items), packed in one C loop
    (kvtrees._pack); raises TypeError/ValueError/TooLargeError before anything is
    written, as put() does for one pair."""
    if isinstance(pairs, Mapping):
        pairs = pairs.items()
    return _pack_puts(pairs, MAX_KEY, MAX_VALUE, _TooLargeError)


def _bound(b: Any, name: str):
    """(pointer, length) of an iterator bound; bytes (the common case) go as they are."""
    if b is None:
        return _NO_BOUND
    if type(b) is bytes and len(b) <= MAX_KEY:
        return b, len(b)
    if isinstance(b, str):
        raise TypeError(f"{name} must be bytes, not str")
    if not isinstance(b, (bytes, bytearray, memoryview)):
        raise TypeError(f"{name} must be bytes or None, not {type(b).__name__}")
    b = bytes(b)
    if len(b) > MAX_KEY:
        from .errors import TooLargeError
        raise TooLargeError(f"{name} of {len(b)} bytes exceeds the {MAX_KEY}-byte key limit")
    return b, len(b)


class _GetBuf(threading.local):
    """Per-thread get() buffer: s = (uint8_t buffer, capacity, size_t *vlen, char * view).
    One tuple keeps the hot path at a single thread-local lookup; the char * view lets
    ffi.unpack return bytes in one call."""

    def __init__(self) -> None:
        self.reset()

    def reset(self, cap: int = _GET_BUF) -> None:
        buf = ffi.new("uint8_t[]", cap)
        self.s = (buf, cap, ffi.new("size_t *"), ffi.cast("char *", buf))


_tls = _GetBuf()


class FaultVFS:
    """Test hook: the fault-injecting VFS (kvt_fault_vfs_*). Pass it as
    open_engine(path, _vfs=fv). It stays alive as long as an engine uses it."""

    WRITE = lib.KVT_FAULT_WRITE
    SYNC = lib.KVT_FAULT_SYNC
    CRASH_DROP = lib.KVT_CRASH_DROP
    CRASH_TEAR = lib.KVT_CRASH_TEAR

    def __init__(self) -> None:
        p = ffi.new("kvt_vfs **")
        check(lib.kvt_fault_vfs_new(p))
        self._vfs = p[0]
        self._users = 0

    def _ptr(self):
        if self._vfs is None:
            raise _closed("fault VFS")
        return self._vfs

    def set(self, op: int, nth: int, persistent: bool = False, err: Optional[int] = None) -> None:
        """Fail the nth (1-based, from now) op of kind op (WRITE/SYNC) with err (EIO default)."""
        check(lib.kvt_fault_set(self._ptr(), op, nth, 1 if persistent else 0,
                                lib.KVT_EIO if err is None else err))

    def fail_writes(self, nth: int = 1, persistent: bool = False, nospace: bool = False) -> None:
        self.set(self.WRITE, nth, persistent, lib.KVT_ENOSPC if nospace else lib.KVT_EIO)

    def fail_syncs(self, nth: int = 1, persistent: bool = False, nospace: bool = False) -> None:
        self.set(self.SYNC, nth, persistent, lib.KVT_ENOSPC if nospace else lib.KVT_EIO)

    def crash(self, mode: int = 0, seed: int = 0) -> None:
        """Simulated power loss: unsynced writes vanish (CRASH_DROP) or tear (CRASH_TEAR)."""
        check(lib.kvt_fault_crash(self._ptr(), mode, seed))

    def only(self, file_name: Optional[str]) -> None:
        """Armed failures hit only files whose path ends with file_name (e.g. "data.kvt");
        None: every file. Cleared by reset()."""
        check(lib.kvt_fault_only(self._ptr(), file_name.encode() if file_name else ffi.NULL))

    def reset(self) -> None:
        lib.kvt_fault_reset(self._ptr())

    def count(self, op: int) -> int:
        return int(lib.kvt_fault_count(self._ptr(), op))

    def hold_syncs(self, hold: bool = True) -> None:
        """hold: every later fsync waits until hold_syncs(False) (other ops go on)."""
        check(lib.kvt_fault_hold_syncs(self._ptr(), 1 if hold else 0))

    def held_syncs(self) -> int:
        """How many fsyncs have waited on hold_syncs so far."""
        return int(lib.kvt_fault_held(self._ptr()))

    def close(self) -> None:
        """Free the VFS; refused while an open engine still uses it."""
        if self._vfs is not None and self._users == 0:
            lib.kvt_fault_vfs_free(self._vfs)
            self._vfs = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


class _Child:
    """A native object owned by an engine (iterator, batch): freed at engine close."""

    _what = "object"

    def __init__(self, engine: "Engine") -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._ptr = None

    def _free_native(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _release(self) -> None:
        with self._lock:
            if self._ptr is not None:
                self._free_native()
                self._ptr = None

    def __del__(self) -> None:
        try:
            if self._ptr is not None:
                self._release()
        except Exception:
            pass


_STRUCTS: dict = {}
_ITEM0 = _itemgetter(0)


def _uniform_struct(mode: int, kl: int, vl: int):
    """The Struct splitting entries of one key and one value length (cached by
    kl << 34 | vl << 2 | mode: key lengths are < 2**13, values < 2**32)."""
    key = (kl << 34) | (vl << 2) | mode
    st = _STRUCTS.get(key)
    if st is None:
        if len(_STRUCTS) > 512:
            _STRUCTS.clear()
        fmt = ("%ds%ds", "%ds%dx", "%dx%ds")[mode] % (kl, vl)
        st = _STRUCTS[key] = _struct.Struct(fmt)
    return st


def _split_chunk(mode: int, blob: bytes, lens: list, n: int):
    """An iterator over one chunk's entries (k0 v0 k1 v1 ... in blob, lengths in lens),
    split in C by one struct format built for the chunk. (A chunk whose keys and values
    all have one length each takes Struct.iter_unpack instead: _Iter._refill.)"""
    flat = _struct.unpack(("%ds" * (2 * n)) % tuple(lens), blob)
    if mode == 0:
        return zip(flat[0::2], flat[1::2])
    return iter(flat[mode - 1::2])


class _Iter(_Child):
    """Iterator over a key range; yields (key, value), keys only or values only.

    Entries come from the native iterator a chunk at a time (kvt_iter_next_many: one
    call, one copy of the chunk's bytes); each chunk is split into bytes objects by
    struct in C (_split_chunk), so no Python code runs per entry.
    ``iter()`` gives a chain of the chunks over the same state (no Python frame per
    entry, unlike ``__next__``); both may be mixed and used from several threads."""

    _what = "iterator"

    def __init__(self, engine: "Engine", start, end, reverse: bool, mode: int) -> None:
        self._engine = engine
        self._lock = _new_lock()
        self._ptr = None
        s, sl = _bound(start, "start")
        e, el = _bound(end, "end")
        self._mode = mode
        self._chunk = _new(_CHUNK_T)
        self._cur = _EMPTY            # iterator over the current chunk's entries
        self._finished = False
        with engine._close_lock:      # also guards the engine's shared out-pointer
            out = engine._iter_out
            db = engine._db
            if db is None:
                raise _closed()
            rc = _iter_new(db, s, sl, e, el, 1 if reverse else 0, out)
            if rc:
                check(rc)
            self._ptr = out[0]
            engine._children.add(_weakref(self, engine._child_gone))

    def _free_native(self) -> None:
        lib.kvt_iter_free(self._ptr)
        self._cur = _EMPTY            # __next__ stops now; a for loop inside a chunk
                                      # ends it (bytes already copied), then stops

    def __del__(self) -> None:
        # _Child.__del__ inlined (every seek ends here): the lock still orders it
        # against an engine.close() releasing its children from another thread
        try:
            if self._ptr is not None:
                with self._lock:
                    if self._ptr is not None:
                        _iter_free(self._ptr)
                        self._cur = _EMPTY
                        self._ptr = None
        except Exception:
            pass

    def _refill(self) -> bool:
        """Next chunk into self._cur (caller holds the lock); False at the end."""
        if self._ptr is None:
            if self._engine._db is None and not self._finished:
                raise _closed("engine of this iterator")
            return False
        c = self._chunk
        rc = _next_many(self._ptr, c)
        if rc == 0:
            blob = _unpack(c.data, c.bytes)
            mode = self._mode
            if c.uniform:
                kl, vl = c.kl, c.vl
                st = _STRUCTS.get((kl << 34) | (vl << 2) | mode)
                if st is None:
                    st = _uniform_struct(mode, kl, vl)
                it = st.iter_unpack(blob)
                self._cur = it if mode == 0 else map(_ITEM0, it)
            else:
                self._cur = _split_chunk(mode, blob, _unpack(c.lens, 2 * c.n), c.n)
            return True
        err = error_from_code(rc) if rc != _NOTFOUND else None
        self._finished = True
        self._free_native()
        self._ptr = None
        if err is not None:
            raise err
        return False

    def __iter__(self) -> Iterator:
        return _chain(self._chunks())

    def _chunks(self) -> Iterator:
        """Each chunk's iterator in turn (chain walks them at C speed)."""
        lock = self._lock
        refill = self._refill
        while True:
            cur = self._cur
            yield cur
            with lock:
                if self._cur is cur and not refill():
                    return

    def __next__(self):
        for item in self._cur:
            return item
        with self._lock:
            while True:
                for item in self._cur:     # another thread may have refilled it
                    return item
                if not self._refill():
                    raise StopIteration

    def close(self) -> None:
        """Free the iterator now (also done when exhausted or garbage-collected)."""
        self._finished = True
        self._release()

    def __enter__(self) -> "_Iter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Batch(_Child):
    """An atomic write batch: all or nothing, also across a crash.

    Used as ``with eng.batch() as b: b.put(k, v); b.delete(k)``: committed when the block
    ends normally, discarded if it raises. Also usable directly: put/delete/commit/discard.
    """

    _what = "batch"

    def __init__(self, engine: "Engine") -> None:
        super().__init__(engine)
        out = ffi.new("kvt_batch **")
        with engine._guard():
            check(lib.kvt_batch_new(engine._live(), out))
            self._ptr = out[0]
            engine._adopt(self)

    def _free_native(self) -> None:
        lib.kvt_batch_free(self._ptr)

    def _live(self):
        if self._ptr is None:
            raise _closed("batch (committed, discarded or its engine closed)")
        return self._ptr

    def put(self, key: KeyLike, value: KeyLike) -> None:
        # Fast path (bytes key and value within limits): one native call, no helper
        # calls; anything else takes the validating path below.
        if type(key) is bytes and type(value) is bytes:
            kl = len(key)
            vl = len(value)
            if 0 < kl <= MAX_KEY and vl <= MAX_VALUE:
                with self._lock:
                    ptr = self._ptr
                    if ptr is not None:
                        rc = _batch_put(ptr, key, kl, value, vl)
                        if rc:
                            check(rc)
                        return
        k = _key(key)
        v, n = _value(value)
        with self._lock:
            check(lib.kvt_batch_put(self._live(), k, len(k), v, n))

    def put_many(self, pairs: Pairs) -> None:
        """put(k, v) for every (k, v) of pairs (or a mapping's items), in order, in one
        native call. Every pair is checked first: on a bad one (TypeError, ValueError,
        TooLargeError) none of them is added. O(total bytes)."""
        buf = _pack(pairs)
        with self._lock:
            rc = _batch_put_many(self._live(), buf, len(buf))
            if rc:
                check(rc)

    def delete(self, key: KeyLike) -> None:
        k = _key(key)
        with self._lock:
            check(lib.kvt_batch_delete(self._live(), k, len(k)))

    def upsert(self, key: KeyLike, operand: KeyLike) -> None:
        """Append operand to key's value at commit (an absent key starts empty).

        The value keeps the newest 64 MiB (KVT_MAX_VALUE): value := last 64 MiB of
        (old || operand), on both engines, so an append never fails at commit for size.
        Blind on the fractal tree (no read: the append travels down as a message);
        the B+tree reads and rewrites. Same validation as put (operand <= 64 MiB)."""
        k = _key(key)
        v, n = _value(operand)
        with self._lock:
            check(lib.kvt_batch_upsert(self._live(), k, len(k), v, n))

    def __len__(self) -> int:
        with self._lock:
            return int(lib.kvt_batch_count(self._ptr)) if self._ptr is not None else 0

    def commit(self) -> None:
        """Apply every operation atomically; the batch is then closed."""
        with self._lock:
            ptr = self._live()
            try:
                check(lib.kvt_batch_commit(ptr))
            finally:
                lib.kvt_batch_free(ptr)
                self._ptr = None

    def discard(self) -> None:
        """Drop the batch without writing anything."""
        self._release()

    def __enter__(self) -> "Batch":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


class Engine:
    """An ordered map of bytes to bytes stored in a directory (docs/API.md section 2)."""

    def __init__(self, path: Union[str, "os.PathLike[str]"], options: Options,
                 _vfs: Optional[FaultVFS] = None) -> None:
        self._db = None
        self._path = os.fspath(path)
        if not isinstance(self._path, str):
            self._path = os.fsdecode(self._path)
        self._options = options
        self._close_lock = threading.Lock()
        # Children (iterators, batches) as weak references in a plain set; each ref's
        # callback is the set's own discard, so adding and dropping one runs no Python
        # code (a WeakSet costs about a microsecond per iterator).
        self._children: set = set()
        self._child_gone = self._children.discard
        self._iter_out = ffi.new("kvt_iter **")   # used under _close_lock only
        self._vfs = _vfs
        o = ffi.new("kvt_options *")
        lib.kvt_options_init(o)
        name = ffi.new("char[]", options.engine.encode()) if options.engine else ffi.NULL
        o.engine = name
        o.cache_size = options.cache_size
        o.sync_mode = SYNC_MODES[options.sync]
        o.sync_interval_ms = options.sync_interval_ms
        o.page_size = options.page_size
        o.node_size = options.node_size
        o.basement_size = options.basement_size
        o.direct_io = int(options.direct_io)
        o.read_only = int(options.read_only)
        o.no_mmap = int(not options.mmap)
        o.wal_limit = options.wal_limit
        if _vfs is not None:
            if not isinstance(_vfs, FaultVFS):
                raise TypeError("_vfs must be a FaultVFS")
            o.vfs = _vfs._ptr()
        if not options.read_only:
            try:
                os.makedirs(self._path, exist_ok=True)   # C creates only the last level
            except OSError as exc:
                from .errors import StorageError
                raise StorageError(f"cannot create directory {self._path}: {exc}") from exc
        out = ffi.new("kvt_db **")
        check(lib.kvt_open(os.fsencode(self._path), o, out))
        self._db = out[0]
        self._engine_name = ffi.string(lib.kvt_engine_name(self._db)).decode()
        if _vfs is not None:
            _vfs._users += 1

    # -- plumbing --------------------------------------------------------------------

    def _live(self):
        db = self._db
        if db is None:
            raise _closed()
        return db

    def _guard(self):
        return self._close_lock

    def _adopt(self, child: "_Child") -> None:
        self._children.add(weakref.ref(child, self._child_gone))

    @property
    def path(self) -> str:
        return self._path

    @property
    def engine(self) -> str:
        """"btree" or "fractal"."""
        return self._engine_name

    @property
    def closed(self) -> bool:
        return self._db is None

    @property
    def read_only(self) -> bool:
        return self._options.read_only

    # -- point operations -------------------------------------------------------------

    def get(self, key: KeyLike) -> Optional[bytes]:
        """The value of key, or None. O(log n)."""
        db = self._db
        if db is None:
            raise _closed()
        if type(key) is not bytes:
            key = _key(key)
        buf, cap, vlen, cbuf = _tls.s
        rc = _kvt_get(db, key, len(key), buf, cap, vlen)
        if rc == _OK:
            return _unpack(cbuf, vlen[0])
        if rc == _NOTFOUND:
            return None
        return self._get_slow(key, rc)

    def _get_slow(self, key: bytes, rc: int) -> Optional[bytes]:
        try:
            while rc == _EBUFSMALL:
                _tls.reset(max(_tls.s[2][0], 64))
                buf, cap, vlen, cbuf = _tls.s
                rc = _kvt_get(self._live(), key, len(key), buf, cap, vlen)
            if rc == _OK:
                return _unpack(_tls.s[3], _tls.s[2][0])
            if rc == _NOTFOUND:
                return None
            if rc == lib.KVT_EINVAL or rc == lib.KVT_ETOOLARGE:
                _key(key)  # raises the precise ValueError
            raise error_from_code(rc)
        finally:
            if _tls.s[1] > _GET_BUF_KEEP:
                _tls.reset()

    def put(self, key: KeyLike, value: KeyLike) -> None:
        """Set key to value (durable per the sync option when it returns)."""
        k = _key(key)
        v, n = _value(value)
        check(lib.kvt_put(self._live(), k, len(k), v, n))

    def put_many(self, pairs: Pairs) -> None:
        """Set every (key, value) of pairs (or a mapping's items) as one atomic batch,
        packed in C and committed in one native call (durable per the sync option when
        it returns; a key given twice takes its last value). Every pair is checked
        before anything is written: a bad one raises (TypeError, ValueError,
        TooLargeError) and nothing is committed. O(total bytes + n log n)."""
        buf = _pack(pairs)
        rc = _put_many(self._live(), buf, len(buf))
        if rc:
            check(rc)

    def delete(self, key: KeyLike) -> bool:
        """Remove key; True if it existed."""
        k = _key(key)
        existed = ffi.new("int *")
        check(lib.kvt_delete(self._live(), k, len(k), existed))
        return bool(existed[0])

    def append(self, key: KeyLike, operand: KeyLike) -> None:
        """Append operand to key's value (an absent or deleted key starts empty).

        One upsert message (a one-op batch, durable per the sync option when it returns);
        the fractal tree applies it without reading the old value. Same validation as
        put (operand <= 64 MiB, else TooLargeError before anything is written).
        The result keeps the newest 64 MiB (KVT_MAX_VALUE): value := last 64 MiB of
        (old || operand), identically on both engines, so it never fails for size."""
        k = _key(key)
        v, n = _value(operand)
        b = ffi.new("kvt_batch **")
        check(lib.kvt_batch_new(self._live(), b))
        try:
            check(lib.kvt_batch_upsert(b[0], k, len(k), v, n))
            check(lib.kvt_batch_commit(b[0]))
        finally:
            lib.kvt_batch_free(b[0])

    def batch(self) -> Batch:
        """A new atomic batch (see Batch)."""
        return Batch(self)

    # -- ranges -----------------------------------------------------------------------

    def items(self, start: Optional[KeyLike] = None, end: Optional[KeyLike] = None,
              reverse: bool = False) -> Iterator[Tuple[bytes, bytes]]:
        """(key, value) pairs with start <= key < end, ascending (descending if reverse).

        Reads ahead in chunks; stays valid and consistent while other threads write."""
        return _Iter(self, start, end, reverse, 0)

    def keys(self, start: Optional[KeyLike] = None, end: Optional[KeyLike] = None,
             reverse: bool = False) -> Iterator[bytes]:
        return _Iter(self, start, end, reverse, 1)

    def values(self, start: Optional[KeyLike] = None, end: Optional[KeyLike] = None,
               reverse: bool = False) -> Iterator[bytes]:
        return _Iter(self, start, end, reverse, 2)

    def __iter__(self) -> Iterator[bytes]:
        return self.keys()

    def __contains__(self, key: KeyLike) -> bool:
        return self.get(key) is not None

    # -- maintenance ------------------------------------------------------------------

    def stats(self) -> dict:
        """I/O, cache and tree counters (see kvt_stats in kvtrees.h)."""
        s = ffi.new("kvt_stats *")
        check(lib.kvt_get_stats(self._live(), s))
        out = {name: int(getattr(s, name)) for name, _ in ffi.typeof("kvt_stats").fields}
        out["engine"] = self._engine_name
        return out

    def checkpoint(self) -> None:
        """Write all changes to the data file and empty the log."""
        check(lib.kvt_checkpoint(self._live()))

    def sync(self) -> None:
        """Make every commit so far durable (fsync the log)."""
        check(lib.kvt_sync(self._live()))

    def check(self) -> None:
        """Full invariant and checksum walk; raises CorruptionError on damage."""
        check(lib.kvt_check(self._live()))

    def close(self) -> None:
        """Checkpoint (unless read-only) and release everything. Idempotent."""
        with self._close_lock:
            db = self._db
            if db is None:
                return
            for ref in list(self._children):
                child = ref()
                if child is not None:
                    child._release()
            self._db = None
            rc = lib.kvt_close(db)
            if self._vfs is not None:
                self._vfs._users -= 1
            check(rc)

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if self._db is not None:
                self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self._db is None else self._engine_name
        return f"<kvtrees.Engine {self._path!r} {state}>"


def open_engine(path: Union[str, "os.PathLike[str]"], engine: Optional[str] = None,
                options: Optional[Options] = None, *, _vfs: Optional[FaultVFS] = None,
                **kwargs: Any) -> Engine:
    """Open (creating if missing) the directory path as a raw ordered KV engine.

    engine: "btree" or "fractal"; None opens the directory with its own engine (btree
    for a new directory). Options come as keywords or an Options object (or both:
    keywords override). Opening a directory with the other engine raises
    EngineMismatchError; a second writer raises LockedError.
    """
    if isinstance(engine, Options):
        if options is not None:
            raise TypeError("options given twice")
        engine, options = None, engine
    if engine is not None:
        kwargs["engine"] = engine
    opts = make_options(options, **kwargs)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, not {type(path).__name__}")
    return Engine(path, opts, _vfs=_vfs)
