#!/usr/bin/env python3
"""A 3-member kvtrees cluster beside a 3-member etcd 3.4 cluster on loopback, both
started here with the same heartbeat and election timeouts:

* put throughput: an asynchronous gRPC client (grpc.aio), 64 requests in flight, to
  the leader and through a follower; ops/s, p50/p99, ratio to etcd;
* failover: SIGKILL the leader while writers put through every member (each moving to
  the next member on an error or after a 0.5 s deadline); the time from the kill to the
  first acknowledged write sent after it; the killed member is restarted and caught
  up before the next kill; at the end every acknowledged write must be present;
* recovery: one member stopped, N keys written (as txns of 100 puts), the member
  restarted: the time until it has applied everything the leader had committed
  (a snapshot and the log after it: --snapshot-count is small here for both).

    python bench/cluster_bench.py                         # ~6 minutes
    python bench/cluster_bench.py --kills 20 --recovery-keys 200000 \\
        --out bench/CLUSTER_RESULTS.md

Every process binds 127.0.0.1, uses a temporary directory and is killed at the end.
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
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "src"))

import grpc  # noqa: E402

from kvtrees.server.proto import rpc_pb2 as pb, rpc_pb2_grpc  # noqa: E402
from server_bench import free_port  # noqa: E402


class Cluster:
    """Three member processes of one system ("kvtrees" or "etcd")."""

    def __init__(self, system: str, workdir: str, heartbeat: int, election: int,
                 engine: str = "btree", snapshot_count: int = 10000) -> None:
        self.system, self.engine = system, engine
        self.workdir = os.path.join(workdir, system)
        os.makedirs(self.workdir)
        self.hb, self.el, self.snapshot_count = heartbeat, election, snapshot_count
        self.names = ["m1", "m2", "m3"]
        self.client = {n: "127.0.0.1:%d" % free_port() for n in self.names}
        self.peer = {n: "http://127.0.0.1:%d" % free_port() for n in self.names}
        self.initial = ",".join("%s=%s" % (n, self.peer[n]) for n in self.names)
        self.procs: dict = {}
        for n in self.names:
            self.start(n)
        for n in self.names:
            wait_ready(self.client[n])

    @property
    def label(self) -> str:
        return "kvtrees-" + self.engine if self.system == "kvtrees" else "etcd-3.4"

    def argv(self, n: str) -> list:
        common = ["--name", n, "--data-dir", os.path.join(self.workdir, n),
                  "--listen-client-urls", "http://" + self.client[n],
                  "--listen-peer-urls", self.peer[n],
                  "--initial-advertise-peer-urls", self.peer[n],
                  "--initial-cluster", self.initial, "--initial-cluster-state", "new",
                  "--initial-cluster-token", "bench",
                  "--heartbeat-interval", str(self.hb),
                  "--election-timeout", str(self.el),
                  "--snapshot-count", str(self.snapshot_count)]
        if self.system == "etcd":
            return [shutil.which("etcd") or "/usr/bin/etcd", *common,
                    "--advertise-client-urls", "http://" + self.client[n],
                    "--log-level", "info", "--logger", "zap"]
        return [sys.executable, "-m", "kvtrees", "serve", *common, "--engine", self.engine,
                "--log-level", "info"]

    def start(self, n: str) -> None:
        env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
        log = open(os.path.join(self.workdir, n + ".log"), "ab")
        self.procs[n] = subprocess.Popen(self.argv(n), stdout=log, stderr=log, env=env,
                                         start_new_session=True)
        log.close()

    def kill(self, n: str, sig=signal.SIGKILL) -> None:
        p = self.procs.pop(n)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, sig)
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()

    def status(self, n: str, timeout: float = 1.0):
        ch = grpc.insecure_channel(self.client[n])
        try:
            return rpc_pb2_grpc.MaintenanceStub(ch).Status(pb.StatusRequest(),
                                                           timeout=timeout)
        except grpc.RpcError:
            return None
        finally:
            ch.close()

    def leader(self, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for n in list(self.procs):
                s = self.status(n, timeout=0.2)
                if s is not None and s.leader and s.leader == s.header.member_id:
                    return n
            time.sleep(0.01)
        raise RuntimeError("%s: no leader in %ss" % (self.system, timeout))

    def healthy(self, timeout: float = 60.0) -> None:
        """Every member runs, agrees on one leader and has applied what it commits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = [self.status(n) for n in self.names if n in self.procs]
            if len(st) == 3 and all(st) and len({s.leader for s in st}) == 1 and \
                    st[0].leader and max(s.raftIndex for s in st) - \
                    min(s.raftAppliedIndex for s in st) <= 5:
                return
            time.sleep(0.1)
        raise RuntimeError("%s: not healthy in %ss" % (self.system, timeout))

    def cpu_seconds(self) -> dict:
        """CPU time (user + system) each running member has used so far."""
        out = {}
        tick = os.sysconf("SC_CLK_TCK")
        for n, p in self.procs.items():
            with open("/proc/%d/stat" % p.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[n] = (int(fields[11]) + int(fields[12])) / tick
        return out

    def close(self) -> None:
        for n in list(self.procs):
            self.kill(n)


def wait_ready(addr: str, timeout: float = 60) -> None:
    """Until addr accepts TCP connections (a started member is serving)."""
    host, port = addr.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, int(port)), 0.5).close()
            return
        except OSError:
            if time.monotonic() >= deadline:
                raise RuntimeError("%s not serving after %ss" % (addr, timeout))
            time.sleep(0.05)


# ---------------------------------------------------------------- throughput
async def put_rate(addr: str, ops: int, inflight: int, value: bytes, nkeys: int) -> dict:
    async with grpc.aio.insecure_channel(addr) as ch:
        stub = rpc_pb2_grpc.KVStub(ch)
        rng = random.Random(7)
        reqs = [pb.PutRequest(key=b"/bench/%07d" % rng.randrange(nkeys), value=value)
                for _ in range(ops)]
        lat: list = []
        nxt = 0

        async def worker():
            nonlocal nxt
            while nxt < len(reqs):
                req = reqs[nxt]
                nxt += 1
                t0 = time.perf_counter()
                await stub.Put(req, timeout=30)
                lat.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(inflight)))
        wall = time.perf_counter() - t0
    lat.sort()
    return {"ops_s": ops / wall, "p50_ms": 1000 * lat[len(lat) // 2],
            "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))]}


# ---------------------------------------------------------------- failover
class Writers:
    """Async writers putting unique keys through every member, failing over."""

    def __init__(self, cluster: Cluster, n: int = 4, deadline: float = 0.5) -> None:
        self.c, self.n, self.deadline = cluster, n, deadline
        self.acked: dict = {}
        self.acks: list = []          # (time sent, time acked)
        self.stop = False

    async def run(self) -> None:
        eps = [self.c.client[n] for n in self.c.names]
        chans = [grpc.aio.insecure_channel(e) for e in eps]
        stubs = [rpc_pb2_grpc.KVStub(ch) for ch in chans]

        async def writer(w: int) -> None:
            at, i = w % 3, 0
            while not self.stop:
                i += 1
                key, val = b"/fo/%d/%d" % (w, i), b"%d" % i
                sent = time.monotonic()
                try:
                    await stubs[at].Put(pb.PutRequest(key=key, value=val),
                                        timeout=self.deadline)
                except grpc.aio.AioRpcError:
                    at = (at + 1) % 3
                    await asyncio.sleep(0.01)
                    continue
                self.acked[key] = val
                self.acks.append((sent, time.monotonic()))
                await asyncio.sleep(0.005)
        try:
            await asyncio.gather(*(writer(w) for w in range(self.n)))
        finally:
            for ch in chans:
                await ch.close()

    def first_ack_after(self, t: float) -> float:
        after = [a for s, a in self.acks if s >= t]
        return min(after) - t if after else float("inf")


async def failover(c: Cluster, kills: int, log) -> dict:
    w = Writers(c)
    task = asyncio.ensure_future(w.run())
    times = []
    try:
        await asyncio.sleep(1.0)
        for k in range(kills):
            lead = await asyncio.to_thread(c.leader)
            before = await asyncio.to_thread(c.status, lead)
            t0 = time.monotonic()
            c.kill(lead)
            new = await asyncio.to_thread(c.leader)      # polls the survivors' Status
            elected = time.monotonic() - t0
            while time.monotonic() - t0 < 30 and w.first_ack_after(t0) == float("inf"):
                await asyncio.sleep(0.01)
            times.append(w.first_ack_after(t0))
            after = await asyncio.to_thread(c.status, new)
            terms = ("term %d -> %d" % (before.raftTerm, after.raftTerm)
                     if before is not None and after is not None else "term unknown")
            log("  %s kill %d (%s): next acknowledged write after %.3f s (%s leads, seen "
                "after %.3f s, %s)" % (c.label, k + 1, lead, times[-1], new, elected, terms))
            c.start(lead)
            await asyncio.to_thread(wait_ready, c.client[lead])
            await asyncio.to_thread(c.healthy)
            await asyncio.sleep(0.3)
    finally:
        w.stop = True
        await task
    lost = await asyncio.to_thread(missing, c, w.acked)
    return {"kills": kills, "median_s": statistics.median(times), "max_s": max(times),
            "acked": len(w.acked), "lost": lost}


def missing(c: Cluster, acked: dict) -> int:
    """Acknowledged writes absent from the leader's store (a linearizable read)."""
    ch = grpc.insecure_channel(c.client[c.leader()])
    try:
        got = {kv.key: kv.value for kv in rpc_pb2_grpc.KVStub(ch).Range(
            pb.RangeRequest(key=b"/fo/", range_end=b"/fo0"), timeout=60).kvs}
    finally:
        ch.close()
    return sum(1 for k, v in acked.items() if got.get(k) != v)


# ---------------------------------------------------------------- recovery
def recovery(c: Cluster, keys: int, value: bytes, log) -> dict:
    lead = c.leader()
    victim = next(n for n in c.names if n != lead)
    c.kill(victim, signal.SIGTERM)
    t0 = time.monotonic()
    retries = load(c, keys, value)
    load_s = time.monotonic() - t0
    lead = c.leader()
    target = c.status(lead).raftIndex
    t0 = time.monotonic()
    c.start(victim)
    while True:
        s = c.status(victim, timeout=2)
        if s is not None and s.raftAppliedIndex >= target:
            break
        if time.monotonic() - t0 > 900:
            raise RuntimeError("%s: member did not catch up in 900 s" % c.system)
        time.sleep(0.05)
    catch_s = time.monotonic() - t0
    snap = received_snapshot(c, victim)
    log("  %s: %d keys written in %.1f s (%d txns retried); restarted member caught "
        "up to index %d in %.2f s (%s)" % (c.label, keys, load_s, retries, target,
                                           catch_s, "with a snapshot" if snap
                                           else "from the log alone"))
    return {"keys": keys, "load_s": load_s, "catch_up_s": catch_s, "index": target,
            "snapshot": snap, "retries": retries}


def load(c: Cluster, keys: int, value: bytes) -> int:
    """Write keys as txns of 100 puts through the leader; a txn that fails (a leader
    change, a timeout) is sent again to the then leader. Returns the retries."""
    retries = 0
    lead = c.leader()
    ch = grpc.insecure_channel(c.client[lead])
    kv = rpc_pb2_grpc.KVStub(ch)
    for start in range(0, keys, 100):
        ops = [pb.RequestOp(request_put=pb.PutRequest(key=b"/rec/%08d" % i, value=value))
               for i in range(start, min(keys, start + 100))]
        while True:
            try:
                kv.Txn(pb.TxnRequest(success=ops), timeout=60)
                break
            except grpc.RpcError:
                retries += 1
                ch.close()
                time.sleep(0.5)
                ch = grpc.insecure_channel(c.client[c.leader()])
                kv = rpc_pb2_grpc.KVStub(ch)
    ch.close()
    return retries


def received_snapshot(c: Cluster, name: str) -> bool:
    """Did the member install a snapshot sent by the leader (its log says so)?"""
    with open(os.path.join(c.workdir, name + ".log"), errors="replace") as f:
        text = f.read()
    if c.system == "kvtrees":
        return "installed a snapshot" in text
    return "incoming Raft snapshot" in text or "received and saved database snapshot" in text


# ---------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=5000, help="puts per throughput run")
    ap.add_argument("--inflight", type=int, default=64)
    ap.add_argument("--value-size", type=int, default=256)
    ap.add_argument("--keys", type=int, default=10000, help="key space of the puts")
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--recovery-keys", type=int, default=100000)
    ap.add_argument("--heartbeat-interval", type=int, default=100)
    ap.add_argument("--election-timeout", type=int, default=1000)
    ap.add_argument("--engine", default="btree")
    ap.add_argument("--snapshot-count", type=int, default=10000,
                    help="--snapshot-count of both clusters for put and failover")
    ap.add_argument("--recovery-snapshot-count", type=int, default=1000,
                    help="--snapshot-count of both clusters for recovery")
    ap.add_argument("--parts", default="put,failover,recovery")
    ap.add_argument("--out", help="also write the markdown report here")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    value = b"v" * args.value_size
    parts = args.parts.split(",")
    load0 = os.getloadavg()
    lines: list = []

    def log(s: str) -> None:
        print(s, flush=True)
        lines.append(s)
    workdir = tempfile.mkdtemp(prefix="kvt-clusterbench-")
    res: dict = {}
    clusters = []
    try:
        for system in ("etcd", "kvtrees"):
            clusters.append(Cluster(system, workdir, args.heartbeat_interval,
                                    args.election_timeout, args.engine,
                                    args.snapshot_count))
        for c in clusters:
            c.healthy()
        if "put" in parts:
            for via in ("leader", "follower"):
                for c in clusters:
                    lead = c.leader()
                    n = lead if via == "leader" else next(x for x in c.names if x != lead)
                    cpu0 = c.cpu_seconds()
                    r = asyncio.run(put_rate(c.client[n], args.ops, args.inflight, value,
                                             args.keys))
                    cpu1 = c.cpu_seconds()
                    r["cpu_ms"] = {m: 1000 * (cpu1[m] - cpu0[m]) / args.ops for m in cpu0}
                    r["cpu_lead_ms"] = r["cpu_ms"][lead]
                    r["cpu_all_ms"] = sum(r["cpu_ms"].values())
                    res[("put", via, c.label)] = r
                    log("put via %-8s %-14s %7.0f ops/s  p50 %6.1f ms  p99 %6.1f ms  "
                        "CPU per put: leader %.2f ms, all members %.2f ms"
                        % (via, c.label, r["ops_s"], r["p50_ms"], r["p99_ms"],
                           r["cpu_lead_ms"], r["cpu_all_ms"]))
        if "failover" in parts:
            for c in clusters:
                c.healthy()
                r = asyncio.run(failover(c, args.kills, log))
                res[("failover", c.label)] = r
                log("failover %-14s median %.3f s  max %.3f s  over %d kills, %d acked, "
                    "%d lost" % (c.label, r["median_s"], r["max_s"], r["kills"],
                                 r["acked"], r["lost"]))
        if "recovery" in parts:
            # fresh clusters with frequent snapshots: the restarted member is far
            # enough behind that the leader has compacted what it lacks
            for c in clusters:
                c.close()
            clusters = [Cluster(system, os.path.join(workdir, "recovery"),
                                args.heartbeat_interval, args.election_timeout,
                                args.engine, args.recovery_snapshot_count)
                        for system in ("etcd", "kvtrees")]
            for c in clusters:
                c.healthy()
                res[("recovery", c.label)] = recovery(c, args.recovery_keys, value, log)
    finally:
        for c in clusters:
            c.close()
        shutil.rmtree(workdir, ignore_errors=True)
    report = render(res, [c.label for c in clusters], args, load0, os.getloadavg(), lines)
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report)
    return 0


def render(res: dict, labels: list, args, load0, load1, lines) -> str:
    etcd, kvt = labels
    out = ["# A 3-member kvtrees cluster beside a 3-member etcd 3.4", "",
           "Command: `python bench/cluster_bench.py %s`" % " ".join(sys.argv[1:]), "",
           "Load average (1/5/15 min) before: %.2f %.2f %.2f, after: %.2f %.2f %.2f "
           "(2 cores, shared with other work)." % (*load0, *load1), "",
           "Both clusters run 3 members on 127.0.0.1 with the same timeouts: "
           "--heartbeat-interval %d ms, --election-timeout %d ms (etcd's defaults unless "
           "the command says otherwise), and --snapshot-count %d for put and failover. "
           "kvtrees: `kvtrees serve --engine %s`."
           % (args.heartbeat_interval, args.election_timeout, args.snapshot_count,
              args.engine), ""]
    if any(k[0] == "put" for k in res):
        out += ["## Put throughput", "",
                "grpc.aio client, %d in flight, %d puts of %d-byte values over %d keys."
                % (args.inflight, args.ops, args.value_size, args.keys), "",
                "| sent to | cluster | puts/s | x etcd | p50 ms | p99 ms | CPU ms/put leader "
                "| CPU ms/put 3 members |",
                "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for via in ("leader", "follower"):
            base = res[("put", via, etcd)]["ops_s"]
            for lab in labels:
                r = res[("put", via, lab)]
                out.append("| %s | %s | %.0f | %.2f | %.1f | %.1f | %.2f | %.2f |" % (
                    via, lab, r["ops_s"], r["ops_s"] / base, r["p50_ms"], r["p99_ms"],
                    r["cpu_lead_ms"], r["cpu_all_ms"]))
        out.append("")
    if any(k[0] == "failover" for k in res):
        out += ["## Failover", "",
                "SIGKILL of the leader while 4 writers put through all members (0.5 s "
                "deadline, then the next member); time to the first acknowledged write "
                "sent after the kill.", "",
                "| cluster | kills | median s | max s | acked writes | lost |",
                "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for lab in labels:
            r = res[("failover", lab)]
            out.append("| %s | %d | %.3f | %.3f | %d | %d |" % (
                lab, r["kills"], r["median_s"], r["max_s"], r["acked"], r["lost"]))
        out.append("")
    if any(k[0] == "recovery" for k in res):
        out += ["## Recovery", "",
                "A follower stopped (SIGTERM), N keys written as txns of 100 puts through "
                "the leader, the follower restarted; time from its start until it applied "
                "the leader's commit index. Fresh clusters with --snapshot-count %d: a "
                "kvtrees leader keeps half that many entries after a snapshot, so the "
                "member needs the snapshot; etcd keeps 5,000 (its catch-up entries) and "
                "may serve it from the log (the last column says which happened, from "
                "the member's log)." % args.recovery_snapshot_count, "",
                "| cluster | keys | write time s | txns retried | catch-up s | index "
                "| snapshot sent |",
                "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
        for lab in labels:
            r = res[("recovery", lab)]
            out.append("| %s | %d | %.1f | %d | %.2f | %d | %s |" % (
                lab, r["keys"], r["load_s"], r["retries"], r["catch_up_s"], r["index"],
                "yes" if r["snapshot"] else "no"))
        out.append("")
    out += ["## Log", "", "```"] + lines + ["```", ""]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
