"""Fixtures for the server tests: a kvtrees server on a free loopback port per test
(both engines), gRPC stubs generated from our own protos, and helpers.

Every server fixture runs the store's check() before stopping the server."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

grpc = pytest.importorskip("grpc")

from conftest import ENGINES, require_engine  # noqa: E402
from helpers.ports import free_port  # noqa: E402,F401  (the server tests take it from here)

FAST_BCRYPT = 4        # bcrypt's minimum cost: auth tests stay fast


def stubs(channel) -> SimpleNamespace:
    from kvtrees.server.proto import rpc_pb2_grpc, v3election_pb2_grpc, v3lock_pb2_grpc
    return SimpleNamespace(
        kv=rpc_pb2_grpc.KVStub(channel), watch=rpc_pb2_grpc.WatchStub(channel),
        lease=rpc_pb2_grpc.LeaseStub(channel), cluster=rpc_pb2_grpc.ClusterStub(channel),
        maint=rpc_pb2_grpc.MaintenanceStub(channel), auth=rpc_pb2_grpc.AuthStub(channel),
        lock=v3lock_pb2_grpc.LockStub(channel),
        election=v3election_pb2_grpc.ElectionStub(channel))


class Served:
    """A running server plus a channel and stubs to it."""

    def __init__(self, path, engine: str, **options):
        import kvtrees
        options.setdefault("bcrypt_cost", FAST_BCRYPT)
        self.engine = engine
        self.path = str(path)
        self.srv = kvtrees.serve(self.path, engine, "127.0.0.1:0", **options)
        self.channel = grpc.insecure_channel(self.srv.address)
        self.rpc = stubs(self.channel)
        self.store = self.srv.store

    @property
    def address(self) -> str:
        return self.srv.address

    def close(self, check: bool = True) -> None:
        try:
            if check and not self.srv.wait(0):
                self.store.check()
        finally:
            self.channel.close()
            self.srv.stop(grace=1)


@pytest.fixture(params=ENGINES)
def serve_factory(request, tmp_path):
    """serve_factory(**options) -> Served (engine from the parameter); all are checked
    and stopped at teardown."""
    require_engine(request.param)
    made = []

    def make(sub: str = "db", **options) -> Served:
        s = Served(tmp_path / sub, request.param, **options)
        made.append(s)
        return s
    yield make
    errors = []
    for s in made:
        try:
            s.close()
        except Exception as e:
            errors.append(e)
    if errors:
        raise errors[0]


@pytest.fixture
def served(serve_factory) -> Served:
    return serve_factory()


def rpc_error(fn, *args, **kwargs):
    """Call fn expecting a grpc.RpcError; return (code, details)."""
    with pytest.raises(grpc.RpcError) as ei:
        fn(*args, **kwargs)
    return ei.value.code(), ei.value.details()
