"""The native range path (kvt_mvcc_range) against the Python one on the same store: for
random histories (puts, deletes, keys with 00 and FF bytes, a compaction) and random
ranges, revisions, limits, keys_only and count_only, Store.range gives the same kvs,
count and more either way. Both engines; each store ends with check()."""

import random

import pytest

import kvtrees

KEYS = [b"a", b"a\x00", b"a\x00\xff", b"a\xff", b"ab", b"b", b"b\x00c", b"bc", b"c",
        b"\x00", b"\xff\xff"]
BOUNDS = [b"\x00", b"a", b"a\x00", b"a\x01", b"b", b"b\x00", b"bd", b"c", b"d", b"\xff"]


def _history(db, rng: random.Random, n: int) -> None:
    for i in range(n):
        k = rng.choice(KEYS)
        if rng.random() < 0.7:
            db.put(k, b"v%d-" % i + bytes([rng.randrange(256)]) * rng.randrange(0, 40))
        else:
            db.delete(k)


def _query(rng: random.Random, lo_rev: int, hi_rev: int) -> dict:
    start = rng.choice(BOUNDS)
    end = rng.choice([b"\x00"] + [b for b in BOUNDS if b > start])
    return dict(key=start, range_end=end, revision=rng.randrange(lo_rev, hi_rev + 1),
                limit=rng.choice([0, 0, 1, 2, 3, 50]), keys_only=rng.random() < 0.3,
                count_only=rng.random() < 0.15,
                sort_order=rng.choice([None, None, "ascend"]))


@pytest.mark.parametrize("seed", [3, 4])
def test_native_range_matches_python(engine_name, tmp_path, seed):
    db = kvtrees.open(str(tmp_path / "s"), engine=engine_name, sync="none")
    rng = random.Random(seed)
    _history(db, rng, 150)
    db.compact(db.revision - 60)
    _history(db, rng, 100)
    native_calls = [0]
    real = db._core.range

    def counting(*a):
        native_calls[0] += 1
        return real(*a)
    db._core.range = counting
    for _ in range(400):
        q = _query(rng, db.compact_revision, db.revision)
        got = db.range(**q)
        db._native_range = lambda *a: None          # the Python path, same store
        want = db.range(**q)
        del db._native_range
        assert got == want, q
    assert native_calls[0] == 400
    db.check()
    db.close()


def test_native_range_edges(engine_name, tmp_path):
    db = kvtrees.open(str(tmp_path / "s"), engine=engine_name, sync="none")
    for k in (b"k1", b"k2", b"k3"):
        db.put(k, b"x" * 5000)                   # values past any small buffer
    before_delete = db.revision
    db.delete(b"k2")
    r = db.range(b"k", b"l", limit=1)
    assert [kv.key for kv in r.kvs] == [b"k1"] and r.count == 2 and r.more
    r = db.range(b"k", b"l", count_only=True, limit=1)
    assert r.kvs == [] and r.count == 2 and not r.more
    r = db.range(b"k", b"l", keys_only=True)
    assert [(kv.key, kv.value) for kv in r.kvs] == [(b"k1", b""), (b"k3", b"")]
    assert db.range(b"k", b"l", revision=before_delete).count == 3
    with pytest.raises(ValueError):
        db.range(b"k", b"l", limit=-1)
    db.check()
    db.close()
