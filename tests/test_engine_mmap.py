"""The pager's read map (kvt_pager.h): with mmap on (the default) B+tree pages missing
from the cache are read through a read-only mapping of the data file, checksummed the
first time, and fractal node blobs are copied out of it the same way; with mmap=False
every miss is a pread. Both must give the same answers
through writes, copy-on-write after checkpoints, reopen and damage on disk."""

from __future__ import annotations

import os
import random

import pytest

import kvtrees


def val(i: int, ver: int) -> bytes:
    return (b"%08d-%d-" % (i, ver)) * 12


def put_all(eng, items) -> None:
    with eng.batch() as b:
        for key, v in items:
            b.put(key, v)


def read_all(eng, model: dict) -> None:
    for key, v in model.items():
        assert eng.get(key) == v, key


@pytest.mark.parametrize("mmap", [True, False])
def test_reads_writes_reopen(open_eng, engine_name, mmap):
    n = 4000
    model = {b"k%07d" % i: val(i, 0) for i in range(n)}
    eng = open_eng(mmap=mmap)
    put_all(eng, model.items())
    eng.checkpoint()
    eng.close()
    eng = open_eng(mmap=mmap)                 # cold cache: every page a miss
    read_all(eng, model)
    st = eng.stats()
    if mmap and engine_name == "btree":
        assert st["map_reads"] > 0 and st["cache_misses"] >= st["map_reads"]
        assert 0 < st["map_verifies"] <= st["map_reads"]
    elif mmap:                                 # fractal: node blobs copied from the map
        assert st["map_reads"] > 0 and 0 < st["map_verifies"] <= st["map_reads"]
    else:
        assert st["map_reads"] == 0 and st["map_verifies"] == 0
    rnd = random.Random(7)
    for i in rnd.sample(range(n), 1500):       # pages read through the map, then written
        key = b"k%07d" % i
        model[key] = val(i, 1)
        eng.put(key, model[key])
    for i in rnd.sample(range(n), 500):
        key = b"k%07d" % i
        del model[key]
        assert eng.delete(key) is True
    read_all(eng, model)
    eng.checkpoint()
    read_all(eng, model)
    eng.close()
    eng = open_eng(mmap=mmap)
    read_all(eng, model)
    assert list(eng.items()) == sorted(model.items())
    eng.check()


def test_mmap_must_be_a_bool(engine_name, tmp_path):
    with pytest.raises(TypeError):
        kvtrees.open_engine(str(tmp_path / "db"), engine=engine_name, mmap="yes")


@pytest.mark.parametrize("mmap", [True, False])
def test_damaged_page_is_found_through_either_path(open_eng, engine_name, mmap, tmp_path):
    eng = open_eng()
    put_all(eng, [(b"k%07d" % i, val(i, 0)) for i in range(3000)])
    eng.check()
    eng.close()
    path = os.path.join(open_eng.path, "data.kvt")
    size = os.path.getsize(path)
    with open(path, "r+b") as f:              # one byte in every data page's body
        for off in range(2 * 4096 + 1000, size, 4096):
            f.seek(off)
            b = f.read(1)
            f.seek(off)
            f.write(bytes([b[0] ^ 0x40]))
    with pytest.raises(kvtrees.CorruptionError, match=r"page \d+"):
        eng = open_eng(mmap=mmap, check=False)
        for i in range(3000):
            eng.get(b"k%07d" % i)
        eng.check()
