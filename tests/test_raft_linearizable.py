"""Recorded client histories of a tiny key-value state machine replicated by Raft on
loopback (tests/helpers/raft_cluster.py), checked by kvtrees.lincheck.

Writes are proposed through the client's member and acknowledged once that member
has applied them (a request id makes a retried proposal apply once); reads use
ReadIndex and read the member's state once it has applied the read index. The
leader is isolated and healed in the middle of the run. The history must be
linearizable; and a control run that reads an isolated old leader's local state
without ReadIndex must be caught as not linearizable.

Bounded: a fixed number of operations per client, each with a deadline; every thread
and socket is stopped at the end.
"""

from __future__ import annotations

import random
import threading
import time

from helpers.raft_cluster import LoopbackCluster, wait_for
from kvtrees.lincheck import History, Verdict, check_kv

OP_TIMEOUT = 2.0


class KVMember:
    """One member's state machine: key -> value, plus applied request ids."""

    def __init__(self) -> None:
        self.data = {}
        self.done = set()
        self.cond = threading.Condition()

    def apply(self, entry) -> None:
        req, key, value = entry.data.split(b"\0")
        with self.cond:
            if req not in self.done:
                self.done.add(req)
                self.data[key] = value
            self.cond.notify_all()

    def wait_applied(self, req: bytes, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: req in self.done, timeout)


def make_cluster(tmp_path):
    members = {}

    def make_apply(i):
        members[i] = KVMember()
        return members[i].apply

    return LoopbackCluster(tmp_path, make_apply=make_apply), members


def put(c, members, h, client, member, key, value, req):
    op = h.invoke(client, "put", key, value)
    data = b"\0".join([req, key, value])
    deadline = time.monotonic() + OP_TIMEOUT
    while time.monotonic() < deadline:
        c.drivers[member].propose(data)
        if members[member].wait_applied(req, min(0.3, max(0.0, deadline - time.monotonic()))):
            h.complete(op, None)
            return True
    return False  # outcome unknown: left incomplete in the history


def linearizable_get(c, members, h, client, member, key, ctx):
    op = h.invoke(client, "get", key)
    result = []
    done = threading.Event()

    def on_read(index):
        # Runs on the driver thread once `member` has applied `index`.
        result.append(members[member].data.get(key))
        done.set()

    deadline = time.monotonic() + OP_TIMEOUT
    n = 0
    while time.monotonic() < deadline and not done.is_set():
        c.drivers[member].read_index(ctx + b"/%d" % n, on_read)
        n += 1
        done.wait(0.3)
    if done.is_set():
        h.complete(op, result[0])


def run_clients(c, members, h, n_clients=6, ops_per_client=25, chaos=None):
    def client(cid):
        rng = random.Random(cid)
        member = c.ids[cid % len(c.ids)]
        for k in range(ops_per_client):
            key = b"k%d" % rng.randrange(2)
            if rng.random() < 0.5:
                v = b"c%d-%d" % (cid, k)
                put(c, members, h, cid, member, key, v, b"r%d-%d" % (cid, k))
            else:
                linearizable_get(c, members, h, cid, member, key, b"g%d-%d" % (cid, k))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n_clients)]
    for t in threads:
        t.start()
    if chaos is not None:
        chaos()
    for t in threads:
        t.join(timeout=ops_per_client * OP_TIMEOUT + 10)
        assert not t.is_alive()


def test_history_with_leader_isolation_is_linearizable(tmp_path):
    c, members = make_cluster(tmp_path)
    try:
        first = c.wait_leader()
        term_before = c.drivers[first].status().term
        h = History()

        def chaos():
            time.sleep(0.3)
            lead = c.wait_leader()
            c.isolate(lead)
            time.sleep(1.0)
            c.isolate(lead, on=False)

        run_clients(c, members, h, ops_per_client=40, chaos=chaos)
        assert c.drivers[c.wait_leader()].status().term > term_before, "no failover happened"
        ops = h.operations()
        completed = [o for o in ops if o.ret != float("inf")]
        assert len(completed) > len(ops) // 2, "too few operations completed to mean much"
        r = check_kv(ops)
        assert r.verdict == Verdict.OK, r
    finally:
        c.close()
    c.check_no_errors()


def test_local_reads_on_isolated_leader_are_caught(tmp_path):
    """Control: reading an isolated old leader's own state (no ReadIndex) is stale."""
    c, members = make_cluster(tmp_path)
    try:
        old = c.wait_leader()
        h = History()
        follower = [i for i in c.ids if i != old][0]
        assert put(c, members, h, 1, follower, b"k", b"v1", b"a")
        wait_for(lambda: members[old].data.get(b"k") == b"v1", 5, "old leader to apply v1")
        c.isolate(old)
        assert put(c, members, h, 1, follower, b"k", b"v2", b"b")
        op = h.invoke(2, "get", b"k")
        h.complete(op, members[old].data.get(b"k"))  # a serializable (local) read
        r = check_kv(h.operations())
        assert r.verdict == Verdict.ILLEGAL, r
        # The same read through ReadIndex does not return (no quorum) rather than lie.
        got = []
        c.drivers[old].read_index(b"probe", got.append)
        time.sleep(0.5)
        assert got == []
    finally:
        c.close()
    c.check_no_errors()
