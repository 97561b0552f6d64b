"""The workloads, selectable by name.

Each workload has a setup kind and a prepare function:
  - "fresh":  runs on a new, empty directory;
  - "loaded": runs on a directory preloaded (untimed) with ids 0..num-1 in random order,
              shared by the loaded workloads of one (repetition, target, value size);
  - "store":  runs on kvtrees.open() (the etcd-like MVCC store), engines only.
prepare(ctx) does all generation work untimed and returns the timed callable; the
callable returns {"ops", "lat", "lat_unit", "extra"}. Hot loops bind methods to locals
and call exactly the adapter methods, so the per-op Python cost is the same for every
engine and peer.
"""
from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, List

from .keys import KeySpace, ValuePool, shuffled, uniform_ids, zipfian_ids, Zipfian

now = time.perf_counter_ns


@dataclass
class Workload:
    name: str
    setup: str              # fresh | loaded | store
    prepare: Callable
    doc: str
    force_sync: bool = False
    record_size: bool = False   # loaded with --record-size values (YCSB)


class Ctx:
    """What a workload may use: config, adapter, key space, values, its own rng."""

    def __init__(self, cfg, adapter, keyspace: KeySpace, values: ValuePool, rng: random.Random,
                 state: dict):
        self.cfg, self.ad, self.ks, self.values, self.rng = cfg, adapter, keyspace, values, rng
        self.state = state      # the loaded directory's state: {"next_id": int}


# -- building blocks ---------------------------------------------------------------------
def batched(pairs: List[tuple], size: int) -> List[List[tuple]]:
    return [pairs[i:i + size] for i in range(0, len(pairs), size)]


def timed_batches(ad, batches, settle=True):
    """Write each batch as one commit; latency per batch; then settle (timed)."""
    write_batch = ad.write_batch
    lat = []
    append = lat.append
    for b in batches:
        t0 = now()
        write_batch(b)
        append(now() - t0)
    if settle:
        ad.settle()
    return lat


def fill_ids(ctx, ids: List[int]):
    """Pairs for ids, in the given order, with the context's values."""
    keys = ctx.ks.keys(ids)
    return list(zip(keys, ctx.values.take(len(keys))))


def load(ctx) -> None:
    """Untimed preload of ids 0..num-1 in random order (the state of the loaded workloads)."""
    ids = shuffled(ctx.cfg.num, random.Random(f"{ctx.cfg.seed}:load"))
    timed_batches(ctx.ad, batched(fill_ids(ctx, ids), ctx.cfg.batch))
    ctx.state["next_id"] = ctx.cfg.num


def run_readers(ctx, key_lists: List[List[bytes]], op: str, nexts: int = 0) -> dict:
    """Run one reader thread per key list (a reader object each), all started together.
    op "get" counts found keys, "scan" counts items returned."""
    lats: List[List[int]] = [[] for _ in key_lists]
    found = [0] * len(key_lists)
    barrier = threading.Barrier(len(key_lists))
    errors: List[BaseException] = []

    def reader(i):
        try:
            r = ctx.ad.reader()
            fn = r.get if op == "get" else r.scan
            lat = lats[i]
            append = lat.append
            hits = 0
            barrier.wait()
            if op == "get":
                for k in key_lists[i]:
                    t0 = now()
                    v = fn(k)
                    append(now() - t0)
                    if v is not None:
                        hits += 1
            else:
                for k in key_lists[i]:
                    t0 = now()
                    hits += fn(k, nexts)
                    append(now() - t0)
            found[i] = hits
        except BaseException as e:  # reported by the runner, never lost in a thread
            errors.append(e)
            barrier.abort()

    if len(key_lists) == 1:
        reader(0)
    else:
        threads = [threading.Thread(target=reader, args=(i,)) for i in range(len(key_lists))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    lat = [x for part in lats for x in part]
    return {"ops": len(lat), "lat": lat, "lat_unit": "op", "extra": {"found": sum(found)}}


def split(items: List, parts: int) -> List[List]:
    return [items[i::parts] for i in range(max(1, parts))]


# -- db_bench-style workloads ------------------------------------------------------------
def prep_fillseq(ctx):
    batches = batched(fill_ids(ctx, list(range(ctx.cfg.num))), ctx.cfg.batch)
    return lambda: {"ops": ctx.cfg.num, "lat": timed_batches(ctx.ad, batches), "lat_unit": "batch"}


def prep_fillrandom(ctx):
    batches = batched(fill_ids(ctx, shuffled(ctx.cfg.num, ctx.rng)), ctx.cfg.batch)
    return lambda: {"ops": ctx.cfg.num, "lat": timed_batches(ctx.ad, batches), "lat_unit": "batch"}


def prep_overwrite(ctx):
    ids = uniform_ids(ctx.cfg.num, ctx.cfg.ops, ctx.rng)
    batches = batched(fill_ids(ctx, ids), ctx.cfg.batch)
    return lambda: {"ops": len(ids), "lat": timed_batches(ctx.ad, batches), "lat_unit": "batch"}


def prep_fillsync(ctx):
    """One put per commit, each fsynced (the adapter was opened with sync on)."""
    n = max(100, ctx.cfg.num // 100)
    pairs = fill_ids(ctx, shuffled(n, ctx.rng))

    def run():
        put = ctx.ad.put
        lat = []
        append = lat.append
        for k, v in pairs:
            t0 = now()
            put(k, v)
            append(now() - t0)
        return {"ops": n, "lat": lat, "lat_unit": "op"}
    return run


def prep_readrandom(ctx):
    keys = ctx.ks.keys(uniform_ids(ctx.cfg.num, ctx.cfg.ops, ctx.rng))
    return lambda: run_readers(ctx, split(keys, ctx.cfg.threads), "get")


def prep_readmissing(ctx):
    ks = ctx.ks
    keys = [ks.missing(i) for i in uniform_ids(ctx.cfg.num, ctx.cfg.ops, ctx.rng)]
    return lambda: run_readers(ctx, split(keys, ctx.cfg.threads), "get")


def prep_seekrandom(ctx):
    seeks = max(10, ctx.cfg.ops // max(1, ctx.cfg.seek_nexts))
    keys = ctx.ks.keys(uniform_ids(ctx.cfg.num, seeks, ctx.rng))
    return lambda: run_readers(ctx, split(keys, ctx.cfg.threads), "scan", ctx.cfg.seek_nexts)


def prep_readwhilewriting(ctx):
    """--threads readers doing random gets while one writer overwrites random keys."""
    keys = ctx.ks.keys(uniform_ids(ctx.cfg.num, ctx.cfg.ops, ctx.rng))
    wpairs = fill_ids(ctx, uniform_ids(ctx.cfg.num, min(ctx.cfg.ops, 200_000), ctx.rng))

    def run():
        stop = threading.Event()
        done = [0]
        errors = []

        def writer():
            try:
                put = ctx.ad.put
                while not stop.is_set():
                    for k, v in wpairs:
                        put(k, v)
                        done[0] += 1
                        if stop.is_set():
                            return
            except BaseException as e:
                errors.append(e)

        w = threading.Thread(target=writer)
        w.start()
        try:
            res = run_readers(ctx, split(keys, ctx.cfg.threads), "get")
        finally:
            stop.set()
            w.join()
        if errors:
            raise errors[0]
        res["extra"]["writes"] = done[0]
        return res
    return run


def prep_deleterandom(ctx):
    ids = shuffled(ctx.cfg.num, ctx.rng)[:min(ctx.cfg.ops, ctx.cfg.num)]
    keys = ctx.ks.keys(ids)

    def run():
        delete = ctx.ad.delete
        lat = []
        append = lat.append
        for k in keys:
            t0 = now()
            delete(k)
            append(now() - t0)
        ctx.ad.settle()
        return {"ops": len(keys), "lat": lat, "lat_unit": "op"}
    return run


# -- YCSB --------------------------------------------------------------------------------
YCSB_MIX = {  # read, update, insert, scan, rmw ; request distribution
    "a": ((0.50, 0.50, 0, 0, 0), "zipfian"),
    "b": ((0.95, 0.05, 0, 0, 0), "zipfian"),
    "c": ((1.00, 0, 0, 0, 0), "zipfian"),
    "d": ((0.95, 0, 0.05, 0, 0), "latest"),
    "e": ((0, 0, 0.05, 0.95, 0), "zipfian"),
    "f": ((0.50, 0, 0, 0, 0.50), "zipfian"),
}
READ, UPDATE, INSERT, SCAN, RMW = range(5)


def ycsb_plan(ctx, letter):
    """Pre-generate (op, key, value_or_scanlen) for every operation."""
    mix, dist = YCSB_MIX[letter]
    rng, n, ks = ctx.rng, ctx.cfg.ops, ctx.ks
    next_id = ctx.state["next_id"]
    base = next_id
    kinds = rng.choices(range(5), weights=mix, k=n)
    n_ins = kinds.count(INSERT)
    zipf = Zipfian(base + n_ins, rng) if dist == "latest" else None
    picks = zipfian_ids(base, n, rng) if dist == "zipfian" else None
    vals = ctx.values.take(n, start=rng.randrange(1 << 20))
    plan = []
    for i, kind in enumerate(kinds):
        if kind == INSERT:
            plan.append((INSERT, ks.key(next_id), vals[i]))
            next_id += 1
            continue
        if zipf is not None:   # latest: recency-ranked zipfian over what exists now
            kid = max(0, next_id - 1 - zipf.next() % next_id)
        else:
            kid = picks[i]
        arg = rng.randint(1, 100) if kind == SCAN else vals[i]
        plan.append((kind, ks.key(kid), arg))
    ctx.state["next_id"] = next_id
    return plan


def make_ycsb(letter):
    def prep(ctx):
        plan = ycsb_plan(ctx, letter)

        def run():
            ad = ctx.ad
            get, put, scan = ad.get, ad.put, ad.scan
            lat = []
            append = lat.append
            counts = [0] * 5
            for kind, k, arg in plan:
                t0 = now()
                if kind == READ:
                    get(k)
                elif kind == UPDATE or kind == INSERT:
                    put(k, arg)
                elif kind == SCAN:
                    scan(k, arg)
                else:
                    get(k)
                    put(k, arg)
                append(now() - t0)
                counts[kind] += 1
            names = ("read", "update", "insert", "scan", "rmw")
            return {"ops": len(plan), "lat": lat, "lat_unit": "op",
                    "extra": {n: c for n, c in zip(names, counts) if c}}
        return run
    return prep


# -- iiBench -----------------------------------------------------------------------------
def prep_iibench(ctx):
    """iiBench-like: each row is a sequential primary key plus --iibench-indexes secondary
    index entries with random attribute values (random inserts); rows are inserted in
    batches of --batch and the insert rate is reported per twentieth of the run, so the
    curve shows what happens once the data outgrows the cache."""
    cfg, rng = ctx.cfg, ctx.rng
    n, nidx = cfg.num, cfg.iibench_indexes
    vals = ctx.values.take(n)
    rows = []
    for i in range(n):
        pk = b"p" + i.to_bytes(8, "big")
        row = [(pk, vals[i])]
        for j in range(nidx):
            row.append((b"s" + bytes((j,)) + rng.randbytes(8) + pk[1:], b""))
        rows.append(row)
    per = max(1, cfg.batch // (1 + nidx))
    batches = [[p for r in rows[i:i + per] for p in r] for i in range(0, n, per)]
    intervals = 20
    cut = max(1, len(batches) // intervals)

    def run():
        ad = ctx.ad
        write_batch = ad.write_batch
        lat, curve = [], []
        done, done_int, t_int = 0, 0, now()
        for bi, b in enumerate(batches):
            t0 = now()
            write_batch(b)
            lat.append(now() - t0)
            done += min(per, n - bi * per)
            if (bi + 1) % cut == 0 or bi == len(batches) - 1:
                rate = (done - done_int) / max(1e-9, (now() - t_int) / 1e9)
                curve.append([done, round(rate, 1), ad.counters().get("file_size")])
                done_int, t_int = done, now()   # the counters call is not timed
        ad.settle()
        return {"ops": n, "lat": lat, "lat_unit": "batch",
                "extra": {"curve": curve, "curve_columns": ["rows", "rows_per_s", "file_size"]}}
    return run


# -- etcd-like store ---------------------------------------------------------------------
KINDS = ("pods", "services", "configmaps", "secrets", "endpoints", "deployments")


def store_keys(n: int, rng: random.Random) -> List[bytes]:
    return [f"/registry/{rng.choice(KINDS)}/ns{rng.randrange(20)}/obj-{i:08d}".encode()
            for i in range(n)]


def prep_store(ctx):
    """Kubernetes-shaped traffic on kvtrees.open() (num/10 objects, --store-ops operations):
    keys /registry/<kind>/<ns>/<name>, values 1-4 KiB; 75% updates, 10% gets, 5% creates, 5% deletes, 5% namespace lists
    (limit 100); a watch is open on /registry/ and its events are counted."""
    cfg, rng, db = ctx.cfg, ctx.rng, ctx.ad.db
    n_keys = max(100, cfg.num // 10)
    keys = store_keys(n_keys + cfg.store_ops, rng)
    live = keys[:n_keys]
    pool = [rng.randbytes(rng.randint(1024, 4096)) for _ in range(256)]
    for i, k in enumerate(live):            # untimed preload
        db.put(k, pool[i % 256])
    ops = rng.choices(("put", "get", "create", "delete", "list"),
                      weights=(75, 10, 5, 5, 5), k=cfg.store_ops)
    plan, nxt = [], n_keys
    for i, op in enumerate(ops):
        if op == "create":
            plan.append((op, keys[nxt], pool[i % 256]))
            nxt += 1
        elif op == "list":
            plan.append((op, f"/registry/{rng.choice(KINDS)}/ns{rng.randrange(20)}/".encode(), None))
        else:
            plan.append((op, live[rng.randrange(n_keys)], pool[i % 256]))

    def run():
        events, cancel = db.watch_prefix(b"/registry/")
        seen = [0]

        def consume():
            for _ev in events:
                seen[0] += 1

        t = threading.Thread(target=consume, daemon=True)
        t.start()
        put, get, delete, get_prefix = db.put, db.get, db.delete, db.get_prefix
        lat = []
        append = lat.append
        rev0 = db.revision
        for op, k, v in plan:
            t0 = now()
            if op == "put" or op == "create":
                put(k, v)
            elif op == "get":
                get(k)
            elif op == "delete":
                delete(k)
            else:
                for _ in get_prefix(k, limit=100):
                    pass
            append(now() - t0)
        writes = db.revision - rev0
        deadline = time.monotonic() + 5
        while seen[0] < writes and time.monotonic() < deadline:
            time.sleep(0.005)
        cancel()
        t.join(timeout=2)
        return {"ops": len(plan), "lat": lat, "lat_unit": "op",
                "extra": {"revisions": writes, "watch_events": seen[0]}}
    return run


WORKLOADS: Dict[str, Workload] = {w.name: w for w in [
    Workload("fillseq", "fresh", prep_fillseq, "sequential keys in batches of --batch"),
    Workload("fillrandom", "fresh", prep_fillrandom, "random-order keys in batches"),
    Workload("overwrite", "loaded", prep_overwrite, "random overwrites of existing keys, batched"),
    Workload("fillsync", "fresh", prep_fillsync, "num/100 single puts, each commit fsynced",
             force_sync=True),
    Workload("readrandom", "loaded", prep_readrandom, "random gets of existing keys"),
    Workload("readmissing", "loaded", prep_readmissing, "random gets of absent keys"),
    Workload("seekrandom", "loaded", prep_seekrandom, "seek to a random key + --seek-nexts nexts"),
    Workload("readwhilewriting", "loaded", prep_readwhilewriting,
             "--threads random readers while one writer overwrites"),
    Workload("deleterandom", "loaded", prep_deleterandom, "delete existing keys in random order"),
    *[Workload(f"ycsb-{c}", "loaded", make_ycsb(c),
               f"YCSB {c.upper()} ({YCSB_MIX[c][1]})", record_size=True) for c in "abcdef"],
    Workload("iibench", "fresh", prep_iibench, "insert rate per interval as data outgrows cache"),
    Workload("store", "store", prep_store, "etcd-like store: k8s keys, updates, a watch"),
]}

# Loaded workloads run in this relative order inside one directory: deleterandom last
# (it empties the keyspace the others read).
LAST = ("deleterandom",)
QUICK = ["fillseq", "fillrandom", "overwrite", "fillsync", "readrandom", "readmissing",
         "seekrandom", "readwhilewriting", "ycsb-a", "ycsb-b", "ycsb-c", "ycsb-d", "ycsb-e",
         "ycsb-f", "deleterandom", "iibench", "store"]
