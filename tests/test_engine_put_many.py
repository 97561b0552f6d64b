"""Engine.put_many / Batch.put_many: many puts in one native call (kvt_put_many).

Model-checked against a dict on both engines: ascending loads (the B+tree's append
cursor keeps the rightmost leaf pinned within a record and starts a new leaf when it is
full), out-of-order and overwriting records that make it fall back, long keys and
overflow values that it hands to the normal path, reads and checkpoints in between,
reopen. Bad input raises before anything is written, for a whole put_many call and for
a batch (whose earlier operations stay). Every test ends with check() (open_eng).
"""

from __future__ import annotations

import random
import threading

import pytest

import kvtrees
from kvtrees.limits import MAX_KEY, MAX_VALUE


def key(i: int) -> bytes:
    return b"k%08d" % i


def assert_same(eng, model: dict) -> None:
    assert list(eng.items()) == sorted(model.items())
    for k in random.Random(len(model)).sample(sorted(model), min(50, len(model))):
        assert eng.get(k) == model[k]


def test_ascending_loads_match_the_model(open_eng):
    eng = open_eng()
    model = {}
    rnd = random.Random(1)
    n = 0
    for rec in range(40):                       # records of ascending keys, many leaves
        pairs = [(key(n + j), rnd.randbytes(rnd.choice((0, 5, 100, 300)))) for j in range(250)]
        n += 250
        eng.put_many(pairs)
        model.update(pairs)
        if rec % 9 == 4:                        # a reader between two records
            assert eng.get(key(n - 1)) == model[key(n - 1)]
            assert next(iter(eng.items(start=key(n - 300))))[0] == key(n - 300)
        if rec % 13 == 6:
            eng.checkpoint()
    assert eng.stats()["entries"] == len(model)
    assert_same(eng, model)
    eng.check()
    eng.close()
    eng = open_eng()
    assert_same(eng, model)


def test_fallbacks_inside_one_record(open_eng):
    """Ascending runs broken by a smaller key, an overwrite of the largest key, a long
    (spilled) key and overflow values: each falls back and the cursor comes back."""
    eng = open_eng()
    model = {}
    base = [(key(i), b"x" * 50) for i in range(0, 3000, 2)]
    eng.put_many(base)
    model.update(base)
    top = key(2998)
    pairs = [(key(3000 + i), b"a%d" % i) for i in range(400)]
    pairs += [(key(3399), b"overwrite"), (key(1), b"middle")]
    pairs += [(key(5000) + b"L" * 3000, b"long key")]          # > one page's inline key
    pairs += [(key(5001), b"v" * 9000), (key(5002), b"w" * 70_000)]   # overflow values
    pairs += [(key(5003 + i), b"b%d" % i) for i in range(600)]
    pairs += [(top, b"old top"), (key(9999), b"end")]
    eng.put_many(pairs)
    model.update(pairs)
    assert_same(eng, model)
    eng.check()


@pytest.mark.parametrize("seed", range(3))
def test_random_mix_matches_the_model(open_eng, seed):
    rnd = random.Random(seed)
    eng = open_eng()
    model = {}
    nxt = 0
    for _ in range(60):
        op = rnd.random()
        if op < 0.4:                            # ascending past the largest key
            pairs = [(key(nxt + j), rnd.randbytes(rnd.randrange(120))) for j in
                     range(rnd.randrange(1, 400))]
            nxt += len(pairs) + rnd.randrange(3)
        elif op < 0.6:                          # random keys, some present
            pairs = [(key(rnd.randrange(nxt + 10)), rnd.randbytes(rnd.randrange(120)))
                     for _ in range(rnd.randrange(1, 200))]
        elif op < 0.7:
            for _ in range(rnd.randrange(30)):
                k = key(rnd.randrange(nxt + 1))
                assert eng.delete(k) == (k in model)
                model.pop(k, None)
            continue
        elif op < 0.8:                          # a batch mixing single puts and put_many
            pairs = [(key(nxt + j), b"p%d" % j) for j in range(rnd.randrange(1, 100))]
            nxt += len(pairs)
            extra = key(rnd.randrange(nxt))
            with eng.batch() as b:
                b.put(extra, b"single")
                b.put_many(pairs)
                b.delete(pairs[0][0])
            model[extra] = b"single"
            model.update(pairs)
            model.pop(pairs[0][0])
            continue
        elif op < 0.9:
            eng.checkpoint()
            continue
        else:
            eng.close()
            eng = open_eng()
            continue
        eng.put_many(pairs)
        model.update(pairs)
    assert_same(eng, model)
    eng.check()


def test_inputs_accepted(open_eng):
    eng = open_eng()
    eng.put_many([])                            # nothing, no error
    eng.put_many({b"d1": b"1", b"d2": b"2"})    # a mapping gives its items
    eng.put_many((bytes([c]), b"g") for c in b"xyz")   # any iterable
    eng.put_many([[bytearray(b"ba"), memoryview(b"mv")], (memoryview(b"mvk"), bytearray())])
    eng.put_many([(b"n", memoryview(b"abcdef")[::2])])  # a non-contiguous view
    assert dict(eng.items()) == {b"d1": b"1", b"d2": b"2", b"x": b"g", b"y": b"g",
                                 b"z": b"g", b"ba": b"mv", b"mvk": b"", b"n": b"ace"}
    eng.put_many([(b"dup", b"1"), (b"dup", b"2")])      # the last one wins, as put
    assert eng.get(b"dup") == b"2"


BAD = [
    ("str key", [(b"ok", b"1"), ("s", b"v")], TypeError),
    ("str value", [(b"ok", b"1"), (b"k", "v")], TypeError),
    ("int value", [(b"k", 5)], TypeError),
    ("not a pair", [(b"ok", b"1"), b"kv"], TypeError),
    ("a triple", [(b"k", b"v", b"x")], TypeError),
    ("None", [None], TypeError),
    ("empty key", [(b"ok", b"1"), (b"", b"v")], ValueError),
    ("oversized key", [(b"ok", b"1"), (b"k" * (MAX_KEY + 1), b"v")], kvtrees.TooLargeError),
]


@pytest.mark.parametrize("what,pairs,exc", BAD, ids=[b[0] for b in BAD])
def test_bad_input_writes_nothing(open_eng, what, pairs, exc):
    eng = open_eng()
    eng.put(b"before", b"1")
    with pytest.raises(exc):
        eng.put_many(pairs)
    with eng.batch() as b:                      # a batch keeps what it had before
        b.put(b"in batch", b"2")
        with pytest.raises(exc):
            b.put_many(pairs)
        assert len(b) == 1
    assert dict(eng.items()) == {b"before": b"1", b"in batch": b"2"}


def test_error_in_the_middle_of_a_large_call(open_eng):
    eng = open_eng()
    pairs = [(key(i), b"v") for i in range(2000)]
    pairs[1234] = (key(1234), "not bytes")
    with pytest.raises(TypeError, match="values must be bytes"):
        eng.put_many(pairs)
    assert list(eng.items()) == []
    with pytest.raises(TypeError):
        eng.put_many(5)
    with pytest.raises(TypeError):
        eng.put_many(b"pairs")


def test_oversized_value_and_record(open_eng):
    eng = open_eng()
    big = b"v" * (MAX_VALUE + 1)
    with pytest.raises(kvtrees.TooLargeError, match="value of"):
        eng.put_many([(b"a", b"1"), (b"b", big)])
    half = big[: MAX_VALUE // 2]
    with pytest.raises(kvtrees.TooLargeError):   # every value fits, the record does not
        eng.put_many([(b"%d" % i, half) for i in range(5)])
    assert list(eng.items()) == []


def test_closed_handles(open_eng):
    eng = open_eng()
    b = eng.batch()
    b.commit()
    with pytest.raises(kvtrees.ClosedError):
        b.put_many([(b"a", b"1")])
    eng.close()
    with pytest.raises(kvtrees.ClosedError):
        eng.put_many([(b"a", b"1")])


def test_concurrent_writers_and_readers(open_eng):
    """Two writers load disjoint ascending ranges while a reader scans."""
    eng = open_eng()
    errors = []

    def writer(prefix: bytes):
        try:
            for r in range(20):
                eng.put_many([(prefix + b"%06d" % (r * 100 + j), b"v") for j in range(100)])
        except BaseException as e:       # pragma: no cover - reported below
            errors.append(e)

    def reader():
        try:
            for _ in range(30):
                ks = list(eng.keys())
                assert ks == sorted(ks)
        except BaseException as e:       # pragma: no cover
            errors.append(e)

    ts = [threading.Thread(target=writer, args=(p,)) for p in (b"a", b"b")]
    ts.append(threading.Thread(target=reader))
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    assert len(list(eng.keys())) == 4000


def test_atomic_across_a_crash(engine_name, tmp_path):
    """A put_many is one record: after a simulated power loss it is all there or gone."""
    from conftest import small_options
    for nth in (1, 2):
        fv = kvtrees.FaultVFS()
        path = str(tmp_path / f"db{nth}")
        eng = kvtrees.open_engine(path, engine=engine_name, _vfs=fv,
                                  **small_options(engine_name, sync="commit"))
        eng.put_many([(key(i), b"first") for i in range(500)])
        fv.fail_syncs(nth=1)
        try:
            eng.put_many([(key(i), b"second") for i in range(300, 900)])
        except kvtrees.KvtreesError:
            pass
        fv.crash(nth % 2, nth)
        try:
            eng.close()
        except kvtrees.KvtreesError:
            pass                                # a dead handle may fail to close
        fv.close()
        eng = kvtrees.open_engine(path, engine=engine_name, **small_options(engine_name))
        got = dict(eng.items())
        first = {key(i): b"first" for i in range(500)}
        second = dict(first)
        second.update({key(i): b"second" for i in range(300, 900)})
        assert got in (first, second)
        eng.check()
        eng.close()
