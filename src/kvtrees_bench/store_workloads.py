"""Store-level benchmarks (issue 4): the MVCC store (kvtrees.open) against its own engine.

    python -m kvtrees_bench.store_workloads ops    [--engines btree,fractal] [--keys N] [--ops N]
    python -m kvtrees_bench.store_workloads sync16 [--engines ...] [--threads 16] [--puts N]
    python -m kvtrees_bench.store_workloads open   --path DIR [--engine btree] [--keys 5000000]
    python -m kvtrees_bench.store_workloads etcd   [--threads 16] [--puts N] [--check-perf l]

ops: single-thread ops/s of put, get, range of 100 keys, txn compare-and-swap and an
etcd-like mix (Kubernetes keys /registry/<kind>/<ns>/<name>, 1-4 KiB values, updates
dominating, a watch open on /registry/), each through the store and the same operation
through the raw engine (kvtrees.open_engine), so the difference is the store's overhead.
sync16: put throughput with sync="commit" from N writer threads (group commit).
open: build a store of N keys once (sync="none", 128-put txns), then time reopen.
etcd: the same put load against a local etcd 3.4 (loopback only; see docs/STORE_BENCH.md).

Separate from the engine harness (cli.py/workloads.py, another engineer's): it shares no
state with it and uses only the public APIs. Every loop is bounded by its arguments.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import tempfile
import threading
import time
from itertools import islice
from typing import Callable, Dict, List, Optional

from kvtrees.limits import DEFAULT_CACHE

KINDS = (b"pods", b"services", b"configmaps", b"secrets", b"deployments")
VALUE_SIZES = (1024, 4096)          # the etcd-like mix draws sizes in this range
PLAIN_VALUE = 1024                  # value size of the put/get/txn workloads
RANGE_N = 100                       # objects per namespace: a namespace list is 100 keys
TXN_BATCH = 128                     # etcd's max ops per txn: the bulk-load unit


def prefix_end(p: bytes) -> bytes:
    b = bytearray(p)
    while b[-1] == 0xFF:
        b.pop()
    b[-1] += 1
    return bytes(b)


def object_key(kind: bytes, ns: int, name: int) -> bytes:
    return b"/registry/%s/ns-%04d/obj-%06d" % (kind, ns, name)


def keyspace(n: int) -> List[bytes]:
    """n Kubernetes-style keys, RANGE_N per namespace, kinds round-robin."""
    out = []
    for i in range(n):
        ns = i // RANGE_N
        out.append(object_key(KINDS[ns % len(KINDS)], ns, i % RANGE_N))
    return out


class Values:
    """Pre-generated random values (incompressible), sliced without copying in the loop."""

    def __init__(self, rng: random.Random, size: int = 8192):
        self.blob = rng.randbytes(size + VALUE_SIZES[1])

    def get(self, n: int, off: int) -> bytes:
        off %= len(self.blob) - n
        return self.blob[off:off + n]


# ---------------------------------------------------------------- targets

class StoreTarget:
    """The MVCC store: each method is one etcd request."""

    kind = "store"

    def __init__(self, path: str, engine: str, sync: str, cache_size: int):
        import kvtrees
        self.db = kvtrees.open(path, engine=engine, sync=sync, cache_size=cache_size)
        self.tx = self.db.transactions
        self.revs: Dict[bytes, int] = {}      # last mod_revision seen, as a k8s cache keeps

    def load(self, keys, values) -> None:
        for i in range(0, len(keys), TXN_BATCH):
            chunk = keys[i:i + TXN_BATCH]
            ok, resp = self.db.transaction(
                [], [self.tx.put(k, values.get(PLAIN_VALUE, j)) for j, k in enumerate(chunk)])
            for k, r in zip(chunk, resp):
                self.revs[k] = r.revision

    def put(self, k, v):
        self.revs[k] = self.db.put(k, v).revision

    def get(self, k):
        return self.db.get(k)[0]

    def list(self, start, end, n):
        return len(self.db.range(start, end, limit=n).kvs)

    def cas(self, k, v) -> bool:
        """Kubernetes' GuaranteedUpdate: if mod_revision(k) == cached, put; else get."""
        tx = self.tx
        ok, resp = self.db.transaction([tx.mod(k) == self.revs.get(k, 0)],
                                       [tx.put(k, v)], [tx.get(k)])
        if ok:
            self.revs[k] = resp[0].revision
        else:
            got = resp[0]
            self.revs[k] = got[0][1].mod_revision if got else 0
        return ok

    def create(self, k, v) -> bool:
        tx = self.tx
        ok, resp = self.db.transaction([tx.create(k) == 0], [tx.put(k, v)], [])
        if ok:
            self.revs[k] = resp[0].revision
        return ok

    def remove(self, k) -> bool:
        tx = self.tx
        ok, _ = self.db.transaction([tx.mod(k) == self.revs.get(k, 0)], [tx.delete(k)], [])
        if ok:
            self.revs.pop(k, None)
        return ok

    def watch(self, prefix: bytes):
        events, cancel = self.db.watch_prefix(prefix)
        return events, cancel

    def stats(self) -> dict:
        return self.db.engine_stats()

    def close(self):
        self.db.close()


class EngineTarget:
    """The same operations on the raw engine: plain keys, no versions, no revisions.
    cas/create/remove are the read-check-write they reduce to without MVCC."""

    kind = "engine"

    def __init__(self, path: str, engine: str, sync: str, cache_size: int):
        import kvtrees
        self.eng = kvtrees.open_engine(path, engine=engine, sync=sync, cache_size=cache_size)

    def load(self, keys, values) -> None:
        for i in range(0, len(keys), TXN_BATCH):
            with self.eng.batch() as b:
                for j, k in enumerate(keys[i:i + TXN_BATCH]):
                    b.put(k, values.get(PLAIN_VALUE, j))

    def put(self, k, v):
        self.eng.put(k, v)

    def get(self, k):
        return self.eng.get(k)

    def list(self, start, end, n):
        return sum(1 for _ in islice(self.eng.items(start, end), n))

    def cas(self, k, v) -> bool:
        self.eng.get(k)
        self.eng.put(k, v)
        return True

    def create(self, k, v) -> bool:
        if self.eng.get(k) is not None:
            return False
        self.eng.put(k, v)
        return True

    def remove(self, k) -> bool:
        return self.eng.delete(k)

    def watch(self, prefix: bytes):
        return None, None

    def stats(self) -> dict:
        return self.eng.stats()

    def close(self):
        self.eng.close()


TARGETS = {"store": StoreTarget, "engine": EngineTarget}


# ---------------------------------------------------------------- single-thread workloads

def plan_ops(name: str, keys: List[bytes], n: int, rng: random.Random) -> list:
    """The operation sequence of a workload, generated before timing (same for targets)."""
    if name in ("put", "get", "txn_cas"):
        return [(rng.choice(keys), i * 37) for i in range(n)]
    if name == "range100":
        nss = len(keys) // RANGE_N
        out = []
        for _ in range(n):
            first = keys[rng.randrange(nss) * RANGE_N]
            pfx = first.rsplit(b"/", 1)[0] + b"/"
            out.append((pfx, prefix_end(pfx)))
        return out
    if name == "mix":
        return plan_mix(keys, n, rng)
    raise ValueError(name)


MIX = (("update", 75), ("get", 10), ("create", 5), ("delete", 5), ("list", 5))


def plan_mix(keys: List[bytes], n: int, rng: random.Random) -> list:
    """75% updates (CAS txn), 10% gets, 5% creates, 5% deletes, 5% namespace lists;
    values 1-4 KiB. Creates use new names, deletes remove existing ones (each once)."""
    names, weights = zip(*MIX)
    kinds = rng.choices(names, weights=weights, k=n)
    live = list(keys)
    rng.shuffle(live)
    fresh = 0
    out = []
    for i, kind in enumerate(kinds):
        size = rng.randint(*VALUE_SIZES)
        if kind == "create":
            ns = rng.randrange(len(keys) // RANGE_N)
            k = object_key(KINDS[ns % len(KINDS)], ns, RANGE_N + fresh)
            fresh += 1
            live.append(k)
            out.append((kind, k, size, i))
        elif kind == "delete":
            out.append((kind, live.pop(rng.randrange(len(live))), 0, i))
        elif kind == "list":
            pfx = rng.choice(live).rsplit(b"/", 1)[0] + b"/"
            out.append((kind, pfx, prefix_end(pfx), i))
        else:
            out.append((kind, rng.choice(live), size, i))
    return out


def run_plain(t, name: str, ops: list, values: Values) -> None:
    if name == "put":
        put, get_v = t.put, values.get
        for k, off in ops:
            put(k, get_v(PLAIN_VALUE, off))
    elif name == "get":
        get = t.get
        for k, _ in ops:
            get(k)
    elif name == "range100":
        lst = t.list
        for s, e in ops:
            lst(s, e, RANGE_N)
    elif name == "txn_cas":
        cas, get_v = t.cas, values.get
        for k, off in ops:
            cas(k, get_v(PLAIN_VALUE, off))
    else:
        run_mix(t, ops, values)


def run_mix(t, ops: list, values: Values) -> None:
    get_v = values.get
    for kind, a, b, off in ops:
        if kind == "update":
            t.cas(a, get_v(b, off))
        elif kind == "get":
            t.get(a)
        elif kind == "create":
            t.create(a, get_v(b, off))
        elif kind == "delete":
            t.remove(a)
        else:
            t.list(a, b, 500)


class Drain:
    """A watcher thread that consumes every event of a watch (bounded by cancel)."""

    def __init__(self, events):
        self.events, self.count = events, 0
        self.th = threading.Thread(target=self._run, daemon=True)
        self.th.start()

    def _run(self):
        for _ in self.events:
            self.count += 1

    def stop(self, cancel) -> int:
        cancel()
        self.th.join(10)
        return self.count


WORKLOAD_NAMES = ("put", "get", "range100", "txn_cas", "mix")


def bench_ops(engine: str, kind: str, names, n_keys: int, n_ops: int, seed: int,
              sync: str, cache_size: int, root: str) -> List[dict]:
    """One fresh preloaded directory per (engine, target); workloads run in order."""
    rng = random.Random(seed)
    keys = keyspace(n_keys)
    values = Values(random.Random(seed + 1))
    path = tempfile.mkdtemp(prefix="sb-%s-%s-" % (engine, kind), dir=root)
    t = TARGETS[kind](path, engine, sync, cache_size)
    rows = []
    try:
        t.load(keys, values)
        for name in names:
            ops = plan_ops(name, keys, n_ops, random.Random(seed + hash(name) % 1000))
            drain, cancel = None, None
            if name == "mix":
                events, cancel = t.watch(b"/registry/")
                drain = Drain(events) if events is not None else None
            s0 = t.stats()
            gc.collect()
            gc.disable()
            t0 = time.perf_counter()
            try:
                run_plain(t, name, ops, values)
            finally:
                dt = time.perf_counter() - t0
                gc.enable()
            s1 = t.stats()
            row = {"engine": engine, "target": kind, "workload": name, "ops": len(ops),
                   "seconds": round(dt, 4), "ops_per_s": round(len(ops) / dt, 1),
                   "us_per_op": round(dt / len(ops) * 1e6, 2),
                   "fsyncs": s1["fsyncs"] - s0["fsyncs"],
                   "bytes_written_per_op": round((s1["bytes_written"] - s0["bytes_written"])
                                                 / len(ops))}
            if drain is not None:
                time.sleep(0.2)
                row["watch_events"] = drain.stop(cancel)
            rows.append(row)
        del rng
    finally:
        t.close()
        shutil.rmtree(path, ignore_errors=True)
    return rows


# ---------------------------------------------------------------- concurrent sync puts

def bench_sync_puts(engine: str, kind: str, threads: int, puts: int, value_size: int,
                    root: str, cache_size: int) -> dict:
    """`threads` writers, each `puts` puts of distinct keys, sync="commit"."""
    path = tempfile.mkdtemp(prefix="sb16-%s-%s-" % (engine, kind), dir=root)
    t = TARGETS[kind](path, engine, "commit", cache_size)
    value = os.urandom(value_size)
    start = threading.Barrier(threads + 1)
    errors: List[BaseException] = []

    def writer(tid: int) -> None:
        keys = [b"/bench/t%02d/%08d" % (tid, i) for i in range(puts)]
        put = t.put if kind == "engine" else t.db.put
        start.wait()
        try:
            for k in keys:
                put(k, value)
        except BaseException as e:      # reported, not swallowed
            errors.append(e)
    try:
        ths = [threading.Thread(target=writer, args=(i,)) for i in range(threads)]
        for th in ths:
            th.start()
        s0 = t.stats()
        start.wait()
        t0 = time.perf_counter()
        for th in ths:
            th.join()
        dt = time.perf_counter() - t0
        s1 = t.stats()
        if errors:
            raise errors[0]
        total = threads * puts
        return {"engine": engine, "target": kind, "threads": threads, "puts": total,
                "value_size": value_size, "seconds": round(dt, 3),
                "ops_per_s": round(total / dt, 1), "fsyncs": s1["fsyncs"] - s0["fsyncs"],
                "puts_per_fsync": round(total / max(1, s1["fsyncs"] - s0["fsyncs"]), 2)}
    finally:
        t.close()
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------- open of a large store

def build_store(path: str, engine: str, n_keys: int, value_size: int,
                cache_size: int, log: Callable[[str], None]) -> float:
    """Fill a new store with n_keys keys through its own API: txns of 128 puts, sync none."""
    import kvtrees
    db = kvtrees.open(path, engine=engine, sync="none", cache_size=cache_size)
    tx = db.transactions
    value = os.urandom(value_size)
    t0 = time.perf_counter()
    try:
        for i in range(0, n_keys, TXN_BATCH):
            db.transaction([], [tx.put(b"/registry/pods/ns-%05d/obj-%09d" % (j // 1000, j),
                                       value) for j in range(i, min(n_keys, i + TXN_BATCH))])
            if i % (TXN_BATCH * 4000) == 0 and i:
                log("  %d keys, %.0f s" % (i, time.perf_counter() - t0))
    finally:
        db.close()
    return time.perf_counter() - t0


def time_open(path: str, engine: str, repeat: int, cache_size: int) -> dict:
    """Wall time of kvtrees.open() (and of open + one get + close)."""
    import kvtrees
    opens, cycles = [], []
    rev = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        db = kvtrees.open(path, engine=engine, cache_size=cache_size)
        t1 = time.perf_counter()
        rev = db.revision
        v, _ = db.get(b"/registry/pods/ns-00000/obj-000000000")
        if v is None:
            db.close()
            raise RuntimeError("store at %s lacks its first key: not a built store" % path)
        db.close()
        opens.append(t1 - t0)
        cycles.append(time.perf_counter() - t0)
    return {"engine": engine, "revision": rev, "open_s_min": round(min(opens), 4),
            "open_s_max": round(max(opens), 4), "open_get_close_s_max": round(max(cycles), 4),
            "repeat": repeat, "dir_bytes": _dir_size(path)}


def _dir_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


# ---------------------------------------------------------------- CLI

def _print_rows(rows: List[dict], cols: List[str]) -> None:
    w = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    print("  ".join(c.rjust(w[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r.get(c, "")).rjust(w[c]) for c in cols))


def overhead(rows: List[dict]) -> List[dict]:
    by = {(r["engine"], r["target"], r["workload"]): r for r in rows}
    out = []
    for (eng, tgt, wl), r in by.items():
        e = by.get((eng, "engine", wl))
        if tgt != "store" or e is None:
            continue
        out.append({"engine": eng, "workload": wl, "store_ops_s": r["ops_per_s"],
                    "engine_ops_s": e["ops_per_s"],
                    "store_us": r["us_per_op"], "engine_us": e["us_per_op"],
                    "overhead_us": round(r["us_per_op"] - e["us_per_op"], 2),
                    "slowdown_x": round(r["us_per_op"] / e["us_per_op"], 2)})
    return out


def cmd_ops(a) -> dict:
    rows = []
    for eng in a.engines:
        for kind in ("engine", "store"):
            rows += bench_ops(eng, kind, a.workloads, a.keys, a.ops, a.seed, a.sync,
                              a.cache_size, a.dir)
    _print_rows(rows, ["engine", "target", "workload", "ops", "ops_per_s", "us_per_op",
                       "fsyncs", "bytes_written_per_op", "watch_events"])
    ov = overhead(rows)
    print()
    _print_rows(ov, ["engine", "workload", "store_ops_s", "engine_ops_s", "store_us",
                     "engine_us", "overhead_us", "slowdown_x"])
    return {"rows": rows, "overhead": ov}


def cmd_sync16(a) -> dict:
    rows = []
    for eng in a.engines:
        for kind in a.targets:
            rows.append(bench_sync_puts(eng, kind, a.threads, a.puts, a.value_size, a.dir,
                                        a.cache_size))
    _print_rows(rows, ["engine", "target", "threads", "puts", "value_size", "seconds",
                       "ops_per_s", "fsyncs", "puts_per_fsync"])
    return {"rows": rows}


def cmd_open(a) -> dict:
    built = None
    if not os.path.exists(os.path.join(a.path, "data.kvt")):
        print("building %d keys in %s (%s)" % (a.keys, a.path, a.engine), flush=True)
        built = build_store(a.path, a.engine, a.keys, a.value_size, a.cache_size,
                            lambda s: print(s, flush=True))
        print("built in %.1f s" % built)
    r = time_open(a.path, a.engine, a.repeat, a.cache_size)
    r["build_s"] = built and round(built, 1)
    _print_rows([r], list(r))
    return {"rows": [r]}


def parse(argv=None):
    p = argparse.ArgumentParser(prog="python -m kvtrees_bench.store_workloads",
                                description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp):
        sp.add_argument("--engines", default="btree,fractal",
                        type=lambda s: [x for x in s.split(",") if x])
        sp.add_argument("--dir", default=None, help="parent of the temp directories")
        sp.add_argument("--cache-size", type=int, default=DEFAULT_CACHE)
        sp.add_argument("--json", default=None, help="also write the results here")
    s = sub.add_parser("ops", help="single-thread store vs engine ops/s")
    common(s)
    s.add_argument("--keys", type=int, default=20000)
    s.add_argument("--ops", type=int, default=20000)
    s.add_argument("--seed", type=int, default=42)
    s.add_argument("--sync", default="none", choices=("none", "commit", "interval"))
    s.add_argument("--workloads", default=",".join(WORKLOAD_NAMES),
                   type=lambda s: [x for x in s.split(",") if x])
    s = sub.add_parser("sync16", help="concurrent sync=commit puts")
    common(s)
    s.add_argument("--threads", type=int, default=16)
    s.add_argument("--puts", type=int, default=500, help="puts per thread")
    s.add_argument("--value-size", type=int, default=256)
    s.add_argument("--targets", default="store,engine",
                   type=lambda s: [x for x in s.split(",") if x])
    s = sub.add_parser("open", help="build (once) and reopen a large store")
    s.add_argument("--path", required=True)
    s.add_argument("--engine", default="btree")
    s.add_argument("--keys", type=int, default=5_000_000)
    s.add_argument("--value-size", type=int, default=64)
    s.add_argument("--repeat", type=int, default=5)
    s.add_argument("--cache-size", type=int, default=DEFAULT_CACHE)
    s.add_argument("--json", default=None)
    s = sub.add_parser("etcd", help="the same put load against a local etcd (loopback)")
    s.add_argument("--threads", type=int, default=16)
    s.add_argument("--puts", type=int, default=500, help="puts per thread")
    s.add_argument("--value-size", type=int, default=256)
    s.add_argument("--check-perf", default="l", help="etcdctl check perf --load values, comma-separated ('' = skip)")
    s.add_argument("--json", default=None)
    a = p.parse_args(argv)
    if getattr(a, "workloads", None):
        bad = set(a.workloads) - set(WORKLOAD_NAMES)
        if bad:
            p.error("unknown workloads: %s" % ", ".join(sorted(bad)))
    return a


def main(argv=None) -> int:
    a = parse(argv)
    if a.cmd == "etcd":
        from .etcd_peer import cmd_etcd
        res = cmd_etcd(a)
    else:
        if getattr(a, "dir", None) is None and a.cmd != "open":
            a.dir = tempfile.gettempdir()
        res = {"ops": cmd_ops, "sync16": cmd_sync16, "open": cmd_open}[a.cmd](a)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
