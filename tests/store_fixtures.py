"""Fixtures shared by the store test modules: one store per engine, checked at teardown."""
import pytest

from etcd_model import load_kvtrees, open_store

kvtrees, ENGINES = load_kvtrees()


@pytest.fixture(params=ENGINES)
def engine(request):
    return request.param


@pytest.fixture
def db(engine, tmp_path):
    d = open_store(engine, tmp_path / "db")
    yield d
    if not d._closed:
        d.check()
        d.close()
