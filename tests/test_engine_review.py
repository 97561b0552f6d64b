"""Regressions found by the review of the C layers (native/db, pager, wal, btree)."""
import pytest

import kvtrees

ENGINES = ["btree", "fractal"]


@pytest.mark.parametrize("engine", ENGINES)
def test_batch_over_the_log_record_limit_is_refused_not_fatal(tmp_path, engine):
    # A batch larger than one WAL record may hold (2 x 64 MiB + 1 MiB) used to be
    # refused only at commit, by the log, and that refusal latched the handle fatal.
    big = b"\0" * (48 << 20)
    with kvtrees.open_engine(str(tmp_path), engine=engine, sync="none") as eng:
        eng.put(b"a", b"1")
        with pytest.raises(kvtrees.TooLargeError):
            with eng.batch() as b:
                for i in range(4):
                    b.put(b"big%d" % i, big)
        eng.put(b"b", b"2")
        assert eng.get(b"a") == b"1" and eng.get(b"b") == b"2"
        assert eng.get(b"big0") is None
        eng.check()
    with kvtrees.open_engine(str(tmp_path), engine=engine) as eng:
        assert eng.get(b"b") == b"2" and eng.get(b"big0") is None
