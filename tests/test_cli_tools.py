"""`kvtrees check`, `kvtrees dump` and `kvtrees snapshot save|restore|status`, run as a
user would: a subprocess, its exit status and its output."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import pytest

import kvtrees

SRC = os.path.dirname(os.path.dirname(os.path.abspath(kvtrees.__file__)))


def run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "kvtrees", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def make_store(path: str, engine: str) -> dict:
    """A store with history, a binary value and a leased key; returns facts to compare."""
    with kvtrees.open(path, engine=engine, sync="none") as db:
        for i in range(200):
            db.put(f"app/k{i:03d}", f"v{i}")
        first = db.revision
        db.put("app/k000", "changed")
        db.put("bin", b"\xff\x00\x01")
        lease = db.lease(600)
        db.put("leased", "x", lease=lease)
        db.delete("app/k199")
        facts = dict(revision=db.revision, first=first, lease=lease.id,
                     hash=db.hash_kv()[0],
                     items={kv.key: (v, kv.mod_revision) for v, kv in db.get_all()})
        db.check()
    return facts


def test_check_ok(engine_name, tmp_path):
    path = str(tmp_path / "db")
    facts = make_store(path, engine_name)
    r = run("check", path)
    assert r.returncode == 0, r.stderr
    assert f"engine {engine_name}, revision {facts['revision']}" in r.stdout
    assert f"{len(facts['items'])} keys" in r.stdout
    with kvtrees.open(path) as db:      # the offline check changed nothing
        assert db.revision == facts["revision"]
        db.check()


def test_check_damaged(engine_name, tmp_path):
    path = str(tmp_path / "db")
    make_store(path, engine_name)
    data = os.path.join(path, "data.kvt")
    with open(data, "r+b") as f:        # every page after the two meta pages
        size = os.path.getsize(data)
        for off in range(3 * 4096 + 100, size, 4096):
            f.seek(off)
            f.write(b"\xa5" * 8)
    r = run("check", path)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "damaged" in r.stderr and "data.kvt" in r.stderr, r.stderr


def test_check_errors(engine_name, tmp_path):
    r = run("check", str(tmp_path / "missing"))
    assert r.returncode == 2 and "no such directory" in r.stderr
    os.makedirs(tmp_path / "empty")
    r = run("check", str(tmp_path / "empty"))
    assert r.returncode == 2 and "not a kvtrees store" in r.stderr
    path = str(tmp_path / "db")
    make_store(path, engine_name)
    with kvtrees.open(path) as db:      # a running writer holds the directory
        r = run("check", path)
        assert r.returncode == 2 and "in use by a writer" in r.stderr, r.stderr
        db.check()


def test_dump_text_and_json(engine_name, tmp_path):
    path = str(tmp_path / "db")
    facts = make_store(path, engine_name)
    r = run("dump", path, "--json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    got = {}
    for row in rows:
        key = row["key"].encode() if "key" in row else base64.b64decode(row["key_base64"])
        value = row["value"].encode() if "value" in row else \
            base64.b64decode(row["value_base64"])
        got[key] = (value, row["mod_revision"])
        if key == b"leased":
            assert row["lease"] == facts["lease"]
    assert got == facts["items"]
    r = run("dump", path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("#") and f"revision {facts['revision']}" in lines[0]
    assert len(lines) == 1 + len(facts["items"])
    assert '"app/k000" = "changed"' in r.stdout
    assert '"bin" = base64:' + base64.b64encode(b"\xff\x00\x01").decode() in r.stdout
    # --prefix and --revision: the first value of app/k000, before it changed
    r = run("dump", path, "--json", "--prefix", "app/k00", "--revision", str(facts["first"]))
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["key"] for row in rows] == [f"app/k00{i}" for i in range(10)]
    assert rows[0]["value"] == "v0"
    r = run("dump", path, "--raw")
    assert r.returncode == 0 and len(r.stdout.splitlines()) > len(facts["items"])
    with kvtrees.open(path) as db:
        db.check()


def test_snapshot_save_status_restore(engine_name, tmp_path):
    path = str(tmp_path / "db")
    facts = make_store(path, engine_name)
    snap = str(tmp_path / "snap.db")
    r = run("snapshot", "save", path, snap)
    assert r.returncode == 0, r.stderr
    assert os.path.isfile(snap) and not os.path.exists(snap + ".tmp")
    r = run("snapshot", "status", snap, "--json")
    assert r.returncode == 0, r.stderr
    status = json.loads(r.stdout)
    assert status["revision"] == facts["revision"]
    assert status["total_keys"] == len(facts["items"])
    assert status["hash"] == facts["hash"]
    assert status["engine"] == engine_name
    restored = str(tmp_path / "restored")
    r = run("snapshot", "restore", snap, restored)
    assert r.returncode == 0, r.stderr
    with kvtrees.open(restored) as db:          # the directory's own engine
        assert db.status().engine == engine_name
        assert db.revision == facts["revision"]
        assert {kv.key: (v, kv.mod_revision) for v, kv in db.get_all()} == facts["items"]
        assert db.hash_kv()[0] == facts["hash"]
        assert db.get_lease(facts["lease"]) is not None
        db.put("after-restore", "1")            # a writable store
        db.check()


def test_snapshot_refuses_to_overwrite(engine_name, tmp_path):
    path = str(tmp_path / "db")
    make_store(path, engine_name)
    snap = str(tmp_path / "snap.db")
    assert run("snapshot", "save", path, snap).returncode == 0
    size = os.path.getsize(snap)
    r = run("snapshot", "save", path, snap)
    assert r.returncode == 2 and "exists" in r.stderr
    assert os.path.getsize(snap) == size
    r = run("snapshot", "restore", snap, path)          # a non-empty directory
    assert r.returncode == 2 and "not empty" in r.stderr
    garbage = str(tmp_path / "garbage.db")
    with open(garbage, "wb") as f:
        f.write(os.urandom(3 * 4096))
    target = str(tmp_path / "from-garbage")
    r = run("snapshot", "restore", garbage, target)
    assert r.returncode in (1, 2) and r.stderr, (r.returncode, r.stderr)
    assert not os.path.exists(target)                   # nothing half-made is left
    with kvtrees.open(path) as db:
        db.check()


def test_check_raw_engine_directory(engine_name, tmp_path):
    path = str(tmp_path / "raw")
    with kvtrees.open_engine(path, engine=engine_name) as eng:
        for i in range(500):
            eng.put(b"key%04d" % i, b"v" * 100)
        eng.check()
    r = run("check", path, "--raw")
    assert r.returncode == 0, r.stderr
    assert f"engine {engine_name}" in r.stdout
    if engine_name == "btree":                  # the fractal tree's count is an estimate
        assert "500 entries" in r.stdout
    r = run("check", path)                      # not a store: its layout is refused
    assert r.returncode == 1 and "store" in r.stderr, r.stderr
    with kvtrees.open_engine(path) as eng:
        eng.check()
