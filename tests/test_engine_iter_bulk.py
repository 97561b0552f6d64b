"""Iterators read whole chunks per native call (kvt_iter_next_many) and split them in
Python with struct: chunks whose keys and values all have one length take the fast
path, others a per-chunk format. Both, and next() mixed with for loops, must give the
model's answer, forward and reverse, over ranges, for items/keys/values."""

from __future__ import annotations

import random
import threading
from itertools import islice

import pytest

import kvtrees


def load(eng, model: dict) -> None:
    with eng.batch() as b:
        for k, v in model.items():
            b.put(k, v)


def expect(model: dict, start=None, end=None, reverse=False):
    ks = sorted(k for k in model if (start is None or k >= start) and (end is None or k < end))
    if reverse:
        ks.reverse()
    return [(k, model[k]) for k in ks]


@pytest.mark.parametrize("shape", ["uniform", "mixed", "runs"])
def test_ranges_match_model(open_eng, shape):
    rnd = random.Random(hash(shape) & 0xffff)
    model = {}
    for i in range(3000):
        if shape == "uniform":
            k, v = b"%012d" % rnd.randrange(10**9), b"v" * 40
        elif shape == "mixed":
            k = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 40)))
            v = bytes(rnd.randrange(256) for _ in range(rnd.choice([0, 1, 7, 300])))
        else:                                  # long runs of one shape, then another
            width = 8 + (i // 700)
            k, v = b"%0*d" % (width, rnd.randrange(10**width)), b"x" * (i // 500)
        model[k] = v
    eng = open_eng()
    load(eng, model)
    keys = sorted(model)
    bounds = [None] + [keys[rnd.randrange(len(keys))] for _ in range(6)] + [b"\x00", b"\xff" * 5]
    for _ in range(25):
        s, e = rnd.choice(bounds), rnd.choice(bounds)
        for rev in (False, True):
            want = expect(model, s, e, rev)
            assert list(eng.items(s, e, reverse=rev)) == want
            assert list(eng.keys(s, e, reverse=rev)) == [k for k, _ in want]
            assert list(eng.values(s, e, reverse=rev)) == [v for _, v in want]
    eng.check()


def test_next_and_for_loop_share_one_position(open_eng):
    model = {b"k%05d" % i: b"%d" % i * (i % 5) for i in range(2000)}
    eng = open_eng()
    load(eng, model)
    want = expect(model)
    it = eng.items()
    got = [next(it), next(it)]                  # __next__
    got += list(islice(it, 3))                  # iter(): the chain over the same chunks
    got.append(next(it))
    for pair in it:                             # a for loop, broken off mid-chunk
        got.append(pair)
        if len(got) == 700:
            break
    got += list(islice(it, 1))
    got += list(it)
    assert got == want
    with pytest.raises(StopIteration):
        next(it)
    assert list(it) == []
    eng.check()


def test_threads_share_an_iterator(open_eng):
    model = {b"t%06d" % i: b"v%d" % i for i in range(20000)}
    eng = open_eng()
    load(eng, model)
    it = eng.items()
    seen = [[] for _ in range(4)]

    def take(i):
        if i % 2:
            seen[i].extend(it)
        else:
            while True:
                try:
                    seen[i].append(next(it))
                except StopIteration:
                    return

    ths = [threading.Thread(target=take, args=(i,)) for i in range(4)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    merged = sorted(p for s in seen for p in s)
    assert merged == expect(model)             # every entry once, none twice
    for s in seen:
        assert s == sorted(s)                  # each thread saw ascending keys
    eng.check()


def test_writes_between_chunks(open_eng):
    eng = open_eng()
    model = {b"w%05d" % i: b"a" for i in range(1500)}
    load(eng, model)
    it = iter(eng.items())
    got = list(islice(it, 300))
    eng.put(b"w00000x", b"new-below")          # behind the iterator: not seen
    eng.put(b"w99999", b"new-above")           # ahead: seen
    eng.delete(b"w01000")                      # ahead: gone
    got += list(it)
    model[b"w99999"] = b"new-above"
    del model[b"w01000"]
    assert got == [p for p in expect(model)]
    eng.check()


def test_closed_engine_stops_iterator(open_eng):
    eng = open_eng()
    load(eng, {b"c%05d" % i: b"x" for i in range(3000)})
    eng.check()
    it = eng.items()
    assert next(it) == (b"c00000", b"x")
    eng.close()
    with pytest.raises(kvtrees.ClosedError):
        next(it)
    with pytest.raises(kvtrees.ClosedError):  # a loop ends the chunk it was in, then stops
        for _ in it:
            pass
