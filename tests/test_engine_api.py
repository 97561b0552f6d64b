"""API.md section 2 (the raw engine), run once per engine.

Every test that writes ends with a full ``check()`` (the ``open_eng`` fixture runs it
at teardown; several tests also call it explicitly at interesting moments).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
import threading

import pytest

import kvtrees
from conftest import ENGINES, require_engine, small_options

STATS_KEYS = {"bytes_written", "bytes_read", "fsyncs", "cache_hits", "cache_misses",
              "height", "file_size", "entries"}


def k(i: int) -> bytes:
    return b"key%06d" % i


def fill(eng, n: int, start: int = 0, vsize: int = 20) -> dict:
    """Put n keys in one batch; return the model dict."""
    model = {}
    with eng.batch() as b:
        for i in range(start, start + n):
            v = (b"v%d-" % i) * (vsize // 8 + 1)
            b.put(k(i), v[:vsize])
            model[k(i)] = v[:vsize]
    return model


# ---- point operations ------------------------------------------------------------------

def test_get_put_delete_return_values(open_eng):
    eng = open_eng()
    assert eng.get(b"a") is None
    assert eng.put(b"a", b"1") is None
    assert eng.get(b"a") == b"1"
    assert eng.put(b"a", b"22") is None          # overwrite
    assert eng.get(b"a") == b"22"
    assert eng.delete(b"a") is True
    assert eng.delete(b"a") is False
    assert eng.delete(b"never") is False
    assert eng.get(b"a") is None
    assert list(eng.items()) == []
    eng.check()


def test_values_are_bytes_and_empty_value_is_not_missing(open_eng):
    eng = open_eng()
    eng.put(b"empty", b"")
    got = eng.get(b"empty")
    assert got == b"" and got is not None and type(got) is bytes
    assert list(eng.items()) == [(b"empty", b"")]
    assert eng.delete(b"empty") is True
    assert eng.get(b"empty") is None


def test_persistence_across_reopen(open_eng):
    eng = open_eng()
    model = fill(eng, 3000)
    eng.put(k(5), b"changed")
    model[k(5)] = b"changed"
    assert eng.delete(k(7))
    del model[k(7)]
    eng.close()
    eng = open_eng()
    assert dict(eng.items()) == model
    eng.checkpoint()
    eng.check()
    eng.close()
    eng = open_eng()
    assert dict(eng.items()) == model


def test_many_keys_small_cache_grow_and_shrink(open_eng):
    eng = open_eng()
    rng = random.Random(1)
    ids = list(range(20000))
    rng.shuffle(ids)
    model = {}
    for lo in range(0, len(ids), 1000):
        with eng.batch() as b:
            for i in ids[lo:lo + 1000]:
                v = bytes([i % 251]) * rng.randrange(0, 60)
                b.put(k(i), v)
                model[k(i)] = v
    st = eng.stats()
    assert st["height"] >= 2, st
    eng.check()
    for i in ids[::2]:
        assert eng.delete(k(i))
        del model[k(i)]
    eng.check()
    for i in rng.sample(ids, 300):
        assert eng.get(k(i)) == model.get(k(i))
    eng.checkpoint()
    eng.close()
    eng = open_eng()
    assert list(eng.items()) == sorted(model.items())
    eng.check()


# ---- batches ---------------------------------------------------------------------------

def test_batch_commit_applies_everything(open_eng):
    eng = open_eng()
    eng.put(b"gone", b"x")
    with eng.batch() as b:
        for i in range(100):
            b.put(k(i), b"%d" % i)
        b.delete(b"gone")
        b.delete(b"never-existed")
        # Not visible before commit.
        assert eng.get(k(0)) is None
        assert eng.get(b"gone") == b"x"
    assert eng.get(b"gone") is None
    assert [kk for kk in eng.keys()] == [k(i) for i in range(100)]


def test_batch_operations_apply_in_order(open_eng):
    eng = open_eng()
    eng.put(b"b", b"old")
    with eng.batch() as b:
        b.put(b"a", b"1")
        b.delete(b"a")          # put then delete: absent
        b.delete(b"b")
        b.put(b"b", b"new")     # delete then put: present
        b.put(b"c", b"1")
        b.put(b"c", b"2")       # last put wins
    assert eng.get(b"a") is None
    assert eng.get(b"b") == b"new"
    assert eng.get(b"c") == b"2"


def test_batch_discarded_on_exception(open_eng):
    eng = open_eng()
    eng.put(b"keep", b"1")

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with eng.batch() as b:
            b.put(b"x", b"1")
            b.delete(b"keep")
            raise Boom()
    assert eng.get(b"x") is None
    assert eng.get(b"keep") == b"1"
    eng.close()
    eng = open_eng()           # nor does it come back after a reopen (not in the log)
    assert eng.get(b"x") is None
    assert eng.get(b"keep") == b"1"


def test_batch_bad_argument_raises_before_anything_is_written(open_eng):
    eng = open_eng()
    with pytest.raises(TypeError):
        with eng.batch() as b:
            b.put(b"a", b"1")
            b.put("str-key", b"1")
    assert eng.get(b"a") is None
    with pytest.raises(ValueError):
        with eng.batch() as b:
            b.put(b"a", b"1")
            b.put(b"x" * 4097, b"1")
    assert eng.get(b"a") is None


def test_empty_batch_is_fine(open_eng):
    eng = open_eng()
    with eng.batch():
        pass
    assert list(eng.items()) == []


def test_large_batch_with_large_values(open_eng):
    eng = open_eng()
    big = os.urandom(300 * 1024)
    with eng.batch() as b:
        for i in range(10):
            b.put(k(i), big[i:])
    for i in range(10):
        assert eng.get(k(i)) == big[i:]
    eng.check()


# ---- ranges ----------------------------------------------------------------------------

def expected_range(model: dict, start, end, reverse):
    ks = sorted(kk for kk in model if (start is None or kk >= start) and (end is None or kk < end))
    if reverse:
        ks.reverse()
    return [(kk, model[kk]) for kk in ks]


def test_items_keys_values_ranges(open_eng):
    eng = open_eng()
    model = {}
    rng = random.Random(7)
    with eng.batch() as b:
        for i in range(0, 3000, 3):           # gaps so bounds can fall between keys
            v = os.urandom(rng.randrange(0, 40))
            b.put(k(i), v)
            model[k(i)] = v
    bounds = [None, b"", b"\x00", k(0), k(1), k(2), k(3), k(1500), k(1501), k(2997),
              k(2998), k(5000), b"key", b"kez", b"\xff" * 10]
    for _ in range(60):
        start = rng.choice(bounds)
        end = rng.choice(bounds)
        if start == b"":
            start = None
        if end == b"":
            end = None
        for reverse in (False, True):
            exp = expected_range(model, start, end, reverse)
            assert list(eng.items(start, end, reverse=reverse)) == exp, (start, end, reverse)
            assert list(eng.keys(start=start, end=end, reverse=reverse)) == [x for x, _ in exp]
            assert list(eng.values(start=start, end=end, reverse=reverse)) == [y for _, y in exp]


def test_range_edge_cases(open_eng):
    eng = open_eng()
    for i in range(10):
        eng.put(k(i), b"v")
    assert list(eng.keys(k(5), k(5))) == []            # empty interval
    assert list(eng.keys(k(6), k(5))) == []            # start > end
    assert list(eng.keys(k(6), k(5), reverse=True)) == []
    assert list(eng.keys(k(9))) == [k(9)]              # start inclusive
    assert list(eng.keys(end=k(1))) == [k(0)]          # end exclusive
    assert list(eng.keys(end=k(1), reverse=True)) == [k(0)]
    assert list(eng.keys(k(8), reverse=True)) == [k(9), k(8)]
    it = eng.items()
    assert next(it) == (k(0), b"v")
    assert len(list(it)) == 9
    with pytest.raises(StopIteration):
        next(it)


def test_range_bounds_accept_bytes_like(open_eng):
    eng = open_eng()
    for i in range(10):
        eng.put(k(i), b"v")
    exp = [k(2), k(3)]
    assert list(eng.keys(bytearray(k(2)), memoryview(k(4)))) == exp
    with pytest.raises(TypeError):
        list(eng.keys("key000002"))
    with pytest.raises(TypeError):
        list(eng.keys(end="key000004"))


# ---- key and value types and limits -------------------------------------------------------

def test_bytes_like_keys_and_values(open_eng):
    eng = open_eng()
    eng.put(bytearray(b"ba"), bytearray(b"v1"))
    eng.put(memoryview(b"mv"), memoryview(b"v2"))
    eng.put(memoryview(b"xxslicexx")[2:7], memoryview(b"--v3--")[2:4])
    assert eng.get(b"ba") == b"v1"
    assert eng.get(bytearray(b"mv")) == b"v2"
    assert eng.get(memoryview(b"slice")) == b"v3"
    with eng.batch() as b:
        b.put(bytearray(b"bb"), memoryview(b"v4"))
        b.delete(memoryview(b"ba"))
    assert eng.get(b"bb") == b"v4"
    assert eng.delete(bytearray(b"mv")) is True
    assert eng.delete(memoryview(b"ba")) is False
    assert all(type(x) is bytes and type(y) is bytes for x, y in eng.items())


@pytest.mark.parametrize("call", ["get", "put", "delete", "batch_put", "batch_delete"])
def test_str_key_is_type_error(open_eng, call):
    eng = open_eng()
    with pytest.raises(TypeError):
        if call == "get":
            eng.get("a")
        elif call == "put":
            eng.put("a", b"1")
        elif call == "delete":
            eng.delete("a")
        else:
            with eng.batch() as b:
                getattr(b, call[6:])(*(("a", b"1") if call == "batch_put" else ("a",)))
    assert list(eng.items()) == []


def test_str_value_and_other_types_are_type_errors(open_eng):
    eng = open_eng()
    for bad in ("text", 12, None, 1.5, [1]):
        with pytest.raises(TypeError):
            eng.put(b"a", bad)
    for bad in (12, None, 1.5, object()):
        with pytest.raises(TypeError):
            eng.get(bad)
    assert eng.get(b"a") is None


@pytest.mark.parametrize("key", [b"", bytearray(), b"x" * 4097, b"y" * 100_000],
                         ids=["empty", "empty-bytearray", "4097", "100k"])
def test_bad_key_sizes_are_value_errors(open_eng, key):
    eng = open_eng()
    for op in (lambda: eng.get(key), lambda: eng.put(key, b"v"), lambda: eng.delete(key)):
        with pytest.raises(ValueError):
            op()
    with pytest.raises(ValueError):
        with eng.batch() as b:
            b.put(key, b"v")
    assert list(eng.items()) == []


def test_4096_byte_keys(open_eng):
    eng = open_eng()
    keys = [bytes([i]) * 4096 for i in range(1, 60)] + [b"\x00" * 4095 + bytes([i]) for i in range(30)]
    for i, key in enumerate(keys):
        eng.put(key, b"%d" % i)
    eng.check()
    for i, key in enumerate(keys):
        assert eng.get(key) == b"%d" % i
    assert list(eng.keys()) == sorted(keys)
    assert list(eng.keys(reverse=True)) == sorted(keys, reverse=True)
    eng.close()
    eng = open_eng()
    assert list(eng.keys()) == sorted(keys)
    for key in keys[::2]:
        assert eng.delete(key)
    assert list(eng.keys()) == sorted(keys[1::2])


def test_16_mib_values(open_eng):
    eng = open_eng()
    big = os.urandom(16 * 1024 * 1024)
    eng.put(b"big", big)
    eng.put(b"small", b"s")
    assert eng.get(b"big") == big
    eng.check()
    eng.close()
    eng = open_eng()
    assert eng.get(b"big") == big
    assert eng.get(b"small") == b"s"
    assert [x for x in eng.keys()] == [b"big", b"small"]
    eng.put(b"big", big[:100])                  # shrink: the old chain is freed
    assert eng.get(b"big") == big[:100]
    eng.checkpoint()
    eng.check()
    assert eng.delete(b"big")
    eng.checkpoint()
    eng.check()


# ---- stats, lifecycle ------------------------------------------------------------------

def test_stats(open_eng):
    eng = open_eng()
    st = eng.stats()
    assert STATS_KEYS <= set(st), STATS_KEYS - set(st)
    n = 30000                                  # enough for a multi-level tree in both engines
    fill(eng, n)
    eng.checkpoint()
    st = eng.stats()
    for name in STATS_KEYS:
        assert isinstance(st[name], int) and st[name] >= 0, (name, st[name])
    assert st["height"] >= 2
    assert st["bytes_written"] > 0
    assert st["file_size"] > 0
    assert st["fsyncs"] > 0
    assert 0 < st["entries"] <= 2 * n         # may be an estimate, but a sane one
    for i in range(0, n, 7):
        eng.get(k(i))
    st2 = eng.stats()
    assert st2["cache_hits"] + st2["cache_misses"] > st["cache_hits"] + st["cache_misses"]


def test_use_after_close_raises_closed_error(open_eng):
    eng = open_eng()
    eng.put(b"a", b"1")
    it = eng.items()
    b = eng.batch()
    eng.close()
    eng.close()                                  # idempotent
    assert eng.closed
    ops = [lambda: eng.get(b"a"), lambda: eng.put(b"a", b"1"), lambda: eng.delete(b"a"),
           lambda: list(eng.items()), lambda: list(eng.keys()), lambda: list(eng.values()),
           lambda: eng.batch(), lambda: eng.stats(), lambda: eng.check(),
           lambda: eng.checkpoint(), lambda: eng.sync(), lambda: next(it),
           lambda: b.put(b"x", b"1")]
    for op in ops:
        with pytest.raises(kvtrees.ClosedError):
            op()
    assert issubclass(kvtrees.ClosedError, kvtrees.KvtreesError)


def test_context_manager(open_eng):
    with open_eng() as eng:
        eng.put(b"a", b"1")
    assert eng.closed
    with pytest.raises(kvtrees.ClosedError):
        eng.get(b"a")
    with open_eng() as eng:
        assert eng.get(b"a") == b"1"


def test_options_object_accepted(engine_name, tmp_path):
    opts = kvtrees.Options(**small_options(engine_name))
    with kvtrees.open_engine(tmp_path / "db", engine=engine_name, options=opts) as eng:
        eng.put(b"a", b"1")
        eng.check()
    with kvtrees.open_engine(str(tmp_path / "db"), engine_name) as eng:
        assert eng.get(b"a") == b"1"


def test_bad_options_rejected(engine_name, tmp_path):
    p = tmp_path / "db"
    with pytest.raises(ValueError):
        kvtrees.open_engine(p, engine=engine_name, sync="sometimes")
    with pytest.raises(ValueError):
        kvtrees.open_engine(p, engine="lsm")
    with pytest.raises(TypeError):
        kvtrees.open_engine(p, engine=engine_name, no_such_option=1)
    with pytest.raises(ValueError):
        kvtrees.open_engine(p, engine=engine_name, page_size=1000)


@pytest.mark.parametrize("sync", ["commit", "interval", "none"])
def test_sync_modes(open_eng, sync):
    eng = open_eng(sync=sync)
    fill(eng, 100)
    eng.put(b"z", b"1")
    eng.sync()
    eng.close()
    eng = open_eng(sync=sync)
    assert eng.get(b"z") == b"1"
    assert len(list(eng.keys())) == 101


# ---- engine identity, locking, read-only --------------------------------------------------

def test_directory_remembers_engine(engine_name, tmp_path):
    p = tmp_path / "db"
    with kvtrees.open_engine(p, engine=engine_name, **small_options(engine_name)) as eng:
        eng.put(b"a", b"1")
        assert eng.engine == engine_name
    with kvtrees.open_engine(p) as eng:              # no engine named: the directory's own
        assert eng.engine == engine_name
        assert eng.get(b"a") == b"1"
        eng.check()


def test_engine_mismatch(engine_name, tmp_path):
    other = [e for e in ENGINES if e != engine_name][0]
    require_engine(other)
    p = tmp_path / "db"
    with kvtrees.open_engine(p, engine=engine_name) as eng:
        eng.put(b"a", b"1")
    with pytest.raises(kvtrees.EngineMismatchError) as ei:
        kvtrees.open_engine(p, engine=other)
    assert engine_name in str(ei.value)
    with kvtrees.open_engine(p, engine=engine_name) as eng:   # not damaged by the attempt
        assert eng.get(b"a") == b"1"
        eng.check()


def test_second_writer_in_process_is_locked(open_eng):
    eng = open_eng()
    eng.put(b"a", b"1")
    with pytest.raises(kvtrees.LockedError):
        open_eng()
    assert eng.get(b"a") == b"1"           # the first handle is unaffected
    eng.close()
    eng2 = open_eng()                      # released by close
    assert eng2.get(b"a") == b"1"


SUBPROCESS_OPEN = textwrap.dedent("""
    import sys, kvtrees
    try:
        eng = kvtrees.open_engine(sys.argv[1], read_only=sys.argv[2] == "ro")
    except kvtrees.KvtreesError as e:
        print(type(e).__name__)
    else:
        print("opened", eng.get(b"a"))
        eng.close()
""")


def open_in_subprocess(path, mode="rw"):
    out = subprocess.run([sys.executable, "-c", SUBPROCESS_OPEN, str(path), mode],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_second_writer_in_subprocess_is_locked(open_eng):
    eng = open_eng()
    eng.put(b"a", b"1")
    eng.sync()
    assert open_in_subprocess(open_eng.path) == "LockedError"
    eng.close()
    assert open_in_subprocess(open_eng.path) == "opened b'1'"


def test_read_only(open_eng):
    eng = open_eng()
    model = fill(eng, 2000)
    eng.close()
    ro1 = open_eng(read_only=True)
    ro2 = open_eng(read_only=True)           # many read-only opens may share a directory
    assert ro1.read_only
    assert dict(ro1.items()) == model
    assert ro2.get(k(10)) == model[k(10)]
    assert open_in_subprocess(open_eng.path, "ro") == "opened None"
    for op in (lambda: ro1.put(b"x", b"1"), lambda: ro1.delete(k(1))):
        with pytest.raises(kvtrees.ReadOnlyError):
            op()
    with pytest.raises(kvtrees.ReadOnlyError):
        with ro1.batch() as b:
            b.put(b"x", b"1")
    ro1.check()
    ro1.close()
    ro2.close()
    eng = open_eng()
    assert dict(eng.items()) == model


def test_read_only_of_missing_directory_creates_nothing(engine_name, tmp_path):
    p = tmp_path / "nothing"
    with pytest.raises(kvtrees.KvtreesError):
        kvtrees.open_engine(p, engine=engine_name, read_only=True)
    assert not (p / "data.kvt").exists()


# ---- threads ---------------------------------------------------------------------------

def test_iterators_consistent_while_another_thread_writes(open_eng):
    eng = open_eng()
    stable = {k(i): b"stable%d" % i for i in range(0, 6000, 2)}
    with eng.batch() as b:
        for kk, v in stable.items():
            b.put(kk, v)
    stop = threading.Event()
    errors = []

    def writer():
        rng = random.Random(3)
        try:
            while not stop.is_set():
                with eng.batch() as b:
                    for _ in range(50):
                        i = rng.randrange(6000) | 1          # odd keys only
                        if rng.random() < 0.3:
                            b.delete(k(i))
                        else:
                            b.put(k(i), b"w" * rng.randrange(0, 100))
        except Exception as e:                              # pragma: no cover
            errors.append(e)

    t = threading.Thread(target=writer)
    t.start()
    try:
        for round_ in range(8):
            reverse = round_ % 2 == 1
            seen = []
            for kk, v in eng.items(reverse=reverse):
                seen.append(kk)
                if kk in stable:
                    assert v == stable[kk]
                else:
                    assert int(kk[3:]) % 2 == 1 and set(v) <= {ord("w")}, kk
            order = sorted(seen, reverse=reverse)
            assert seen == order, "iterator out of order"
            assert len(set(seen)) == len(seen), "iterator returned a key twice"
            missing = set(stable) - set(seen)
            assert not missing, f"{len(missing)} untouched keys not seen"
    finally:
        stop.set()
        t.join()
    assert not errors, errors
    eng.check()


def test_concurrent_readers_and_one_writer(open_eng):
    eng = open_eng()
    stable = {b"s%05d" % i: b"S%d" % i for i in range(2000)}
    with eng.batch() as b:
        for kk, v in stable.items():
            b.put(kk, v)
    stop = threading.Event()
    errors = []
    final = {}

    def writer():
        rng = random.Random(11)
        try:
            for n in range(3000):
                i = rng.randrange(500)
                key = b"w%05d" % i
                if rng.random() < 0.25:
                    eng.delete(key)
                    final.pop(key, None)
                else:
                    v = b"W%d:" % i + bytes(rng.randrange(0, 200))
                    eng.put(key, v)
                    final[key] = v
        except Exception as e:                              # pragma: no cover
            errors.append(e)
        finally:
            stop.set()

    def reader(seed):
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                kk = rng.choice(list(stable))
                assert eng.get(kk) == stable[kk]
                i = rng.randrange(500)
                v = eng.get(b"w%05d" % i)
                assert v is None or v.startswith(b"W%d:" % i)
                lo = rng.randrange(1990)
                got = list(eng.items(b"s%05d" % lo, b"s%05d" % (lo + 10)))
                assert got == [(b"s%05d" % j, stable[b"s%05d" % j]) for j in range(lo, lo + 10)]
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert {kk: v for kk, v in eng.items(b"w", b"x")} == final
    eng.check()


def test_concurrent_committers_group_commit(open_eng):
    eng = open_eng(sync="commit")
    errors = []

    def committer(t):
        try:
            for i in range(100):
                with eng.batch() as b:
                    b.put(b"t%d-%04d-a" % (t, i), b"x")
                    b.put(b"t%d-%04d-b" % (t, i), b"y")
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=committer, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert len(list(eng.keys())) == 4 * 100 * 2
    eng.close()
    eng = open_eng()
    assert len(list(eng.keys())) == 800


# ---- both engines agree ------------------------------------------------------------------

def test_engines_return_identical_results(tmp_path):
    for e in ENGINES:
        require_engine(e)
    engs = [kvtrees.open_engine(tmp_path / e, engine=e, **small_options(e)) for e in ENGINES]
    rng = random.Random(5)
    try:
        for step in range(4000):
            key = b"%d" % rng.randrange(800)
            r = rng.random()
            if r < 0.6:
                v = os.urandom(rng.choice([0, 5, 50, 700, 5000]))
                for eng in engs:
                    eng.put(key, v)
            elif r < 0.9:
                assert len({eng.delete(key) for eng in engs}) == 1
            else:
                assert len({eng.get(key) for eng in engs}) == 1
            if step % 997 == 0:
                lo = b"%d" % rng.randrange(800)
                for rev in (False, True):
                    a, b = (list(eng.items(lo, reverse=rev)) for eng in engs)
                    assert a == b
        assert list(engs[0].items()) == list(engs[1].items())
        for eng in engs:
            eng.check()
    finally:
        for eng in engs:
            eng.close()
