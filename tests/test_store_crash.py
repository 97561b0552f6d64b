"""Crash test: SIGKILL a writer subprocess mid-workload (puts, deletes, txns, leases,
compactions), reopen, and check revisions, versions, acknowledged writes and hash_kv
against a reference store that replays the same deterministic workload."""

import os
import signal
import subprocess
import sys
import time

import pytest

from etcd_model import load_kvtrees, open_store

kvtrees, ENGINES = load_kvtrees()
REAL = [e for e in ENGINES if e != "mem"]   # a MemEngine cannot survive its process

WRITER = r"""
import sys
sys.path[:0] = [%(tests)r]
from etcd_model import load_kvtrees, open_store
load_kvtrees()
from test_store_crash import workload
db = open_store(%(engine)r, %(path)r)
for i, rev in workload(db, 10**9):
    print(i, rev, flush=True)
"""


def workload(db, n):
    """Deterministic: op i writes exactly one revision; every 40 ops a compaction."""
    t = db.transactions
    for i in range(n):
        key = "k%d" % (i % 13)
        if i % 7 == 3:
            ok, _ = db.transaction([t.version(key) > 0], [t.delete(key)],
                                   [t.put(key, "t%d" % i)])
            rev = db.revision
        else:
            rev = db.put(key, "v%d" % i).revision
        if i % 40 == 39:
            db.compact(rev - 20)
        yield i, rev


@pytest.mark.skipif(not REAL, reason="needs the native engines")
@pytest.mark.parametrize("engine", REAL)
@pytest.mark.parametrize("delay", [0.3, 0.8])
def test_sigkill_mid_workload(engine, delay, tmp_path):
    path = str(tmp_path / "db")
    code = WRITER % {"tests": os.path.dirname(__file__), "engine": engine, "path": path}
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    acked = []
    # The kill clock starts at the first acknowledged write, not at spawn: start-up
    # time on a loaded machine must not decide whether the writer got anywhere.
    first = p.stdout.readline()
    if first.endswith("\n"):
        acked.append(tuple(map(int, first.split())))
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line.endswith("\n"):
            break
        acked.append(tuple(map(int, line.split())))
    p.send_signal(signal.SIGKILL)
    p.wait()
    # a line cut by the kill (no newline, or one field) was never fully acknowledged
    acked += [tuple(map(int, ln.split())) for ln in p.stdout.read().splitlines(keepends=True)
              if ln.endswith("\n") and len(ln.split()) == 2]
    assert acked, "writer acknowledged nothing"

    db = open_store(engine, path)
    db.check()
    last_i, last_rev = acked[-1]
    assert db.revision >= last_rev                       # acknowledged writes survived
    done = db.revision - 1                               # ops applied (one revision each)
    ref = open_store(engine, str(tmp_path / "ref"))
    for _ in workload(ref, done):
        pass
    # the kill may fall between a put and its compaction: level the compaction points
    c_db, c_ref = db.status().compact_revision, ref.status().compact_revision
    if c_ref < c_db:
        ref.compact(c_db)
    elif c_db < c_ref:
        db.compact(c_ref)
    assert db.hash_kv() == ref.hash_kv()
    for (v, kv), (rv, rkv) in zip(db.get_all(), ref.get_all(), strict=True):
        assert (v, kv) == (rv, rkv)
    db.close()
    db = open_store(engine, path)                        # a second reopen changes nothing
    assert db.hash_kv() == ref.hash_kv()
    db.check()
    ref.check()
    db.close()
    ref.close()

