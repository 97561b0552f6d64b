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


def test_reader_never_sees_a_revision_whose_sync_is_in_flight(engine_name, tmp_path):
    """While a writer's fsync is in flight (held open here), readers in other threads see
    the previous revision and value; the write appears once the sync returns."""
    db = kvtrees.open(str(tmp_path / "db"), engine=engine_name, sync="commit")
    db.put("k", "old")
    base = db.revision
    eng = db._eng                     # test-only: hold the store's sync open
    real_sync = eng.sync
    in_sync, release = threading.Event(), threading.Event()

    def held_sync():
        in_sync.set()
        assert release.wait(10)
        return real_sync()
    eng.sync = held_sync
    writer = threading.Thread(target=db.put, args=("k", "new"))
    writer.start()
    try:
        assert in_sync.wait(10)
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
        release.set()
        writer.join(10)
        eng.sync = real_sync
    assert db.revision == base + 1 and db.get("k")[0] == b"new"
    db.check()
    db.close()


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
