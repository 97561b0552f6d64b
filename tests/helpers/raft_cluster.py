"""A 3-member Raft cluster on loopback for the socket-level tests: each member has a
FileLogStorage, a Transport and a NodeDriver, and every directed link goes through
its own FaultProxy (so one direction of a link can be cut). Binds 127.0.0.1 only;
``close()`` stops every thread and socket."""

from __future__ import annotations

import random
import time

from helpers.faultproxy import FaultProxy
from kvtrees.raft import ConfChangeType, Config, RawNode, StateType, bootstrap
from kvtrees.raft.driver import NodeDriver
from kvtrees.raft.filelog import FileLogStorage
from kvtrees.raft.transport import Transport


def wait_for(pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class LoopbackCluster:
    """Members 1..n, each with a FileLogStorage, a Transport and a NodeDriver; every
    directed link goes through its own FaultProxy."""

    def __init__(self, base, n=3, tick=0.01, make_apply=None, driver_opts=None) -> None:
        """``make_apply(i)`` gives member i's apply callback; by default each member
        appends applied data to ``self.applied[i]``. ``driver_opts(i)`` gives extra
        NodeDriver keyword arguments for member i."""
        self.ids = list(range(1, n + 1))
        self.base, self.tick = base, tick
        self.applied = {i: [] for i in self.ids}
        make_apply = make_apply or (lambda i: lambda e: self.applied[i].append(e.data))
        self.make_apply = make_apply
        self.driver_opts = driver_opts or (lambda i: {})
        self.storage, self.transports, self.drivers, self.proxies = {}, {}, {}, {}
        for i in self.ids:
            s = FileLogStorage(str(base / f"m{i}"))
            bootstrap(s, self.ids)
            self.storage[i] = s
            self.transports[i] = Transport(i, on_message=lambda m, i=i: self.drivers[i].deliver(m))
        for a in self.ids:
            for b in self.ids:
                if a != b:
                    p = FaultProxy(self.transports[b].addr)
                    self.proxies[(a, b)] = p
                    self.transports[a].add_peer(b, p.addr)
        for i in self.ids:
            node = RawNode(Config(id=i, storage=self.storage[i], election_tick=10,
                                  heartbeat_tick=1, rng=random.Random(i)))
            self.drivers[i] = NodeDriver(node, self.storage[i], self.transports[i],
                                         apply=make_apply(i), tick_interval=tick,
                                         on_conf_change=self._on_conf_change(i),
                                         **self.driver_opts(i))
        for d in self.drivers.values():
            d.start()

    def _on_conf_change(self, i):
        """Member i learns a peer's address from the conf change's context."""
        def changed(cc, cs):
            if cc.node_id == i:
                return
            if cc.type == ConfChangeType.REMOVE_NODE:
                self.transports[i].remove_peer(cc.node_id)
            elif cc.context:
                host, port = cc.context.decode().rsplit(":", 1)
                self.transports[i].add_peer(cc.node_id, (host, int(port)))
        return changed

    def start_member(self, i: int) -> bytes:
        """Start an empty member i (no bootstrap: it learns everything from the
        leader) that can reach every current member directly. Returns its address as
        the context for the ADD_LEARNER / ADD_NODE change."""
        s = FileLogStorage(str(self.base / f"m{i}"))
        self.storage[i] = s
        self.applied[i] = []
        t = Transport(i, on_message=lambda m: self.drivers[i].deliver(m))
        self.transports[i] = t
        for j in self.ids:
            t.add_peer(j, self.transports[j].addr)
        node = RawNode(Config(id=i, storage=s, election_tick=10, heartbeat_tick=1,
                              rng=random.Random(i)))
        self.drivers[i] = NodeDriver(node, s, t, apply=self.make_apply(i),
                                     tick_interval=self.tick,
                                     on_conf_change=self._on_conf_change(i)).start()
        self.ids.append(i)
        return b"%s:%d" % (t.addr[0].encode(), t.addr[1])

    def leaders(self, among=None):
        out = []
        for i in among or self.ids:
            s = self.drivers[i].status()
            if s is not None and s.state == StateType.LEADER:
                out.append((s.term, i))
        return [i for _, i in sorted(out, reverse=True)]

    def wait_leader(self, among=None, timeout=10.0) -> int:
        wait_for(lambda: self.leaders(among), timeout, "a leader")
        return self.leaders(among)[0]

    def cut(self, a, b, on=True) -> None:
        self.proxies[(a, b)].blackhole = on
        if on:
            self.proxies[(a, b)].reset()

    def isolate(self, i, on=True) -> None:
        for j in self.ids:
            if j != i:
                self.cut(i, j, on)
                self.cut(j, i, on)

    def propose_until_applied(self, data, members, via=None, timeout=10.0) -> None:
        """Propose (re-proposing on timeouts, as a client would) until every member in
        ``members`` has applied data."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            target = via or self.wait_leader(members, timeout=max(0.1, deadline - time.monotonic()))
            self.drivers[target].propose(data)
            t_end = min(deadline, time.monotonic() + 1.0)
            while time.monotonic() < t_end:
                if all(data in self.applied[m] for m in members):
                    return
                time.sleep(0.01)
        raise AssertionError(f"{data!r} not applied on {members} in {timeout}s")

    def check_no_errors(self) -> None:
        for i, d in self.drivers.items():
            assert d.error is None, f"driver {i}: {d.error!r}"

    def close(self) -> None:
        for d in self.drivers.values():
            d.stop()
        for t in self.transports.values():
            t.close()
        for p in self.proxies.values():
            p.close()
        for s in self.storage.values():
            s.close()
