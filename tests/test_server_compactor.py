"""Auto-compaction (--auto-compaction-mode/--auto-compaction-retention), both engines."""
from __future__ import annotations

import time

import pytest

pytest.importorskip("grpc")

from kvtrees.server.compactor import Compactor, parse_retention  # noqa: E402


def test_parse_retention():
    assert parse_retention("revision", "100") == 100
    assert parse_retention("periodic", "1h") == 3600
    assert parse_retention("periodic", "1h30m") == 5400
    assert parse_retention("periodic", "2") == 7200           # bare number: hours
    assert parse_retention("periodic", "500ms") == 0.5
    for bad in ("x", "1d", "", "h1"):
        with pytest.raises(ValueError):
            parse_retention("periodic", bad)
    with pytest.raises(ValueError):
        parse_retention("revision", "-1")


def _wait(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_revision_mode_keeps_the_last_n(tmp_path, engine_name):
    import kvtrees
    with kvtrees.open(str(tmp_path / "db"), engine=engine_name) as db:
        for i in range(30):
            db.put(b"k", b"%d" % i)
        c = Compactor(db, "revision", 10, revision_interval=0.1)
        c.start()
        try:
            _wait(lambda: db.compact_revision == db.revision - 10)
            db.put(b"k", b"more")
            _wait(lambda: db.compact_revision == db.revision - 10)
        finally:
            c.stop()
        db.check()


def test_periodic_mode_compacts_to_a_revision_retention_old(tmp_path, engine_name):
    import kvtrees
    with kvtrees.open(str(tmp_path / "db"), engine=engine_name) as db:
        db.put(b"k", b"old")
        first = db.revision
        c = Compactor(db, "periodic", 1.0)
        c.start()
        try:
            time.sleep(1.3)
            for i in range(5):
                db.put(b"k", b"%d" % i)
            _wait(lambda: db.compact_revision >= first)
            assert db.compact_revision < db.revision     # never the newest writes
        finally:
            c.stop()
        db.check()
