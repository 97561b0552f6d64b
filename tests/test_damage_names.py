"""Damage in data.kvt is reported as a CorruptionError that names data.kvt.

A regression: a damaged newest meta page of data.kvt (the data file then opens at the
checkpoint before) was blamed on wal.log ("log follows checkpoint 4 but data file is at
3"), and a data file with both meta pages damaged gave EngineMismatchError when the
engine was not named.
"""

from __future__ import annotations

import os
import random

import pytest

import kvtrees

N_KEYS = 3000
VALUE = b"x" * 300


def make_store(path: str, engine: str) -> None:
    with kvtrees.open(path, engine=engine, sync="none") as db:   # durable at close
        for i in range(N_KEYS):
            db.put(f"k{i:05d}", VALUE)
        db.check()


def read_everything(path: str, engine) -> None:
    """Open, walk and read every key; raises whatever the damage causes."""
    with kvtrees.open(path, engine=engine) as db:
        db.check()
        values = {kv.key: v for v, kv in db.get_prefix("")}
        assert len(values) == N_KEYS
        assert all(v == VALUE for v in values.values())


def flip(path: str, offsets) -> None:
    with open(path, "r+b") as f:
        for off in offsets:
            f.seek(off)
            b = f.read(1)
            f.seek(off)
            f.write(bytes([b[0] ^ 0xFF]))


def assert_blames_data_file(err: Exception) -> None:
    msg = str(err)
    assert isinstance(err, kvtrees.CorruptionError), repr(err)
    assert "data.kvt" in msg, msg
    assert "wal.log" not in msg.split("data.kvt")[0], f"blames the log first: {msg}"


@pytest.mark.parametrize("named", [True, False], ids=["engine-named", "engine-probed"])
@pytest.mark.parametrize("seed", range(4))
def test_flipped_bytes_in_data_file(engine_name, tmp_path, seed, named):
    path = str(tmp_path / "db")
    make_store(path, engine_name)
    data = os.path.join(path, "data.kvt")
    rng = random.Random(seed)
    size = os.path.getsize(data)
    flip(data, rng.sample(range(size), 200))
    try:
        read_everything(path, engine_name if named else None)
    except kvtrees.KvtreesError as e:
        assert_blames_data_file(e)
    else:
        # 200 flips over a few MiB can all land in free pages: then nothing is lost.
        with kvtrees.open(path, engine=engine_name) as db:
            db.check()


def file_bytes(path: str) -> dict:
    out = {}
    for name in ("data.kvt", "wal.log"):
        with open(os.path.join(path, name), "rb") as f:
            out[name] = f.read()
    return out


def page_size(path: str) -> int:
    with kvtrees.open_engine(path, read_only=True) as eng:
        return eng.stats()["page_size"]


def test_damaged_meta_pages(engine_name, tmp_path):
    """200 flipped bytes in one meta page (pages 0 and 1 alternate between checkpoints):
    damaging the older one loses nothing; damaging the newest one makes the log look
    ahead of the data file, and the error must name data.kvt, not wal.log. The failed
    open leaves both files byte for byte as they were (nothing cut from data.kvt)."""
    outcomes = []
    for slot in (0, 1):
        path = str(tmp_path / f"db{slot}")
        make_store(path, engine_name)
        page = page_size(path)
        flip(os.path.join(path, "data.kvt"),
             random.Random(slot).sample(range(slot * page, slot * page + 512), 200))
        before = file_bytes(path)
        try:
            read_everything(path, engine_name)
            outcomes.append("intact")
        except kvtrees.KvtreesError as e:
            assert_blames_data_file(e)
            assert file_bytes(path) == before, "a failed open changed the files"
            outcomes.append("blamed data.kvt")
    assert sorted(outcomes) == ["blamed data.kvt", "intact"], outcomes
