"""Side-by-side ordered reads of one engine and LMDB: seek + N nexts, and a full ordered
walk of every key, interleaved passes, CPU time of this process (less sensitive than wall
time to other processes on a shared machine), best and median per target and the ratios.

    python bench/scan_compare.py [--num 1000000] [--seeks 5000] [--nexts 100] [--passes 7]
                                 [--engine btree] [--dir DIR]

Both stores get the same --num 16-byte keys with 100-byte values, inserted in one random
order in batches of 1000; the engine runs with a 64 MiB cache, read through its read map
(the default). The full walk is `for _ in eng.items()` against LMDB's
`cursor.iternext()`; a seek is `islice(eng.items(start=k), nexts + 1)` against
`set_range(k)` + `islice(iternext(), nexts + 1)`, as in `kvtrees bench`'s seekrandom.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
import time
from itertools import islice

import kvtrees


def load(path: str, engine: str, keys, val: bytes):
    import lmdb
    eng = kvtrees.open_engine(os.path.join(path, engine), engine=engine,
                              cache_size=64 << 20, sync="none")
    env = lmdb.open(os.path.join(path, "lmdb"), map_size=1 << 36, sync=False, metasync=False)
    for s in range(0, len(keys), 1000):
        part = [(k, val) for k in keys[s:s + 1000]]
        eng.put_many(part)
        with env.begin(write=True) as t:
            t.cursor().putmulti(part)
    eng.checkpoint()
    env.sync(True)
    return eng, env


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--num", type=int, default=1_000_000)
    ap.add_argument("--seeks", type=int, default=5000)
    ap.add_argument("--nexts", type=int, default=100)
    ap.add_argument("--passes", type=int, default=7)
    ap.add_argument("--engine", default="btree")
    ap.add_argument("--dir", default=None)
    a = ap.parse_args()
    rnd = random.Random(42)
    ids = list(range(a.num))
    rnd.shuffle(ids)
    keys = [b"%016d" % i for i in ids]
    starts = [b"%016d" % rnd.randrange(a.num) for _ in range(a.seeks)]
    path = tempfile.mkdtemp(prefix="kvt-scan-", dir=a.dir)
    try:
        eng, env = load(path, a.engine, keys, b"v" * 100)
        items, n = eng.items, a.nexts + 1

        def seek_ours():
            for s in starts:
                for _ in islice(items(start=s), n):
                    pass

        def seek_lmdb():
            for s in starts:
                with env.begin() as t:
                    c = t.cursor()
                    if c.set_range(s):
                        for _ in islice(c.iternext(), n):
                            pass

        def walk_ours():
            for _ in items():
                pass

        def walk_lmdb():
            with env.begin() as t:
                for _ in t.cursor().iternext():
                    pass

        seek_ours(); seek_lmdb(); walk_ours(); walk_lmdb()        # warm both
        for what, ours, theirs, per in (("seek+%d" % a.nexts, seek_ours, seek_lmdb, a.seeks),
                                        ("full walk", walk_ours, walk_lmdb, a.num)):
            res = {a.engine: [], "lmdb": []}
            for p in range(a.passes):
                order = [(a.engine, ours), ("lmdb", theirs)]
                for name, fn in (order if p % 2 == 0 else order[::-1]):
                    t0 = time.process_time()
                    fn()
                    res[name].append(per / (time.process_time() - t0))
            unit = "seeks/s" if per == a.seeks else "entries/s"
            for name, v in res.items():
                print(f"{what:10s} {name:8s} best {max(v):12,.0f} median "
                      f"{statistics.median(v):12,.0f} {unit}")
            print(f"{what:10s} {a.engine}/lmdb best {max(res[a.engine]) / max(res['lmdb']):.2f}x "
                  f"median {statistics.median(res[a.engine]) / statistics.median(res['lmdb']):.2f}x")
        eng.close()
        env.close()
    finally:
        shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
