"""python-etcd3 forms beside kvtrees' own: string operands of version/create/mod
compares, and python-etcd3's lock (Etcd3Lock: `/locks/<name>`, acquire(timeout=10))
next to API.md's Lock (`name/<lease>`, acquire(timeout=None) waits forever).
Both engines; the db fixture ends each test with check()."""

import inspect
import threading
import time

import pytest

import kvtrees
from kvtrees.concurrency import Etcd3Lock, Lock, etcd3_lock
from store_fixtures import ENGINES, db, engine  # noqa: F401


# ---- string operands in compares ------------------------------------------------------

def test_put_if_not_exists_as_python_etcd3_writes_it(db):
    t = db.transactions
    ok, _ = db.transaction(compare=[t.create("k") == "0"], success=[t.put("k", "v1")],
                           failure=[])
    assert ok and db.get("k")[0] == b"v1"
    ok, _ = db.transaction(compare=[t.create("k") == "0"], success=[t.put("k", "v2")],
                           failure=[])
    assert not ok and db.get("k")[0] == b"v1"


def test_string_operands_mean_their_int(db):
    t = db.transactions
    db.put("k", "a")
    rev = db.put("k", "b").revision
    _, kv = db.get("k")
    for cmp, expected in [
            (t.mod("k") == str(rev), True), (t.mod("k") < str(rev), False),
            (t.create("k") == str(kv.create_revision), True),
            (t.create("k") != str(kv.create_revision), False),
            (t.version("k") > "1", True), (t.version("k") == " 2 ", True),
            (t.version("k") == "3", False), (t.version("missing") == "0", True)]:
        ok, _ = db.transaction([cmp], [], [])
        assert ok is expected, cmp
        # the int form agrees
        int_cmp = type(cmp)(cmp.target, cmp.key, cmp.op, int(cmp.operand))
        assert db.transaction([int_cmp], [], [])[0] is expected


def test_bad_operands_are_refused_before_writing(db):
    t = db.transactions
    rev = db.revision
    with pytest.raises(ValueError, match="decimal string"):
        db.transaction([t.version("k") == "one"], [t.put("k", "v")], [])
    with pytest.raises(TypeError):
        db.transaction([t.mod("k") == 1.5], [t.put("k", "v")], [])
    with pytest.raises(TypeError):
        db.transaction([t.create("k") == None], [t.put("k", "v")], [])  # noqa: E711
    assert db.revision == rev and db.get("k")[0] is None


# ---- locks: API.md's Lock and python-etcd3's beside it ------------------------------

def test_lock_without_timeout_waits_until_released(db):
    """API.md: acquire() with no timeout waits as long as it takes (not 10 s)."""
    assert inspect.signature(Lock.acquire).parameters["timeout"].default is None
    holder = db.lock("res")
    assert holder.acquire()
    got = threading.Event()
    waiter = db.lock("res")
    t = threading.Thread(target=lambda: waiter.acquire() and got.set())
    t.start()
    assert not got.wait(0.5)              # still waiting while held
    holder.release()
    assert got.wait(10)
    t.join(10)
    assert waiter.is_acquired()
    waiter.release()


def test_etcd3_lock_keys_values_and_default_timeout(db):
    assert inspect.signature(Etcd3Lock.acquire).parameters["timeout"].default == 10
    lock = etcd3_lock(db, "res", ttl=30)
    assert lock.key == b"/locks/res"
    with pytest.raises(ValueError):
        lock.refresh()                     # as python-etcd3: no lease before acquire
    assert lock.acquire()
    value, kv = db.get("/locks/res")
    assert value == lock.uuid and kv.lease == lock.lease.id
    assert lock.is_acquired() and lock.refresh() > 0
    ours = db.lock("res")
    assert ours.acquire(timeout=0.1)       # API.md's Lock uses other keys
    other = etcd3_lock(db, "res")
    leases = db.status().leases
    assert other.acquire(timeout=0.2) is False
    assert not other.is_acquired()
    assert db.status().leases == leases    # the failed try gave its lease back
    assert other.release() is False        # not ours: the key stays
    assert db.get("/locks/res")[0] == lock.uuid
    assert lock.release() is True
    assert db.get("/locks/res")[0] is None
    assert other.acquire(timeout=1)
    other.release()
    ours.release()


def test_etcd3_lock_waiter_wakes_on_release(db):
    holder = Etcd3Lock(db, b"job")
    assert holder.acquire()
    order = []
    waiter = Etcd3Lock(db, b"job")

    def wait():
        order.append(("acquired", waiter.acquire(timeout=None)))

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.3)
    order.append(("released", holder.release()))
    t.join(10)
    assert order == [("released", True), ("acquired", True)]
    assert waiter.is_acquired()
    assert not holder.is_acquired()
    waiter.release()


def test_etcd3_lock_context_manager(db):
    with etcd3_lock(db, "cm") as lock:
        assert lock.is_acquired()
        assert db.get("/locks/cm")[0] == lock.uuid
    assert db.get("/locks/cm")[0] is None
    assert db.status().leases == 0


def test_compacted_error_has_both_names(db):
    for i in range(5):
        db.put("k", str(i))
    rev = db.revision
    db.compact(rev - 1)
    with pytest.raises(kvtrees.CompactedError) as e:
        db.get("k", revision=rev - 3)
    assert e.value.compact_revision == rev - 1        # API.md's name
    assert e.value.compacted_revision == rev - 1      # python-etcd3's name
