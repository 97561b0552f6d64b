"""Three `kvtrees serve` processes while the leader is SIGKILLed again and again and
restarted, with clients writing and reading through different members (failing over
to the next member on errors) and a watcher resuming from its last seen revision.
Afterwards: every acknowledged write is present, the recorded history is linearizable
(kvtrees.lincheck), every member has the same hash_kv at the same revision, and the
watcher saw every change once, in order."""

import itertools
import queue
import random
import threading
import time

import pytest

grpc = pytest.importorskip("grpc")

from etcd_reference import have_etcdctl  # noqa: E402
from helpers.raft_cluster import wait_for  # noqa: E402
from helpers.serve_cluster import ServeCluster  # noqa: E402
from kvtrees.lincheck import History, check_kv  # noqa: E402
from kvtrees.server.proto import rpc_pb2, rpc_pb2_grpc  # noqa: E402

pytestmark = pytest.mark.skipif(not have_etcdctl(), reason="etcdctl not installed")
SHARED = [b"s%d" % i for i in range(3)]
TIMEOUT = 3.0


class Client(threading.Thread):
    """Puts (shared and unique keys) and linearizable gets through one member, moving
    to the next member after an error."""

    def __init__(self, cid, endpoints, history, stop):
        super().__init__(daemon=True)
        self.cid, self.endpoints, self.h, self.stop_ev = cid, endpoints, history, stop
        self.at = cid % len(endpoints)
        self.acked = {}                  # unique key -> value, acknowledged
        self.rng = random.Random(cid)
        self.seq = itertools.count()
        self.errors = 0

    def _stub(self):
        ch = grpc.insecure_channel(self.endpoints[self.at])
        return ch, rpc_pb2_grpc.KVStub(ch)

    def run(self):
        ch, kv = self._stub()
        while not self.stop_ev.is_set():
            n = next(self.seq)
            try:
                self._one(kv, n)
            except grpc.RpcError:
                self.errors += 1
                ch.close()
                self.at = (self.at + 1) % len(self.endpoints)
                time.sleep(0.05)
                ch, kv = self._stub()
        ch.close()

    def _one(self, kv, n):
        r = self.rng.random()
        if r < 0.3:
            key, val = b"u/%d/%d" % (self.cid, n), b"%d" % n
            kv.Put(rpc_pb2.PutRequest(key=key, value=val), timeout=TIMEOUT)
            self.acked[key] = val
            return
        key = self.rng.choice(SHARED)
        if r < 0.65:
            val = b"%d-%d" % (self.cid, n)
            op = self.h.invoke(self.cid, "put", key, val)
            kv.Put(rpc_pb2.PutRequest(key=key, value=val), timeout=TIMEOUT)
            self.h.complete(op, None)
        else:
            op = self.h.invoke(self.cid, "get", key)
            res = kv.Range(rpc_pb2.RangeRequest(key=key), timeout=TIMEOUT)
            self.h.complete(op, res.kvs[0].value if res.kvs else None)


class Watcher(threading.Thread):
    """Watches u/ from revision 1; after a broken stream, resumes on the next member
    from the last revision seen + 1."""

    def __init__(self, endpoints, stop):
        super().__init__(daemon=True)
        self.endpoints, self.stop_ev = endpoints, stop
        self.events = []                 # (mod_revision, key)
        self.resumes = 0

    def run(self):
        at = 0
        while not self.stop_ev.is_set():
            last = self.events[-1][0] if self.events else 0
            try:
                self._watch(self.endpoints[at], last + 1)
            except grpc.RpcError:
                if self.stop_ev.is_set():
                    return
            self.resumes += 1
            at = (at + 1) % len(self.endpoints)
            time.sleep(0.05)

    def _watch(self, ep, start):
        ch = grpc.insecure_channel(ep)
        reqs: queue.Queue = queue.Queue()
        reqs.put(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
            key=b"u/", range_end=b"u0", start_revision=start)))

        def gen():
            while True:
                item = reqs.get()
                if item is None:
                    return
                yield item
        stream = rpc_pb2_grpc.WatchStub(ch).Watch(gen())
        stopper = threading.Thread(target=lambda: (self.stop_ev.wait(), stream.cancel()),
                                   daemon=True)
        stopper.start()
        try:
            for resp in stream:
                for ev in resp.events:
                    self.events.append((ev.kv.mod_revision, ev.kv.key))
        finally:
            reqs.put(None)
            ch.close()


def kill_leader_loop(c: ServeCluster, kills: int) -> list:
    """SIGKILL the leader, wait for a new one, restart the killed member. Returns the
    names killed."""
    killed = []
    for _ in range(kills):
        lead = c.leader()
        c.kill(lead)
        killed.append(lead)
        others = [n for n in c.procs]
        wait_for(lambda: _has_leader(c, others), 15, "a new leader")
        time.sleep(0.3)                       # writes go on with two members
        c.start(lead)
        c.wait_serving(lead)
        time.sleep(0.3)
    return killed


def _has_leader(c, names):
    try:
        st = c.statuses(timeout=2)
    except Exception:
        return False
    return any(s.get("leader") and s.get("leader") == s["header"]["member_id"]
               for n, s in st.items() if n in names)


def hashes(c: ServeCluster):
    out = set()
    for n in c.procs:
        ch = grpc.insecure_channel(c.client[n])
        try:
            r = rpc_pb2_grpc.MaintenanceStub(ch).HashKV(rpc_pb2.HashKVRequest(), timeout=3)
            out.add((r.header.revision, r.hash))
        except grpc.RpcError:
            out.add(None)
        finally:
            ch.close()
    return out


def run_kills(tmp_path, engine, kills):
    c = ServeCluster(tmp_path, engine).start_all()
    try:
        lead = c.leader()
        eps = [c.client[n] for n in sorted(c.client)]
        # the watcher starts on the leader, the first member killed: it must resume
        watch_eps = [c.client[lead]] + [e for e in eps if e != c.client[lead]]
        h, stop, stop_watch = History(), threading.Event(), threading.Event()
        clients = [Client(i, eps, h, stop) for i in range(3)]
        watcher = Watcher(watch_eps, stop_watch)
        for t in clients + [watcher]:
            t.start()
        killed = kill_leader_loop(c, kills)
        time.sleep(0.5)
        stop.set()
        for t in clients:
            t.join(15)
        assert len(killed) == kills
        wait_for(lambda: len(hashes(c)) == 1 and None not in hashes(c), 20,
                 "the same hash_kv at the same revision on every member")
        # every acknowledged unique write is there, on every member
        for n in c.procs:
            ch = grpc.insecure_channel(c.client[n])
            kv = rpc_pb2_grpc.KVStub(ch)
            got = {x.key: x.value for x in kv.Range(rpc_pb2.RangeRequest(
                key=b"u/", range_end=b"u0", serializable=True), timeout=5).kvs}
            ch.close()
            for cl in clients:
                for k, v in cl.acked.items():
                    assert got.get(k) == v, (n, k)
        # the watcher catches up with the last writes, then stops
        wait_for(lambda: {k for _, k in watcher.events} >= set(got), 15,
                 "the watcher to see every write")
        stop_watch.set()
        watcher.join(15)
        ops = h.operations()
        assert sum(1 for o in ops if o.ret != float("inf")) > 20
        res = check_kv(ops, max_steps=2_000_000)
        assert res.ok, res
        # the watcher: strictly increasing revisions, each key once, all of them
        revs = [r for r, _ in watcher.events]
        assert revs == sorted(set(revs)), "events duplicated or out of order"
        assert {k for _, k in watcher.events} == set(got)
        assert watcher.resumes >= 1
        assert sum(cl.errors for cl in clients) >= 1      # the clients did fail over
        c.check_stores()
    finally:
        c.close()


@pytest.mark.parametrize("engine", ["btree", "fractal"])
def test_leader_sigkill_loses_no_acknowledged_write(tmp_path, engine):
    run_kills(tmp_path, engine, kills=3)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["btree", "fractal"])
def test_leader_sigkill_soak(tmp_path, engine):
    run_kills(tmp_path, engine, kills=20)
