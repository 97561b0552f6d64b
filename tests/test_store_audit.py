"""Divergences from etcd 3.4 (shared/guide/etcd-3.4-behaviour.txt) and API.md section 3
found by the store audit, one test each, on every engine. Every test ends with
db.check() (fixture teardown)."""

import time

import pytest

from etcd_model import open_store  # noqa: F401
from store_fixtures import ENGINES, db, engine, kvtrees  # noqa: F401


def keys(kvs):
    return [kv.key for kv in kvs]


# ---- leases: `lease grant 60` + `timetolive` -> remaining(59s); revoked -> TTL -1, granted 0
def test_lease_remaining_rounds_down_and_revoked_lease_reads_as_etcd(db):
    lease = db.lease(60)
    assert lease.remaining_ttl == 59                  # etcd truncates, never rounds up
    assert lease.granted_ttl == 60 and lease.ttl == 60
    db.put("lk", "lv", lease=lease)
    assert lease.refresh() == 60                      # keep-alive answers the granted TTL
    assert lease.revoke()
    assert (lease.remaining_ttl, lease.granted_ttl, lease.keys) == (-1, 0, [])
    with pytest.raises(kvtrees.LeaseNotFoundError):
        lease.refresh()


def test_lease_ttl_bounds(db):
    assert db.lease(1).ttl == 2                       # etcd's minimum
    rev, n = db.revision, len(db.leases())
    with pytest.raises(ValueError):
        db.lease(9_000_000_001)                       # etcd: "too large lease TTL"
    with pytest.raises(ValueError):
        db.lease(0)
    with pytest.raises(TypeError):
        db.lease("60")
    assert db.revision == rev and len(db.leases()) == n
    assert db.lease(9_000_000_000).granted_ttl == 9_000_000_000


def test_lease_object_or_int_everywhere(db):
    t = db.transactions
    lease = db.lease(60)
    assert db.put_if_not_exists("a", "1", lease=lease)
    ok, _ = db.transaction([t.lease("a") == lease], [t.put("b", "2", lease=lease.id)], [])
    assert ok
    assert db.transaction([t.lease("a") == lease.id], [], [])[0]
    assert db.get_lease(lease).keys == [b"a", b"b"]
    assert db.refresh_lease(lease) == 60
    assert db.revoke_lease(lease.id)
    assert db.get("a") == (None, None) and db.get("b") == (None, None)


# ---- range: keys_only clears values after sorting (etcd's apply layer sorts first)
def test_keys_only_sorted_by_value(db):
    db.put("b", "1")
    db.put("a", "2")
    db.put("c", "0")
    r = db.range("a", "z", sort_target="value", keys_only=True)
    assert keys(r.kvs) == [b"c", b"b", b"a"] and all(kv.value == b"" for kv in r.kvs)
    got = list(db.get_all(sort_target="value", sort_order="descend", keys_only=True))
    assert [kv.key for _, kv in got] == [b"a", b"b", b"c"] and {v for v, _ in got} == {b""}
    t = db.transactions
    _, resp = db.transaction([], [t.get("a", "z", sort_target="value", keys_only=True,
                                        limit=2)], [])
    assert [kv.key for _, kv in resp[0]] == [b"c", b"b"]
    assert {kv.value for _, kv in resp[0]} == {b""}


# ---- get_prefix / get_range / get_all: errors at the call, revision fixed at the call
def test_range_iterators_validate_at_call(engine, db):
    for i in range(3):
        db.put("p%d" % i, "v")
    with pytest.raises(kvtrees.FutureRevisionError):
        db.get_prefix("p", revision=999)
    with pytest.raises(TypeError):
        db.get_prefix("p", limit="2")
    with pytest.raises(ValueError):
        db.get_range("p", "q", limit=-1)
    with pytest.raises(ValueError):
        db.get_all(sort_order="sideways")
    it = db.get_prefix("p")                           # reads at revision 4
    sorted_it = db.get_prefix("p", sort_target="mod", sort_order="descend")
    db.put("p9", "new")
    db.delete("p0")
    assert [kv.key for _, kv in it] == [b"p0", b"p1", b"p2"]
    assert [kv.key for _, kv in sorted_it] == [b"p2", b"p1", b"p0"]
    db.compact(db.revision)
    with pytest.raises(kvtrees.CompactedError):
        db.get_prefix("p", revision=2)
    assert [kv.key for _, kv in db.get_prefix("p", limit=None)] == [b"p1", b"p2", b"p9"]


def test_range_iterators_closed_at_call(engine, tmp_path):
    db = open_store(engine, tmp_path / "db")
    db.put("a", "1")
    db.close()
    for call in (lambda: db.get_prefix("a"), lambda: db.get_range("a", "b"),
                 lambda: db.get_all()):
        with pytest.raises(kvtrees.ClosedError):
            call()


# ---- keys too long to store: etcd reads them as absent, ranges take any bound
def test_over_long_keys_read_as_absent(db):
    base = b"k" * 4080
    k1, k2 = base + b"a", base + b"b"                 # near the longest storable key
    db.put(k1, "1")
    db.put(k2, "2")
    rev = db.revision
    long = base + b"a" + b"x" * 1000                  # too long for the engine
    assert db.get(long) == (None, None)
    assert db.delete(long) is False and db.revision == rev
    t = db.transactions
    assert db.transaction([t.version(long) == 0, t.create(long) == 0], [], [])[0]
    assert keys(db.range(long, base + b"c").kvs) == [k2]
    assert keys(db.range(long, b"\x00").kvs) == [k2]
    assert keys(db.range(k1, base + b"a" + b"\x00" * 2000).kvs) == [k1]
    assert keys(db.range(b"a", base + b"b" + b"\x00" * 2000).kvs) == [k1, k2]
    assert keys(db.range(b"a", long, sort_order="descend").kvs) == [k1]
    assert [kv.key for _, kv in db.get_range(long, base + b"c" * 900)] == [k2]
    r = db.delete_range(long, base + b"c" * 900)
    assert r.deleted == 1 and db.get(k2) == (None, None) and db.get(k1)[0] == b"1"
    with pytest.raises(kvtrees.TooLargeError):
        db.put(long, "x")


# ---- delete: prev_kvs only with prev_kv (etcd's DeleteRange)
def test_delete_prev_kvs_only_when_asked(db):
    for k in ("d/a", "d/b", "e/a", "e/b", "f"):
        db.put(k, k)
    r = db.delete_prefix("d")
    assert (r.deleted, r.prev_kvs) == (2, [])
    r = db.delete_prefix("e", prev_kv=True)
    assert r.deleted == 2 and [kv.value for kv in r.prev_kvs] == [b"e/a", b"e/b"]
    db.put("g", "1")
    r = db.delete_range("f", "h", prev_kv=True)
    assert [kv.key for kv in r.prev_kvs] == [b"f", b"g"] and r.revision == db.revision
    db.put("h", "1")
    assert db.delete("h", return_response=True).prev_kvs == []
    db.put("h", "2")
    assert db.delete("h", prev_kv=True, return_response=True).prev_kvs[0].value == b"2"


# ---- txn: a nested txn gets the op budget its parent left (etcd's checkTxnRequest)
def test_nested_txn_op_budget(db):
    t = db.transactions
    outer = [t.put("o%d" % i, "v") for i in range(100)]
    rev = db.revision
    with pytest.raises(ValueError):                  # 128 - 101 = 27 left for the nested
        db.transaction([], outer + [t.txn([], [t.put("n%d" % i, "v") for i in range(28)])])
    assert db.revision == rev and list(db.get_all()) == []
    ok, resp = db.transaction([], outer + [t.txn([], [t.put("n%d" % i, "v")
                                                       for i in range(27)])])
    assert ok and resp[-1][0] and db.revision == rev + 1
    assert db.range("n", "o", count_only=True).count == 27


def test_txn_get_options(db):
    t = db.transactions
    db.put("x", "1")
    db.put("x", "2")
    db.put("y", "3")
    with pytest.raises(TypeError):
        t.get("x", count_only=True)                  # rejected when built, not mid-txn
    with pytest.raises(TypeError):
        t.get("x", bogus=1)
    ok, resp = db.transaction([], [t.put("x", "9"), t.get("x"), t.get("x", revision=2),
                                   t.get("x", "z", keys_only=True, limit=1)], [])
    assert ok
    assert resp[1][0][0] == b"9"                     # sees the txn's own put
    assert resp[2][0][0] == b"1"                     # revision=: the committed past
    assert [(v, kv.key) for v, kv in resp[3]] == [(b"", b"x")]
    with pytest.raises(kvtrees.FutureRevisionError):
        db.transaction([], [t.put("z", "1"), t.get("x", revision=999)], [])
    assert db.get("z") == (None, None)


# ---- watch filters spelled as python-etcd3 does (WatchCreateRequest.NOPUT = 0, NODELETE = 1)
def test_watch_filters_as_python_etcd3_ints(db):
    db.put("w", "a")
    db.delete("w")
    db.put("w", "b")
    events, cancel = db.watch("w", start_revision=2, filters=[0])
    ev = events.get(5)
    cancel()
    assert isinstance(ev, kvtrees.DeleteEvent) and ev.mod_revision == 3
    events, cancel = db.watch("w", start_revision=2, filters=[1])
    assert [events.get(5).value for _ in range(2)] == [b"a", b"b"]
    cancel()
    for bad in ([7], [True], ["nothing"]):
        with pytest.raises(ValueError):
            db.watch("w", filters=bad)


# ---- lock / election names: str and bytes name the same lock
def test_lock_and_election_names_str_or_bytes(db):
    lock = db.lock("same")
    assert lock.acquire(timeout=1)
    assert db.lock(b"same").acquire(timeout=0.1) is False
    lock.release()
    e1, e2 = db.election(b"el"), db.election("el")
    assert e1.campaign("p1", timeout=1)
    assert e2.leader().value == b"p1"
    e1.resign()
    assert list(db.get_prefix("same")) == [] and list(db.get_prefix("el")) == []


# ---- compaction arguments
def test_compact_rejects_negative_revision(db):
    db.put("a", "1")
    with pytest.raises(ValueError):
        db.compact(-1)
    with pytest.raises(TypeError):
        db.compact("2")
    assert db.status().compact_revision == 0
    db.compact(2)
    assert db.status().compact_revision == 2


# ---- lease expiry still happens on time with the rounded-down remaining_ttl
def test_expired_lease_deletes_keys_in_one_revision(db):
    lease = db.lease(1)                               # granted 2 s
    db.put("e1", "x", lease=lease)
    db.put("e2", "y", lease=lease)
    rev = db.revision
    events, cancel = db.watch_prefix("e", start_revision=rev + 1)
    deadline = time.monotonic() + 8
    while db.get("e1")[0] is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    got = [events.get(5), events.get(5)]
    cancel()
    assert db.revision == rev + 1
    assert [(type(e).__name__, e.key, e.mod_revision) for e in got] == [
        ("DeleteEvent", b"e1", rev + 1), ("DeleteEvent", b"e2", rev + 1)]
    assert (lease.remaining_ttl, lease.granted_ttl) == (-1, 0)
