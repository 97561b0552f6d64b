"""Full leaves logged by reference (native/db/paged.c): under sync "none" an ascending
put_many logs the pages its entries fill instead of the entries. Recovery must bring
back every acknowledged op from those pages, also after the pages' leaves were written
again in the same generation; a page the file lost ends the log there (all or nothing,
a prefix of the batches); and sync() makes the pages durable before the log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

import kvtrees
from conftest import small_options
from helpers.paged_ops import LOAD_BATCH, load_batches, model, model_op, paged_ops

WRITER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "helpers", "paged_writer.py")
KEYS = (b"k", b"l")


def run_writer(path, engine, seed, opts, how="exit", kill_after=None):
    """Highest acknowledged op index (-1: none)."""
    proc = subprocess.Popen([sys.executable, WRITER, path, engine, str(seed), json.dumps(opts),
                             how], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    acked = -1
    for line in proc.stdout:
        if line.strip() == b"done":
            break
        acked = int(line)
        if kill_after is not None and acked >= kill_after:
            break
    if how == "wait" or kill_after is not None:
        proc.send_signal(signal.SIGKILL)
    proc.stdout.close()
    err = proc.stderr.read()
    proc.stderr.close()
    proc.wait()
    assert kill_after is not None or proc.returncode == 0, err.decode()
    return acked


def assert_state(eng, want: dict) -> None:
    got = dict(eng.items(*KEYS))
    missing = sorted(set(want) - set(got))[:3]
    extra = sorted(set(got) - set(want))[:3]
    wrong = sorted(k for k in want.keys() & got.keys() if want[k] != got[k])[:3]
    assert not missing and not extra and not wrong, (missing, extra, wrong)


@pytest.mark.parametrize("wal_limit", [1 << 20, 64 << 20], ids=["checkpoints", "one-gen"])
def test_acknowledged_ops_survive_the_process(engine_name, tmp_path, wal_limit):
    """Exit without close: recovery replays logged pages, including leaves overwritten
    and merged after they were logged (each must have been copied, not changed)."""
    path = str(tmp_path / "db")
    opts = small_options(engine_name, wal_limit=wal_limit)
    ops = paged_ops(7)
    acked = run_writer(path, engine_name, 7, opts)
    assert acked == len(ops) - 1
    log_bytes = os.path.getsize(os.path.join(path, "wal.log"))
    with kvtrees.open_engine(path, engine=engine_name, **opts) as eng:
        assert_state(eng, model(ops))
        eng.check()
    if engine_name == "btree" and wal_limit > (8 << 20):
        # the test is about pages named by the log: the loads' entries must not be in it
        loaded = sum(len(k) + len(v) for op in ops if op[0] == "many" for k, v in op[1])
        assert log_bytes < loaded // 4, (log_bytes, loaded)
    with kvtrees.open_engine(path, engine=engine_name, **opts) as eng:
        assert_state(eng, model(ops))
        eng.check()


def test_kill9_mid_load(engine_name, tmp_path):
    path = str(tmp_path / "db")
    opts = small_options(engine_name, wal_limit=64 << 20)
    ops = paged_ops(11)
    acked = run_writer(path, engine_name, 11, opts, kill_after=len(ops) // 2)
    with kvtrees.open_engine(path, engine=engine_name, **opts) as eng:
        got = dict(eng.items(*KEYS))
        eng.check()
    # the writer ran on until killed: the state is ops[:n] for some n past the last ack
    assert 0 <= acked < len(ops) - 1
    m = model(ops[:acked + 1])
    matches = []
    for n in range(acked + 1, len(ops) + 1):
        if len(m) == len(got) and m == got:
            matches.append(n)
        if n < len(ops):
            model_op(m, ops[n])
    assert matches, f"state is not the ops up to any point after the last ack ({acked})"


def test_lost_pages_end_the_log(engine_name, tmp_path):
    """The OS lost every data-file write since the checkpoint but kept the log (sync
    "none" allows it): recovery must stop at the first record naming a lost page, and
    the state is then exactly a prefix of the load batches."""
    path = str(tmp_path / "db")
    opts = small_options(engine_name, wal_limit=64 << 20)
    batches = 12
    loads = load_batches(batches)
    with kvtrees.open_engine(path, engine=engine_name, sync="none", **opts) as eng:
        eng.put_many(loads[0])
    ckpt_size = os.path.getsize(os.path.join(path, "data.kvt"))
    code = ("import sys, os; sys.path.insert(0, %r); import kvtrees\n"
            "from helpers.paged_ops import load_batches\n"
            "eng = kvtrees.open_engine(%r, engine=%r, sync='none', **%r)\n"
            "for p in load_batches(%d)[1:]: eng.put_many(p)\n"
            "os._exit(0)\n") % (os.path.dirname(os.path.abspath(__file__)), path, engine_name,
                                opts, batches)
    subprocess.run([sys.executable, "-c", code], check=True)
    with open(os.path.join(path, "data.kvt"), "r+b") as f:
        f.truncate(ckpt_size)
    with kvtrees.open_engine(path, engine=engine_name, **opts) as eng:
        got = dict(eng.items(*KEYS))
        eng.check()
    prefixes = [dict(kv for p in loads[:n] for kv in p) for n in range(1, batches + 1)]
    assert got in prefixes, f"not a prefix of the batches: {len(got)} keys"
    if engine_name == "btree":
        assert len(got) < batches * LOAD_BATCH, "no record named a page: the test proves nothing"


def test_sync_makes_logged_pages_durable(engine_name, tmp_path):
    """A simulated power loss after sync() keeps every batch up to the sync: the data
    file's pages the log names were fsynced before the log."""
    path = str(tmp_path / "db")
    opts = small_options(engine_name, wal_limit=64 << 20)
    fv = kvtrees.FaultVFS()
    eng = kvtrees.open_engine(path, engine=engine_name, sync="none", _vfs=fv, **opts)
    loads = load_batches(10)
    for p in loads[:6]:
        eng.put_many(p)
    eng.sync()
    for p in loads[6:]:
        eng.put_many(p)
    fv.crash(fv.CRASH_DROP)
    try:
        eng.close()
    except kvtrees.KvtreesError:
        pass
    fv.close()
    with kvtrees.open_engine(path, engine=engine_name, **opts) as eng:
        got = dict(eng.items(*KEYS))
        eng.check()
    prefixes = [dict(kv for p in loads[:n] for kv in p) for n in range(6, 11)]
    assert got in prefixes, f"batches up to the sync lost: {len(got)} keys"


def test_crash_during_recovery_keeps_logged_pages(engine_name, tmp_path):
    """A recovery that fails before its checkpoint (here: the data file's first fsync)
    must leave the pages the log names where they were: not cut off with the data
    file's unsaved tail, not overwritten by pages the replay allocated. The next open
    recovers every acknowledged op."""
    path = str(tmp_path / "db")
    opts = small_options(engine_name, wal_limit=64 << 20)
    ops = paged_ops(5)
    assert run_writer(path, engine_name, 5, opts) == len(ops) - 1
    fv = kvtrees.FaultVFS()
    fv.only("data.kvt")
    fv.fail_syncs(1)
    with pytest.raises(kvtrees.KvtreesError):
        kvtrees.open_engine(path, engine=engine_name, _vfs=fv, **opts)
    fv.close()
    with kvtrees.open_engine(path, engine=engine_name, **opts) as eng:
        assert_state(eng, model(ops))
        eng.check()


def test_full_disk_recovery_keeps_logged_pages(engine_name, tmp_path):
    """Recovery on a full disk defers its checkpoint (open succeeds, the log is kept);
    closing then gives back the space of the failed checkpoint, which must not cut the
    pages the log still names."""
    path = str(tmp_path / "db")
    opts = small_options(engine_name, wal_limit=64 << 20)
    ops = paged_ops(3)
    assert run_writer(path, engine_name, 3, opts) == len(ops) - 1
    fv = kvtrees.FaultVFS()
    fv.only("data.kvt")
    fv.fail_writes(1, persistent=True, nospace=True)
    eng = kvtrees.open_engine(path, engine=engine_name, _vfs=fv, **opts)
    assert_state(eng, model(ops))
    try:
        eng.close()
    except kvtrees.NoSpaceError:
        pass
    fv.close()
    with kvtrees.open_engine(path, engine=engine_name, **opts) as eng:
        assert_state(eng, model(ops))
        eng.check()
