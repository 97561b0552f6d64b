"""The durable Raft log (kvtrees.raft.filelog): round trips, crashes and corruption.

Crashes are modelled on the file itself: truncating it (a write torn by a power cut;
at every record boundary and its neighbours, and at a seeded sample of other
offsets) must recover exactly the records that were completely written; a flipped
byte must be reported as corruption (never silently accepted), and with
``repair=True`` recover the records before the damaged one. No store or engine is
involved, so these tests are not parametrized over engines.
"""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from kvtrees.raft import (ConfState, Entry, EntryType, HardState, LogCompactedError,
                          MemoryStorage, RaftError, RaftLogCorruptionError, RaftLogStorageError,
                          Snapshot, SnapshotMetadata, bootstrap)
from kvtrees.raft.filelog import LOG_NAME, SNAP_NAME, FileIO, FileLogStorage


def state_of(s: MemoryStorage):
    """What a restart must reproduce: snapshot, hard state, entries after the snapshot."""
    meta = s.snapshot().metadata
    first = meta.index + 1
    ents = [(e.index, e.term, int(e.type), e.data)
            for e in s.entries(first, s.last_index() + 1)] if s.last_index() >= first else []
    return (meta.index, meta.term, meta.conf_state, s.snapshot().data,
            (s.hard_state.term, s.hard_state.vote, s.hard_state.commit), ents)


class NoSync(FileIO):
    """Recovery logic does not depend on the fsync itself; skipping it keeps the
    byte-by-byte loops fast. Tests of fsync behaviour use the real FileIO."""

    @staticmethod
    def fsync(fd):
        pass


def reopen(path, **kw) -> FileLogStorage:
    kw.setdefault("io", NoSync())
    return FileLogStorage(str(path), **kw)


def single_record_history(path, n=40, seed=1):
    """Saves of one record each (an entry or a hard state), with the file size and the
    state after each: [(size, state)], starting with the empty log."""
    rng = random.Random(seed)
    s = reopen(path)
    hist = [(os.path.getsize(s.log_path), state_of(s))]
    term, last = 1, 0
    for _ in range(n):
        if rng.random() < 0.3:
            term += rng.random() < 0.5
            s.save(HardState(term, rng.randrange(4), min(last, rng.randrange(last + 1))), [])
        else:
            # Sometimes overwrite a suffix (a follower truncating a conflicting tail).
            index = last + 1 if rng.random() < 0.8 or last < 2 else rng.randrange(
                s.hard_state.commit + 1, last + 1)
            if index <= s.hard_state.commit:
                index = last + 1
            s.save(None, [Entry(term, index, os.urandom(rng.randrange(0, 300)))])
            last = index
        hist.append((os.path.getsize(s.log_path), state_of(s)))
    s.close()
    return hist


def offsets_to_try(hist, length, seed=0, sampled=300):
    """Every record boundary and its neighbours, plus a seeded sample of the rest."""
    near = {b + d for b, _ in hist for d in (-1, 0, 1, 5)}
    rest = random.Random(seed).sample(range(length + 1), min(sampled, length + 1))
    return sorted(x for x in near | set(rest) if 0 <= x <= length)


def expected_at(hist, size):
    return [st for sz, st in hist if sz <= size][-1]


def test_round_trip_with_snapshot_and_compaction(tmp_path):
    s = reopen(tmp_path)
    bootstrap(s, [1, 2, 3])
    s.save(HardState(2, 1, 3), [Entry(2, 4, b"a"), Entry(2, 5, b"b", EntryType.CONF_CHANGE)])
    s.create_snapshot(4, ConfState([1, 2, 3], [9]), b"state@4")
    s.compact(4)
    s.save(HardState(3, 2, 5), [Entry(3, 5, b"c"), Entry(3, 6, b"d")])
    before = state_of(s)
    s.close()
    t = reopen(tmp_path)
    assert state_of(t) == before
    assert t.term(4) == 2 and t.first_index() == 5
    t.close()


def test_truncation_at_boundaries_and_sampled_offsets_recovers_complete_records(tmp_path):
    hist = single_record_history(tmp_path / "orig")
    data = (tmp_path / "orig" / LOG_NAME).read_bytes()
    assert len(data) == hist[-1][0]
    case = tmp_path / "case"
    case.mkdir()
    for size in offsets_to_try(hist, len(data)):
        (case / LOG_NAME).write_bytes(data[:size])
        s = reopen(case)
        want = expected_at(hist, max(size, hist[0][0]))
        assert state_of(s) == want, f"truncated to {size}"
        # The torn tail was cut: a new write lands right after the good prefix.
        s.save(HardState(99, 0, 0), [])
        s.close()
        t = reopen(case)
        assert t.hard_state.term == 99
        assert state_of(t)[5] == want[5]
        t.close()


def test_flipped_bytes_are_corruption_and_repair_keeps_the_prefix(tmp_path):
    hist = single_record_history(tmp_path / "orig", n=25, seed=2)
    data = (tmp_path / "orig" / LOG_NAME).read_bytes()
    case = tmp_path / "case"
    case.mkdir()
    starts = [sz for sz, _ in hist]
    for pos in offsets_to_try(hist, len(data) - 1, seed=1):
        bad = bytearray(data)
        bad[pos] ^= 1 << (pos % 8)
        (case / LOG_NAME).write_bytes(bytes(bad))
        with pytest.raises(RaftLogCorruptionError):
            reopen(case)
        if pos < starts[0]:
            continue  # the file header: nothing to repair from
        (case / LOG_NAME).write_bytes(bytes(bad))
        s = reopen(case, repair=True)
        record_start = max(x for x in starts if x <= pos)
        assert state_of(s) == expected_at(hist, record_start), f"flipped byte {pos}"
        s.close()


def test_zero_filled_tail_is_a_torn_write(tmp_path):
    hist = single_record_history(tmp_path, n=10)
    with open(tmp_path / LOG_NAME, "ab") as f:
        f.write(b"\0" * 100)
    s = reopen(tmp_path)
    assert state_of(s) == hist[-1][1]
    s.close()


def test_torn_file_header_starts_an_empty_log(tmp_path):
    (tmp_path / LOG_NAME).write_bytes(b"KVRA")
    s = reopen(tmp_path)
    assert s.last_index() == 0 and s.hard_state.is_empty()
    s.save(HardState(1, 0, 0), [Entry(1, 1, b"x")])
    s.close()
    assert reopen(tmp_path).last_index() == 1


def test_not_a_raft_log(tmp_path):
    (tmp_path / LOG_NAME).write_bytes(b"hello world, definitely not a log")
    with pytest.raises(RaftLogCorruptionError, match="magic"):
        reopen(tmp_path)


def test_corrupt_or_missing_snapshot_file(tmp_path):
    s = reopen(tmp_path)
    bootstrap(s, [1])
    s.save(None, [Entry(1, 2, b"x")])
    s.create_snapshot(2, ConfState([1]), b"sm")
    s.compact(2)
    s.close()
    snap = (tmp_path / SNAP_NAME).read_bytes()
    (tmp_path / SNAP_NAME).write_bytes(snap[:-1] + bytes([snap[-1] ^ 0xFF]))
    with pytest.raises(RaftLogCorruptionError, match="snapshot checksum"):
        reopen(tmp_path)
    os.remove(tmp_path / SNAP_NAME)
    with pytest.raises(RaftLogCorruptionError, match="missing"):
        reopen(tmp_path)


def test_crash_between_snapshot_file_and_log_rewrite_drops_conflicting_tail(tmp_path):
    """A follower installs a snapshot that conflicts with its log; the machine stops
    after raft.snap is renamed but before raft.log is rewritten."""
    s = reopen(tmp_path)
    bootstrap(s, [1, 2, 3])
    s.save(HardState(2, 1, 3), [Entry(2, 4, b"old"), Entry(2, 5, b"old")])
    s.close()
    s = reopen(tmp_path)

    def crash(*a, **k):
        raise KeyboardInterrupt("power cut")

    s._rewrite_log = crash
    snap = Snapshot(b"sm@6", SnapshotMetadata(6, 3, ConfState([1, 2, 3])))
    with pytest.raises(KeyboardInterrupt):
        s.save(HardState(3, 0, 6), [], snap)
    os.close(s._fd)
    t = reopen(tmp_path)
    assert t.snapshot().metadata.index == 6 and t.last_index() == 6
    assert t.hard_state.commit == 6  # the snapshot is committed by definition
    t.close()


def test_gap_is_refused_before_anything_is_written(tmp_path):
    s = reopen(tmp_path)
    bootstrap(s, [1])
    size = os.path.getsize(s.log_path)
    with pytest.raises(RaftError, match="gap"):
        s.save(HardState(1, 0, 1), [Entry(1, 5, b"x")])
    assert os.path.getsize(s.log_path) == size
    s.close()
    assert reopen(tmp_path).last_index() == 1


def test_commit_only_save_skips_the_fsync(tmp_path):
    s = FileLogStorage(str(tmp_path))
    bootstrap(s, [1])
    n = s.fsyncs
    s.save(HardState(1, 0, 1), [], sync=False)
    assert s.fsyncs == n
    s.save(HardState(1, 0, 1), [Entry(1, 2, b"x")], sync=False)  # entries always sync
    assert s.fsyncs == n + 1
    s.close()
    t = FileLogStorage(str(tmp_path))
    assert t.hard_state.commit == 1 and t.last_index() == 2
    t.close()


def test_compact_past_snapshot_is_refused(tmp_path):
    s = reopen(tmp_path)
    bootstrap(s, [1, 2, 3])
    with pytest.raises(LogCompactedError):
        s.compact(2)
    s.close()


class FailingFsync(FileIO):
    def __init__(self):
        self.fail = False

    def fsync(self, fd):
        if self.fail:
            raise OSError(5, "Input/output error")
        os.fsync(fd)


def test_failed_fsync_is_fatal_until_reopen(tmp_path):
    io = FailingFsync()
    s = FileLogStorage(str(tmp_path), io=io)
    bootstrap(s, [1, 2, 3])
    io.fail = True
    with pytest.raises(RaftLogStorageError, match="fsync"):
        s.save(None, [Entry(1, 4, b"x")])
    assert s.last_index() == 3  # memory did not move past what is durable
    io.fail = False
    with pytest.raises(RaftLogStorageError, match="unusable"):
        s.save(None, [Entry(1, 4, b"x")])
    s.close()
    t = FileLogStorage(str(tmp_path))
    assert t.last_index() >= 3 and t.hard_state.commit == 3
    t.close()


# ---- model-based: FileLogStorage == MemoryStorage across any reopen -----------------

class FileLogMachine(RuleBasedStateMachine):
    """Random saves, snapshots, compactions and snapshot installs, mirrored on a
    MemoryStorage; at any point a reopen must give the model's state."""

    def __init__(self):
        super().__init__()
        import tempfile
        self.dir = tempfile.mkdtemp(prefix="kvt-raftlog-")
        self.real = FileLogStorage(self.dir, io=NoSync())
        self.model = MemoryStorage()
        self.term = 1

    @initialize()
    def boot(self):
        bootstrap(self.real, [1, 2, 3])
        bootstrap(self.model, [1, 2, 3])

    @rule(n=st.integers(1, 5), back=st.integers(0, 3), size=st.integers(0, 64),
          bump=st.booleans())
    def save_entries(self, n, back, size, bump):
        self.term += bump
        commit = self.model.hard_state.commit
        start = max(commit + 1, self.model.last_index() + 1 - back, self.model.first_index())
        ents = [Entry(self.term, start + i, os.urandom(size)) for i in range(n)]
        hs = HardState(self.term, 1, min(start + n - 1, commit + n))
        self.real.save(hs, ents)
        self.model.append(ents)
        self.model.set_hard_state(hs)

    @rule(keep=st.integers(0, 4))
    def snapshot_and_compact(self, keep):
        c = self.model.hard_state.commit
        if c <= self.model.snapshot().metadata.index:
            return
        cs = ConfState([1, 2, 3])
        self.real.create_snapshot(c, cs, b"sm@%d" % c)
        self.model.create_snapshot(c, cs, b"sm@%d" % c)
        # After a restart the real log starts right after its snapshot; the model may
        # still hold older entries. Compact both to a point past both starts.
        ci = max(c - keep, self.model.first_index(), self.real.first_index())
        if ci <= c:
            self.real.compact(ci)
            self.model.compact(ci)

    @rule(ahead=st.integers(1, 10))
    def install_snapshot(self, ahead):
        idx = self.model.last_index() + ahead
        self.term += 1
        snap = Snapshot(b"leader@%d" % idx, SnapshotMetadata(idx, self.term, ConfState([1, 2, 3])))
        hs = HardState(self.term, 0, idx)
        self.real.save(hs, [], snap)
        self.model.apply_snapshot(snap)
        self.model.set_hard_state(hs)

    @rule()
    def restart(self):
        self.real.close()
        self.real = FileLogStorage(self.dir, io=NoSync())

    @invariant()
    def same_state(self):
        assert state_of(self.real) == state_of(self.model)

    def teardown(self):
        import shutil
        self.real.close()
        shutil.rmtree(self.dir, ignore_errors=True)


TestFileLogModel = FileLogMachine.TestCase
TestFileLogModel.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
