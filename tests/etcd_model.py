"""Pure-Python reference model of etcd's MVCC semantics, for tests only.

Deliberately naive (full history in dicts and lists): it is the oracle the real store is
checked against. Also holds MemEngine, a small in-memory stand-in for the engine API
(used only by tests, to exercise the store where the native engine is not built).
"""

from __future__ import annotations

import bisect
import contextlib
import threading


class ModelCompacted(Exception):
    pass


class ModelFuture(Exception):
    pass


class EtcdModel:
    def __init__(self):
        self.rev = 1
        self.compact_rev = 0
        self.versions = {}      # key -> [(rev, value or None for tombstone, create, version)]
        self.log = []           # [(rev, key, kind, value, create, version)]

    # ---- state
    def _latest(self, key, rev):
        for v in reversed(self.versions.get(key, [])):
            if v[0] <= rev:
                return v
        return None

    def get(self, key, rev=None):
        rev = self._check(rev)
        v = self._latest(key, rev)
        if v is None or v[1] is None:
            return None
        return (key, v[1], v[2], v[0], v[3])   # key, value, create, mod, version

    def range(self, start, end, rev=None):
        rev = self._check(rev)
        out = []
        for k in sorted(self.versions):
            if k >= start and (end is None or k < end):
                kv = self.get(k, rev)
                if kv:
                    out.append(kv)
        return out

    def _check(self, rev):
        if not rev:
            return self.rev
        if rev > self.rev:
            raise ModelFuture(rev)
        if rev < self.compact_rev:
            raise ModelCompacted(rev)
        return rev

    # ---- writes (a list of ops applied in one revision)
    def apply(self, ops):
        """ops: [("put", k, v) | ("delete", start, end_or_None)]; one revision if any write."""
        new = self.rev + 1
        wrote = False
        for op in ops:
            if op[0] == "put":
                self._put(op[1], op[2], new)
                wrote = True
            else:
                keys = [kv[0] for kv in (self.range(op[1], op[2]) if op[2] is not None
                                         else [self.get(op[1])]) if kv]
                for k in keys:
                    if self._latest(k, new) and self._latest(k, new)[1] is not None:
                        self.versions[k].append((new, None, 0, 0))
                        self.log.append((new, k, "delete", b"", 0, 0))
                        wrote = True
        if wrote:
            self.rev = new
        return wrote

    def _put(self, k, v, rev):
        cur = self._latest(k, rev)
        if cur is None or cur[1] is None:
            create, version = rev, 1
        else:
            create, version = cur[2], cur[3] + 1
        if cur is not None and cur[0] == rev:
            raise ValueError("key written twice in one revision")
        self.versions.setdefault(k, []).append((rev, v, create, version))
        self.log.append((rev, k, "put", v, create, version))

    def compact(self, rev):
        if rev <= self.compact_rev:
            raise ModelCompacted(rev)
        if rev > self.rev:
            raise ModelFuture(rev)
        self.compact_rev = rev

    def events(self, start, end, from_rev):
        """Watch replay: events for keys in [start, end) (end None: single key)."""
        if from_rev < self.compact_rev:
            raise ModelCompacted(from_rev)
        out = []
        for rev, k, kind, v, create, version in self.log:
            if rev < from_rev:
                continue
            if (end is None and k == start) or (end is not None and start <= k < end):
                out.append((kind, k, v, rev))
        return out


class MemEngine:
    """In-memory stand-in for kvtrees.open_engine()'s object (tests only)."""

    def __init__(self):
        self._keys = []
        self._vals = {}
        self._lock = threading.RLock()
        self.closed = False
        self.engine = "mem"

    def get(self, k):
        return self._vals.get(bytes(k))

    def put(self, k, v):
        with self._lock:
            k = bytes(k)
            if k not in self._vals:
                bisect.insort(self._keys, k)
            self._vals[k] = bytes(v)

    def delete(self, k):
        with self._lock:
            k = bytes(k)
            if k not in self._vals:
                return False
            del self._vals[k]
            self._keys.pop(bisect.bisect_left(self._keys, k))
            return True

    @contextlib.contextmanager
    def batch(self):
        ops = []

        class B:
            def put(_, k, v):
                ops.append((bytes(k), bytes(v)))

            def delete(_, k):
                ops.append((bytes(k), None))
        yield B()
        with self._lock:
            for k, v in ops:
                self.delete(k) if v is None else self.put(k, v)

    def items(self, start=None, end=None, reverse=False):
        with self._lock:
            lo = 0 if start is None else bisect.bisect_left(self._keys, start)
            hi = len(self._keys) if end is None else bisect.bisect_left(self._keys, end)
            snap = [(k, self._vals[k]) for k in self._keys[lo:hi]]
        return iter(reversed(snap) if reverse else snap)

    def stats(self):
        return {"file_size": sum(len(k) + len(v) for k, v in self._vals.items()),
                "wal_size": 0, "entries": len(self._keys)}

    def checkpoint(self):
        pass

    def sync(self):
        pass

    def check(self):
        assert self._keys == sorted(self._vals)

    def close(self):
        self.closed = True


# ---------------------------------------------------------------- test plumbing

_MEM_DIRS: dict = {}


def load_kvtrees():
    """(kvtrees module, engine names to test). Falls back to importing the pure-Python
    store modules without the native package (only while the native build is broken),
    testing them over MemEngine."""
    import os
    import sys
    import types
    forced = os.environ.get("KVT_STORE_ENGINES")     # e.g. "mem" or "btree,fractal"
    try:
        import kvtrees
        if hasattr(kvtrees, "open_engine") and hasattr(kvtrees, "open"):
            return kvtrees, forced.split(",") if forced else ["btree", "fractal"]
    except ImportError:
        pass
    for name in [m for m in sys.modules if m == "kvtrees" or m.startswith("kvtrees.")]:
        del sys.modules[name]
    stub = types.ModuleType("kvtrees")
    stub.__path__ = [os.path.join(os.path.dirname(__file__), "..", "src", "kvtrees")]
    stub.__version__ = "0.0-stub"
    sys.modules["kvtrees"] = stub
    import kvtrees.errors as errors
    for n in dir(errors):
        if n.endswith("Error"):
            setattr(stub, n, getattr(errors, n))
    import kvtrees.store as store
    stub.open = store.open
    return stub, ["mem"]


def open_store(engine, path, **opts):
    """kvtrees.open() for a real engine; a Store over a per-path MemEngine for "mem"."""
    import kvtrees
    path = str(path)
    if engine != "mem":
        return kvtrees.open(path, engine=engine, **opts)
    from kvtrees.store import Store
    eng = _MEM_DIRS.setdefault(path, MemEngine())
    return Store(eng, engine_name="mem",
                 engine_factory=lambda dest: _MEM_DIRS.setdefault(str(dest), MemEngine()),
                 **opts)
