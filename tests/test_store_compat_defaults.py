"""python-etcd3 call forms that ported code relies on, and watch callbacks that fail.
Both engines; the db fixture ends each test with check()."""

import threading
import time

import pytest

import kvtrees
from store_fixtures import ENGINES, db, engine  # noqa: F401


def test_open_without_engine_uses_the_directorys_own(engine, tmp_path):
    path = str(tmp_path / "s")
    with kvtrees.open(path, engine=engine) as db:
        db.put("a", "1")
    with kvtrees.open(path) as db:               # no engine named: the directory's
        assert db.get("a")[0] == b"1"
        assert db.status().engine == engine
        db.check()


def test_empty_prefix_means_every_key(db):
    for k in ("a", "b/c", "\x00z"):
        db.put(k, k)
    assert sorted(kv.key for _, kv in db.get_prefix("")) == [b"\x00z", b"a", b"b/c"]
    assert sorted(kv.key for _, kv in db.get_prefix(b"")) == [b"\x00z", b"a", b"b/c"]
    events, cancel = db.watch_prefix("")
    db.put("zz", "1")
    assert next(events).key == b"zz"
    cancel()
    assert db.delete_prefix("").deleted == 4
    assert list(db.get_all()) == []


def test_transaction_branches_default_to_none(db):
    t = db.transactions
    ok, resp = db.transaction([t.version("k") == 0], [t.put("k", "v")])
    assert ok and len(resp) == 1
    ok, resp = db.transaction(compare=[t.version("k") == 0], success=None, failure=None)
    assert not ok and resp == []
    assert db.get("k")[0] == b"v"


def test_watch_callback_that_raises_is_logged_and_the_watch_goes_on(db, caplog):
    got, done = [], threading.Event()

    def cb(ev):
        got.append(ev)
        if len(got) == 1:
            raise RuntimeError("bad callback")
        if len(got) == 3:
            done.set()
    wid = db.add_watch_prefix_callback("p/", cb)
    with caplog.at_level("ERROR", logger="kvtrees.watch"):
        for i in range(3):
            db.put("p/%d" % i, "v")
        assert done.wait(10)
    assert [e.key for e in got] == [b"p/0", b"p/1", b"p/2"]
    assert not any(isinstance(e, BaseException) for e in got)   # never its own error
    assert "bad callback" in caplog.text
    db.cancel_watch(wid)


def test_an_ended_watch_is_no_longer_counted(db):
    for i in range(3):
        db.put("c", str(i))
    db.compact(db.revision)
    before = db.status().watchers
    failed = threading.Event()
    errors = []

    def cb(item):
        if isinstance(item, BaseException):
            errors.append(item)
            failed.set()
    db.add_watch_callback("c", cb, start_revision=1)     # compacted: the watch ends
    assert failed.wait(10)
    assert isinstance(errors[0], kvtrees.CompactedError)
    for _ in range(100):
        if db.status().watchers == before:
            break
        time.sleep(0.05)
    assert db.status().watchers == before


def test_unencodable_str_key_or_value_is_a_clear_value_error(db):
    for call in (lambda: db.put("a\udcff", "v"), lambda: db.put("a", "v\ud800"),
                 lambda: db.get("\ud800")):
        with pytest.raises(ValueError) as ei:
            call()
        assert not isinstance(ei.value, UnicodeError)
        assert "UTF-8" in str(ei.value)
    assert db.revision == 1


def test_closed_store_refuses_compact_revision_and_lease_reads(engine, tmp_path):
    db = kvtrees.open(str(tmp_path / "s"), engine=engine)
    lease = db.lease(60)
    db.put("k", "v", lease=lease)
    assert lease.keys == [b"k"] and lease.granted_ttl == 60 and lease.remaining_ttl >= 58
    assert db.compact_revision == 0
    db.check()
    db.close()
    for read in (lambda: db.compact_revision, lambda: lease.remaining_ttl,
                 lambda: lease.granted_ttl, lambda: lease.keys):
        with pytest.raises(kvtrees.ClosedError):
            read()
