"""Write groups (native/mvcc/mvcc_put.c): concurrent puts share one log record, each
with its own revision. Many threads put to few keys (so groups meet repeated keys) with
some puts naming a revoked lease (which must fail alone, not their group); afterwards
every acknowledged put has its own revision, the revisions are gap-free, each key's
version counts its puts, a watch saw every revision once and in order, and a reopened
store has the same history. Both engines; each store ends with check()."""

import random
import subprocess
import sys
import textwrap
import threading

import pytest

import kvtrees
from helpers.threads import run_threads

THREADS = 12
PUTS = 150
KEYS = [b"k%d" % i for i in range(5)]


@pytest.mark.parametrize("sync", ["commit", "none"])
def test_concurrent_puts_in_groups(engine_name, tmp_path, sync):
    """sync="commit": puts wait in write groups; "none": puts commit with the GIL held
    (kvtrees._direct) and fall back to the groups when another writer holds the lock."""
    path = str(tmp_path / "s")
    db = kvtrees.open(path, engine=engine_name, sync=sync)
    live = db.lease(60)
    dead = db.lease(60)
    dead_id = dead.id
    dead.revoke()
    start = db.revision
    events, cancel = db.watch_prefix(b"k", start_revision=start + 1)
    results, failures = [], []
    lock = threading.Lock()

    def writer(t: int) -> None:
        rng = random.Random(t)
        for i in range(PUTS):
            k = rng.choice(KEYS)
            lease = rng.choice([None, None, live.id, dead_id])
            try:
                r = db.put(k, b"%d-%d" % (t, i), lease=lease)
            except kvtrees.LeaseNotFoundError:
                with lock:
                    failures.append((k, lease))
                continue
            assert lease != dead_id, "a put naming a revoked lease succeeded"
            with lock:
                results.append((r.revision, k, b"%d-%d" % (t, i), lease or 0))

    run_threads(writer, THREADS)
    assert failures and all(lease == dead_id for _, lease in failures)
    revs = sorted(r for r, _, _, _ in results)
    assert revs == list(range(start + 1, start + 1 + len(results))), "gaps or repeats"
    assert db.revision == revs[-1]
    by_rev = {r: (k, v, lease) for r, k, v, lease in results}
    for k in KEYS:
        mine = sorted(r for r, kk, _, _ in results if kk == k)
        value, kv = db.get(k)
        if not mine:
            assert value is None
            continue
        assert kv.version == len(mine) and kv.mod_revision == mine[-1]
        assert kv.create_revision == mine[0]
        assert (value, kv.lease) == by_rev[mine[-1]][1:]
    seen = []
    for ev in events:
        seen.append((ev.mod_revision, ev.key, ev.value))
        if len(seen) == len(results):
            break
    cancel()
    assert seen == [(r, by_rev[r][0], by_rev[r][1]) for r in revs]
    db.check()
    db.close()
    with kvtrees.open(path, engine=engine_name) as again:
        assert again.revision == revs[-1]
        for r in revs[-20:]:
            k, v, _ = by_rev[r]
            assert again.get(k, revision=r)[0] == v
        again.check()


def test_failed_group_fsync_fails_every_member(engine_name, tmp_path):
    """The fsync of a write group fails: every put of it raises (none may report success
    for a record whose fsync failed), and no revision of theirs becomes visible."""
    fv = kvtrees.FaultVFS()
    db = kvtrees.open(str(tmp_path / "s"), engine=engine_name, sync="commit", _vfs=fv)
    db.put(b"base", b"1")
    before = db.revision
    fv.fail_syncs(1)
    go = threading.Barrier(THREADS)
    outcomes = []

    def writer(t: int) -> None:
        go.wait()
        try:
            outcomes.append(("ok", db.put(b"w%d" % t, b"v").revision))
        except kvtrees.KvtreesError as e:
            outcomes.append(("error", type(e).__name__))
    run_threads(writer, THREADS)
    assert len(outcomes) == THREADS
    assert all(kind == "error" for kind, _ in outcomes), outcomes
    assert db.revision == before
    try:
        db.close()
    except kvtrees.KvtreesError:
        pass
    fv.close()
    with kvtrees.open(str(tmp_path / "s"), engine=engine_name) as again:
        assert again.get(b"base")[0] == b"1"
        again.check()


_WAIT_FOR_WRITER = """
import sys, threading, time, kvtrees
db = kvtrees.open(sys.argv[1], engine=sys.argv[2], sync="none")
base = db.put(b"k", b"0").revision
done = []
with db._writing():                     # another writer holds the store's writer lock
    t = threading.Thread(target=lambda: done.append(db.put(b"k", b"1").revision))
    t.start()
    time.sleep(0.3)                     # the put waits; this thread still runs Python
    assert not done and t.is_alive()
t.join(10)
assert done == [base + 1] and db.get(b"k")[0] == b"1", done
db.check()
db.close()
print("ok")
"""


def test_put_waits_for_the_writer_lock_without_the_gil(engine_name, tmp_path):
    """With sync="none" a put commits with the GIL held only when no other writer holds
    the lock; otherwise it waits with the GIL released. Holding the GIL while blocked
    would deadlock the writer that holds the lock, so this runs in a child process with
    a timeout."""
    script = textwrap.dedent(_WAIT_FOR_WRITER)
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "s"), engine_name],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
