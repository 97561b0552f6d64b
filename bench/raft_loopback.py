"""End-to-end Raft replication on loopback: 3 members, each a NodeDriver with a
FileLogStorage (fsync per Ready) and a TCP Transport, in one process.

    python bench/raft_loopback.py [--entries 5000] [--in-flight 64] [--size 100]

Proposals go to the leader with at most --in-flight unapplied at a time; the rate is
entries applied on every member per second. Prints the rate, the fsyncs per member,
and the entries per fsync (batching). This is the replication layer alone: no store,
no gRPC.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))

from kvtrees.raft import Config, RawNode, StateType, bootstrap  # noqa: E402
from kvtrees.raft.driver import NodeDriver  # noqa: E402
from kvtrees.raft.filelog import FileLogStorage  # noqa: E402
from kvtrees.raft.transport import Transport  # noqa: E402


def run(entries: int, in_flight: int, size: int, tick: float) -> dict:
    base = tempfile.mkdtemp(prefix="kvt-raft-bench-")
    ids = [1, 2, 3]
    applied = {i: 0 for i in ids}
    cond = threading.Condition()
    storages, transports, drivers = {}, {}, {}

    def make_apply(i):
        def apply(e):
            with cond:
                applied[i] += 1
                cond.notify_all()
        return apply

    for i in ids:
        storages[i] = FileLogStorage(os.path.join(base, f"m{i}"))
        bootstrap(storages[i], ids)
        transports[i] = Transport(i, on_message=lambda m, i=i: drivers[i].deliver(m))
    for a in ids:
        for b in ids:
            if a != b:
                transports[a].add_peer(b, transports[b].addr)
    for i in ids:
        node = RawNode(Config(id=i, storage=storages[i], rng=random.Random(i)))
        drivers[i] = NodeDriver(node, storages[i], transports[i], make_apply(i),
                                tick_interval=tick).start()
    try:
        leader = None
        deadline = time.monotonic() + 30
        while leader is None and time.monotonic() < deadline:
            for i in ids:
                st = drivers[i].status()
                if st is not None and st.state == StateType.LEADER:
                    leader = i
            time.sleep(0.01)
        assert leader is not None, "no leader elected"
        fsyncs0 = {i: storages[i].fsyncs for i in ids}
        payload = b"x" * size
        t0 = time.perf_counter()
        sent = 0
        with cond:
            while min(applied.values()) < entries:
                while sent < entries and sent - applied[leader] < in_flight:
                    drivers[leader].propose(payload)
                    sent += 1
                cond.wait(timeout=1.0)
        dt = time.perf_counter() - t0
        fs = {i: storages[i].fsyncs - fsyncs0[i] for i in ids}
        return {"rate": entries / dt, "seconds": dt, "fsyncs": fs,
                "per_fsync": entries / max(1, fs[leader])}
    finally:
        for d in drivers.values():
            d.stop()
        for t in transports.values():
            t.close()
        for s in storages.values():
            s.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=5000)
    ap.add_argument("--in-flight", type=int, default=64)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--tick", type=float, default=0.01)
    a = ap.parse_args()
    r = run(a.entries, a.in_flight, a.size, a.tick)
    print(f"{a.entries} entries of {a.size} B, {a.in_flight} in flight, 3 members: "
          f"{r['rate']:,.0f} entries/s applied on all ({r['seconds']:.2f} s); "
          f"fsyncs per member {r['fsyncs']}; {r['per_fsync']:.1f} entries per leader fsync")


if __name__ == "__main__":
    main()
