"""Damaged files: CorruptionError (naming file and page), never a crash, never wrong data.

Each case damages a copy of a small database in one way, then opens it, reads every
key and runs check(). The only acceptable outcomes are a kvtrees error (for checksum
damage: CorruptionError naming the file and page) or, where the damage hit bytes that
the database no longer uses, exactly the right data.
"""

from __future__ import annotations

import os
import random
import struct
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

import kvtrees
from conftest import small_options
from helpers.batches import verify_batches

PAGE_HDR = 32           # pager header: crc32c, type (byte 4), pgno, gen
PT_FREE = 0


def build_db(path: str, engine: str) -> dict:
    """A checkpointed database of a few hundred pages; returns its contents."""
    rng = random.Random(42)
    model = {}
    with kvtrees.open_engine(path, engine=engine, **small_options(engine)) as eng:
        with eng.batch() as b:
            for i in range(4000):
                key = b"k%07d" % rng.randrange(10**7)
                v = bytes([i % 256]) * rng.choice([1, 30, 200, 5000])
                b.put(key, v)
                model[key] = v
        eng.checkpoint()
        eng.check()
        page_size = eng.stats()["page_size"]
    return model, page_size


def read_all(path: str, engine: str):
    """Open, read everything, check. Returns items; raises on any detected damage."""
    opts = small_options(engine) if engine else {}
    with kvtrees.open_engine(path, engine=engine, **opts) as eng:
        items = list(eng.items())
        for key, value in items[::50]:
            assert eng.get(key) == value
        eng.check()
        return items


def flip(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x5A]))


def live_pages(data: bytes, page_size: int):
    """Page numbers >= 2 (not meta) whose header says they are in use."""
    out = []
    for pgno in range(2, len(data) // page_size):
        if data[pgno * page_size + 4] != PT_FREE:
            out.append(pgno)
    return out


def test_flipped_byte_in_data_page(engine_name, tmp_path):
    src = str(tmp_path / "src")
    model, page_size = build_db(src, engine_name)
    expect = sorted(model.items())
    with open(os.path.join(src, "data.kvt"), "rb") as f:
        data = f.read()
    pages = live_pages(data, page_size)
    assert len(pages) >= 10, f"only {len(pages)} pages: the database is too small to test"
    rng = random.Random(3)
    sample = sorted(rng.sample(pages, min(16, len(pages))))
    detected = 0
    for pgno in sample:
        case = str(tmp_path / f"p{pgno}")
        shutil.copytree(src, case)
        offset = pgno * page_size + PAGE_HDR + rng.randrange(page_size - PAGE_HDR)
        flip(os.path.join(case, "data.kvt"), offset)
        try:
            got = read_all(case, engine_name)
        except kvtrees.CorruptionError as e:
            detected += 1
            msg = str(e)
            assert "data.kvt" in msg, msg
            assert re.search(r"\bpage\D{0,3}%d\b" % pgno, msg), f"page {pgno} not named: {msg}"
            continue
        # Not detected: only acceptable if the page is not part of the checkpoint.
        assert got == expect, f"flipped byte in page {pgno} gave wrong data silently"
        shutil.rmtree(case)
    # A checkpoint from a fresh file has almost no garbage: nearly every page is live.
    assert detected >= len(sample) // 2, f"only {detected}/{len(sample)} damaged pages detected"


def test_flipped_byte_in_page_header(engine_name, tmp_path):
    src = str(tmp_path / "src")
    model, page_size = build_db(src, engine_name)
    with open(os.path.join(src, "data.kvt"), "rb") as f:
        data = f.read()
    pages = live_pages(data, page_size)
    for field_offset in (0, 4, 8, 16):          # crc, type, pgno, gen
        pgno = pages[len(pages) // 2]
        case = str(tmp_path / f"h{field_offset}")
        shutil.copytree(src, case)
        flip(os.path.join(case, "data.kvt"), pgno * page_size + field_offset)
        try:
            got = read_all(case, engine_name)
        except kvtrees.CorruptionError as e:
            assert "data.kvt" in str(e)
            continue
        assert got == sorted(model.items()), f"header byte {field_offset} damage went unnoticed"


WAL_WRITER = textwrap.dedent("""
    import os, random, sys
    sys.path.insert(0, sys.argv[3])
    import kvtrees
    from helpers.batches import commit_batch
    eng = kvtrees.open_engine(sys.argv[1], engine=sys.argv[2], sync="commit")
    rng = random.Random(0)
    for i in range(1, int(sys.argv[4]) + 1):
        commit_batch(eng, i, rng)
    os._exit(0)          # no close: no checkpoint, the batches stay in wal.log
""")

N_WAL_BATCHES = 21


def build_wal_db(path: str, engine: str) -> None:
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    subprocess.run([sys.executable, "-c", WAL_WRITER, path, engine, tests_dir,
                    str(N_WAL_BATCHES)], check=True, timeout=120)
    assert os.path.getsize(os.path.join(path, "wal.log")) > 0


def test_wal_survives_kill_and_replays(engine_name, tmp_path):
    src = str(tmp_path / "src")
    build_wal_db(src, engine_name)
    with kvtrees.open_engine(src, engine=engine_name) as eng:
        assert verify_batches(eng, N_WAL_BATCHES, N_WAL_BATCHES) == N_WAL_BATCHES
        eng.check()


def wal_log_end(wal: str) -> int:
    """Offset past the last record of wal.log (the log grows its file ahead with zeros,
    so the file size is not the log's end). Walks the documented framing: a 32-byte
    file header, then records of a 24-byte header (u32 crc, u32 payload length, ...)
    and a payload; a batch is never empty, so a zero length is the preallocated tail."""
    with open(wal, "rb") as f:
        data = f.read()
    off = 32
    while off + 24 <= len(data):
        length = struct.unpack_from("<I", data, off + 4)[0]
        if length == 0 or off + 24 + length > len(data):
            break
        off += 24 + length
    return off


def test_flipped_byte_in_middle_wal_record(engine_name, tmp_path):
    src = str(tmp_path / "src")
    build_wal_db(src, engine_name)
    wal = os.path.join(src, "wal.log")
    size = wal_log_end(wal)
    for frac in (0.35, 0.5, 0.65):
        case = str(tmp_path / f"w{frac}")
        shutil.copytree(src, case)
        flip(os.path.join(case, "wal.log"), int(size * frac))
        with pytest.raises(kvtrees.CorruptionError) as ei:
            read_all(case, engine_name)
        assert "wal.log" in str(ei.value), str(ei.value)


def test_damaged_last_wal_record_is_a_torn_tail(engine_name, tmp_path):
    src = str(tmp_path / "src")
    build_wal_db(src, engine_name)
    flip(os.path.join(src, "wal.log"), wal_log_end(os.path.join(src, "wal.log")) - 3)
    with kvtrees.open_engine(src, engine=engine_name) as eng:
        # The last batch is lost (its record is damaged), everything before it is intact.
        assert verify_batches(eng, N_WAL_BATCHES - 1, N_WAL_BATCHES) == N_WAL_BATCHES - 1
        eng.check()


def test_truncated_wal_gives_a_prefix(engine_name, tmp_path):
    src = str(tmp_path / "src")
    build_wal_db(src, engine_name)
    size = wal_log_end(os.path.join(src, "wal.log"))
    rng = random.Random(9)
    lasts = []
    for cut in sorted({0, 1, 7, size // 3, size // 2, size - 1} |
                      {rng.randrange(size) for _ in range(4)}):
        case = str(tmp_path / f"t{cut}")
        shutil.copytree(src, case)
        os.truncate(os.path.join(case, "wal.log"), cut)
        with kvtrees.open_engine(case, engine=engine_name) as eng:
            lasts.append(verify_batches(eng, 0, N_WAL_BATCHES))
            eng.check()
    assert lasts == sorted(lasts), "a longer log gave fewer batches"
    assert lasts[0] == 0 and lasts[-1] == N_WAL_BATCHES - 1


def expect_error_or_correct(path, engine, expect):
    try:
        got = read_all(path, engine)
    except kvtrees.KvtreesError:
        return True
    assert got == expect, "damaged file opened and returned wrong data"
    return False


def test_truncated_data_file(engine_name, tmp_path):
    src = str(tmp_path / "src")
    model, page_size = build_db(src, engine_name)
    size = os.path.getsize(os.path.join(src, "data.kvt"))
    errors = 0
    for cut in (page_size, 2 * page_size, size // 2, size - page_size, size // 2 + 100):
        case = str(tmp_path / f"c{cut}")
        shutil.copytree(src, case)
        os.truncate(os.path.join(case, "data.kvt"), cut)
        errors += expect_error_or_correct(case, engine_name, sorted(model.items()))
    assert errors >= 3


def test_zero_length_files(engine_name, tmp_path):
    src = str(tmp_path / "src")
    model, _ = build_db(src, engine_name)
    # An empty log after a clean close is normal.
    case = str(tmp_path / "wal0")
    shutil.copytree(src, case)
    open(os.path.join(case, "wal.log"), "wb").close()
    assert read_all(case, engine_name) == sorted(model.items())
    # An empty data file: an error, or (as after a crash during creation) an empty db.
    case = str(tmp_path / "data0")
    shutil.copytree(src, case)
    open(os.path.join(case, "data.kvt"), "wb").close()
    try:
        got = read_all(case, engine_name)
    except kvtrees.KvtreesError:
        pass
    else:
        assert got == []


@pytest.mark.parametrize("size", [1, 100, 4096, 3 * 4096 + 17, 65536])
def test_garbage_data_file(engine_name, tmp_path, size):
    p = tmp_path / "db"
    p.mkdir()
    rng = random.Random(size)
    (p / "data.kvt").write_bytes(bytes(rng.randrange(256) for _ in range(size)))
    with pytest.raises(kvtrees.KvtreesError):
        read_all(str(p), engine_name)
    with pytest.raises(kvtrees.KvtreesError):
        read_all(str(p), None)


def test_garbage_wal_file(engine_name, tmp_path):
    src = str(tmp_path / "src")
    model, _ = build_db(src, engine_name)
    rng = random.Random(1)
    for n in (1, 50, 5000):
        case = str(tmp_path / f"g{n}")
        shutil.copytree(src, case)
        with open(os.path.join(case, "wal.log"), "wb") as f:
            f.write(bytes(rng.randrange(256) for _ in range(n)))
        expect_error_or_correct(case, engine_name, sorted(model.items()))


def test_zeroed_page(engine_name, tmp_path):
    """A page of zeros (a lost write the disk acknowledged) is detected, not read as empty."""
    src = str(tmp_path / "src")
    model, page_size = build_db(src, engine_name)
    with open(os.path.join(src, "data.kvt"), "rb") as f:
        data = f.read()
    pages = live_pages(data, page_size)
    detected = 0
    for pgno in pages[:: max(1, len(pages) // 6)]:
        case = str(tmp_path / f"z{pgno}")
        shutil.copytree(src, case)
        with open(os.path.join(case, "data.kvt"), "r+b") as f:
            f.seek(pgno * page_size)
            f.write(bytes(page_size))
        detected += expect_error_or_correct(case, engine_name, sorted(model.items()))
    assert detected >= 1
