"""Shared pytest fixtures for the kvtrees test suite.

* ``engine_name``: every engine test runs once per engine (bbolt-style: one suite, many
  implementations). The fractal engine is skipped only while this build reports it
  unavailable ("not available in this build"); any other failure to open is a failure.
* ``open_eng``: a factory opening engines with deliberately small sizes so that small
  tests still build multi-level trees, evict pages and flush buffers. Every engine it
  opened is ``check()``-ed and closed at teardown.
* ``slow`` marker: long soaks, run only with ``--runslow`` or ``KVTREES_SLOW=1``.

kvtrees is imported lazily so that a broken native build shows up as test errors of
the tests that need it, not as a collection crash of the whole suite.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

ENGINES = ["btree", "fractal"]

KiB = 1024
MiB = 1024 * KiB

# Small sizes: a few thousand keys give trees of height >= 2, and the cache (the
# minimum the library accepts is 256 KiB) is far smaller than the data of the bigger
# tests, so pages are evicted and written back, and fractal buffers are flushed.
SMALL_OPTIONS = {
    "btree": dict(cache_size=256 * KiB, page_size=4096, wal_limit=1 * MiB),
    "fractal": dict(cache_size=512 * KiB, node_size=64 * KiB, basement_size=4096,
                    wal_limit=1 * MiB),
}


def small_options(engine: str, **overrides) -> dict:
    opts = dict(SMALL_OPTIONS[engine])
    opts.update(overrides)
    return opts


_available: dict = {}


def engine_unavailable_reason(engine: str):
    """None if this build has the engine, else the library's own reason.

    Only the library's explicit "not available in this build" answer counts as
    unavailable; any other error is re-raised so that a broken engine fails loudly."""
    if engine in _available:
        return _available[engine]
    import kvtrees
    d = tempfile.mkdtemp(prefix="kvt-probe-")
    reason = None
    try:
        kvtrees.open_engine(os.path.join(d, "db"), engine=engine).close()
    except kvtrees.KvtreesError as e:
        if "not available" not in str(e):
            raise
        reason = f"engine {engine!r} reported unavailable by this build: {e}"
    finally:
        shutil.rmtree(d, ignore_errors=True)
    _available[engine] = reason
    return reason


def require_engine(engine: str) -> None:
    reason = engine_unavailable_reason(engine)
    if reason:
        pytest.skip(reason)


@pytest.fixture(params=ENGINES)
def engine_name(request) -> str:
    require_engine(request.param)
    return request.param


class EngineFactory:
    """Opens engines for one test; checks and closes whatever is still open at the end."""

    def __init__(self, engine: str, base) -> None:
        self.engine = engine
        self.base = base
        self.path = str(base / "db")
        self._opened = []

    def __call__(self, path=None, *, check: bool = True, **overrides):
        import kvtrees
        opts = small_options(self.engine, **overrides)
        eng = kvtrees.open_engine(path or self.path, engine=self.engine, **opts)
        self._opened.append((eng, check))
        return eng

    def options(self, **overrides) -> dict:
        return small_options(self.engine, **overrides)

    def finish(self) -> None:
        errors = []
        for eng, check in self._opened:
            if eng.closed:
                continue
            try:
                if check:
                    eng.check()
            except Exception as e:  # report, but still close the rest
                errors.append(e)
            finally:
                eng.close()
        if errors:
            raise errors[0]


@pytest.fixture
def open_eng(engine_name, tmp_path):
    """``open_eng(path=None, check=True, **options)`` -> Engine with small sizes."""
    factory = EngineFactory(engine_name, tmp_path)
    yield factory
    factory.finish()


# ---- the slow marker -----------------------------------------------------------------

def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run tests marked slow (long soaks); or set KVTREES_SLOW=1")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long soak, opt-in via --runslow or KVTREES_SLOW=1")
    if config.getoption("--runslow"):
        # Test modules size their loops from this at import time (see is_slow()).
        os.environ["KVTREES_SLOW"] = "1"


def is_slow() -> bool:
    """True when long soaks were asked for (--runslow or KVTREES_SLOW=1)."""
    return os.environ.get("KVTREES_SLOW") == "1"


def run_slow(config) -> bool:
    return bool(config.getoption("--runslow")) or is_slow()


def pytest_collection_modifyitems(config, items):
    if run_slow(config):
        return
    skip = pytest.mark.skip(reason="slow soak: use --runslow or KVTREES_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
