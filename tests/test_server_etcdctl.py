"""Debian's etcdctl 3.4 against `kvtrees serve` and a real etcd 3.4 side by side: the
same commands on fresh servers print the same output (after normalising ids, lease ids,
endpoints, sizes and timings), on both engines."""
from __future__ import annotations

import subprocess
import time

import pytest

from etcd_reference import (EtcdProcess, Normaliser, background, etcdctl, have_etcd,
                            have_etcdctl, stop_background)
from server_fixtures import Served, require_engine
from conftest import ENGINES

pytestmark = pytest.mark.skipif(not (have_etcd() and have_etcdctl()),
                                reason="needs Debian's etcd-server and etcd-client")

TXN_DUP = "\n\nput dup 1\nput dup 2\n\n\n"
TXN_129 = "\n\n" + "".join("put t%d x\n" % i for i in range(1, 130)) + "\n\n"


def script(run):
    """The command sequence; run(*args, stdin=None) returns (stdout, stderr_last, rc)."""
    run("put", "foo/a", "1")
    run("put", "foo/b", "2")
    run("put", "foob", "3")
    run("put", "--prev-kv", "foo/a", "1x")
    run("get", "foo/a")
    run("get", "foo/", "--prefix")
    run("get", "foo", "--prefix", "--keys-only")
    run("get", "foo", "--prefix", "--print-value-only")
    run("get", "foo/a", "foo/c")
    run("get", "foo", "--prefix", "--limit=1")
    run("get", "foo", "--prefix", "--sort-by=MODIFY", "--order=DESCEND", "--keys-only")
    run("get", "foo", "--prefix", "--sort-by=VALUE", "--order=DESCEND", "-w", "json")
    run("get", "nosuchkey")
    run("get", "--from-key", "foo/b")
    for v in ("v1", "v2", "v3"):
        run("put", "k", v)
    run("get", "k", "--rev=6")
    run("get", "k", "--rev=999999")
    run("get", "k", "-w", "json")
    run("get", "nosuchkey", "-w", "json")
    run("put", "k2", "x", "-w", "json")
    run("get", "foo", "--prefix", "-w", "json")
    run("del", "foo/a")
    run("del", "nosuchkey")
    run("del", "--prev-kv", "foo/b")
    run("put", "foo/c", "3")
    run("del", "foo", "--prefix", "-w", "json")
    run("txn", stdin='mod("k") = "8"\n\nput k v4\n\nget k\n\n')
    run("txn", stdin='mod("k") = "8"\n\nput k v5\n\nget k\n\n')
    run("txn", "-w", "json",
        stdin='value("k") = "v4"\nversion("k") > "0"\n\nput k v6\nget k\n\nget k\n\n')
    run("txn", stdin='create("newkey") = "0"\n\nput newkey created\n\n\n')
    run("txn", stdin='create("newkey") = "0"\n\nput newkey created\n\n\n')
    run("txn", stdin=TXN_DUP)
    run("txn", stdin=TXN_129)
    run("txn", stdin='mod("k") < "1000"\n\ndel t --prefix\n\n\n')
    run("put", "w", "a")
    run.watch_from = run.revision()
    run("put", "w", "b")
    run("lease", "grant", "60", lease_from_stdout=True)
    run("lease", "grant", "1", lease_from_stdout=True)
    run("put", "--lease=" + run.lease(0), "lk", "lv")
    run("get", "lk", "-w", "json")
    run("lease", "timetolive", "--keys", run.lease(0))
    run("lease", "keep-alive", "--once", run.lease(0))
    run("lease", "list")
    run("lease", "revoke", run.lease(0))
    run("get", "lk")
    run("lease", "timetolive", run.lease(0))
    run("put", "--lease=" + run.lease(0), "lk2", "lv")
    run("lease", "revoke", run.lease(0))
    run("put", "--lease=1234abcd", "k", "x")
    run("lease", "keep-alive", "--once", "1234abcd")
    run("put", "c", "1")
    run("put", "c", "2")
    rev = run.revision()
    run("compact", str(rev))
    run("get", "c", "--rev=%d" % (rev - 1))
    run("get", "c", "--rev=%d" % rev)
    run("compact", str(rev))
    run("compact", "1")
    run("compact", "999999")
    run("put", "c", "3")
    run("compact", "--physical", str(rev + 1))
    run("endpoint", "hashkv", "-w", "json")
    run("endpoint", "health")
    run("endpoint", "status", "-w", "json")
    run("member", "list", "-w", "json")
    run("alarm", "list")
    run("user", "add", "root:rootpw")
    run("role", "add", "app")
    run("role", "grant-permission", "app", "readwrite", "app/", "--prefix=true")
    run("user", "add", "alice:alicepw")
    run("user", "grant-role", "alice", "app")
    run("auth", "enable")
    run("--user=alice:alicepw", "put", "app/x", "1")
    run("--user=alice:alicepw", "put", "other", "1")
    run("--user=alice:wrong", "get", "app/x")
    run("--user=root:rootpw", "user", "list")
    run("--user=root:rootpw", "role", "get", "app")
    run("--user=root:rootpw", "user", "get", "alice")
    run("--user=root:rootpw", "auth", "disable")
    run("get", "app/x", "--print-value-only")


class Runner:
    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.norm = Normaliser()
        self.out: list = []
        self._leases: list = []

    def lease(self, i: int) -> str:
        return self._leases[i]

    def revision(self) -> int:
        import json
        return json.loads(etcdctl(self.endpoint, "get", "x", "-w", "json").stdout)[
            "header"]["revision"]

    def __call__(self, *args, stdin=None, lease_from_stdout=False):
        r = etcdctl(self.endpoint, *args, stdin=stdin)
        if lease_from_stdout and r.returncode == 0:
            hexid = r.stdout.split()[1]
            self._leases.append(hexid)
            self.norm.lease(hexid)
        err = [line for line in r.stderr.splitlines() if not line.startswith('{"level"')]
        stdout = self.norm(r.stdout, self.endpoint)
        if args[:2] == ("lease", "list"):      # etcd lists leases in Go map order
            head, *ids = stdout.splitlines()
            stdout = "\n".join([head] + sorted(ids))
        self.out.append((self.norm("$ etcdctl " + " ".join(args), self.endpoint), stdout,
                         self.norm("\n".join(err), self.endpoint), r.returncode))


def _watch_and_elect(endpoint: str, norm: Normaliser, watch_from: int) -> list:
    """watch replay (--rev, --prev-kv, --prefix), a watch from a compacted revision,
    lock with a command, and elect with an observer."""
    out = []
    w = background(endpoint, "watch", "w", "--prefix", "--rev=%d" % watch_from, "--prev-kv")
    time.sleep(1.0)
    etcdctl(endpoint, "put", "w/x", "1")
    time.sleep(0.5)
    o, _ = stop_background(w)
    out.append(("watch --prefix --rev --prev-kv", norm(o, endpoint)))
    try:
        r = etcdctl(endpoint, "watch", "c", "--rev=2", timeout=10)
        out.append(("watch compacted", r.stdout, r.stderr.strip().splitlines()[-1:],
                    r.returncode))
    except subprocess.TimeoutExpired:
        out.append(("watch compacted", "timed out"))
    r = etcdctl(endpoint, "lock", "mylock", "--", "echo", "holder-ran")
    out.append(("lock", r.stdout, r.returncode))
    obs = background(endpoint, "elect", "-l", "myelection")
    leader = background(endpoint, "elect", "myelection", "p1")
    time.sleep(1.5)
    lo, _ = stop_background(leader)
    oo, _ = stop_background(obs)
    # the keys name lease ids: keep the shape, drop the id
    import re
    strip = lambda s: re.sub(r"myelection/[0-9a-f]+", "myelection/ID", s)  # noqa: E731
    out.append(("elect", strip(lo), strip(oo)))
    return out


@pytest.fixture(params=ENGINES)
def engine(request):
    require_engine(request.param)
    return request.param


def test_etcdctl_output_matches_etcd(engine, tmp_path):
    etcd = EtcdProcess(str(tmp_path / "etcd" / "data"))
    try:
        ref = Runner(etcd.address)
        script(ref)
        ref_extra = _watch_and_elect(etcd.address, ref.norm, ref.watch_from)
    finally:
        etcd.stop()
    kv = Served(tmp_path / "kvt", engine)
    try:
        ours = Runner(kv.address)
        script(ours)
        our_extra = _watch_and_elect(kv.address, ours.norm, ours.watch_from)
        kv.store.check()
    finally:
        kv.close(check=False)
    mismatches = [(a, b) for a, b in zip(ref.out, ours.out) if a != b]
    assert not mismatches, "\n\n".join("etcd:    %r\nkvtrees: %r" % m for m in mismatches)
    assert ref_extra == our_extra
