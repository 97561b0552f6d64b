"""The store against the etcd 3.4 behaviour transcript (shared/guide/etcd-3.4-behaviour.txt),
section by section, on every engine. Every test ends with db.check() (fixture teardown)."""

import threading
import time

import pytest

from etcd_model import open_store  # noqa: F401
from store_fixtures import ENGINES, db, engine, kvtrees  # noqa: F401


def kvs(it):
    return [(kv.key, v) for v, kv in it]


# ---- 1. put / get / prefix / range
def test_put_get_prefix_range(db):
    assert db.revision == 1
    assert db.put("foo/a", "1").revision == 2
    db.put("foo/b", "2")
    db.put("foob", "3")
    r = db.put("foo/a", "1x", prev_kv=True)
    assert r.prev_kv.value == b"1" and r.revision == 5
    v, kv = db.get("foo/a")
    assert v == b"1x" and (kv.create_revision, kv.mod_revision, kv.version, kv.lease) == (2, 5, 2, 0)
    assert kvs(db.get_prefix("foo/")) == [(b"foo/a", b"1x"), (b"foo/b", b"2")]
    assert [kv.key for _, kv in db.get_prefix("foo", keys_only=True)] == [b"foo/a", b"foo/b", b"foob"]
    assert all(v == b"" for v, _ in db.get_prefix("foo", keys_only=True))
    assert kvs(db.get_range("foo/a", "foo/c")) == [(b"foo/a", b"1x"), (b"foo/b", b"2")]
    assert kvs(db.get_prefix("foo", limit=1)) == [(b"foo/a", b"1x")]
    assert [kv.key for _, kv in db.get_prefix("foo", sort_order="descend", sort_target="mod")] \
        == [b"foo/a", b"foob", b"foo/b"]
    assert db.get("nosuchkey") == (None, None)
    r = db.range("foo/b", b"\0")
    assert [kv.key for kv in r.kvs] == [b"foo/b", b"foob"] and r.count == 2 and not r.more
    r = db.range("foo", kvtrees.store.mvcc.prefix_end(b"foo"), limit=1)
    assert (len(r.kvs), r.count, r.more, r.revision) == (1, 3, True, 5)
    r = db.range("foo", b"fop", count_only=True)
    assert (r.kvs, r.count) == ([], 3)
    assert [kv.key for kv in db.range(b"foo", b"fop", sort_order="descend").kvs] == \
        [b"foob", b"foo/b", b"foo/a"]
    assert [kv.key for _, kv in db.get_all()] == [b"foo/a", b"foo/b", b"foob"]


def test_range_revision_filters(db):
    for i in range(5):
        db.put("f%d" % i, "v")            # revisions 2..6
    db.put("f0", "w")                       # 7
    r = db.range("f", "g", min_mod_revision=4, max_mod_revision=6)
    assert [kv.key for kv in r.kvs] == [b"f2", b"f3", b"f4"] and r.count == 5
    r = db.range("f", "g", min_create_revision=3, max_create_revision=3)
    assert [kv.key for kv in r.kvs] == [b"f1"]
    r = db.range("f", "g", sort_target="version", sort_order="descend", limit=1)
    assert r.kvs[0].key == b"f0" and r.more


# ---- 2. reading at a past revision
def test_past_revision_and_future(db):
    for v in ("v1", "v2", "v3"):
        db.put("k", v)
    assert db.get("k", revision=2)[0] == b"v1"
    assert db.get("k", revision=3)[0] == b"v2"
    assert db.get("k", revision=1) == (None, None)
    with pytest.raises(kvtrees.FutureRevisionError):
        db.get("k", revision=999999)
    db.delete("k")
    assert db.get("k") == (None, None)
    assert db.get("k", revision=4)[0] == b"v3"
    db.put("k", "again")
    _, kv = db.get("k")
    assert (kv.create_revision, kv.version) == (6, 1)      # a delete ends a generation


# ---- 4. delete
def test_delete(db):
    db.put("foo/a", "1")
    db.put("foo/b", "2")
    assert db.delete("foo/a") is True
    rev = db.revision
    assert db.delete("nosuchkey") is False
    assert db.revision == rev                       # no revision for a no-op delete
    r = db.delete("foo/b", prev_kv=True, return_response=True)
    assert r.deleted == 1 and r.prev_kvs[0].value == b"2"
    db.put("foo/c", "3")
    db.put("foo/d", "4")
    rev = db.revision
    r = db.delete_prefix("foo")
    assert r.deleted == 2 and r.revision == rev + 1       # one revision for both
    assert list(db.get_prefix("foo")) == []
    assert db.delete_range("a", "z").deleted == 0 and db.revision == rev + 1


# ---- 5. txn
def test_txn(db):
    t = db.transactions
    for v in ("v1", "v2", "v3"):
        db.put("k", v)
    _, kv = db.get("k")
    ok, resp = db.transaction([t.mod("k") == kv.mod_revision], [t.put("k", "v4")], [t.get("k")])
    assert ok and resp[0].revision == 5
    ok, resp = db.transaction([t.mod("k") == kv.mod_revision], [t.put("k", "v5")], [t.get("k")])
    assert not ok and resp[0][0][0] == b"v4"
    assert db.revision == 5                          # read-only branch: no revision
    ok, resp = db.transaction([t.value("k") == "v4", t.version("k") > 0],
                              [t.put("k", "v6"), t.get("k")], [t.get("k")])
    assert ok and resp[0].revision == 6
    v, kv = resp[1][0]
    assert v == b"v6" and (kv.create_revision, kv.mod_revision, kv.version) == (2, 6, 5)
    assert db.transaction([t.create("newkey") == 0], [t.put("newkey", "created")], [])[0]
    assert not db.transaction([t.create("newkey") == 0], [t.put("newkey", "created")], [])[0]
    # compares on a missing key: value never matches, the rest see zeros
    assert not db.transaction([t.value("nokey") == b""], [], [])[0]
    assert db.transaction([t.version("nokey") == 0, t.lease("nokey") == 0,
                           t.mod("nokey") < 1], [], [])[0]
    assert db.transaction([t.value("k") != "zz", t.value("k") > "v5", t.value("k") < "v7"],
                          [], [])[0]


def test_txn_validation_writes_nothing(db):
    t = db.transactions
    rev = db.revision
    with pytest.raises(ValueError):
        db.transaction([], [t.put("dup", "1"), t.put("dup", "2")], [])
    with pytest.raises(ValueError):
        db.transaction([], [t.put("a/1", "1"), t.delete_prefix("a/")], [])
    with pytest.raises(ValueError):
        db.transaction([], [t.put("t%d" % i, "x") for i in range(129)], [])
    with pytest.raises(ValueError):
        db.transaction([], [t.put("x", "1"), t.txn([], [t.put("x", "2")], [])], [])
    assert db.revision == rev and list(db.get_all()) == []
    # a nested txn's two branches may write the same key: only one runs
    ok, resp = db.transaction([], [t.txn([t.version("n") == 0], [t.put("n", "a")],
                                         [t.put("n", "b")])], [])
    assert ok and resp[0][0] is True
    ok, _ = db.transaction([], [t.put("t%d" % i, "x") for i in range(128)], [])
    assert ok and db.revision == rev + 2
    assert db.get("t127")[1].mod_revision == rev + 2       # 128 puts, one revision
    ok, resp = db.transaction([t.mod("k") < 1000], [t.delete_prefix("t")], [])
    assert ok and resp[0].deleted == 128 and db.revision == rev + 3


def test_txn_is_atomic_on_error(db):
    t = db.transactions
    with pytest.raises(kvtrees.LeaseNotFoundError):
        db.transaction([], [t.put("a", "1"), t.put("b", "2", lease=0x1234abcd)], [])
    assert db.get("a") == (None, None) and db.revision == 1


def test_put_if_not_exists_and_replace(db):
    assert db.put_if_not_exists("p", "1")
    assert not db.put_if_not_exists("p", "2")
    assert db.replace("p", "1", "3")
    assert not db.replace("p", "1", "4")
    assert db.get("p")[0] == b"3"


# ---- 6. watch
def test_watch_replay_then_live(db):
    db.put("w", "a")
    start = db.revision
    db.put("w", "b")
    events, cancel = db.watch("w", start_revision=start)
    got = []

    def consume():
        for ev in events:
            got.append(ev)
            if len(got) == 5:
                break
    th = threading.Thread(target=consume)
    th.start()
    db.put("w", "c")
    db.delete("w")
    db.put("w/x", "1")              # not this key
    db.put("w", "d")
    th.join(10)
    cancel()
    assert [(type(e).__name__, e.value) for e in got] == [
        ("PutEvent", b"a"), ("PutEvent", b"b"), ("PutEvent", b"c"), ("DeleteEvent", b""),
        ("PutEvent", b"d")]
    assert [e.mod_revision for e in got] == [start, start + 1, start + 2, start + 3, start + 5]


def test_watch_prefix_prev_kv_filters(db):
    db.put("w", "a")
    events, cancel = db.watch_prefix("w", prev_kv=True)
    db.put("w", "c")
    db.delete("w")
    db.put("w/x", "1")
    e1, e2, e3 = events.get(5), events.get(5), events.get(5)
    cancel()
    assert e1.prev_kv.value == b"a" and e1.version == 2
    assert isinstance(e2, kvtrees.DeleteEvent) and e2.prev_kv.value == b"c"
    assert e3.key == b"w/x" and e3.prev_kv is None
    events, cancel = db.watch_prefix("w", start_revision=2, filters=["noput"])
    assert isinstance(events.get(5), kvtrees.DeleteEvent)
    cancel()
    assert list(events) == []          # cancelled: the iterator ends
    events, cancel = db.watch_prefix("w", start_revision=2, filters=["nodelete"])
    assert [events.get(5).value for _ in range(3)] == [b"a", b"c", b"1"]
    cancel()


def test_watch_once_and_callback(db):
    with pytest.raises(TimeoutError):
        db.watch_once("x", timeout=0.05)
    got, done = [], threading.Event()

    def cb(ev):
        got.append(ev)
        done.set()
    wid = db.add_watch_callback("x", cb)
    threading.Timer(0.05, lambda: db.put("x", "1")).start()
    ev = db.watch_once("x", timeout=5)
    assert ev.value == b"1"
    assert done.wait(5) and got[0].value == b"1"
    db.cancel_watch(wid)
    db.put("x", "2")
    time.sleep(0.05)
    assert len(got) == 1


def test_watch_compacted(db):
    db.put("c", "1")
    db.put("c", "2")
    db.compact(3)
    events, cancel = db.watch("c", start_revision=2)
    with pytest.raises(kvtrees.CompactedError) as ei:
        next(events)
    assert ei.value.compact_revision == 3
    events, cancel = db.watch("c", start_revision=3)
    assert events.get(1).value == b"2"
    cancel()


def test_slow_watcher_spills_and_catches_up(engine, tmp_path):
    db = open_store(engine, tmp_path / "db", watch_queue_limit=4)
    events, cancel = db.watch_prefix("s")
    for i in range(50):
        db.put("s%02d" % (i % 7), str(i))          # writers never block on the watcher
    got = [events.get(5) for _ in range(50)]
    cancel()
    assert [e.value for e in got] == [str(i).encode() for i in range(50)]
    assert [e.mod_revision for e in got] == list(range(2, 52))
    db.check()
    db.close()


# ---- 7. leases
def test_lease_grant_attach_revoke(db):
    lease = db.lease(60)
    assert lease.ttl == 60 and 59 <= lease.remaining_ttl <= 60
    db.put("lk", "lv", lease=lease)
    assert db.get("lk")[1].lease == lease.id
    assert lease.keys == [b"lk"]
    assert [l.id for l in db.leases()] == [lease.id]
    assert lease.refresh() == 60
    rev = db.revision
    db.put("lk2", "x", lease=lease.id)
    assert lease.revoke()
    assert db.revision == rev + 2                   # both keys gone in one revision
    assert db.get("lk") == (None, None) and db.get("lk2") == (None, None)
    assert lease.remaining_ttl == -1
    with pytest.raises(kvtrees.LeaseNotFoundError):
        db.put("lk2", "lv", lease=lease)
    with pytest.raises(kvtrees.LeaseNotFoundError):
        db.revoke_lease(lease.id)
    with pytest.raises(kvtrees.LeaseNotFoundError):
        db.refresh_lease(0x1234abcd)
    assert db.lease(1).ttl == 2                       # etcd's minimum TTL


def test_lease_reattach(db):
    l1, l2 = db.lease(60), db.lease(60)
    db.put("k", "1", lease=l1)
    db.put("k", "2", lease=l2)
    assert l1.keys == [] and l2.keys == [b"k"]
    db.put("k", "3")
    assert l2.keys == []
    l2.revoke()
    assert db.get("k")[0] == b"3"


def test_lease_expiry(db):
    lease = db.lease(1)                              # granted 2 s
    db.put("ephemeral", "x", lease=lease)
    deadline = time.monotonic() + 6
    while db.get("ephemeral")[0] is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert db.get("ephemeral") == (None, None)
    assert lease.remaining_ttl == -1
    with pytest.raises(kvtrees.LeaseNotFoundError):
        db.get_lease(lease.id)


def test_lease_persists(engine, tmp_path):
    db = open_store(engine, tmp_path / "db")
    lease = db.lease(60)
    db.put("k", "v", lease=lease)
    db.close()
    db = open_store(engine, tmp_path / "db")
    assert db.get_lease(lease.id).granted_ttl == 60
    assert db.get_lease(lease.id).keys == [b"k"]
    db.revoke_lease(lease.id)
    assert db.get("k") == (None, None)
    db.check()
    db.close()


# ---- 8. compaction
def test_compaction(db):
    db.put("c", "1")                                  # 2
    db.put("c", "2")                                  # 3
    db.put("d", "x")                                  # 4
    db.delete("d")                                    # 5
    db.put("c", "3")                                  # 6
    db.compact(5)
    with pytest.raises(kvtrees.CompactedError) as ei:
        db.get("c", revision=4)
    assert ei.value.compact_revision == 5
    assert db.get("c", revision=5)[0] == b"2"
    assert db.get("d", revision=5) == (None, None)
    assert db.get("c", revision=6)[0] == b"3"
    with pytest.raises(kvtrees.CompactedError):
        db.compact(5)
    with pytest.raises(kvtrees.CompactedError):
        db.compact(1)
    with pytest.raises(kvtrees.FutureRevisionError):
        db.compact(999999)
    # physically gone: only c@3 (latest <= 5) and c@6 remain
    eng = db._eng
    left = [kvtrees.store.mvcc.split_kv_key(k) for k, _ in eng.items(b"k", b"l")]
    assert left == [(b"c", 6), (b"c", 3)]
    assert db.status().compact_revision == 5


def test_compaction_resumes_after_crash(engine, tmp_path):
    db = open_store(engine, tmp_path / "db", compact_batch=2)
    for i in range(20):
        db.put("k%d" % (i % 3), str(i))
    h_before = None
    # persist the target, do one step only: as if killed mid-compaction
    db.compact(15, physical=False)
    from kvtrees.requests import CompactStepRequest
    db.apply(CompactStepRequest(15, kvtrees.store.mvcc.revlog_key(15, 0)))
    db.close()
    db = open_store(engine, tmp_path / "db", compact_batch=2)
    assert db._meta_int(kvtrees.store.mvcc.META_COMPACT_DONE, 0) == 15
    h_before = db.hash_kv()
    ref = open_store(engine, tmp_path / "ref")
    for i in range(20):
        ref.put("k%d" % (i % 3), str(i))
    ref.compact(15)
    assert ref.hash_kv() == h_before
    db.check()
    ref.check()
    db.close()
    ref.close()


# ---- 9/10. lock and election
def test_lock(db):
    lock = db.lock("mylock", ttl=60)
    assert lock.acquire()
    assert lock.is_acquired()
    assert lock.key.startswith(b"mylock/")
    other = db.lock("mylock")
    assert other.acquire(timeout=0.2) is False
    assert [kv.key for _, kv in db.get_prefix("mylock/")] == [lock.key]
    order = []

    def waiter():
        with db.lock(b"mylock"):
            order.append("second")
    th = threading.Thread(target=waiter)
    th.start()
    time.sleep(0.2)
    order.append("first")
    lock.release()
    th.join(10)
    assert order == ["first", "second"]
    assert list(db.get_prefix("mylock")) == []


def test_lock_expired_holder_releases(db):
    holder = db.lock("l", ttl=1)                      # lease TTL 2 s, never refreshed
    assert holder.acquire()
    t0 = time.monotonic()
    waiter = db.lock("l")
    assert waiter.acquire(timeout=8)
    assert time.monotonic() - t0 >= 1
    assert not holder.is_acquired()
    waiter.release()


def test_election(db):
    e1, e2 = db.election("myelection"), db.election("myelection")
    assert e1.campaign("p1")
    assert e1.leader().value == b"p1"
    assert e2.campaign("p2", timeout=0.2) is False
    obs = e1.observe(timeout=2)
    assert next(obs).value == b"p1"
    assert e1.proclaim("p1b")
    assert next(obs).value == b"p1b"
    res = []
    th = threading.Thread(target=lambda: res.append(e2.campaign("p2", timeout=10)))
    th.start()
    time.sleep(0.2)
    e1.resign()
    th.join(10)
    assert res == [True] and e2.leader().value == b"p2"
    assert next(obs).value == b"p2"
    e2.resign()
    assert e2.leader() is None


# ---- 11. snapshot, status, hash
def test_snapshot_status_hash(engine, db, tmp_path):
    for i in range(10):
        db.put("s%d" % i, "v%d" % i)
    db.delete("s3")
    lease = db.lease(60)
    db.put("leased", "x", lease=lease)
    st = db.status()
    assert st.revision == db.revision and st.engine == engine and st.db_size >= 0
    h = db.hash_kv()
    assert h[2] == db.revision and db.hash_kv(5)[0] != h[0]
    db.snapshot(tmp_path / "snap")
    snap = open_store(engine, tmp_path / "snap")
    assert snap.hash_kv() == h and snap.revision == db.revision
    assert snap.get_lease(lease.id).keys == [b"leased"]
    snap.check()
    snap.close()


# ---- 12/13. limits and bad input
def test_bad_input_and_limits(db):
    with pytest.raises(TypeError):
        db.put(1, "x")
    with pytest.raises(TypeError):
        db.put("k", 1)
    with pytest.raises(ValueError):
        db.put("", "x")
    with pytest.raises(ValueError):
        db.get(b"")
    db.put("big", b"x" * 1572000)
    with pytest.raises(kvtrees.TooLargeError):
        db.put("big", b"x" * 1572864)
    with pytest.raises(kvtrees.TooLargeError):
        db.put(b"k" * 5000, b"x")
    with pytest.raises(kvtrees.LeaseNotFoundError):
        db.put("k", "x", lease=0x1234abcd)
    assert len(db.get("big")[0]) == 1572000
    assert db.put(bytearray(b"ba"), memoryview(b"mv")).revision
    assert db.get(b"ba")[0] == b"mv"
    db.put(b"\x00\x01", b"z")                          # keys with NUL bytes keep order
    db.put(b"\x00", b"y")
    db.put(b"\x00\x00", b"w")
    assert [kv.key for _, kv in db.get_all()][:3] == [b"\x00", b"\x00\x00", b"\x00\x01"]


def test_closed(engine, tmp_path):
    db = open_store(engine, tmp_path / "db")
    db.put("a", "1")
    events, cancel = db.watch("a")
    db.close()
    assert list(events) == []
    for call in (lambda: db.get("a"), lambda: db.put("a", "2"), lambda: db.revision,
                 lambda: db.lease(5), lambda: db.compact(1), lambda: db.status()):
        with pytest.raises(kvtrees.ClosedError):
            call()


def test_quota(engine, tmp_path):
    db = open_store(engine, tmp_path / "db", quota_bytes=64 * 1024)
    with pytest.raises(kvtrees.NoSpaceError):
        for i in range(10000):
            db.put("q%d" % i, b"x" * 1000)
    assert db.get("q0")[0] is not None                   # reads work
    assert db.delete("q0")                               # deletes work
    db.compact(db.revision)                              # compaction works
    assert db.get("q1")[0] is not None
    db.check()
    db.close()


def test_reopen_keeps_state(engine, tmp_path):
    db = open_store(engine, tmp_path / "db")
    db.put("a", "1")
    db.put("a", "2")
    db.compact(2)
    h = db.hash_kv()
    db.close()
    db = open_store(engine, tmp_path / "db")
    assert db.revision == 3 and db.status().compact_revision == 2 and db.hash_kv() == h
    assert db.put("b", "x").revision == 4
    db.check()
    db.close()


def test_concurrent_writers_and_readers(db):
    def writer(n):
        for i in range(50):
            db.put("c%d" % n, str(i))
    ths = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for th in ths:
        th.start()
    for _ in range(50):
        rev = db.revision
        r = db.range("c", "d", revision=rev)
        assert all(kv.mod_revision <= rev for kv in r.kvs)
    for th in ths:
        th.join()
    assert db.revision == 201
    assert sum(kv.version for _, kv in db.get_prefix("c")) == 200


def test_same_requests_give_the_same_store(engine, tmp_path):
    """Store.apply is deterministic: the writes recorded from one store (lease ids
    included), applied in order to a fresh one, give the same revisions, results and
    hash_kv."""
    from kvtrees import requests as rq
    a = open_store(engine, tmp_path / "a")
    log = []
    real_apply = a.apply

    def recording(req):
        log.append(req)
        return real_apply(req)
    a.apply = recording
    t = a.transactions
    lease = a.lease(60)
    a.put("k1", "v1", lease=lease)
    a.put("k2", "v2")
    a.transaction([t.version("k1") > 0], [t.put("k3", "v3"), t.delete("k2")], [])
    a.delete_prefix("k3")
    a.revoke_lease(lease)
    a.compact(a.revision)
    log = [r for r in log if isinstance(r, rq.WRITE_REQUESTS)]
    assert {type(r).__name__ for r in log} >= {"PutRequest", "TxnRequest", "LeaseGrantRequest",
                                              "LeaseRevokeRequest", "DeleteRangeRequest",
                                              "CompactRequest", "CompactStepRequest"}
    b = open_store(engine, tmp_path / "b")
    for r in log:
        b.apply(r)
    assert b.revision == a.revision and b.hash_kv() == a.hash_kv()
    assert [(kv.key, kv.value) for _, kv in b.get_all()] == \
        [(kv.key, kv.value) for _, kv in a.get_all()]
    for db in (a, b):
        db.check()
        db.close()
