"""Group commit in the store (sync="commit", several writer threads) and the store
benchmark module's smoke run (src/kvtrees_bench/store_workloads.py)."""

import kvtrees
from helpers.threads import run_threads
from kvtrees_bench import store_workloads as sw

THREADS, PUTS = 8, 60


def _concurrent_puts(db):
    def writer(t):
        for i in range(PUTS):
            db.put(b"/g/%d/%03d" % (t, i), b"v%d" % i)
    run_threads(writer, THREADS)


def test_concurrent_sync_commit_shares_fsyncs_and_keeps_watch_order(tmp_path):
    db = kvtrees.open(tmp_path / "s", engine="btree", sync="commit")
    try:
        start = db.revision
        events, cancel = db.watch_prefix(b"/g/")
        f0 = db._eng.stats()["fsyncs"]
        _concurrent_puts(db)
        fsyncs = db._eng.stats()["fsyncs"] - f0
        n = THREADS * PUTS
        assert db.revision == start + n
        assert 0 < fsyncs < n     # writers shared fsyncs (the old lock-held wait gave n)
        revs = [events.get(timeout=10).mod_revision for _ in range(n)]
        assert revs == list(range(start + 1, start + n + 1))   # in order, exactly once
        cancel()
    finally:
        db.close()
    with kvtrees.open(tmp_path / "s", engine="btree") as db:    # all of it persisted
        assert db.revision == start + n
        assert db.get(b"/g/%d/%03d" % (THREADS - 1, PUTS - 1))[0] == b"v%d" % (PUTS - 1)


def test_sync_commit_store_opens_engine_without_per_commit_fsync(tmp_path):
    with kvtrees.open(tmp_path / "a", sync="commit") as db:
        assert db._group_sync
        assert db._eng._options.sync == "none"
        f0 = db._eng.stats()["fsyncs"]
        db.put(b"k", b"v")
        assert db._eng.stats()["fsyncs"] > f0   # the store's own sync ran
    with kvtrees.open(tmp_path / "b", sync="none") as db:
        assert not db._group_sync
        f0 = db._eng.stats()["fsyncs"]
        db.put(b"k", b"v")
        assert db._eng.stats()["fsyncs"] == f0


def test_store_workloads_smoke(tmp_path):
    for kind in ("store", "engine"):
        rows = sw.bench_ops("btree", kind, sw.WORKLOAD_NAMES, 300, 200, 1, "none",
                            8 << 20, str(tmp_path))
        assert [r["workload"] for r in rows] == list(sw.WORKLOAD_NAMES)
        assert all(r["ops"] == 200 and r["ops_per_s"] > 0 for r in rows)
        if kind == "store":
            assert rows[-1]["watch_events"] > 0
    r = sw.bench_sync_puts("fractal", "store", 4, 20, 64, str(tmp_path), 8 << 20)
    assert r["puts"] == 80 and r["fsyncs"] >= 1
    path = str(tmp_path / "big")
    sw.build_store(path, "btree", 1000, 16, 8 << 20, lambda s: None)
    res = sw.time_open(path, "btree", 2, 8 << 20)
    assert res["revision"] > 1 and res["open_s_max"] < 5
