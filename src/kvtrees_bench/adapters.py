"""One small adapter interface over our engines and the peer stores.

Every workload talks to a store only through these methods, so the Python work per
operation is the same for every target; each adapter uses its store's ordinary fast
path (a write batch / one write transaction per batch, a native iterator for scans).
Batches go through each store's bulk call where it has one: kvtrees Engine.put_many,
LMDB Cursor.putmulti, SQLite executemany (rocksdict has none: WriteBatch.put per pair).

    put(k, v), get(k) -> bytes|None, delete(k), write_batch(pairs), scan(k, n) -> count,
    reader() -> object with get/scan for the calling thread, settle(), counters(), close()

counters() returns the store's own counters (bytes_written, bytes_read, fsyncs,
cache_misses, file_size ...) or None for a counter the store cannot report; the runner
then falls back to the block device's counters for bytes written/read.
"""
from __future__ import annotations

import os
import sqlite3
import threading
from itertools import islice
from typing import Dict, Optional

from kvtrees.limits import ENGINES  # noqa: E402
PEERS = ("lmdb", "rocksdb", "sqlite")


class Unavailable(Exception):
    """The target cannot run here (module missing, engine not built yet)."""


def dir_size(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


class Adapter:
    name = "?"
    kind = "peer"               # "engine" or "peer"
    own_io_counters = False     # True: bytes_written/read come from the store itself

    def __init__(self, path: str, cfg, sync: bool):
        self.path, self.cfg, self.sync_writes = path, cfg, sync

    def reader(self):
        return self

    def scan(self, start: bytes, n: int) -> int:
        raise NotImplementedError

    def settle(self) -> None:
        """Push deferred work to disk (checkpoint / memtable flush / WAL checkpoint), so a
        write workload pays for its writes inside its timed phase."""

    def counters(self) -> Dict[str, Optional[int]]:
        return {"file_size": dir_size(self.path)}

    def close(self) -> None:
        pass


class KvtreesEngine(Adapter):
    """kvtrees.open_engine: the engine's own VFS counters give exact I/O per op."""

    kind = "engine"
    own_io_counters = True
    STAT_KEYS = ("bytes_written", "bytes_read", "fsyncs", "cache_hits", "cache_misses",
                 "height", "file_size", "entries")

    def __init__(self, path, cfg, sync, engine):
        super().__init__(path, cfg, sync)
        self.name = engine
        try:
            import kvtrees
            open_engine = kvtrees.open_engine
        except (ImportError, AttributeError) as e:
            raise Unavailable(f"kvtrees.open_engine is not available: {e}") from e
        self.eng = open_engine(path, engine=engine, cache_size=cfg.cache_size,
                               sync="commit" if sync else "none",
                               direct_io=cfg.direct_io)
        self.put = self.eng.put
        self.get = self.eng.get
        self.delete = self.eng.delete
        self._items = self.eng.items

    def write_batch(self, pairs):
        self.eng.put_many(pairs)        # one atomic batch, packed and applied in C

    def scan(self, start, n):
        c = 0
        for _ in islice(self._items(start=start), n):
            c += 1
        return c

    def settle(self):
        self.eng.checkpoint()

    def counters(self):
        s = self.eng.stats()
        return {k: s.get(k) for k in self.STAT_KEYS}

    def close(self):
        self.eng.close()


class LmdbPeer(Adapter):
    name = "lmdb"

    def __init__(self, path, cfg, sync):
        super().__init__(path, cfg, sync)
        try:
            import lmdb
        except ImportError as e:
            raise Unavailable("module lmdb not installed (pip install 'kvtrees[bench]')") from e
        # A huge sparse map: LMDB has no cache of its own, it uses the OS page cache.
        self.env = lmdb.open(path, map_size=1 << 38, sync=sync, metasync=sync,
                             readahead=False, max_readers=256, lock=True)
        env = self.env

        def get(k):
            with env.begin() as t:
                return t.get(k)

        self.get = get

    def put(self, k, v):
        with self.env.begin(write=True) as t:
            t.put(k, v)

    def delete(self, k):
        with self.env.begin(write=True) as t:
            return t.delete(k)

    def write_batch(self, pairs):
        with self.env.begin(write=True) as t:
            t.cursor().putmulti(pairs)  # LMDB's own bulk put: one C loop, as put_many

    def scan(self, start, n):
        c = 0
        with self.env.begin() as t:
            cur = t.cursor()
            if not cur.set_range(start):
                return 0
            for _ in islice(cur.iternext(keys=True, values=True), n):
                c += 1
        return c

    def settle(self):
        self.env.sync(True)

    def close(self):
        self.env.close()


class RocksPeer(Adapter):
    name = "rocksdb"

    def __init__(self, path, cfg, sync):
        super().__init__(path, cfg, sync)
        try:
            import rocksdict as rd
        except ImportError as e:
            raise Unavailable("module rocksdict not installed (pip install 'kvtrees[bench]')") from e
        self.rd = rd
        opts = rd.Options(raw_mode=True)
        opts.create_if_missing(True)
        table = rd.BlockBasedOptions()
        table.set_block_cache(rd.Cache(cfg.cache_size))
        opts.set_block_based_table_factory(table)
        if cfg.direct_io:
            opts.set_use_direct_reads(True)
            opts.set_use_direct_io_for_flush_and_compaction(True)
        self.db = rd.Rdict(path, options=opts)
        wo = rd.WriteOptions()
        wo.sync = sync
        self.db.set_write_options(wo)
        self.put = self.db.put
        self.get = self.db.get

    def delete(self, k):
        self.db.delete(k)

    def write_batch(self, pairs):
        wb = self.rd.WriteBatch(raw_mode=True)
        put = wb.put
        for k, v in pairs:
            put(k, v)
        self.db.write(wb)

    def scan(self, start, n):
        c = 0
        it = self.db.iter()
        it.seek(start)
        while c < n and it.valid():
            it.key(), it.value()
            it.next()
            c += 1
        return c

    def settle(self):
        self.db.flush(True)

    def close(self):
        self.db.close()


class SqlitePeer(Adapter):
    """SQLite (stdlib): one WITHOUT ROWID table in WAL mode; a connection per thread."""

    name = "sqlite"

    def __init__(self, path, cfg, sync):
        super().__init__(path, cfg, sync)
        os.makedirs(path, exist_ok=True)
        self.file = os.path.join(path, "kv.sqlite")
        self.local = threading.local()
        self.conns = []
        self.lock = threading.Lock()
        c = self._connect()
        c.execute("CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")
        self._bind(self, c)     # the writer connection; readers get their own

    def _connect(self):
        c = sqlite3.connect(self.file, isolation_level=None, check_same_thread=False)
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=" + ("FULL" if self.sync_writes else "NORMAL"))
        c.execute(f"PRAGMA cache_size=-{max(1, self.cfg.cache_size // 1024)}")
        with self.lock:
            self.conns.append(c)
        return c

    @staticmethod
    def _bind(obj, c):
        ex = c.execute

        def get(k):
            row = ex("SELECT v FROM kv WHERE k=?", (k,)).fetchone()
            return row[0] if row else None

        def scan(start, n):
            return len(ex("SELECT k, v FROM kv WHERE k>=? ORDER BY k LIMIT ?",
                          (start, n)).fetchall())

        obj.get, obj.scan, obj.conn = get, scan, c
        return obj

    def reader(self):
        """A connection per reading thread (a connection is not for concurrent use)."""
        r = getattr(self.local, "reader", None)
        if r is None:
            r = self._bind(type("SqliteReader", (), {})(), self._connect())
            self.local.reader = r
        return r

    def put(self, k, v):
        self.conn.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (k, v))

    def delete(self, k):
        self.conn.execute("DELETE FROM kv WHERE k=?", (k,))

    def write_batch(self, pairs):
        c = self.conn
        c.execute("BEGIN")
        c.executemany("INSERT OR REPLACE INTO kv VALUES (?, ?)", pairs)
        c.execute("COMMIT")

    def settle(self):
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self):
        for c in self.conns:
            c.close()
        self.conns.clear()


def make(target: str, path: str, cfg, sync: bool) -> Adapter:
    if target in ENGINES:
        return KvtreesEngine(path, cfg, sync, target)
    cls = {"lmdb": LmdbPeer, "rocksdb": RocksPeer, "sqlite": SqlitePeer}.get(target)
    if cls is None:
        raise ValueError(f"unknown target {target!r}")
    return cls(path, cfg, sync)


def available(target: str) -> Optional[str]:
    """None if target can run here, else the reason it cannot."""
    try:
        if target in ENGINES:
            import kvtrees
            if not hasattr(kvtrees, "open_engine"):
                return "kvtrees.open_engine is not available yet"
        elif target == "lmdb":
            import lmdb  # noqa: F401
        elif target == "rocksdb":
            import rocksdict  # noqa: F401
    except Exception as e:  # an engine whose native part fails to load is just skipped
        return f"{type(e).__name__}: {e}"
    return None


class KvtreesStore(Adapter):
    """kvtrees.open(): the MVCC store, for the etcd-like workload (engines only)."""

    kind = "engine"

    def __init__(self, path, cfg, sync, engine):
        super().__init__(path, cfg, sync)
        self.name = engine
        try:
            import kvtrees
            opener = kvtrees.open
        except (ImportError, AttributeError) as e:
            raise Unavailable(f"kvtrees.open (the store) is not available: {e}") from e
        self.db = opener(path, engine=engine, cache_size=cfg.cache_size,
                         sync="commit" if sync else "none", direct_io=cfg.direct_io)
        stats = getattr(self.db, "stats", None)
        self.own_io_counters = callable(stats)

    def counters(self):
        stats = getattr(self.db, "stats", None)
        if callable(stats):
            s = stats()
            return {k: s.get(k) for k in KvtreesEngine.STAT_KEYS}
        return {"file_size": dir_size(self.path)}

    def settle(self):
        pass

    def close(self):
        self.db.close()
