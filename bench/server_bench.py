#!/usr/bin/env python3
"""kvtrees serve (both engines) beside etcd 3.4, through the same asynchronous gRPC
client: put, get, txn and a Kubernetes-shaped mix with 64 requests in flight;
throughput and p50/p99 latency; optionally `etcdctl check perf --load=l` against each.

    python bench/server_bench.py                  # ~2 minutes
    python bench/server_bench.py --ops 20000 --check-perf --out bench/SERVER_RESULTS.md

Every server is a separate process on 127.0.0.1 (free ports, temporary data dirs, the
same fsync-per-commit durability: etcd always fsyncs, kvtrees runs --sync commit) and is
killed at the end. Targets run interleaved, one workload at a time, so load changes on
this shared machine hit all of them alike. The client is grpc.aio in 1 and 2 processes
(--procs); the processes connect and warm up first, then start together, and only
their requests are timed (ops/s: all requests over the union of the processes' timed
intervals). With --noop, two do-nothing Python gRPC servers (grpcio's thread-pool
server and grpc.aio) show the ceiling of the Python serving path.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import queue
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


def start_noop(workdir: str, flavour: str = "sync") -> Target:
    """A Python gRPC server (same grpcio as kvtrees) whose handlers do nothing: the
    ceiling the Python serving path sets on this machine. flavour "sync": grpc.server
    with a thread pool; "aio": grpc.aio on one asyncio loop."""
    c = free_port()
    os.environ["PYTHONPATH"] = os.path.join(ROOT, "src")
    return Target("noop-grpc-" + flavour, [sys.executable, os.path.abspath(__file__),
                                          "--noop-server", "%s:%d" % (flavour, c)],
                  "127.0.0.1:%d" % c, workdir)


class _NoopKV(rpc_pb2_grpc.KVServicer):
    def Range(self, req, ctx):
        return pb.RangeResponse(header=pb.ResponseHeader(revision=1))

    def Put(self, req, ctx):
        return pb.PutResponse(header=pb.ResponseHeader(revision=1))

    def Txn(self, req, ctx):
        return pb.TxnResponse(header=pb.ResponseHeader(revision=1), succeeded=True)


class _NoopAioKV(rpc_pb2_grpc.KVServicer):
    async def Range(self, req, ctx):
        return pb.RangeResponse(header=pb.ResponseHeader(revision=1))

    async def Put(self, req, ctx):
        return pb.PutResponse(header=pb.ResponseHeader(revision=1))

    async def Txn(self, req, ctx):
        return pb.TxnResponse(header=pb.ResponseHeader(revision=1), succeeded=True)


def serve_noop(spec: str) -> None:
    flavour, port = spec.split(":")
    if flavour == "aio":
        async def main():
            srv = grpc.aio.server()
            rpc_pb2_grpc.add_KVServicer_to_server(_NoopAioKV(), srv)
            srv.add_insecure_port("127.0.0.1:%s" % port)
            await srv.start()
            stop = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
            await stop.wait()
            await srv.stop(0)
        asyncio.run(main())
        return
    from concurrent import futures
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=512))
    rpc_pb2_grpc.add_KVServicer_to_server(_NoopKV(), srv)
    srv.add_insecure_port("127.0.0.1:%s" % port)
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
                       value: bytes, seed: int, ready=None, go=None) -> dict:
    """`ops` requests of one workload, `inflight` at a time on one channel. Only the
    requests are timed: the channel is connected and warmed up (1% of ops, at least 64
    requests) first; with ready/go (multiprocessing Queue/Event) the process then says
    it is ready and waits for go, so several client processes start together. Returns
    ops/s, p50/p99 latency, ops and the timed interval (time.monotonic, comparable
    across processes)."""
    async with grpc.aio.insecure_channel(addr) as ch:
        stub = rpc_pb2_grpc.KVStub(ch)
        rng = random.Random(seed)
        calls = {m: getattr(stub, m) for m in ("Put", "Range", "Txn")}
        warm = [make_request(kind, rng, nkeys, value) for _ in range(max(64, ops // 100))]
        reqs = [make_request(kind, rng, nkeys, value) for _ in range(ops)]
        lat: list = []

        async def run(batch: list, record: bool) -> None:
            it = iter(batch)

            async def worker():
                pc = time.perf_counter
                for method, req in it:
                    t0 = pc()
                    await calls[method](req)
                    if record:
                        lat.append(pc() - t0)
            await asyncio.gather(*(worker() for _ in range(inflight)))
        await run(warm, False)
        if ready is not None:
            ready.put(os.getpid())
            go.wait()
        t0 = time.monotonic()
        await run(reqs, True)
        t1 = time.monotonic()
    lat.sort()
    return {"ops_s": ops / (t1 - t0), "p50_ms": 1000 * lat[len(lat) // 2],
            "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
            "ops": ops, "t0": t0, "t1": t1, "lat": lat}


def _client_proc(addr, kind, ops, inflight, nkeys, value, seed, ready, go, out) -> None:
    r = asyncio.run(run_workload(addr, kind, ops, inflight, nkeys, value, seed, ready, go))
    out.put(r)


def _collect(q, ps: list, timeout: float) -> list:
    """One item per process from q; raises if a process died before sending it."""
    got, deadline = [], time.monotonic() + timeout
    while len(got) < len(ps):
        try:
            got.append(q.get(timeout=1))
        except queue.Empty:
            if any(p.exitcode not in (None, 0) for p in ps):
                raise RuntimeError("a client process failed") from None
            if time.monotonic() > deadline:
                raise TimeoutError("client processes did not answer") from None
    return got


def run_procs(addr: str, kind: str, ops: int, inflight: int, nkeys: int, value: bytes,
              seed: int, procs: int = 1) -> dict:
    """The workload from `procs` client processes (each `ops // procs` requests,
    `inflight` in flight), started together once all are connected and warm. ops/s is
    all requests over the union of their timed intervals (process start-up and imports
    are not in it); p50/p99 over all requests."""
    ctx = multiprocessing.get_context("spawn")     # no grpc state inherited by fork
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    ps = [ctx.Process(target=_client_proc, args=(addr, kind, ops // procs, inflight, nkeys,
                                                 value, seed + 1000 * i, ready, go, out))
          for i in range(procs)]
    for p in ps:
        p.start()
    try:
        _collect(ready, ps, 120)
        go.set()
        res = _collect(out, ps, 600)
    finally:
        for p in ps:
            p.join(10)
            if p.is_alive():
                p.kill()
    lat = sorted(x for r in res for x in r["lat"])
    wall = max(r["t1"] for r in res) - min(r["t0"] for r in res)
    return {"ops_s": sum(r["ops"] for r in res) / wall, "procs": procs,
            "p50_ms": 1000 * lat[len(lat) // 2],
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
                    help="also run do-nothing Python gRPC servers, sync and aio (the "
                         "serving-path ceiling)")
    ap.add_argument("--procs", default="1,2",
                    help="client process counts to run each workload with")
    ap.add_argument("--out", help="also write the markdown table here")
    ap.add_argument("--noop-server", help=argparse.SUPPRESS)
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
            targets += [start_noop(workdir, "sync"), start_noop(workdir, "aio")]
        for t in targets:
            asyncio.run(preload(t.addr, args.keys, value))
        results = {}
        args.proc_counts = [int(n) for n in args.procs.split(",")]
        for kind in args.workloads.split(","):
            for procs in args.proc_counts:
                for t in targets:
                    r = results[(kind, procs, t.name)] = run_procs(
                        t.addr, kind, args.ops, args.inflight, args.keys, value, 7, procs)
                    print("%-5s x%d %-18s %9.0f ops/s  p50 %7.2f ms  p99 %7.2f ms  load %.2f"
                          % (kind, procs, t.name, r["ops_s"], r["p50_ms"], r["p99_ms"],
                             os.getloadavg()[0]), flush=True)
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
             "Load average before the run: %s; after: %s" % (
                 " ".join("%.2f" % x for x in args.load_before),
                 " ".join("%.2f" % x for x in os.getloadavg())), "",
             "Client: grpc.aio (Python) in N processes, %d requests in flight in each; "
             "`x etcd` is against etcd 3.4 with the same client and N." % args.inflight, "",
             "| workload | clients | target | ops/s | x etcd | p50 ms | p99 ms |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: |"]
    for kind in args.workloads.split(","):
        for procs in args.proc_counts:
            for n in names:
                r = results[(kind, procs, n)]
                ratio = r["ops_s"] / results[(kind, procs, base)]["ops_s"]
                lines.append("| %s | %d | %s | %.0f | %.2f | %.2f | %.2f |" % (
                    kind, procs, n, r["ops_s"], ratio, r["p50_ms"], r["p99_ms"]))
    if args.fan:
        lines += ["", "Watch fan-out: %d watches on one prefix (10 streams), %d puts, "
                  "client grpc.aio in one process (the same for etcd):" % (
                      args.fanout, args.fanout_writes), "",
            "| target | events delivered | expected | out of order | events/s | x etcd |",
            "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for n, r in args.fan.items():
            lines.append("| %s | %d | %d | %d | %.0f | %.2f |" % (
                n, r["events"], r["expected"], r["out_of_order"], r["events_s"],
                r["events_s"] / args.fan[base]["events_s"]))
    if perf:
        lines += ["", "`etcdctl check perf --load=l` (client: etcdctl 3.4, the same for "
                  "etcd):", ""]
        lines += ["- %s: %s" % (n, v) for n, v in perf.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
