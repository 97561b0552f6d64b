"""Peak resident memory of a store while it takes N keys, against its cache size.

    python bench/store_rss.py --keys 5000000 --cache-mib 64

Each engine runs in a fresh process: the process measures its resident set after
importing kvtrees (the baseline: interpreter, modules, the native library), loads N
distinct keys (16-byte keys, 100-byte values) through db.transaction batches of 128
puts, reads a sample back, and reports its anonymous resident memory (RssAnon, sampled
at every tenth of the load and after each phase) over the baseline, beside the peak of
VmRSS, which also counts the data file's pages the read map brings in. What a store may hold beyond its page cache: the MVCC head cache (bounded
by entries, see native/mvcc/mvcc_int.h), the engine's dirty pages between
checkpoints, and Python's per-batch objects. The result says whether that stays a
constant or grows with N.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BATCH = 128                    # the txn op limit (etcd's --max-txn-ops)
VALUE = b"v" * 100


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _rss_kib() -> int:
    """Anonymous resident memory: the process's own. (File pages the read map brings in
    are the OS page cache, clean and reclaimable, as with LMDB; VmRSS counts them too,
    so the peak of VmRSS is reported beside, not as, the store's memory.)"""
    return _status_kib("RssAnon")


def _peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child(path: str, engine: str, keys: int, cache: int) -> dict:
    """Runs in the measured process: load `keys` keys, report memory (KiB)."""
    import kvtrees
    base, base_total = _rss_kib(), _status_kib("VmRSS")
    db = kvtrees.open(path, engine=engine, sync="none", cache_size=cache)
    t = db.transactions
    t0 = time.perf_counter()
    samples = []
    for start in range(0, keys, BATCH):
        db.transaction([], [t.put(b"%016d" % i, VALUE)
                            for i in range(start, min(keys, start + BATCH))], [])
        if start % (keys // 10 or 1) < BATCH:
            samples.append((start, _rss_kib() - base))
    load_s = time.perf_counter() - t0
    phases = {"loaded": _rss_kib() - base}
    for i in range(0, keys, max(1, keys // 1000)):
        assert db.get(b"%016d" % i)[0] == VALUE, i
    phases["read"] = _rss_kib() - base
    db.close()
    phases["closed"] = _rss_kib() - base
    anon_peak = max([v for _, v in samples] + list(phases.values()))
    return {"engine": engine, "keys": keys, "cache_kib": cache // 1024, "base_kib": base,
            "peak_over_base_kib": anon_peak, "anon_by_phase_kib": phases,
            "vmrss_peak_over_base_kib": _peak_kib() - base_total,
            "load_s": round(load_s, 1),
            "rss_samples": samples}


def run(engine: str, keys: int, cache: int) -> dict:
    work = tempfile.mkdtemp(prefix="kvt-rss-", dir=os.environ.get("KVTREES_BENCH_DIR"))
    try:
        out = subprocess.run([sys.executable, __file__, "--child", engine, str(keys),
                              str(cache), os.path.join(work, "db")],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit("%s: the measured process failed:\n%s" % (engine, out.stderr))
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def table(results: list) -> str:
    rows = ["| engine | keys | cache MiB | anonymous RSS over baseline, peak MiB "
            "| of it beyond the cache MiB | VmRSS peak over baseline MiB (page cache "
            "mapped in) | load s |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        over = r["peak_over_base_kib"] / 1024
        rows.append("| %s | %d | %d | %.1f | %.1f | %.1f | %.1f |" % (
            r["engine"], r["keys"], r["cache_kib"] // 1024, over,
            over - r["cache_kib"] / 1024, r["vmrss_peak_over_base_kib"] / 1024,
            r["load_s"]))
    return "\n".join(rows)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        engine, keys, cache, path = argv[1], int(argv[2]), int(argv[3]), argv[4]
        print(json.dumps(child(path, engine, keys, cache)))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=5_000_000)
    ap.add_argument("--cache-mib", type=int, default=64)
    ap.add_argument("--engines", default="btree,fractal")
    a = ap.parse_args(argv)
    results = [run(e, a.keys, a.cache_mib << 20) for e in a.engines.split(",")]
    print(table(results))
    for r in results:
        print(r["engine"], "RSS over baseline at each tenth (keys, KiB):", r["rss_samples"])
        print(r["engine"], "anonymous RSS over baseline after each phase (KiB):",
              r["anon_by_phase_kib"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
