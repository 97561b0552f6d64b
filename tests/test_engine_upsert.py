"""Upsert (append) through Engine.append / Batch.upsert, on both engines, against a dict.

value := old value (empty when absent or deleted) followed by the operand. On the fractal
tree the append is a blind message folded on its way down (and by get/scan on the way),
on the B+tree a read-modify-write: both must give the same answers. Every test ends with
eng.check() (the open_eng fixture checks whatever is still open; the others call it).
"""

from __future__ import annotations

import random

import pytest

import kvtrees
from conftest import require_engine, small_options


def same(eng, model):
    assert list(eng.items()) == sorted(model.items())
    assert list(eng.items(reverse=True)) == sorted(model.items(), reverse=True)
    for k, v in model.items():
        assert eng.get(k) == v


def test_append_basics(open_eng):
    eng = open_eng()
    eng.append(b"a", b"x")                       # absent: starts empty
    assert eng.get(b"a") == b"x"
    eng.append(b"a", b"yz")
    assert eng.get(b"a") == b"xyz"
    eng.put(b"b", b"1")
    eng.append(b"b", b"2")
    assert eng.get(b"b") == b"12"
    eng.delete(b"b")
    eng.append(b"b", b"3")                       # deleted: starts empty
    assert eng.get(b"b") == b"3"
    eng.append(b"c", b"")                        # empty operand creates an empty value
    assert eng.get(b"c") == b""
    assert b"c" in eng
    same(eng, {b"a": b"xyz", b"b": b"3", b"c": b""})
    eng.check()


def test_batch_upsert_atomic_and_ordered(open_eng):
    eng = open_eng()
    with eng.batch() as b:
        b.put(b"k", b"p")
        b.upsert(b"k", b"q")
        b.upsert(b"k", b"r")
        b.upsert(b"n", b"s")
        b.delete(b"n")
        b.upsert(b"n", b"t")
    assert eng.get(b"k") == b"pqr"
    assert eng.get(b"n") == b"t"

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with eng.batch() as b:
            b.upsert(b"k", b"lost")
            raise Boom
    assert eng.get(b"k") == b"pqr"
    eng.check()


def test_validation(open_eng):
    eng = open_eng()
    with pytest.raises(ValueError):
        eng.append(b"", b"x")
    with pytest.raises(TypeError):
        eng.append(b"k", 5)
    with pytest.raises(ValueError):
        with eng.batch() as b:
            b.upsert(b"", b"x")
    assert eng.get(b"k") is None
    eng.check()


def random_ops(eng, model, rng, n, keys):
    """Random puts/deletes/appends (single and batched) mirrored into model."""
    for _ in range(n):
        k = b"key%05d" % rng.randrange(keys)
        r = rng.random()
        if r < 0.15:
            v = bytes([rng.randrange(256)]) * rng.choice([0, 3, 40, 700, 5000])
            eng.put(k, v)
            model[k] = v
        elif r < 0.25:
            eng.delete(k)
            model.pop(k, None)
        elif r < 0.85:
            d = bytes([rng.randrange(256)]) * rng.choice([0, 1, 7, 60, 900])
            eng.append(k, d)
            model[k] = model.get(k, b"") + d
        else:
            with eng.batch() as b:
                for _ in range(rng.randrange(1, 20)):
                    k = b"key%05d" % rng.randrange(keys)
                    d = b"%d;" % rng.randrange(1000)
                    b.upsert(k, d)
                    model[k] = model.get(k, b"") + d


def test_against_dict_with_reopen_and_checkpoint(open_eng, engine_name):
    rng = random.Random(7)
    eng = open_eng()
    model = {}
    for i in range(3000):                        # a multi-level tree with full buffers
        k = b"key%05d" % rng.randrange(600)
        d = b"<%d>" % i
        eng.append(k, d)
        model[k] = model.get(k, b"") + d
    same(eng, model)
    eng.check()
    random_ops(eng, model, rng, 1500, 600)
    same(eng, model)
    eng.checkpoint()
    random_ops(eng, model, rng, 800, 600)
    eng.check()
    eng.close()                                  # reopen: checkpoint + replayed log
    eng = open_eng()
    same(eng, model)
    random_ops(eng, model, rng, 500, 600)
    same(eng, model)
    if engine_name == "fractal":
        assert eng.stats()["flushes"] > 0        # upserts went through buffer flushes
    eng.check()


def test_range_reads_fold(open_eng):
    eng = open_eng()
    model = {}
    for i in range(400):
        k = b"r%03d" % (i % 97)
        eng.append(k, b"%d," % i)
        model[k] = model.get(k, b"") + b"%d," % i
    ks = sorted(model)
    lo, hi = ks[10], ks[60]
    assert list(eng.items(lo, hi)) == [(k, model[k]) for k in ks if lo <= k < hi]
    assert list(eng.items(lo, hi, reverse=True)) == [(k, model[k]) for k in reversed(ks)
                                                     if lo <= k < hi]
    eng.check()


def crash_and_reopen(eng, fv, path, engine_name):
    """Simulated power loss (unsynced writes dropped), then a reopen on the real VFS."""
    fv.crash(0, 1)
    try:
        eng.close()              # fails: the files died with the crash
    except kvtrees.KvtreesError:
        pass
    fv.close()
    return kvtrees.open_engine(path, engine=engine_name, **small_options(engine_name))


def test_log_replay_after_crash(engine_name, tmp_path):
    """Acked appends (sync=commit) survive a crash that drops unsynced writes."""
    fv = kvtrees.FaultVFS()
    path = str(tmp_path / "db")
    eng = kvtrees.open_engine(path, engine=engine_name, _vfs=fv,
                              **small_options(engine_name, sync="commit"))
    rng = random.Random(3)
    model = {}
    for i in range(300):
        k = b"c%03d" % rng.randrange(50)
        eng.append(k, b"%d." % i)
        model[k] = model.get(k, b"") + b"%d." % i
        if i == 150:
            eng.checkpoint()
    eng = crash_and_reopen(eng, fv, path, engine_name)
    try:
        same(eng, model)
        eng.check()
    finally:
        eng.close()


def test_engines_agree(tmp_path):
    """The blind fractal upsert and the B+tree's read-modify-write give equal results."""
    rng = random.Random(11)
    engs = {n: kvtrees.open_engine(str(tmp_path / n), engine=n, **small_options(n, sync="none"))
            for n in ("btree", "fractal")}
    try:
        model = {}
        ops = []
        for _ in range(2000):
            k = b"e%04d" % rng.randrange(300)
            ops.append((rng.random() < 0.1, k, b"%d" % rng.randrange(10 ** 6)))
        for eng in engs.values():
            for is_del, k, d in ops:
                eng.delete(k) if is_del else eng.append(k, d)
        for is_del, k, d in ops:
            if is_del:
                model.pop(k, None)
            else:
                model[k] = model.get(k, b"") + d
        for eng in engs.values():
            same(eng, model)
            eng.check()
    finally:
        for eng in engs.values():
            eng.close()


# ---- the value limit: an append keeps the newest MAX_VALUE bytes ----

M = 64 * 1024 * 1024                             # KVT_MAX_VALUE


def big_operands():
    """Three 30 MiB operands with distinct contents (a wrong cut point shows)."""
    rng = random.Random(5)
    return [rng.randbytes(30 * 1024 * 1024) for _ in range(3)]


def test_append_over_limit_keeps_newest_bytes(tmp_path):
    """3 x 30 MiB appends: the value is exactly the last MAX_VALUE bytes, the same on
    both engines, the handle stays usable, and the value survives a reopen."""
    ops = big_operands()
    want = (ops[0] + ops[1] + ops[2])[-M:]
    for name in ("btree", "fractal"):
        require_engine(name)
        path = str(tmp_path / name)
        eng = kvtrees.open_engine(path, engine=name, **small_options(name, sync="none"))
        try:
            eng.put(b"small", b"s")
            for d in ops:
                eng.append(b"big", d)
            got = eng.get(b"big")
            assert len(got) == M and got == want
            eng.append(b"small", b"t")                 # the handle stays usable
            eng.put(b"after", b"a")
            assert eng.get(b"small") == b"st" and eng.get(b"after") == b"a"
            assert [k for k, _ in eng.items()] == [b"after", b"big", b"small"]
            eng.check()
        finally:
            eng.close()
        eng = kvtrees.open_engine(path, engine=name, **small_options(name))
        try:
            assert eng.get(b"big") == want              # checkpoint or log replay
            assert eng.get(b"small") == b"st"
            eng.check()
        finally:
            eng.close()


def test_append_over_limit_replayed_from_log(engine_name, tmp_path):
    """Appends crossing the limit that are only in the log replay to the same value
    (the revert's failure: replay refused the over-size put)."""
    ops = big_operands()
    fv = kvtrees.FaultVFS()
    path = str(tmp_path / "db")
    eng = kvtrees.open_engine(path, engine=engine_name, _vfs=fv,
                              **small_options(engine_name, sync="commit", wal_limit=256 * 1024 * 1024))
    eng.put(b"k", ops[0][:1000])
    for d in ops:
        eng.append(b"k", d)
    eng = crash_and_reopen(eng, fv, path, engine_name)
    try:
        assert eng.get(b"k") == (ops[0][:1000] + ops[0] + ops[1] + ops[2])[-M:]
        eng.check()
    finally:
        eng.close()


def test_batch_upserts_over_limit_and_operand_limit(open_eng):
    eng = open_eng(sync="none")
    a = b"a" * (M - 10)
    eng.put(b"k", a)
    with eng.batch() as b:                       # fold inside one batch, then cut
        b.upsert(b"k", b"0123456789")
        b.upsert(b"k", b"XYZ")
        b.upsert(b"j", b"j" * M)                 # exactly the limit is allowed
    got = eng.get(b"k")
    assert len(got) == M and got == (a + b"0123456789XYZ")[-M:]
    assert got.endswith(b"789XYZ") and got.startswith(b"a" * 7)
    assert eng.get(b"j") == b"j" * M
    eng.append(b"j", b"!")                       # exactly at the limit, plus one byte
    assert eng.get(b"j") == b"j" * (M - 1) + b"!"
    with pytest.raises(kvtrees.TooLargeError):   # the operand itself is validated
        eng.append(b"k", b"x" * (M + 1))
    with pytest.raises(kvtrees.TooLargeError):
        with eng.batch() as b:
            b.upsert(b"n", b"x" * (M + 1))
    assert eng.get(b"n") is None
    assert eng.get(b"k") == got                  # nothing written by the refused ones
    eng.check()
