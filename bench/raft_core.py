"""Throughput of the pure Raft core (no network, no fsync): how fast can the state
machine itself commit entries, and how many simulated steps per second the
deterministic simulator runs (the budget that decides how many steps CI affords).

    python bench/raft_core.py [--entries 10000] [--sim-steps 200000]

Run from a source checkout with src/ and tests/ importable (the script adds them).
Prints one table; numbers are wall-clock on this machine, single-threaded.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", "src"), os.path.join(HERE, "..", "tests")]

from kvtrees.raft import Config, MemoryStorage, RawNode, StateType  # noqa: E402


def synchronous_cluster(n: int):
    stores = {i: MemoryStorage() for i in range(1, n + 1)}
    nodes = {i: RawNode(Config(id=i, storage=stores[i], peers=list(stores),
                               rng=random.Random(i), max_inflight_msgs=256))
             for i in stores}
    return nodes, stores


def drain(nodes, stores):
    """Run every Ready loop and deliver every message until quiet; returns applied."""
    applied = 0
    outbox = []
    moved = True
    while moved:
        moved = False
        for i, nd in nodes.items():
            while nd.has_ready():
                moved = True
                rd = nd.ready()
                stores[i].append(rd.entries)
                if rd.hard_state is not None:
                    stores[i].set_hard_state(rd.hard_state)
                outbox.extend(rd.messages)
                if i == 1:
                    applied += len(rd.committed_entries)
                nd.advance(rd)
        while outbox:
            moved = True
            m = outbox.pop()
            nodes[m.to].step(m)
    return applied


def bench_commit(n: int, entries: int, batch: int) -> float:
    """Entries/s committed when the leader proposes ``batch`` entries per message and
    every Ready loop runs between batches."""
    nodes, stores = synchronous_cluster(n)
    nodes[1].campaign()
    drain(nodes, stores)
    assert nodes[1].raft.state == StateType.LEADER
    payload = b"x" * 100
    t0 = time.perf_counter()
    done = 0
    while done < entries:
        if batch == 1:
            nodes[1].propose(payload)
        else:
            nodes[1].propose_batch([payload] * batch)
        done += batch
        drain(nodes, stores)
    dt = time.perf_counter() - t0
    assert nodes[1].raft.log.committed >= entries
    return entries / dt


def bench_sim(size: int, steps: int) -> float:
    from helpers.raft_sim import Cluster
    c = Cluster(size, seed=1)
    t0 = time.perf_counter()
    c.run(steps)
    return c.steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=10000)
    ap.add_argument("--sim-steps", type=int, default=200000)
    a = ap.parse_args()
    print("| what | members | batch | rate |")
    print("| --- | --- | --- | --- |")
    for n in (3, 5):
        for batch in (1, 16, 64):
            r = bench_commit(n, a.entries, batch)
            print(f"| commit, in-memory, no fsync | {n} | {batch} | {r:,.0f} entries/s |")
    for n in (3, 5):
        r = bench_sim(n, a.sim_steps)
        print(f"| simulation (mixed faults, safety checks) | {n} | - | {r:,.0f} steps/s |")


if __name__ == "__main__":
    main()
