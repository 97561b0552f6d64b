"""Crash safety: kill -9 of a committing writer, and I/O faults injected by the fault VFS.

The workload (tests/helpers/crash_writer.py) commits numbered batches with
sync="commit". Batch i writes several keys tagged with i, sets b"last" = i and, when
i % 5 == 0, deletes the keys of batch i - 3. After any crash, ``verify_batches`` checks
that the state is exactly "batches 1..L applied, nothing else" for L = int(b"last"):
every acknowledged batch present (L >= last acked), nothing past the one batch that
may have been in flight, and every batch all or nothing (its keys and its deletes).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

import kvtrees
from conftest import small_options
from helpers.batches import batch_keys, batch_value, commit_batch, verify_batches

WRITER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "helpers", "crash_writer.py")


def reopen_and_verify(path: str, engine: str, acked: int, in_flight: int) -> int:
    with kvtrees.open_engine(path, engine=engine, **small_options(engine)) as eng:
        last = verify_batches(eng, acked, in_flight)
        eng.check()
    # Recovery's own checkpoint must leave the same state behind.
    with kvtrees.open_engine(path, engine=engine, **small_options(engine)) as eng:
        assert verify_batches(eng, last, last) == last
        eng.check()
    return last


def test_verifier_catches_damage(engine_name, tmp_path):
    """The verifier itself must fail on a torn batch, a lost batch and a stray key."""
    p = str(tmp_path / "db")
    rng = random.Random(0)
    with kvtrees.open_engine(p, engine=engine_name) as eng:
        for i in range(1, 11):
            commit_batch(eng, i, rng)
        assert verify_batches(eng, 10, 10) == 10
        with pytest.raises(AssertionError):
            verify_batches(eng, 11, 11)                     # acked batch missing
        eng.delete(batch_keys(9)[2])                        # torn batch
        with pytest.raises(AssertionError):
            verify_batches(eng, 10, 10)
        eng.put(batch_keys(9)[2], batch_value(9, 2, rng))
        eng.put(batch_keys(12)[0], batch_value(12, 0, rng))  # a batch past "last"
        with pytest.raises(AssertionError):
            verify_batches(eng, 10, 12)


# ---- kill -9 -------------------------------------------------------------------------------

def parse_output(out: bytes):
    """(first id, highest acked id) from the writer's stdout; None if not ready."""
    start = None
    acked = 0
    for line in out.split(b"\n")[:-1]:          # the last piece may be a partial line
        if line.startswith(b"ready "):
            start = int(line.split()[1])
        elif line.strip():
            acked = max(acked, int(line))
    return start, acked


def kill_round(path, engine, seed, opts, rng) -> tuple:
    proc = subprocess.Popen([sys.executable, WRITER, path, engine, str(seed), json.dumps(opts)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = b""
    try:
        if rng.random() < 0.15:
            time.sleep(rng.uniform(0.0, 0.3))     # may land during import, open or recovery
        else:
            head = proc.stdout.readline()         # "ready N": recovery done
            time.sleep(rng.uniform(0.0, 0.4))
    finally:
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (
        f"writer died by itself (rc {proc.returncode}): {err.decode(errors='replace')[-3000:]}")
    return parse_output(head + out)


@pytest.mark.parametrize("rounds", [20, pytest.param(200, marks=pytest.mark.slow)])
def test_kill9_during_commits(engine_name, tmp_path, rounds):
    path = str(tmp_path / "db")
    # Tiny log limit: checkpoints run every few dozen batches, so kills land in them too.
    opts = small_options(engine_name, wal_limit=128 * 1024)
    rng = random.Random(1234)
    last = 0
    total_acked = 0
    for r in range(rounds):
        start, acked = kill_round(path, engine_name, r, opts, rng)
        if start is None:
            in_flight = last                 # never got to a batch
        else:
            assert start == last + 1, f"round {r}: writer resumed at {start}, expected {last + 1}"
            in_flight = max(acked, last) + 1
        total_acked += max(0, acked - last)
        last = reopen_and_verify(path, engine_name, max(acked, last), in_flight)
    assert total_acked > rounds, "the writer barely committed anything: the test proves little"


# ---- fault VFS ------------------------------------------------------------------------------

BASE_BATCHES = 40          # enough tagged data for a multi-page tree before the fault


def fault_open(path, engine, fv, **kw):
    return kvtrees.open_engine(path, engine=engine, _vfs=fv,
                               **small_options(engine, sync="commit", **kw))


def count_ops(tmp_path, engine, phase):
    """How many writes and fsyncs one commit / one checkpoint of the workload does."""
    fv = kvtrees.FaultVFS()
    path = str(tmp_path / f"count-{phase}")
    eng = fault_open(path, engine, fv)
    rng = random.Random(0)
    for i in range(1, BASE_BATCHES + 1):
        commit_batch(eng, i, rng)
    if phase == "checkpoint":
        eng.checkpoint()
        for i in range(BASE_BATCHES + 1, 2 * BASE_BATCHES + 1):
            commit_batch(eng, i, rng)
    fv.reset()
    if phase == "commit":
        for i in range(2 * BASE_BATCHES + 1, 2 * BASE_BATCHES + 4):
            commit_batch(eng, i, rng)
    else:
        eng.checkpoint()
    counts = {fv.WRITE: fv.count(fv.WRITE), fv.SYNC: fv.count(fv.SYNC)}
    eng.close()
    fv.close()
    return counts


def run_fault_case(path, engine, phase, op, nth, crash, nospace=False, seed=0):
    """Arm one fault, run the phase until it fails, crash (or not), reopen, verify.

    Returns the exception the workload got (None if the fault never fired)."""
    fv = kvtrees.FaultVFS()
    rng = random.Random(seed)
    eng = fault_open(path, engine, fv)
    acked = 0
    for i in range(1, BASE_BATCHES + 1):
        commit_batch(eng, i, rng)
        acked = i
    if phase == "checkpoint":
        eng.checkpoint()
        for i in range(acked + 1, acked + BASE_BATCHES + 1):
            commit_batch(eng, i, rng)
            acked = i
    in_flight = acked
    fv.set(op, nth, persistent=nospace, err=lib_code("KVT_ENOSPC") if nospace else None)
    error = None
    # A full disk fails a commit only at its log append (data-file writes wait in memory
    # for a later checkpoint), so a persistent ENOSPC may need one more batch to surface.
    batches = 4 if nospace else 3
    try:
        if phase == "checkpoint":
            eng.checkpoint()
        for i in range(acked + 1, acked + 1 + batches):
            in_flight = i
            commit_batch(eng, i, rng)
            acked = i
    except kvtrees.KvtreesError as e:
        error = e
    if crash is not None:
        fv.crash(crash, seed)
    try:
        eng.close()
    except kvtrees.KvtreesError:
        pass                                 # closing a dead handle may fail; it must not crash
    assert eng.closed
    fv.close()
    last = reopen_and_verify(path, engine, acked, in_flight)
    if nospace and isinstance(error, kvtrees.NoSpaceError) and crash is None:
        assert last == acked, f"batch {in_flight} failed with {error!r} but was committed"
    return error


def lib_code(name):
    from kvtrees._native import lib
    return getattr(lib, name)


CRASH_MODES = {"drop": 0, "tear": 1, "nocrash": None}


@pytest.mark.parametrize("limit", [24, pytest.param(100_000, marks=pytest.mark.slow)],
                         ids=["sampled", "every-op"])
@pytest.mark.parametrize("crash", list(CRASH_MODES))
@pytest.mark.parametrize("op", ["write", "sync"])
@pytest.mark.parametrize("phase", ["commit", "checkpoint"])
def test_fault_injection(engine_name, tmp_path, phase, op, crash, limit):
    counts = count_ops(tmp_path, engine_name, phase)
    code = kvtrees.FaultVFS.WRITE if op == "write" else kvtrees.FaultVFS.SYNC
    n_ops = counts[code]
    assert n_ops > 0, f"a {phase} did no {op}: {counts}"
    step = max(1, n_ops // limit)
    fired = 0
    for nth in range(1, n_ops + 2, step):
        case_path = str(tmp_path / f"case-{nth}")
        try:
            err = run_fault_case(case_path, engine_name, phase, code, nth,
                                 CRASH_MODES[crash], seed=nth)
        except AssertionError as e:
            raise AssertionError(f"{phase}: failing {op} #{nth} of {n_ops}, crash={crash}: {e}")
        if err is not None:
            fired += 1
            assert not isinstance(err, (kvtrees.CorruptionError, kvtrees.NoSpaceError)), err
    assert fired > 0, "no injected fault ever surfaced as an error"


@pytest.mark.parametrize("phase", ["commit", "checkpoint"])
def test_enospc(engine_name, tmp_path, phase):
    counts = count_ops(tmp_path, engine_name, phase)
    n = counts[kvtrees.FaultVFS.WRITE]
    for nth in sorted({1, max(1, n // 2), n}):
        err = run_fault_case(str(tmp_path / f"nospc-{nth}"), engine_name, phase,
                             kvtrees.FaultVFS.WRITE, nth, None, nospace=True, seed=nth)
        assert isinstance(err, kvtrees.NoSpaceError), f"write #{nth}: got {err!r}"
        assert isinstance(err, kvtrees.KvtreesError)


def test_handle_is_dead_after_failed_fsync(engine_name, tmp_path):
    """A failed fsync is fatal for the handle (no retry): later writes fail too."""
    fv = kvtrees.FaultVFS()
    eng = fault_open(str(tmp_path / "db"), engine_name, fv)
    eng.put(b"a", b"1")
    fv.fail_syncs(1)
    with pytest.raises(kvtrees.KvtreesError):
        eng.put(b"b", b"2")
    with pytest.raises(kvtrees.KvtreesError):
        eng.put(b"c", b"3")
    try:
        eng.close()
    except kvtrees.KvtreesError:
        pass
    fv.close()
    with kvtrees.open_engine(str(tmp_path / "db"), engine=engine_name) as eng:
        assert eng.get(b"a") == b"1"
        assert eng.get(b"c") is None
        eng.check()
