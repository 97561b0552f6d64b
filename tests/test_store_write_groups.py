"""Write groups (native/mvcc/mvcc_put.c): concurrent puts share one log record, each
with its own revision. Many threads put to few keys (so groups meet repeated keys) with
some puts naming a revoked lease (which must fail alone, not their group); afterwards
every acknowledged put has its own revision, the revisions are gap-free, each key's
version counts its puts, a watch saw every revision once and in order, and a reopened
store has the same history. Both engines; each store ends with check()."""

import random
import threading

import kvtrees
from helpers.threads import run_threads

THREADS = 12
PUTS = 150
KEYS = [b"k%d" % i for i in range(5)]


def test_concurrent_puts_in_groups(engine_name, tmp_path):
    path = str(tmp_path / "s")
    db = kvtrees.open(path, engine=engine_name, sync="commit")
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
