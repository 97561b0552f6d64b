#!/usr/bin/env python3
"""The embedded store beside etcd 3.4, in one run, interleaved:

1. durable puts: kvtrees.open(d, engine=E, sync="commit") with N writer threads
   (16 B keys, 100 B values) against etcd 3.4 on loopback driven by grpc.aio with 64
   requests in flight from 1 and from 2 client processes (the better figure counts);
2. single-thread overhead: store put / get / compare-and-swap txn against the raw
   engine doing the same (Engine.put, Engine.get, get + compare + put), sync="none";
3. a Kubernetes-shaped mix (/registry/pods/<ns>/<name>, 1-4 KiB values: 50% get, 30%
   guarded update, 10% put, 10% namespace list of 100) with a watch open on the
   prefix, against the same mix through etcd's gRPC API (1 and 2 client processes, the
   better figure counts).

    python bench/store_bench.py                      # ~3 minutes
    python bench/store_bench.py --seconds 10 --out bench/STORE_RESULTS.md

Counts that do not depend on the machine's load are printed too (fsyncs per put).
etcd runs with its defaults (one member, fsync per commit batch); the store with
sync="commit" (every put durable on return). Nothing leaves 127.0.0.1.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))
sys.path.insert(0, HERE)

import kvtrees  # noqa: E402
from server_bench import make_request, run_procs, start_etcd  # noqa: E402

ENGINES = ("btree", "fractal")
OVERHEAD_ROUNDS = 5
VALUE = b"v" * 100


# ---------------------------------------------------------------- 1. durable puts
def store_puts(path: str, engine: str, threads: int, seconds: float,
               sync: str = "commit") -> dict:
    """Puts/s of `threads` writers for `seconds` on a fresh store (sync="commit": each
    put durable on return; sync="none": the CPU ceiling, what a free fsync would give)."""
    db = kvtrees.open(path, engine=engine, sync=sync)
    counts = [0] * threads
    stop = time.perf_counter() + seconds

    def writer(t: int) -> None:
        i = 0
        while time.perf_counter() < stop:
            db.put(b"%04d%012d" % (t, i), VALUE)
            i += 1
        counts[t] = i
    workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - t0
    fsyncs = int(db.engine_stats().get("fsyncs", 0))
    db.close()
    n = sum(counts)
    return {"ops_s": n / wall, "puts": n, "puts_per_fsync": n / max(1, fsyncs)}


def etcd_puts(addr: str, ops: int, procs: int, seed: int) -> dict:
    """etcd's put rate with `procs` client processes of `ops` puts each, 64 in flight."""
    return _etcd_procs(addr, "put", ops, procs, 1 << 30, VALUE, seed)


def _etcd_procs(addr: str, kind: str, ops: int, procs: int, nkeys: int, value: bytes,
                seed: int) -> dict:
    """ops/s of `procs` client processes, each `ops` requests with 64 in flight, over
    the clients' own timed intervals (server_bench.run_procs: started together once
    connected and warm; process start-up is not etcd's time)."""
    return run_procs(addr, kind, ops * procs, 64, nkeys, value, seed, procs)


# ---------------------------------------------------------------- 2. overhead
def overhead(path: str, engine: str, n: int) -> dict:
    """Per-op microseconds of store vs raw engine, one thread, sync="none"."""
    db = kvtrees.open(path, engine=engine, sync="none")
    eng = kvtrees.open_engine(path + "-raw", engine=engine, sync="none")
    keys = [b"/registry/pods/ns%02d/pod-%07d" % (i % 50, i) for i in range(n)]
    t = db.transactions

    def cas_store(k: bytes) -> None:
        db.transaction([t.value(k) == VALUE], [t.put(k, VALUE)], [])

    def cas_engine(k: bytes) -> None:
        if eng.get(k) == VALUE:
            eng.put(k, VALUE)
    for k in keys:                   # untimed load: every timed put is an update
        db.put(k, VALUE)
        eng.put(k, VALUE)
    ops = (("put", lambda k: db.put(k, VALUE), lambda k: eng.put(k, VALUE)),
           ("get", db.get, eng.get), ("txn_cas", cas_store, cas_engine))
    out = {name: (float("inf"), float("inf")) for name, _, _ in ops}
    for _ in range(OVERHEAD_ROUNDS):  # interleaved, best of: load spikes hit both alike
        for name, store_op, eng_op in ops:
            s_us, e_us = out[name]
            out[name] = (min(s_us, _per_op(store_op, keys)), min(e_us, _per_op(eng_op, keys)))
    db.close()
    eng.close()
    return out


def _per_op(fn, keys) -> float:
    t0 = time.perf_counter()
    for k in keys:
        fn(k)
    return (time.perf_counter() - t0) / len(keys) * 1e6


# ---------------------------------------------------------------- 3. k8s mix
class _MixStore:
    """The mix of server_bench.make_request, applied to a store."""

    def __init__(self, db):
        self.db = db
        self.t = db.transactions

    def apply(self, method: str, req) -> None:
        db, t = self.db, self.t
        if method == "Put":
            db.put(req.key, req.value)
        elif method == "Range" and req.range_end:
            db.range(req.key, req.range_end, limit=req.limit)
        elif method == "Range":
            db.get(req.key)
        else:
            k = req.compare[0].key
            db.transaction([t.version(k) > 0], [t.put(k, req.success[0].request_put.value)],
                           [t.get(k)])


def store_mix(path: str, engine: str, threads: int, ops: int, nkeys: int, seed: int) -> dict:
    db = kvtrees.open(path, engine=engine, sync="commit")
    rng = random.Random(seed)
    _preload(db, nkeys, rng)
    events, cancel = db.watch_prefix(b"/registry/pods/")
    seen = [0]

    def drain() -> None:
        for _ in events:
            seen[0] += 1
    drainer = threading.Thread(target=drain, daemon=True)
    drainer.start()
    reqs = [make_request("mix", rng, nkeys, _value(rng)) for _ in range(ops)]
    mix = _MixStore(db)
    nxt = [0]
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= len(reqs):
                return
            mix.apply(*reqs[i])
    ws = [threading.Thread(target=worker) for _ in range(threads)]
    t0 = time.perf_counter()
    for w in ws:
        w.start()
    for w in ws:
        w.join()
    wall = time.perf_counter() - t0
    cancel()
    db.close()
    return {"ops_s": ops / wall, "events": seen[0]}


def _value(rng: random.Random) -> bytes:
    return b"x" * rng.randrange(1024, 4097)


def _preload(db, nkeys: int, rng: random.Random) -> None:
    t = db.transactions
    for start in range(0, nkeys, 100):
        db.transaction([], [t.put(b"/registry/pods/ns%02d/pod-%07d" % (i % 50, i),
                                  _value(rng)) for i in range(start, min(nkeys, start + 100))],
                       [])


def etcd_mix(addr: str, ops: int, nkeys: int, seed: int, procs: int) -> dict:
    """The mix through etcd's gRPC API from `procs` client processes (64 in flight each;
    ops in all), after the same preload as the store's."""
    from server_bench import preload
    rng = random.Random(seed)
    asyncio.run(preload(addr, nkeys, _value(rng)))
    return _etcd_procs(addr, "mix", ops // procs, procs, nkeys, _value(rng), seed)


# ---------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="per store put run")
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--etcd-ops", type=int, default=20000, help="puts per etcd client")
    ap.add_argument("--overhead-ops", type=int, default=50000)
    ap.add_argument("--mix-ops", type=int, default=20000)
    ap.add_argument("--mix-keys", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", help="also write the markdown report here")
    a = ap.parse_args(argv)
    work = tempfile.mkdtemp(prefix="kvt-store-bench-", dir=os.environ.get("TMPDIR"))
    etcd = start_etcd(work)
    try:
        puts = {name: [] for name in ("etcd x1", "etcd x2") + ENGINES}
        for r in range(a.rounds):              # interleaved: load hits all alike
            puts["etcd x1"].append(etcd_puts(etcd.addr, a.etcd_ops, 1, 10 * r))
            puts["etcd x2"].append(etcd_puts(etcd.addr, a.etcd_ops // 2, 2, 10 * r + 5))
            for e in ENGINES:
                puts[e].append(store_puts(os.path.join(work, "%s-%d" % (e, r)), e,
                                          a.threads, a.seconds))
        ceiling = {e: store_puts(os.path.join(work, "%s-none" % e), e, a.threads,
                                 a.seconds, sync="none") for e in ENGINES}
        over = {e: overhead(os.path.join(work, "over-" + e), e, a.overhead_ops)
                for e in ENGINES}
        mix = {"etcd x1": etcd_mix(etcd.addr, a.mix_ops, a.mix_keys, 7, 1),
               "etcd x2": etcd_mix(etcd.addr, a.mix_ops, a.mix_keys, 7, 2)}
        for e in ENGINES:
            mix[e] = store_mix(os.path.join(work, "mix-" + e), e, a.threads, a.mix_ops,
                               a.mix_keys, 7)
    finally:
        etcd.stop()
        shutil.rmtree(work, ignore_errors=True)
    text = report(puts, ceiling, over, mix, a)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    return 0


def report(puts: dict, ceiling: dict, over: dict, mix: dict, a) -> str:
    best = {k: max(r["ops_s"] for r in v) for k, v in puts.items()}
    etcd = max(best["etcd x1"], best["etcd x2"])
    lines = ["# Store vs etcd 3.4 (bench/store_bench.py)", "",
             "`python bench/store_bench.py --seconds %g --threads %d --rounds %d`"
             % (a.seconds, a.threads, a.rounds), "",
             "## Durable puts (16 B keys, 100 B values)", "",
             "| target | client | puts/s (best of %d) | vs etcd | puts per fsync |" % a.rounds,
             "|---|---|---:|---:|---:|"]
    for k in ("etcd x1", "etcd x2"):
        lines.append("| etcd 3.4 | grpc.aio, 64 in flight x %s process(es) | %.0f | %.2fx | |"
                     % (k[-1], best[k], best[k] / etcd))
    for e in ENGINES:
        ppf = max(r["puts_per_fsync"] for r in puts[e])
        lines.append("| store %s | %d threads, sync=commit | %.0f | **%.2fx** | %.1f |"
                     % (e, a.threads, best[e], best[e] / etcd, ppf))
    for e in ENGINES:
        lines.append("| store %s | %d threads, sync=none (no fsync: the CPU ceiling) "
                     "| %.0f | %.2fx | |" % (e, a.threads, ceiling[e]["ops_s"],
                                             ceiling[e]["ops_s"] / etcd))
    lines += ["", "## Single-thread overhead, store vs raw engine (us per op, sync=none, updates of "
              "loaded keys, best of %d interleaved rounds)" % OVERHEAD_ROUNDS, "",
              "| engine | op | store | engine | ratio |", "|---|---|---:|---:|---:|"]
    for e in ENGINES:
        for op, (s, r) in over[e].items():
            lines.append("| %s | %s | %.2f | %.2f | %.2fx |" % (e, op, s, r, s / r))
    lines += ["", "## Kubernetes-shaped mix, a watch open (%d ops, %d keys, 1-4 KiB)"
              % (a.mix_ops, a.mix_keys), "",
              "| target | client | ops/s | vs etcd |", "|---|---|---:|---:|"]
    etcd_mix_best = max(mix["etcd x1"]["ops_s"], mix["etcd x2"]["ops_s"])
    for k, v in mix.items():
        client = ("grpc.aio, 64 in flight x %s process(es)" % k[-1] if k.startswith("etcd")
                  else "%d threads, sync=commit" % a.threads)
        lines.append("| %s | %s | %.0f | %.2fx |" % (k, client, v["ops_s"],
                                                    v["ops_s"] / etcd_mix_best))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
