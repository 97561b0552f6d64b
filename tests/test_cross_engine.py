"""Both engines, one history: identical operation streams must give identical answers.

The engine-level differential test lives in test_engine_api.py; this one checks the
store: after the same deterministic history (puts, deletes, txns, range deletes and a
compaction), both engines report the same revisions, the same contents at every
revision still readable, and the same hash_kv -- the API's promise that hash_kv is
"equal for equal histories on both engines".
"""
import random

import pytest

import kvtrees

ENGINES = ("btree", "fractal")


def history(db, seed=7, n=400):
    rnd = random.Random(seed)
    t = db.transactions
    for i in range(n):
        key = "/registry/pods/ns%d/p%d" % (rnd.randrange(3), rnd.randrange(40))
        op = rnd.random()
        if op < 0.6:
            db.put(key, "v%d-%s" % (i, "x" * rnd.randrange(0, 300)))
        elif op < 0.75:
            db.delete(key)
        elif op < 0.9:
            db.transaction(compare=[t.version(key) > 0],
                           success=[t.put(key, "t%d" % i)],
                           failure=[t.put(key + "/new", "f%d" % i)])
        elif op < 0.95:
            db.delete_prefix("/registry/pods/ns%d/p1" % rnd.randrange(3))
        elif db.revision - 50 > db.status().compact_revision:
            db.compact(db.revision - 50)       # etcd refuses a compaction that goes back


@pytest.fixture
def stores(tmp_path):
    dbs = {e: kvtrees.open(str(tmp_path / e), engine=e, sync="none", cache_size=1 << 20)
           for e in ENGINES}
    yield dbs
    for db in dbs.values():
        db.check()
        db.close()


def snapshot(db, rev):
    return [(v, m.key, m.create_revision, m.mod_revision, m.version, m.lease)
            for v, m in db.get_prefix("/registry/", revision=rev)]


def test_same_history_same_answers(stores):
    for db in stores.values():
        history(db)
    a, b = (stores[e] for e in ENGINES)
    assert a.revision == b.revision
    assert a.status().compact_revision == b.status().compact_revision
    assert a.hash_kv() == b.hash_kv()
    for rev in range(a.status().compact_revision, a.revision + 1):
        assert snapshot(a, rev) == snapshot(b, rev), rev
        assert a.hash_kv(rev) == b.hash_kv(rev), rev


def test_hash_differs_when_history_differs(stores):
    a, b = (stores[e] for e in ENGINES)
    history(a, seed=1)
    history(b, seed=2)
    assert a.hash_kv() != b.hash_kv()
