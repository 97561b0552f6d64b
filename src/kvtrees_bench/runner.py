"""Runs workloads against targets, interleaved per repetition, and collects metrics.

For each repetition, every target runs every workload before the next repetition
starts (and the target order rotates each repetition), so machine drift hits all alike.
Every workload opens its store afresh (cold internal cache, same for everyone);
generation work happens before the timed phase; Python's GC is off while timing.
"""
from __future__ import annotations

import gc
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field, asdict
from typing import List, Optional

from . import adapters
from kvtrees.limits import DEFAULT_CACHE
from .keys import KeySpace, ValuePool
from .metrics import (device_io, device_stat_path, machine_info, median, peak_rss_bytes,
                      percentile, reset_peak_rss)
from .workloads import LAST, WORKLOADS, Ctx, load

SCHEMA_VERSION = 1


@dataclass
class Config:
    workloads: List[str]
    engines: List[str]
    peers: List[str] = field(default_factory=list)
    num: int = 100_000
    ops: int = 0                 # 0: same as num
    key_size: int = 16
    value_size: int = 100
    record_size: int = 0         # 0: same as value_size
    batch: int = 1000
    cache_size: int = DEFAULT_CACHE
    sync: bool = False
    direct_io: bool = False
    threads: int = 1
    seed: int = 42
    repeat: int = 1
    seek_nexts: int = 100
    iibench_indexes: int = 3
    store_ops: int = 0           # 0: min(ops, 20000)
    dir: Optional[str] = None
    keep: bool = False

    def __post_init__(self):
        self.ops = self.ops or self.num
        self.record_size = self.record_size or self.value_size
        self.store_ops = self.store_ops or min(self.ops, 20_000)


class Progress:
    """Minimal progress protocol; report.py provides a rich bar and a plain fallback."""

    def start(self, total: int): pass
    def step(self, desc: str): pass
    def done_one(self, run: dict): pass
    def log(self, msg: str): print(msg, file=sys.stderr)
    def stop(self): pass


def ordered(names: List[str]) -> List[str]:
    """User order, except that the keyspace-destroying workloads go last."""
    return [n for n in names if n not in LAST] + [n for n in names if n in LAST]


class TargetRun:
    """All workloads of one repetition on one target, in a scratch directory."""

    def __init__(self, cfg: Config, target: str, rep: int, base: str, progress: Progress):
        self.cfg, self.target, self.rep, self.progress = cfg, target, rep, progress
        self.root = tempfile.mkdtemp(prefix=f"{target}-r{rep}-", dir=base)
        self.ks = KeySpace(cfg.key_size)
        self.pools = {}
        self.loaded = {}         # value size -> state dict of the loaded directory
        self.devstat = device_stat_path(self.root)

    def pool(self, size: int) -> ValuePool:
        if size not in self.pools:
            self.pools[size] = ValuePool(size, random.Random(f"{self.cfg.seed}:values:{size}"))
        return self.pools[size]

    def open(self, path: str, setup: str, sync: bool):
        if setup == "store":
            return adapters.KvtreesStore(path, self.cfg, sync, self.target)
        return adapters.make(self.target, path, self.cfg, sync)

    def loaded_dir(self, vsize: int) -> tuple:
        """(path, state) of the preloaded directory for this value size, loading it once."""
        if vsize not in self.loaded:
            path = os.path.join(self.root, f"loaded-{vsize}")
            state = {}
            ad = self.open(path, "loaded", self.cfg.sync)
            try:
                self.progress.step(f"{self.target} load {self.cfg.num} keys")
                load(Ctx(self.cfg, ad, self.ks, self.pool(vsize), None, state))
            finally:
                ad.close()
            self.loaded[vsize] = (path, state)
        return self.loaded[vsize]

    def run(self, wname: str) -> dict:
        w = WORKLOADS[wname]
        if w.setup == "store" and self.target not in adapters.ENGINES:
            return self.skipped(wname, "the store workload runs on kvtrees engines only")
        vsize = self.cfg.record_size if w.record_size else self.cfg.value_size
        try:
            if w.setup == "loaded":
                path, state = self.loaded_dir(vsize)
            else:
                path, state = os.path.join(self.root, wname), {}
            return self.measure(w, path, state, vsize)
        except adapters.Unavailable as e:
            return self.skipped(wname, str(e))
        except Exception as e:
            self.progress.log(f"ERROR {self.target} {wname}: {type(e).__name__}: {e}\n"
                              + traceback.format_exc(limit=4))
            return {"target": self.target, "workload": wname, "rep": self.rep,
                    "error": f"{type(e).__name__}: {e}"}

    def skipped(self, wname: str, why: str) -> dict:
        return {"target": self.target, "workload": wname, "rep": self.rep, "skipped": why}

    def measure(self, w, path: str, state: dict, vsize: int) -> dict:
        self.progress.step(f"{self.target} {w.name} (rep {self.rep + 1})")
        ad = self.open(path, w.setup, self.cfg.sync or w.force_sync)
        try:
            rng = random.Random(f"{self.cfg.seed}:{self.rep}:{w.name}")
            timed = w.prepare(Ctx(self.cfg, ad, self.ks, self.pool(vsize), rng, state))
            gc.collect()
            dev0 = None if ad.own_io_counters else device_io(self.devstat)
            c0 = ad.counters()
            reset_peak_rss()
            gc.disable()
            t0 = time.perf_counter_ns()
            try:
                res = timed()
            finally:
                t1 = time.perf_counter_ns()
                gc.enable()
            rss = peak_rss_bytes()
            c1 = ad.counters()
            dev1 = None if ad.own_io_counters else device_io(self.devstat)
        finally:
            ad.close()
        return summarize_run(self.target, w.name, self.rep, res, (t1 - t0) / 1e9,
                             c0, c1, dev0, dev1, rss, ad.own_io_counters)

    def cleanup(self):
        if not self.cfg.keep:
            shutil.rmtree(self.root, ignore_errors=True)


def delta(c0: dict, c1: dict, key: str) -> Optional[int]:
    a, b = c0.get(key), c1.get(key)
    return None if a is None or b is None else b - a


def per_op(v: Optional[float], ops: int) -> Optional[float]:
    return None if v is None or not ops else round(v / ops, 3)


def summarize_run(target, wname, rep, res, seconds, c0, c1, dev0, dev1, rss, own) -> dict:
    ops = res["ops"]
    lat = sorted(res.get("lat") or [])
    if own:
        bw, br, src = delta(c0, c1, "bytes_written"), delta(c0, c1, "bytes_read"), "engine"
    elif dev0 and dev1:
        br, bw, src = dev1[0] - dev0[0], dev1[1] - dev0[1], "device"
    else:
        bw = br = src = None
    p50, p99 = percentile(lat, 50), percentile(lat, 99)
    return {
        "target": target, "workload": wname, "rep": rep,
        "ops": ops, "seconds": round(seconds, 6),
        "ops_per_s": round(ops / seconds, 1) if seconds > 0 else None,
        "lat_unit": res.get("lat_unit", "op"),
        "lat_p50_us": None if p50 is None else round(p50 / 1000, 2),
        "lat_p99_us": None if p99 is None else round(p99 / 1000, 2),
        "bytes_written_per_op": per_op(bw, ops), "bytes_read_per_op": per_op(br, ops),
        "io_source": src,
        "fsyncs": delta(c0, c1, "fsyncs"),
        "cache_misses_per_op": per_op(delta(c0, c1, "cache_misses"), ops),
        "file_size": c1.get("file_size"), "height": c1.get("height"),
        "peak_rss": rss,
        "extra": res.get("extra", {}),
    }


SUMMARY_KEYS = ("lat_p50_us", "lat_p99_us", "bytes_written_per_op", "bytes_read_per_op",
                "fsyncs", "cache_misses_per_op", "file_size", "peak_rss")


def summarize(runs: List[dict], targets: List[str], workloads: List[str]) -> List[dict]:
    """One row per (workload, target): medians over repetitions and the ops/s spread."""
    rows = []
    for wname in workloads:
        for t in targets:
            mine = [r for r in runs if r["target"] == t and r["workload"] == wname]
            ok = [r for r in mine if "ops_per_s" in r and r["ops_per_s"]]
            row = {"workload": wname, "target": t, "reps": len(ok)}
            if not ok:
                bad = next((r for r in mine if "error" in r or "skipped" in r), None)
                row["status"] = ("error: " + bad["error"]) if bad and "error" in bad else \
                    ("skipped: " + bad["skipped"]) if bad else "not run"
                rows.append(row)
                continue
            rates = [r["ops_per_s"] for r in ok]
            med = median(rates)
            row.update(status="ok", lat_unit=ok[0]["lat_unit"], io_source=ok[0]["io_source"],
                       ops_per_s=round(med, 1), ops_per_s_min=min(rates),
                       ops_per_s_max=max(rates),
                       spread_pct=round((max(rates) - min(rates)) / med * 100, 1) if med else None)
            for k in SUMMARY_KEYS:
                vals = [r[k] for r in ok if r.get(k) is not None]
                row[k] = median(vals) if vals else None
            rows.append(row)
    return rows


def run(cfg: Config, progress: Progress, argv: Optional[List[str]] = None) -> dict:
    """Run the whole benchmark; returns the report (see report.validate)."""
    targets, skipped = [], {}
    for t in cfg.engines + cfg.peers:
        why = adapters.available(t)
        if why:
            skipped[t] = why
            progress.log(f"note: {t} skipped: {why}")
        else:
            targets.append(t)
    if cfg.direct_io:
        for t in targets:
            if t in ("lmdb", "sqlite"):
                progress.log(f"note: {t} has no O_DIRECT mode; it reads through the OS "
                             "page cache (its cache size is not a bound)")
    names = ordered(cfg.workloads)
    runs: List[dict] = []
    base = tempfile.mkdtemp(prefix="kvtrees-bench-", dir=cfg.dir)
    started = time.time()
    progress.start(cfg.repeat * len(targets) * len(names))
    try:
        for rep in range(cfg.repeat):
            shift = rep % max(1, len(targets))
            for t in targets[shift:] + targets[:shift]:
                tr = TargetRun(cfg, t, rep, base, progress)
                try:
                    for wname in names:
                        r = tr.run(wname)
                        runs.append(r)
                        progress.done_one(r)
                finally:
                    tr.cleanup()
    finally:
        progress.stop()
        if not cfg.keep:
            shutil.rmtree(base, ignore_errors=True)
    cfg_d = asdict(cfg)
    return {
        "schema": SCHEMA_VERSION, "tool": "kvtrees bench",
        "command": "kvtrees bench " + " ".join(argv) if argv is not None else None,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "elapsed_s": round(time.time() - started, 2),
        "machine": machine_info(), "config": cfg_d,
        "targets": targets, "skipped_targets": skipped, "workloads": names,
        "runs": runs, "summary": summarize(runs, targets, names),
    }
