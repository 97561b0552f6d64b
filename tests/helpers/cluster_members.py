"""In-process kvtrees clusters on loopback for the cluster tests: ClusterMembers with
short Raft timeouts, one data directory each, 127.0.0.1 only; ``close()`` stops them."""

from __future__ import annotations

import time

from kvtrees.cluster import ClusterMember

from helpers.ports import free_port
from helpers.raft_cluster import wait_for

FAST = dict(heartbeat_ms=20, election_ms=200)



class Members:
    """Members n1..nN of one cluster in one process."""

    def __init__(self, base, engine: str, n: int = 3, **opts) -> None:
        self.base, self.engine = base, engine
        self.opts = dict(FAST, **opts)
        self.urls = {"n%d" % (i + 1): "http://127.0.0.1:%d" % free_port() for i in range(n)}
        self.initial = ",".join("%s=%s" % kv for kv in self.urls.items())
        self.m = {}
        for name in self.urls:
            self.start(name)

    def start(self, name: str, state: str = "new", initial: str = None) -> ClusterMember:
        self.m[name] = ClusterMember(str(self.base / name), name, initial or self.initial,
                                     [self.urls[name]], state=state, engine=self.engine,
                                     **self.opts)
        return self.m[name]

    def add_url(self, name: str) -> str:
        self.urls[name] = "http://127.0.0.1:%d" % free_port()
        return self.urls[name]

    def stop(self, name: str) -> None:
        self.m.pop(name).close()

    def stores(self):
        return [m.store for m in self.m.values()]

    def leader(self, timeout: float = 10.0) -> ClusterMember:
        wait_for(lambda: any(m.store.is_leader() for m in self.m.values()), timeout,
                 "a leader")
        return next(m for m in self.m.values() if m.store.is_leader())

    def follower(self) -> ClusterMember:
        lead = self.leader()
        return next(m for m in self.m.values() if m is not lead)

    def wait_converged(self, timeout: float = 10.0) -> None:
        """Every member has applied the same index and holds the same data."""
        def same():
            applied = {m.store.applied_index for m in self.m.values()}
            commit = {m.status().commit for m in self.m.values() if m.status()}
            return len(applied) == 1 and applied == commit and \
                len({s.hash_kv(0) for s in self.stores()}) == 1
        wait_for(same, timeout, "members to converge")

    def close(self) -> None:
        for m in list(self.m.values()):
            m.close()
        self.m.clear()


def until(fn, timeout: float = 10.0):
    """fn() retried (on any exception) until it succeeds: a client's retry loop."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except Exception:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)
