"""Full disks: ENOSPC is NoSpaceError, a refused write is not committed, the handle
keeps reading, and recovery needs no free space.

Two ways of filling the disk: a real small file system (a 20 MiB tmpfs mounted for the
test, filled by a filler file; skipped with the reason when mounting is not permitted)
and the fault VFS's persistent ENOSPC. The decision under test (native/db/db.c): the
log append is the commit point and the only write a commit fails on for lack of
space; data-file writes (write-back, checkpoints) wait in memory and are retried.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

import kvtrees
from conftest import MiB, small_options

VALUE = b"v" * 4000
MAX_PUTS = 20_000                 # far more than 20 MiB holds: the loop must hit ENOSPC
OPTION_SETS = ["default", "small"]  # small: evictions and checkpoints meet the full disk


def engine_key(i: int) -> bytes:
    return f"k{i:06d}".encode()


def store_key(i: int) -> str:
    return f"k{i:06d}"


def options_for(engine: str, which: str) -> dict:
    return small_options(engine) if which == "small" else {}


class SmallFS:
    """A mounted tmpfs of a few MiB, with a filler file that leaves little free."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.filler = os.path.join(root, "filler")

    def free_bytes(self) -> int:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def fill(self, leave: int) -> None:
        """Write a filler file so that about `leave` bytes stay free."""
        size = max(0, self.free_bytes() - leave)
        with open(self.filler, "wb") as f:
            f.truncate(0)
            chunk = b"\0" * MiB
            while size > 0:
                f.write(chunk[:min(size, len(chunk))])
                size -= min(size, len(chunk))

    def free(self) -> None:
        os.unlink(self.filler)

    def give_back(self, nbytes: int) -> None:
        """Free about nbytes by shortening the filler (tmpfs frees the cut pages)."""
        size = os.path.getsize(self.filler)
        os.truncate(self.filler, max(0, size - nbytes))


def _mount_reason(root: str):
    """None if a tmpfs was mounted at root, else why not."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return "no mount/umount command"
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", root],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return f"mount -t tmpfs refused: {(r.stderr or r.stdout).strip()}"
    return None


@pytest.fixture
def small_fs(tmp_path):
    root = str(tmp_path / "mnt")
    os.makedirs(root)
    reason = _mount_reason(root)
    if reason and os.environ.get("KVTREES_REQUIRE_TMPFS") == "1":   # set by .ci/run as root
        pytest.fail(f"KVTREES_REQUIRE_TMPFS=1 but {reason}")
    if reason:
        pytest.skip(reason)
    try:
        yield SmallFS(root)
    finally:
        if subprocess.run(["umount", root], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", root], capture_output=True)


def fill_until_full(put, key) -> tuple:
    """put(key(i), VALUE) until the disk refuses; returns (acknowledged count, error)."""
    for i in range(MAX_PUTS):
        try:
            put(key(i), VALUE)
        except kvtrees.KvtreesError as e:
            return i, e
    pytest.fail(f"{MAX_PUTS} puts of {len(VALUE)} bytes fitted on a 20 MiB file system")


def assert_nospace(err) -> None:
    assert isinstance(err, kvtrees.NoSpaceError), repr(err)
    assert not isinstance(err, kvtrees.FatalError), repr(err)


def verify_engine(eng, acked: int) -> None:
    """Every acknowledged put is present, the refused one (number acked) is not."""
    missing = [i for i in range(acked) if eng.get(engine_key(i)) != VALUE]
    assert not missing, f"{len(missing)} acknowledged puts lost, first {missing[:5]}"
    assert eng.get(engine_key(acked)) is None, "the put that raised NoSpaceError is present"


def verify_store(db, acked: int) -> None:
    missing = [i for i in range(acked) if db.get(store_key(i))[0] != VALUE]
    assert not missing, f"{len(missing)} acknowledged puts lost, first {missing[:5]}"
    assert db.get(store_key(acked))[0] is None, "the put that raised NoSpaceError is present"


def file_sizes(path: str) -> dict:
    return {n: os.path.getsize(os.path.join(path, n)) for n in ("data.kvt", "wal.log")}


# ---- a real full file system ----------------------------------------------------------

@pytest.mark.parametrize("which", OPTION_SETS)
def test_engine_on_full_tmpfs(engine_name, small_fs, which):
    opts = options_for(engine_name, which)
    path = os.path.join(small_fs.root, "db")
    eng = kvtrees.open_engine(path, engine=engine_name, **opts)
    small_fs.fill(leave=6 * MiB)
    acked, err = fill_until_full(eng.put, engine_key)
    assert_nospace(err)
    assert acked > 0
    verify_engine(eng, acked)                       # reads keep working on the handle
    with pytest.raises(kvtrees.NoSpaceError) as again:
        eng.put(engine_key(acked), VALUE)           # refused again, not latched as fatal
    assert not isinstance(again.value, kvtrees.FatalError)
    eng.check()
    eng.close()                                     # a refused checkpoint does not fail close
    before = file_sizes(path)
    # Still full: a read-only and a writable open both succeed (recovery needs no space),
    # and neither grows the files.
    with kvtrees.open_engine(path, read_only=True) as ro:
        verify_engine(ro, acked)
        ro.check()
    with kvtrees.open_engine(path, **opts) as eng:
        verify_engine(eng, acked)
        eng.check()
    after = file_sizes(path)
    assert after["data.kvt"] <= before["data.kvt"], (before, after)
    assert after["wal.log"] <= before["wal.log"], (before, after)   # zeros ahead may go
    small_fs.free()
    with kvtrees.open_engine(path, **opts) as eng:
        verify_engine(eng, acked)
        eng.put(engine_key(acked), VALUE)
        eng.checkpoint()
        eng.check()
    with kvtrees.open_engine(path, **opts) as eng:
        verify_engine(eng, acked + 1)
        eng.check()


@pytest.mark.parametrize("which", OPTION_SETS)
def test_store_on_full_tmpfs(engine_name, small_fs, which):
    opts = options_for(engine_name, which)
    path = os.path.join(small_fs.root, "db")
    db = kvtrees.open(path, engine=engine_name, **opts)
    small_fs.fill(leave=6 * MiB)
    acked, err = fill_until_full(db.put, store_key)
    assert_nospace(err)
    rev = db.revision
    verify_store(db, acked)
    assert db.revision == rev                       # the refused put took no revision
    db.check()
    small_fs.free()                                 # same handle: writes work again
    r = db.put(store_key(acked), VALUE)
    assert r.revision == rev + 1
    db.check()
    db.close()
    with kvtrees.open(path, **opts) as db:
        verify_store(db, acked + 1)
        assert db.revision == rev + 1
        db.check()


def test_checkpoint_on_full_tmpfs(engine_name, small_fs):
    """ENOSPC in data.kvt on a real file system. No checkpoint yet (the default 64 MiB
    wal_limit); the disk fills; 1 MiB is given back and taken by more log records, whose
    pages then wait in memory (data.kvt has no room). A checkpoint now needs that 1 MiB
    again: it raises NoSpaceError and changes nothing. Close, and an open on the
    still-full disk, succeed without growing the files."""
    path = os.path.join(small_fs.root, "db")
    eng = kvtrees.open_engine(path, engine=engine_name)
    small_fs.fill(leave=6 * MiB)
    acked, err = fill_until_full(eng.put, engine_key)
    assert_nospace(err)
    small_fs.give_back(1 * MiB)
    more, err = fill_until_full(lambda k, v: eng.put(engine_key(acked + k), v), int)
    assert_nospace(err)
    assert more > 0
    acked += more
    with pytest.raises(kvtrees.NoSpaceError) as e:
        eng.checkpoint()
    assert "data.kvt" in str(e.value), str(e.value)
    assert eng.stats()["checkpoints"] == 0
    verify_engine(eng, acked)
    eng.check()
    eng.close()
    before = file_sizes(path)
    with kvtrees.open_engine(path) as eng:  # recovery on the full disk
        verify_engine(eng, acked)
        eng.check()
    assert file_sizes(path) == before
    small_fs.free()
    with kvtrees.open_engine(path) as eng:  # now recovery checkpoints
        verify_engine(eng, acked)
        assert eng.stats()["checkpoints"] == 1 and eng.stats()["wal_size"] <= 4096
        eng.check()


def test_store_reopens_on_full_tmpfs(engine_name, small_fs):
    """Closed on a full disk and reopened while it is still full: nothing lost."""
    opts = options_for(engine_name, "small")
    path = os.path.join(small_fs.root, "db")
    db = kvtrees.open(path, engine=engine_name, **opts)
    small_fs.fill(leave=4 * MiB)
    acked, err = fill_until_full(db.put, store_key)
    assert_nospace(err)
    rev = db.revision
    db.close()
    with kvtrees.open(path, read_only=True) as ro:
        verify_store(ro, acked)
        assert ro.revision == rev
        ro.check()
    with kvtrees.open(path, **opts) as db:
        verify_store(db, acked)
        with pytest.raises(kvtrees.NoSpaceError):
            db.put(store_key(acked), VALUE)
        db.check()
    small_fs.free()
    with kvtrees.open(path, **opts) as db:
        verify_store(db, acked)
        assert db.revision == rev
        db.check()


# ---- the fault VFS's ENOSPC -----------------------------------------------------------

def fault_open(path, engine, fv, **kw):
    return kvtrees.open_engine(path, engine=engine, _vfs=fv,
                               **small_options(engine, sync="commit", **kw))


def nospace_from_now(fv) -> None:
    fv.fail_writes(1, persistent=True, nospace=True)


def test_explicit_checkpoint_refused(engine_name, tmp_path):
    """checkpoint() on a full disk raises NoSpaceError and changes nothing; the handle
    reads, refuses writes cleanly, and works again once there is space."""
    path = str(tmp_path / "db")
    fv = kvtrees.FaultVFS()
    eng = fault_open(path, engine_name, fv)
    for i in range(300):
        eng.put(engine_key(i), VALUE)
    nospace_from_now(fv)
    with pytest.raises(kvtrees.NoSpaceError):
        eng.checkpoint()
    verify_engine(eng, 300)
    with pytest.raises(kvtrees.NoSpaceError):
        eng.put(engine_key(300), VALUE)
    with pytest.raises(kvtrees.NoSpaceError):
        with eng.batch() as b:
            b.put(engine_key(300), VALUE)
            b.delete(engine_key(0))
    verify_engine(eng, 300)
    eng.check()
    fv.reset()
    eng.put(engine_key(300), VALUE)
    eng.checkpoint()
    eng.check()
    eng.close()
    fv.close()
    with kvtrees.open_engine(path, **small_options(engine_name)) as eng:
        verify_engine(eng, 301)
        eng.check()


def test_commits_continue_while_data_file_is_full(engine_name, tmp_path):
    """Data-file ENOSPC (write-back, blobs, checkpoints) never fails a commit: the put
    is in the log, the pages wait in memory and the checkpoint is retried; once the log
    is refused too, that put is absent and every earlier one present."""
    path = str(tmp_path / "db")
    fv = kvtrees.FaultVFS()
    eng = fault_open(path, engine_name, fv, wal_limit=256 * 1024)
    for i in range(100):
        eng.put(engine_key(i), VALUE)
    fv.only("data.kvt")
    nospace_from_now(fv)
    n = 1200                                  # ~4.8 MiB: several refused checkpoints
    for i in range(100, n):
        eng.put(engine_key(i), VALUE)
    st = eng.stats()
    assert st["checkpoints_refused"] >= 2, st
    assert st["wal_size"] > 4 * 256 * 1024, st
    with pytest.raises(kvtrees.NoSpaceError):
        eng.checkpoint()
    verify_engine(eng, n)
    eng.check()
    fv.only(None)                             # now the log is full too
    nospace_from_now(fv)
    with pytest.raises(kvtrees.NoSpaceError) as err:
        eng.put(engine_key(n), VALUE)
    assert "wal.log" in str(err.value) and "nothing committed" in str(err.value)
    verify_engine(eng, n)
    eng.check()
    eng.close()
    fv.close()
    with kvtrees.open_engine(path, **small_options(engine_name)) as eng:
        verify_engine(eng, n)
        eng.check()


def test_space_comes_back_on_the_same_handle(engine_name, tmp_path):
    """After refused checkpoints, freeing space lets the next checkpoint through: the
    log is emptied and everything is in the data file."""
    path = str(tmp_path / "db")
    fv = kvtrees.FaultVFS()
    eng = fault_open(path, engine_name, fv, wal_limit=256 * 1024)
    fv.only("data.kvt")
    nospace_from_now(fv)
    for i in range(400):
        eng.put(engine_key(i), VALUE)
    assert eng.stats()["checkpoints_refused"] >= 1
    fv.reset()
    done = eng.stats()["checkpoints"]
    eng.checkpoint()
    st = eng.stats()
    assert st["checkpoints"] == done + 1 and st["wal_size"] <= 4096, st
    eng.check()
    eng.close()
    fv.close()
    with kvtrees.open_engine(path, **small_options(engine_name)) as eng:
        verify_engine(eng, 400)
        eng.check()


def _crashed_store_with_log(path, engine, n) -> None:
    """n puts in the log, none checkpointed, then a simulated power loss."""
    fv = kvtrees.FaultVFS()
    eng = fault_open(path, engine, fv, wal_limit=64 * MiB)
    eng.checkpoint()
    for i in range(n):
        eng.put(engine_key(i), VALUE)
    fv.crash(kvtrees.FaultVFS.CRASH_DROP)
    try:
        eng.close()
    except kvtrees.KvtreesError:
        pass
    fv.close()


def test_recovery_needs_no_free_space(engine_name, tmp_path):
    """A writable open replays the log even when no write at all succeeds: the open
    works, every acknowledged write is there, and the files are left as they were."""
    path = str(tmp_path / "db")
    _crashed_store_with_log(path, engine_name, 600)
    before = file_sizes(path)
    for attempt in range(3):
        fv = kvtrees.FaultVFS()
        nospace_from_now(fv)
        eng = fault_open(path, engine_name, fv, wal_limit=64 * MiB)
        verify_engine(eng, 600)
        eng.check()
        with pytest.raises(kvtrees.NoSpaceError):
            eng.put(engine_key(600), VALUE)
        eng.close()
        fv.close()
        # Nothing grew; the log may lose the zeros it had grown ahead (replay cuts them).
        after = file_sizes(path)
        assert after["data.kvt"] == before["data.kvt"], f"attempt {attempt}: {before} -> {after}"
        assert after["wal.log"] <= before["wal.log"], f"attempt {attempt}: {before} -> {after}"
        before = after
    with kvtrees.open_engine(path, read_only=True) as ro:
        verify_engine(ro, 600)
        ro.check()
    with kvtrees.open_engine(path, **small_options(engine_name)) as eng:
        verify_engine(eng, 600)
        eng.check()


# ---- failed fsyncs: the outcome is unknown, the handle is then unusable ---------------

def put_until_error(eng, start: int = 0):
    for i in range(start, MAX_PUTS):
        try:
            eng.put(engine_key(i), VALUE)
        except kvtrees.KvtreesError as e:
            return i, e
    pytest.fail("no put failed")


def test_failed_checkpoint_fsync_does_not_fail_its_commit(engine_name, tmp_path):
    """The commit that triggers a checkpoint is in the log: a checkpoint failure after it
    (here a failed data.kvt fsync) must not report it as failed. It returns, is durable,
    and the next call reports the dead handle."""
    path = str(tmp_path / "db")
    fv = kvtrees.FaultVFS()
    eng = fault_open(path, engine_name, fv, wal_limit=256 * 1024)
    fv.only("data.kvt")
    fv.fail_syncs(1)
    acked, err = put_until_error(eng)
    assert isinstance(err, kvtrees.FatalError), repr(err)    # the call after the commit
    assert acked > 256 * 1024 // len(VALUE) // 2
    with pytest.raises(kvtrees.FatalError):
        eng.get(engine_key(0))
    eng.close()
    fv.close()
    with kvtrees.open_engine(path, **small_options(engine_name)) as eng:
        verify_engine(eng, acked)
        eng.check()


@pytest.mark.parametrize("nospace", [True, False], ids=["enospc", "eio"])
def test_failed_log_fsync(engine_name, tmp_path, nospace):
    """A failed log fsync raises once (NoSpaceError for ENOSPC) and FatalError after:
    whether that write survives is unknown (the kernel may have kept or dropped it);
    every write acknowledged before it is there after reopening."""
    path = str(tmp_path / "db")
    fv = kvtrees.FaultVFS()
    eng = fault_open(path, engine_name, fv)
    for i in range(50):
        eng.put(engine_key(i), VALUE)
    fv.only("wal.log")
    fv.fail_syncs(1, nospace=nospace)
    with pytest.raises(kvtrees.NoSpaceError if nospace else kvtrees.StorageError) as e:
        eng.put(engine_key(50), VALUE)
    assert not isinstance(e.value, kvtrees.FatalError)
    with pytest.raises(kvtrees.FatalError):
        eng.put(engine_key(51), VALUE)
    eng.close()
    fv.close()
    with kvtrees.open_engine(path, **small_options(engine_name)) as eng:
        assert all(eng.get(engine_key(i)) == VALUE for i in range(50))
        assert eng.get(engine_key(50)) in (None, VALUE)
        assert eng.get(engine_key(51)) is None
        eng.check()
