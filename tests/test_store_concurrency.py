"""16 threads at once on one store: puts, gets, CAS txns, deletes and a watch. Revisions
must stay exact: every write gets its own revision, with no gap and no duplicate, every
read sees a consistent version, the watch sees every revision once in order, and the
store's own invariants (check(), hash after reopen) hold. Guards the head cache (newest
revision per key) and the group-commit path against races."""

import random
import threading

import pytest

from etcd_model import load_kvtrees
from etcd_model import open_store as _open_store

kvtrees, ENGINES = load_kvtrees()


def open_store(engine, path, **opts):
    if engine == "mem":            # the pure-Python stand-in takes no engine options
        opts.pop("sync", None)
    return _open_store(engine, path, **opts)

THREADS = 16
OPS = 100         # per thread: small, the machine is shared
KEYS = [b"/c/k%02d" % i for i in range(8)]     # shared by every thread: real contention


def _worker(db, tid, ops, log, errors, barrier):
    """Mix of writes on shared keys; every acknowledged write goes to log as
    (revision, key, value or None for a delete)."""
    rng = random.Random(tid)
    t = db.transactions
    try:
        barrier.wait()
        for i in range(ops):
            k = rng.choice(KEYS)
            v = b"t%d-%d" % (tid, i)
            r = rng.random()
            if r < 0.35:
                log.append((db.put(k, v).revision, k, v))
            elif r < 0.6:
                value, kv = db.get(k)
                mod = kv.mod_revision if kv else 0
                ok, resp = db.transaction([t.mod(k) == mod], [t.put(k, v)], [t.get(k)])
                if ok:
                    log.append((resp[0].revision, k, v))
            elif r < 0.7:
                res = db.delete(k, return_response=True)
                if res.deleted:
                    log.append((res.revision, k, None))
            else:
                rev = db.revision
                value, kv = db.get(k)
                if kv is not None:
                    # a read never sees a version newer than the revision it started at
                    # plus what committed meanwhile, and never a torn entry
                    assert kv.key == k and kv.version >= 1 and kv.create_revision <= kv.mod_revision
                    assert value.startswith(b"t")
                assert db.revision >= rev
    except BaseException as e:       # reported by the main thread
        errors.append(e)


class _LiveWatch:
    """A watch opened while the writers run (from start_revision: replay, then live) and
    consumed on its own thread as they write."""

    def __init__(self, db, start_revision, opened):
        self.db, self.start, self.opened = db, start_revision, opened
        self.revs, self.final, self.error = [], None, None
        self.th = threading.Thread(target=self._run, daemon=True)
        self.th.start()

    def _run(self):
        try:
            self.opened.wait(30)
            events, cancel = self.db.watch_prefix(b"/c/", start_revision=self.start)
            while self.final is None or (self.revs and self.revs[-1] < self.final) \
                    or (not self.revs and self.final >= self.start):
                try:
                    self.revs.append(events.get(0.2).mod_revision)
                except TimeoutError:
                    pass
            cancel()
        except BaseException as e:
            self.error = e

    def finish(self, final):
        self.final = final
        self.th.join(30)
        assert not self.th.is_alive()
        if self.error is not None:
            raise self.error
        return self.revs


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("sync", ["commit", "none"])
def test_16_threads_never_corrupt_revisions(engine, sync, tmp_path):
    path = str(tmp_path / "db")
    db = open_store(engine, path, sync=sync)
    start = db.revision
    events, cancel = db.watch_prefix(b"/c/", start_revision=start + 1)
    log, errors = [], []
    barrier = threading.Barrier(THREADS)
    threads = [threading.Thread(target=_worker, args=(db, i, OPS, log, errors, barrier))
               for i in range(THREADS)]
    opened = threading.Event()
    live = _LiveWatch(db, start + 1, opened)
    for th in threads:
        th.start()
    while len(log) < THREADS * OPS // 8 and any(th.is_alive() for th in threads):
        threading.Event().wait(0.001)
    opened.set()                        # registers mid-run: replay + live must join up
    for th in threads:
        th.join(120)
    assert not errors, errors[0]
    assert not any(th.is_alive() for th in threads)
    final = db.revision

    # every write has its own revision, and the revisions are exactly start+1..final
    revs = sorted(r for r, _, _ in log)
    assert revs == list(range(start + 1, final + 1))

    # the watch saw every revision once, in order, with the acknowledged content
    by_rev = {r: (k, v) for r, k, v in log}
    seen = []
    while len(seen) < len(log):
        ev = events.get(10)
        seen.append(ev.mod_revision)
        k, v = by_rev[ev.mod_revision]
        assert ev.key == k
        assert (ev.value if isinstance(ev, kvtrees.store.PutEvent) else None) == v
    cancel()
    assert seen == revs
    assert live.finish(final) == revs

    # point reads at every past revision and the final state match the log
    last = {}
    for r, k, v in sorted(log):
        value, kv = db.get(k, revision=r)
        assert value == v and (kv is None or kv.mod_revision == r)
        last[k] = (r, v)
    for k in KEYS:
        value, kv = db.get(k)
        want = last.get(k)
        if want is None or want[1] is None:
            assert kv is None
        else:
            assert (value, kv.mod_revision) == (want[1], want[0])
    db.check()
    h = db.hash_kv()
    db.close()
    db = open_store(engine, path, sync=sync)
    assert db.revision == final and db.hash_kv() == h
    db.close()
