#!/usr/bin/env python3
"""kvtrees serve (both engines) beside etcd 3.4, through the same asynchronous gRPC
client: put, get, txn and a Kubernetes-shaped mix with 64 requests in flight;
throughput and p50/p99 latency; optionally `etcdctl check perf --load=l` against each.

    python bench/server_bench.py                  # ~2 minutes
    python bench/server_bench.py --ops 20000 --check-perf --out bench/SERVER_RESULTS.md

Every server is a separate process on 127.0.0.1 (free ports, temporary data dirs, the
same fsync-per-commit durability: etcd always fsyncs, kvtrees runs --sync commit) and is
killed at the end. Targets run interleaved, one workload at a time, so load changes on
this shared machine hit all of them alike. The client is one Python process (grpc.aio);
its own cost is part of every number, equally for every target.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "src"))

import grpc  # noqa: E402

from kvtrees.server.proto import rpc_pb2 as pb, rpc_pb2_grpc  # noqa: E402


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(addr: str, timeout: float = 30) -> None:
    ch = grpc.insecure_channel(addr)
    try:
        grpc.channel_ready_future(ch).result(timeout=timeout)
    finally:
        ch.close()


class Target:
    def __init__(self, name: str, argv: list, addr: str, workdir: str):
        self.name, self.addr = name, addr
        self.log = open(os.path.join(workdir, name + ".log"), "wb")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        wait_ready(addr)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def start_etcd(workdir: str) -> Target:
    c, p = free_port(), free_port()
    peer = "http://127.0.0.1:%d" % p
    return Target("etcd-3.4", [
        shutil.which("etcd") or "/usr/bin/etcd", "--name", "b",
        "--data-dir", os.path.join(workdir, "etcd"),
        "--listen-client-urls", "http://127.0.0.1:%d" % c,
        "--advertise-client-urls", "http://127.0.0.1:%d" % c, "--listen-peer-urls", peer,
        "--initial-advertise-peer-urls", peer, "--initial-cluster", "b=" + peer,
        "--log-level", "error", "--logger", "zap"], "127.0.0.1:%d" % c, workdir)


def start_noop(workdir: str) -> Target:
    """A Python gRPC server (same grpcio, same thread-pool server as kvtrees) whose
    handlers do nothing: the ceiling the Python serving path sets on this machine."""
    c = free_port()
    os.environ["PYTHONPATH"] = os.path.join(ROOT, "src")
    return Target("python-grpc-noop", [sys.executable, os.path.abspath(__file__),
                                       "--noop-server", str(c)], "127.0.0.1:%d" % c, workdir)


def serve_noop(port: int) -> None:
    from concurrent import futures

    class NoopKV(rpc_pb2_grpc.KVServicer):
        def Range(self, req, ctx):
            return pb.RangeResponse(header=pb.ResponseHeader(revision=1))

        def Put(self, req, ctx):
            return pb.PutResponse(header=pb.ResponseHeader(revision=1))

        def Txn(self, req, ctx):
            return pb.TxnResponse(header=pb.ResponseHeader(revision=1), succeeded=True)
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=512))
    rpc_pb2_grpc.add_KVServicer_to_server(NoopKV(), srv)
    srv.add_insecure_port("127.0.0.1:%d" % port)
    srv.start()
    signal.signal(signal.SIGTERM, lambda *a: srv.stop(0))
    srv.wait_for_termination()


def start_kvtrees(workdir: str, engine: str) -> Target:
    c = free_port()
    env_py = [sys.executable, "-m", "kvtrees", "serve", "--data-dir",
              os.path.join(workdir, engine), "--engine", engine, "--sync", "commit",
              "--listen-client-urls", "http://127.0.0.1:%d" % c, "--log-level", "warn"]
    os.environ["PYTHONPATH"] = os.path.join(ROOT, "src")
    return Target("kvtrees-" + engine, env_py, "127.0.0.1:%d" % c, workdir)


# ---------------------------------------------------------------- workloads
def _key(i: int) -> bytes:
    return b"/registry/pods/ns%02d/pod-%07d" % (i % 50, i)


def make_request(kind: str, rng: random.Random, nkeys: int, value: bytes):
    """(method name, request) for one operation of a workload."""
    i = rng.randrange(nkeys)
    if kind == "put":
        return "Put", pb.PutRequest(key=_key(i), value=value)
    if kind == "get":
        return "Range", pb.RangeRequest(key=_key(i))
    if kind == "txn":     # create-if-absent else update, as Kubernetes' GuaranteedUpdate
        k = _key(i)
        return "Txn", pb.TxnRequest(
            compare=[pb.Compare(key=k, target=pb.Compare.VERSION, result=pb.Compare.GREATER,
                                version=0)],
            success=[pb.RequestOp(request_put=pb.PutRequest(key=k, value=value))],
            failure=[pb.RequestOp(request_range=pb.RangeRequest(key=k))])
    r = rng.random()    # mix: 50% get, 30% guarded update, 10% put, 10% list of a namespace
    if r < 0.5:
        return make_request("get", rng, nkeys, value)
    if r < 0.8:
        return make_request("txn", rng, nkeys, value)
    if r < 0.9:
        return make_request("put", rng, nkeys, value)
    ns = b"/registry/pods/ns%02d/" % rng.randrange(50)
    return "Range", pb.RangeRequest(key=ns, range_end=ns[:-1] + b"0", limit=100)


async def run_workload(addr: str, kind: str, ops: int, inflight: int, nkeys: int,
                       value: bytes, seed: int) -> dict:
    async with grpc.aio.insecure_channel(addr) as ch:
        stub = rpc_pb2_grpc.KVStub(ch)
        rng = random.Random(seed)
        reqs = [make_request(kind, rng, nkeys, value) for _ in range(ops)]
        lat: list = []
        nxt = 0

        async def worker():
            nonlocal nxt
            while nxt < len(reqs):
                method, req = reqs[nxt]
                nxt += 1
                t0 = time.perf_counter()
                await getattr(stub, method)(req)
                lat.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(inflight)))
        wall = time.perf_counter() - t0
    lat.sort()
    return {"ops_s": ops / wall, "p50_ms": 1000 * lat[len(lat) // 2],
            "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))]}


async def preload(addr: str, nkeys: int, value: bytes) -> None:
    async with grpc.aio.insecure_channel(addr) as ch:
        stub = rpc_pb2_grpc.KVStub(ch)
        for start in range(0, nkeys, 100):
            ops = [pb.RequestOp(request_put=pb.PutRequest(key=_key(i), value=value))
                   for i in range(start, min(nkeys, start + 100))]
            await stub.Txn(pb.TxnRequest(success=ops))


async def watch_fanout(addr: str, watchers: int, streams: int, writes: int) -> dict:
    """`watchers` watches on one prefix (spread over `streams` streams), then `writes`
    puts under it: every watch must see every put once, in revision order. Returns the
    delivery rate (events/s from the first put to the last event delivered)."""
    prefix = b"/fanout/"
    async with grpc.aio.insecure_channel(addr) as ch:
        wstub, kv = rpc_pb2_grpc.WatchStub(ch), rpc_pb2_grpc.KVStub(ch)
        per = [watchers // streams + (1 if i < watchers % streams else 0)
               for i in range(streams)]
        calls, seen = [], {}
        for n in per:
            reqs = asyncio.Queue()
            for _ in range(n):
                await reqs.put(pb.WatchRequest(create_request=pb.WatchCreateRequest(
                    key=prefix, range_end=prefix[:-1] + b"0")))

            async def gen(q=reqs):
                while True:
                    item = await q.get()
                    if item is None:
                        return
                    yield item
            call = wstub.Watch(gen())
            calls.append((call, reqs))
            created = 0
            while created < n:
                r = await call.read()
                created += r.created
        expected = writes * watchers
        done = asyncio.Event()
        bad = []

        async def drain(si, call):
            while True:
                r = await call.read()     # (read(), not async for: one style per call)
                if r is grpc.aio.EOF:
                    return
                for e in r.events:
                    k = (si, r.watch_id)
                    last = seen.get(k, 0)
                    if e.kv.mod_revision <= last:
                        bad.append((k, last, e.kv.mod_revision))
                    seen[k] = e.kv.mod_revision
                    drain.count += 1
                if drain.count >= expected:
                    done.set()
        drain.count = 0
        tasks = [asyncio.ensure_future(drain(i, c)) for i, (c, _) in enumerate(calls)]
        t0 = time.perf_counter()
        for i in range(writes):
            await kv.Put(pb.PutRequest(key=prefix + b"%d" % (i % 10), value=b"x" * 64))
        try:
            await asyncio.wait_for(done.wait(), timeout=120)
        except asyncio.TimeoutError:
            pass                              # reported: events < expected
        for t in tasks:
            if t.done() and t.exception():
                raise t.exception()
        wall = time.perf_counter() - t0
        for c, q in calls:
            c.cancel()
        for t in tasks:
            t.cancel()
        return {"events": drain.count, "expected": expected, "out_of_order": len(bad),
                "events_s": drain.count / wall}


def check_perf(addr: str) -> str:
    """`etcdctl check perf --load=l`: its verdict lines (PASS/FAIL per criterion)."""
    r = subprocess.run([shutil.which("etcdctl") or "/usr/bin/etcdctl", "--endpoints=" + addr,
                        "check", "perf", "--load=l"], capture_output=True, text=True,
                       timeout=300, env=dict(os.environ, ETCDCTL_API="3"))
    lines = [ln for ln in (r.stdout + r.stderr).splitlines()
             if ln.startswith(("PASS", "FAIL", "WARN"))]
    return "; ".join(lines) + " (exit %d)" % r.returncode


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=10000, help="requests per workload and target")
    ap.add_argument("--keys", type=int, default=10000, help="keys preloaded")
    ap.add_argument("--value-size", type=int, default=256)
    ap.add_argument("--inflight", type=int, default=64)
    ap.add_argument("--workloads", default="put,get,txn,mix")
    ap.add_argument("--engines", default="btree,fractal")
    ap.add_argument("--check-perf", action="store_true")
    ap.add_argument("--fanout", type=int, default=0, metavar="WATCHERS",
                    help="also run the watch fan-out: WATCHERS watches on one prefix")
    ap.add_argument("--fanout-writes", type=int, default=200)
    ap.add_argument("--noop", action="store_true",
                    help="also run a do-nothing Python gRPC server (the serving-path ceiling)")
    ap.add_argument("--out", help="also write the markdown table here")
    ap.add_argument("--noop-server", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.noop_server:
        serve_noop(args.noop_server)
        return 0
    value = b"v" * args.value_size
    args.load_before = os.getloadavg()
    # the servers run in their own sessions: on SIGTERM (e.g. from `timeout`) unwind
    # through the finally below, which stops them
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    workdir = tempfile.mkdtemp(prefix="kvt-srvbench-")
    targets = []
    try:
        targets.append(start_etcd(workdir))
        for eng in args.engines.split(","):
            targets.append(start_kvtrees(workdir, eng))
        if args.noop:
            targets.append(start_noop(workdir))
        for t in targets:
            asyncio.run(preload(t.addr, args.keys, value))
        results = {}
        for kind in args.workloads.split(","):
            for t in targets:
                results[(kind, t.name)] = asyncio.run(run_workload(
                    t.addr, kind, args.ops, args.inflight, args.keys, value, seed=7))
                r = results[(kind, t.name)]
                print("%-5s %-16s %9.0f ops/s  p50 %7.2f ms  p99 %7.2f ms"
                      % (kind, t.name, r["ops_s"], r["p50_ms"], r["p99_ms"]), flush=True)
        fan = {}
        if args.fanout:
            for t in targets:
                if "noop" in t.name:
                    continue
                fan[t.name] = asyncio.run(watch_fanout(t.addr, args.fanout, 10,
                                                       args.fanout_writes))
                print("fanout %-16s %s" % (t.name, fan[t.name]), flush=True)
        args.fan = fan
        perf = ({t.name: check_perf(t.addr) for t in targets if "noop" not in t.name}
                if args.check_perf else {})
    finally:
        for t in targets:
            t.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    table = report(results, [t.name for t in targets], perf, args)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table)
    return 0


def report(results: dict, names: list, perf: dict, args) -> str:
    base = names[0]
    lines = ["# kvtrees serve beside etcd 3.4", "",
             "Command: `python bench/server_bench.py %s`" % " ".join(sys.argv[1:]), "",
             "| workload | target | ops/s | x etcd | p50 ms | p99 ms |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for kind in args.workloads.split(","):
        for n in names:
            r = results[(kind, n)]
            ratio = r["ops_s"] / results[(kind, base)]["ops_s"]
            lines.append("| %s | %s | %.0f | %.2f | %.2f | %.2f |"
                         % (kind, n, r["ops_s"], ratio, r["p50_ms"], r["p99_ms"]))
    lines += ["", "Load average before the run: %s" % " ".join(
        "%.2f" % x for x in args.load_before)]
    if args.fan:
        lines += ["", "Watch fan-out: %d watches on one prefix (10 streams), %d puts:" % (
            args.fanout, args.fanout_writes), "",
            "| target | events delivered | expected | out of order | events/s | x etcd |",
            "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for n, r in args.fan.items():
            lines.append("| %s | %d | %d | %d | %.0f | %.2f |" % (
                n, r["events"], r["expected"], r["out_of_order"], r["events_s"],
                r["events_s"] / args.fan[base]["events_s"]))
    if perf:
        lines += ["", "`etcdctl check perf --load=l`:", ""]
        lines += ["- %s: %s" % (n, v) for n, v in perf.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
