"""Regression tests for the store's per-operation fast paths: native point reads and
puts (kvt_mvcc), the revision taken from the revision log at open, the one-pass range
scan, and watch wake-ups that take every queued revision at once."""

import pytest

from etcd_model import load_kvtrees
from etcd_model import open_store as _open_store

kvtrees, ENGINES = load_kvtrees()


def open_store(engine, path, **opts):
    if engine == "mem":            # the pure-Python stand-in takes no engine options
        opts.pop("sync", None)
    return _open_store(engine, path, **opts)
mvcc = kvtrees.store.mvcc


@pytest.fixture(params=ENGINES)
def db(request, tmp_path):
    d = open_store(request.param, str(tmp_path / "db"), sync="none")
    d._test_path = str(tmp_path / "db")
    d._test_engine = request.param
    yield d
    if not d._closed:
        d.check()
        d.close()


def _count_python_reads(monkeypatch):
    calls = []
    orig = mvcc.latest

    def counting(eng, key, rev):
        calls.append(key)
        return orig(eng, key, rev)
    monkeypatch.setattr(mvcc, "latest", counting)
    return calls


def test_point_reads_and_puts_are_native(db, monkeypatch):
    """On a native engine, get, put, txn compares and past-revision reads never take the
    Python iterator path (mvcc.latest): each is one C call (kvt_mvcc_get / _put)."""
    if db._test_engine == "mem":
        pytest.skip("the in-memory stand-in has no native core")
    db.put(b"a", b"1")
    calls = _count_python_reads(monkeypatch)
    for i in range(5):
        db.put(b"a", b"v%d" % i)
        assert db.get(b"a")[0] == b"v%d" % i
    t = db.transactions
    ok, _ = db.transaction([t.mod(b"a") == db.revision], [t.put(b"a", b"x")], [])
    assert ok and db.get(b"a")[0] == b"x"
    assert db.get(b"a", revision=2)[0] == b"1"
    assert db.get(b"missing") == (None, None)
    assert calls == []


def test_native_get_sees_versions_tombstones_and_nul_keys(db):
    db.put(b"a\x00b", b"1")                 # 2
    db.put(b"a", b"2")                      # 3
    db.delete(b"a\x00b")                    # 4
    db.put(b"a\x00b", b"3")                 # 5
    assert db.get(b"a\x00b", revision=3)[0] == b"1"
    assert db.get(b"a\x00b", revision=4) == (None, None)
    _, kv = db.get(b"a\x00b")
    assert (kv.value, kv.create_revision, kv.mod_revision, kv.version) == (b"3", 5, 5, 1)
    assert db.get(b"a", revision=2) == (None, None)
    assert db.get(b"a\x00") == (None, None)  # a prefix of a stored key is not the key


def test_native_get_of_large_values_and_long_keys(db):
    big = bytes(range(256)) * 40            # over the 4 KiB first buffer
    db.put(b"big", big)
    assert db.get(b"big")[0] == big
    r = db.put(b"big", b"small", prev_kv=True)
    assert r.prev_kv.value == big
    assert db.get(b"x" * 4000) == (None, None)
    assert db.get(b"\x00" * 3000) == (None, None)   # escapes past the engine's key limit


def test_compaction_of_a_tombstone_head(db):
    db.put(b"a", b"1")
    db.delete(b"a")
    db.put(b"b", b"x")
    db.compact(db.revision)                 # drops a's versions, tombstone included
    assert db.get(b"a") == (None, None)
    r = db.put(b"a", b"2")
    _, kv = db.get(b"a")
    assert (kv.version, kv.create_revision, kv.mod_revision) == (1, r.revision, r.revision)


def _reopen(db):
    path, engine = db._test_path, db._test_engine
    db.close()
    return open_store(engine, path, sync="none")


def test_revision_comes_from_the_revision_log(db):
    for i in range(3):
        db.put(b"a", b"%d" % i)
    db.delete(b"missing")                   # no revision
    assert db._eng.get(mvcc.META_REVISION) is None    # not written per write
    db.compact(db.revision)
    db2 = _reopen(db)
    try:
        assert db2.revision == 4
        assert db2.put(b"b", b"x").revision == 5
    finally:
        db2.close()


def test_clean_close_writes_meta_revision_for_older_readers(db):
    db.put(b"a", b"1")
    db.put(b"a", b"2")
    db2 = _reopen(db)
    try:
        assert int.from_bytes(db2._eng.get(mvcc.META_REVISION), "big") == 3
        assert db2.revision == 3
    finally:
        db2.close()


def test_revision_log_wins_over_a_stale_meta_revision(db):
    # as after a crash: META_REVISION from the last clean close, newer revisions logged
    db.put(b"a", b"1")
    db2 = _reopen(db)                        # META_REVISION = 2
    for i in range(3):
        db2.put(b"a", b"%d" % i)             # revisions 3..5, META not rewritten
    assert int.from_bytes(db2._eng.get(mvcc.META_REVISION), "big") == 2
    db2._save_revision = lambda: None        # no clean-close write: like a crash
    db3 = _reopen_from(db2, db)
    try:
        assert db3.revision == 5
    finally:
        db3.close()


def _reopen_from(store, like):
    store.close()
    return open_store(like._test_engine, like._test_path, sync="none")


def test_legacy_meta_revision_is_still_honoured(db):
    db.put(b"a", b"1")
    db._save_revision = lambda: None
    with db._eng.batch() as b:              # a store written before: META_REVISION ahead
        b.put(mvcc.META_REVISION, mvcc.be64(40))
    db2 = _reopen(db)
    try:
        assert db2.revision == 40
        assert db2.put(b"a", b"2").revision == 41
    finally:
        db2.close()


def test_scan_picks_the_version_at_the_revision(db):
    db.put(b"a", b"1")                      # 2
    db.put(b"a\x00", b"nul")                # 3
    db.put(b"b", b"1")                      # 4
    db.put(b"a", b"2")                      # 5
    db.delete(b"b")                         # 6
    db.put(b"c", b"1")                      # 7
    def at(rev, order=None):
        return [(kv.key, kv.value, kv.mod_revision) for kv in
                db.range(b"\x00", b"\x00", revision=rev, sort_order=order).kvs]
    assert at(4) == [(b"a", b"1", 2), (b"a\x00", b"nul", 3), (b"b", b"1", 4)]
    assert at(7) == [(b"a", b"2", 5), (b"a\x00", b"nul", 3), (b"c", b"1", 7)]
    assert at(7, "descend") == [(b"c", b"1", 7), (b"a\x00", b"nul", 3), (b"a", b"2", 5)]
    assert at(5, "descend") == [(b"b", b"1", 4), (b"a\x00", b"nul", 3), (b"a", b"2", 5)]


def test_watch_takes_a_burst_at_once_in_order(db):
    events, cancel = db.watch_prefix(b"w/")
    revs = [db.put(b"w/%d" % (i % 3), b"%d" % i).revision for i in range(50)]
    assert len(events._queue) == 50         # queued while nobody was reading
    got = [events.get(2).mod_revision for _ in revs]
    assert got == revs
    assert not events._queue
    db.put(b"w/x", b"late")
    assert events.get(2).value == b"late"
    cancel()


def test_watch_spill_then_live_after_batch(tmp_path):
    engine = ENGINES[0]
    db = open_store(engine, str(tmp_path / "s"), sync="none", watch_queue_limit=4)
    try:
        events, cancel = db.watch_prefix(b"w/")
        revs = [db.put(b"w/a", b"%d" % i).revision for i in range(3)]
        first = events.get(2)               # takes the 3 queued revisions at once
        revs += [db.put(b"w/a", b"%d" % i).revision for i in range(3, 20)]   # spills
        got = [first.mod_revision] + [events.get(2).mod_revision for _ in revs[1:]]
        assert got == revs
        cancel()
    finally:
        db.close()
