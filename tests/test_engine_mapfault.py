"""Faults under the read map (kvt_pager.h, "guarded access"): a data file truncated under
an open reader, or a disk error on a mapped page, gives CorruptionError or StorageError,
never a dead interpreter. Each case runs in a child process, so a SIGBUS shows up as a
failed test (the child's return code) instead of killing the test run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import small_options

N = 6000

CHILD = textwrap.dedent(r"""
    import json, os, sys
    import kvtrees
    path, engine, mode, opts = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    N = int(sys.argv[5])
    key = lambda i: b"k%07d" % i
    val = lambda i: (b"%07d-" % i) * 14
    eng = kvtrees.open_engine(path, engine=engine, **opts)
    with eng.batch() as b:
        for i in range(N):
            b.put(key(i), val(i))
    eng.checkpoint()
    eng.close()
    eng = kvtrees.open_engine(path, engine=engine, **opts)   # cold: misses go to disk
    for i in range(N):                                       # all pages read (and verified)
        assert eng.get(key(i)) == val(i)
    it = eng.items()
    first = next(it)                                         # an iterator open across the fault
    assert first == (key(0), val(0))
    out = {"map_reads": eng.stats()["map_reads"], "errors": {}, "wrong": 0, "ok": 0}

    def note(e):
        name = type(e).__name__
        out["errors"][name] = out["errors"].get(name, 0) + 1

    if mode == "truncate":
        data = os.path.join(path, "data.kvt")
        os.truncate(data, os.path.getsize(data) // 3)
    else:
        try:
            from kvtrees._native import lib
            kvtrees.errors.check(lib.kvt_debug_map_fault(eng._db))
            out["injected"] = True
        except kvtrees.KvtreesError as e:
            out["injected"] = type(e).__name__
    for i in range(N):
        try:
            v = eng.get(key(i))
        except (kvtrees.CorruptionError, kvtrees.StorageError) as e:
            note(e)
            continue
        if v == val(i):
            out["ok"] += 1
        else:
            out["wrong"] += 1
    try:
        for k, v in it:
            if v != val(int(k[1:])):
                out["wrong"] += 1
    except (kvtrees.CorruptionError, kvtrees.StorageError) as e:
        note(e)
    try:
        eng.check()
        out["check"] = "ok"
    except (kvtrees.CorruptionError, kvtrees.StorageError) as e:
        out["check"] = type(e).__name__
    try:
        eng.close()
    except kvtrees.KvtreesError as e:
        out["close"] = type(e).__name__
    print(json.dumps(out))
""")


def run_child(path, engine, mode, **overrides) -> dict:
    opts = small_options(engine, **overrides)
    p = subprocess.run([sys.executable, "-c", CHILD, str(path), engine, mode,
                        json.dumps(opts), str(N)], capture_output=True, text=True, timeout=120)
    if p.returncode < 0:
        pytest.fail(f"child killed by {signal.Signals(-p.returncode).name}: {p.stderr[-2000:]}")
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("mmap", [True, False])
def test_data_file_truncated_under_open_reader(engine_name, tmp_path, mmap):
    out = run_child(tmp_path / "db", engine_name, "truncate", mmap=mmap)
    if mmap and engine_name == "btree":
        assert out["map_reads"] > 0                     # the reads really went through the map
    assert out["wrong"] == 0                            # no zeros passed off as data
    assert sum(out["errors"].values()) > 0, out
    assert set(out["errors"]) <= {"CorruptionError", "StorageError"}
    assert out["check"] in ("CorruptionError", "StorageError")   # check() sees the damage


def test_disk_error_under_mapped_pages(engine_name, tmp_path):
    out = run_child(tmp_path / "db", engine_name, "inject")
    # B+tree pages and fractal node blobs are both read through the map.
    assert out["injected"] is True and out["map_reads"] > 0
    assert out["wrong"] == 0
    # The first read touching a faulted page fails; the map is then dropped and every
    # later miss is a pread of the (intact) file, so the data reads back whole.
    assert sum(out["errors"].values()) >= 1
    assert set(out["errors"]) <= {"CorruptionError", "StorageError"}
    assert out["ok"] >= N - sum(out["errors"].values())
    assert out["check"] == "ok"
