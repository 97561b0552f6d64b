"""Durable visibility: with sync="commit", no reader sees a revision before its log record
is fsynced (a crash could still lose it). Both engines; each test ends with check()."""

import threading

import pytest

import kvtrees


def _open_faulty(path, engine_name, fv):
    return kvtrees.open(path, engine=engine_name, sync="commit", _vfs=fv)


def test_failed_fsync_leaves_revision_and_value_invisible(engine_name, tmp_path):
    """The put whose fsync fails raises, and neither its revision nor its value is ever
    visible: not on the failing handle, not after reopening."""
    path = str(tmp_path / "db")
    fv = kvtrees.FaultVFS()
    db = _open_faulty(path, engine_name, fv)
    db.put("a", "1")
    rev_before = db.revision
    fv.fail_syncs(1)
    with pytest.raises(kvtrees.KvtreesError):
        db.put("b", "2")
    assert db.revision == rev_before          # the unsynced revision is not shown
    try:
        assert db.get("b") == (None, None)
    except kvtrees.KvtreesError:
        pass                                  # a dead handle may refuse reads
    try:
        db.close()
    except kvtrees.KvtreesError:
        pass
    fv.close()
    with kvtrees.open(path, engine=engine_name) as db:
        assert db.get("a")[0] == b"1"
        assert db.revision >= rev_before
        db.check()


_WRITES = {
    "put": lambda db, lease: db.put("k", "new"),                 # the native put path
    "put_lease": lambda db, lease: db.put("k", "new", lease=lease),   # the Python path
    "txn": lambda db, lease: db.transaction([], [db.transactions.put("k", "new")], []),
}


@pytest.mark.parametrize("write", sorted(_WRITES))
def test_reader_never_sees_a_revision_whose_sync_is_in_flight(engine_name, tmp_path, write):
    """While a writer's fsync is held open (fault VFS), readers in other threads see the
    previous revision and value; the write appears once the sync returns."""
    fv = kvtrees.FaultVFS()
    db = _open_faulty(str(tmp_path / "db"), engine_name, fv)
    db.put("k", "old")
    lease = db.lease(60)              # granted before the hold (a grant fsyncs too)
    base = db.revision
    held = fv.held_syncs()
    fv.hold_syncs()
    writer = threading.Thread(target=_WRITES[write], args=(db, lease))
    writer.start()
    try:
        for _ in range(1000):         # until the writer's fsync is waiting
            if fv.held_syncs() > held:
                break
            threading.Event().wait(0.01)
        assert fv.held_syncs() > held
        seen = []

        def read():
            seen.append((db.revision, db.get("k")[0], db.range(b"k").revision))
        readers = [threading.Thread(target=read) for _ in range(4)]
        for t in readers:
            t.start()
        for t in readers:
            t.join(10)
        assert seen == [(base, b"old", base)] * 4
    finally:
        fv.hold_syncs(False)
        writer.join(10)
    assert db.revision == base + 1 and db.get("k")[0] == b"new"
    db.check()
    db.close()
    fv.close()


def test_concurrent_writers_revisions_gap_free_and_visible_in_order(engine_name, tmp_path):
    """16 writer threads: every put gets its own revision, the revisions are gap-free,
    and a reader polling db.revision only ever sees it grow, each value it reads at a
    revision matching what the writers acknowledged."""
    db = kvtrees.open(str(tmp_path / "db"), engine=engine_name, sync="commit")
    start = db.revision
    acked: dict = {}
    lock = threading.Lock()
    stop = threading.Event()
    observed: list = []

    def write(t):
        for i in range(40):
            r = db.put(f"w{t}/{i}", f"{t}:{i}").revision
            with lock:
                acked[r] = (f"w{t}/{i}".encode(), f"{t}:{i}".encode())

    def observe():
        while not stop.is_set():
            observed.append(db.revision)
    obs = threading.Thread(target=observe)
    obs.start()
    writers = [threading.Thread(target=write, args=(t,)) for t in range(16)]
    for t in writers:
        t.start()
    for t in writers:
        t.join(60)
    stop.set()
    obs.join(10)
    assert sorted(acked) == list(range(start + 1, start + 1 + 16 * 40))
    assert observed == sorted(observed)
    for rev, (key, value) in acked.items():
        got, kv = db.get(key, revision=rev)
        assert got == value and kv.mod_revision == rev
    db.check()
    db.close()
