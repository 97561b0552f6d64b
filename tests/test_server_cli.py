"""`kvtrees serve` as a process: etcd's flags, SIGTERM/SIGINT close the store cleanly,
SIGKILL loses no acknowledged write, and a locked, damaged or other-engine directory
exits non-zero with a one-line reason. Both engines; every process is killed at the end."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from conftest import ENGINES, require_engine
from server_fixtures import free_port, grpc

from kvtrees.server.proto import rpc_pb2 as pb, rpc_pb2_grpc

SRC = os.path.join(os.path.dirname(__file__), "..", "src")


def start(data_dir, engine, port, *extra):
    env = dict(os.environ, PYTHONPATH=os.path.abspath(SRC))
    return subprocess.Popen([sys.executable, "-m", "kvtrees", "serve", "--data-dir", data_dir,
                             "--engine", engine, "--listen-client-urls",
                             "http://127.0.0.1:%d" % port, "--log-level", "warn", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_serving(proc, port, timeout=20):
    ch = grpc.insecure_channel("127.0.0.1:%d" % port)
    try:
        grpc.channel_ready_future(ch).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail("server did not start: %s %s" % (out, err))
    return ch


@pytest.fixture(params=ENGINES)
def engine(request):
    require_engine(request.param)
    return request.param


@pytest.fixture
def procs():
    started = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.communicate(timeout=10)


def test_sigterm_drains_and_closes_cleanly(engine, tmp_path, procs):
    import kvtrees
    port = free_port()
    d = str(tmp_path / "db")
    p = start(d, engine, port, "--max-txn-ops", "4", "--cache-size", "8MiB", "--sync", "commit")
    procs.append(p)
    ch = wait_serving(p, port)
    kv = rpc_pb2_grpc.KVStub(ch)
    for i in range(20):
        kv.Put(pb.PutRequest(key=b"k%d" % i, value=b"v%d" % i))
    ops = [pb.RequestOp(request_put=pb.PutRequest(key=b"t%d" % i, value=b"x")) for i in range(5)]
    with pytest.raises(grpc.RpcError) as ei:
        kv.Txn(pb.TxnRequest(success=ops))          # --max-txn-ops took effect
    assert ei.value.details() == "etcdserver: too many operations in txn request"
    ch.close()
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    assert "stopped" in out
    with kvtrees.open(d) as db:
        assert db.get(b"k19")[0] == b"v19" and db.revision == 21
        db.check()


def test_sigkill_loses_no_acknowledged_write(engine, tmp_path, procs):
    import kvtrees
    port = free_port()
    d = str(tmp_path / "db")
    p = start(d, engine, port)
    procs.append(p)
    ch = wait_serving(p, port)
    kv = rpc_pb2_grpc.KVStub(ch)
    acked = 0
    for i in range(200):
        kv.Put(pb.PutRequest(key=b"k%03d" % i, value=b"v"))
        acked += 1
    p.kill()
    p.communicate(timeout=10)
    ch.close()
    with kvtrees.open(d) as db:
        assert sum(1 for _ in db.get_prefix(b"k")) == acked
        db.check()


def test_locked_and_other_engine_dirs_exit_with_reason(engine, tmp_path, procs):
    port = free_port()
    d = str(tmp_path / "db")
    p = start(d, engine, port)
    procs.append(p)
    wait_serving(p, port).close()
    second = start(d, engine, free_port())
    procs.append(second)
    out, err = second.communicate(timeout=20)
    assert second.returncode != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("kvtrees serve:"), err
    p.send_signal(signal.SIGINT)
    p.communicate(timeout=20)
    assert p.returncode == 0
    other = "fractal" if engine == "btree" else "btree"
    third = start(d, other, free_port())
    procs.append(third)
    out, err = third.communicate(timeout=20)
    assert third.returncode != 0 and "kvtrees serve:" in err and len(err.strip().splitlines()) == 1


def test_serve_binds_only_loopback_address_given(tmp_path):
    import kvtrees
    srv = kvtrees.serve(str(tmp_path / "db"), "btree", "127.0.0.1:0")
    try:
        host, port = srv.address.rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0
        import socket
        s = socket.socket()
        try:
            s.settimeout(1)
            other = socket.gethostbyname(socket.gethostname())
            if other.startswith("127."):
                pytest.skip("no non-loopback address to probe")
            assert s.connect_ex((other, int(port))) != 0
        finally:
            s.close()
    finally:
        srv.stop()
