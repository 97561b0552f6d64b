"""Watch service over gRPC: many watches per stream, create/cancel, replay from a start
revision, prev_kv, filters, progress, fragments, a compacted start; both engines."""
from __future__ import annotations

import queue
import threading
import time

from server_fixtures import grpc, served, serve_factory  # noqa: F401

from kvtrees.server.proto import kv_pb2, rpc_pb2 as pb

TIMEOUT = 10.0


class WatchClient:
    """A Watch stream: send() requests, next() responses (bounded waits)."""

    def __init__(self, s):
        self._reqs: queue.Queue = queue.Queue()
        self._resps: queue.Queue = queue.Queue()
        self._call = s.rpc.watch.Watch(iter(self._reqs.get, None))
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        try:
            for r in self._call:
                self._resps.put(r)
        except grpc.RpcError as e:
            self._resps.put(e)

    def send(self, **kw):
        self._reqs.put(pb.WatchRequest(**kw))

    def create(self, key, **kw):
        self.send(create_request=pb.WatchCreateRequest(key=key, **kw))
        r = self.next()
        assert r.created, r
        return r

    def next(self, timeout=TIMEOUT):
        r = self._resps.get(timeout=timeout)
        if isinstance(r, Exception):
            raise r
        return r

    def events(self, n, timeout=TIMEOUT):
        """n events (across responses): [(watch_id, Event)]."""
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            r = self.next(max(0.01, deadline - time.monotonic()))
            out.extend((r.watch_id, e) for e in r.events)
        return out

    def quiet(self, wait=0.3) -> bool:
        try:
            r = self._resps.get(timeout=wait)
        except queue.Empty:
            return True
        self._resps.put(r)
        return False

    def close(self):
        self._call.cancel()
        self._reqs.put(None)
        self._thread.join(5)


def put(s, k, v=b"v"):
    return s.rpc.kv.Put(pb.PutRequest(key=k, value=v)).header.revision


def test_many_watches_ids_events_cancel(served):
    w = WatchClient(served)
    try:
        a = w.create(b"a")
        p = w.create(b"p/", range_end=b"p0", prev_kv=True)
        assert (a.watch_id, p.watch_id) == (0, 1)          # etcd counts from 0
        assert a.header.revision == 1
        put(served, b"a", b"1")
        put(served, b"p/x", b"2")
        put(served, b"p/x", b"3")
        served.rpc.kv.DeleteRange(pb.DeleteRangeRequest(key=b"p/x"))
        evs = w.events(4)
        by = {0: [], 1: []}
        for wid, e in evs:
            by[wid].append(e)
        assert [(e.type, e.kv.key, e.kv.value, e.kv.mod_revision) for e in by[0]] == \
            [(kv_pb2.Event.PUT, b"a", b"1", 2)]
        assert [(e.type, e.kv.mod_revision) for e in by[1]] == \
            [(kv_pb2.Event.PUT, 3), (kv_pb2.Event.PUT, 4), (kv_pb2.Event.DELETE, 5)]
        assert by[1][1].prev_kv.value == b"2" and by[1][2].prev_kv.value == b"3"
        assert not by[0][0].HasField("prev_kv")
        w.send(cancel_request=pb.WatchCancelRequest(watch_id=0))
        r = w.next()
        assert r.canceled and r.watch_id == 0
        put(served, b"a", b"after-cancel")
        put(served, b"p/y", b"4")
        evs = w.events(1)
        assert evs[0][0] == 1 and evs[0][1].kv.key == b"p/y"
        assert w.quiet()
    finally:
        w.close()


def test_replay_from_start_revision_and_filters(served):
    for i in range(5):
        put(served, b"k", b"%d" % i)
    served.rpc.kv.DeleteRange(pb.DeleteRangeRequest(key=b"k"))
    w = WatchClient(served)
    try:
        w.create(b"k", start_revision=3)
        evs = w.events(5)
        assert [e.kv.mod_revision for _, e in evs] == [3, 4, 5, 6, 7]
        assert evs[-1][1].type == kv_pb2.Event.DELETE
        w.create(b"k", filters=[pb.WatchCreateRequest.NOPUT])
        put(served, b"k", b"x")
        served.rpc.kv.DeleteRange(pb.DeleteRangeRequest(key=b"k"))
        evs = w.events(3)      # the first watch sees both, the NOPUT one the delete
        assert sorted((wid, e.type) for wid, e in evs) == [
            (0, kv_pb2.Event.PUT), (0, kv_pb2.Event.DELETE), (1, kv_pb2.Event.DELETE)]
        assert w.quiet()
    finally:
        w.close()


def test_compacted_start_cancels_with_compact_revision(served):
    for i in range(5):
        put(served, b"c", b"%d" % i)
    served.rpc.kv.Compact(pb.CompactionRequest(revision=5, physical=True))
    w = WatchClient(served)
    try:
        w.create(b"c", start_revision=2)
        r = w.next()
        assert r.canceled and r.compact_revision == 5 and r.watch_id == 0
        w.create(b"c", start_revision=5)     # at the compacted revision: allowed
        assert [e.kv.mod_revision for _, e in w.events(2)] == [5, 6]
    finally:
        w.close()


def test_progress_request_and_notify(serve_factory):
    s = serve_factory(progress_notify_interval=0.3)
    w = WatchClient(s)
    try:
        w.create(b"x", progress_notify=True)
        put(s, b"other")
        r = w.next(5)                        # a progress notification, no events
        assert r.watch_id == 0 and not r.events and r.header.revision >= 2
        w.send(progress_request=pb.WatchProgressRequest())
        deadline = time.monotonic() + 5
        while True:
            r = w.next(5)
            if r.watch_id == -1:
                break
            assert time.monotonic() < deadline
        assert r.header.revision == s.store.revision and not r.events
    finally:
        w.close()


def test_progress_response_comes_after_every_event_up_to_it(served):
    """Under a concurrent write load, a progress response at revision R is sent only
    after every watch of the stream has sent its events up to R (as etcd orders them);
    one watch replays history, so it is behind when the requests come."""
    for i in range(200):
        put(served, b"p/old%d" % (i % 7))
    w = WatchClient(served)
    try:
        for i in range(8):
            w.create(b"p/", range_end=b"p0")
        w.create(b"p/k3")
        w.create(b"p/", range_end=b"p0", start_revision=1)
        stop = threading.Event()

        def writer():
            i = 0
            while not stop.is_set() and i < 3000:
                put(served, b"p/k%d" % (i % 10))
                i += 1
        t = threading.Thread(target=writer)
        t.start()
        for _ in range(30):
            w.send(progress_request=pb.WatchProgressRequest())
            time.sleep(0.02)
        stop.set()
        t.join(30)
        last = served.store.revision
        w.send(progress_request=pb.WatchProgressRequest())
        seen, progress = {}, []           # watch id -> [(position, revision)]
        pos = 0
        while not progress or progress[-1][1] < last:
            r = w.next()
            pos += 1
            if r.watch_id == -1:
                progress.append((pos, r.header.revision))
            for e in r.events:
                seen.setdefault(r.watch_id, []).append((pos, e.kv.mod_revision))
    finally:
        w.close()
    assert len(progress) == 31 and len(seen) == 10
    assert [rev for _, rev in progress] == sorted(rev for _, rev in progress)
    for wid, evs in seen.items():
        revs = [rev for _, rev in evs]
        assert revs == sorted(revs) and len(set(revs)) == len(revs), wid
        for ppos, prev in progress:
            late = [(p, rev) for p, rev in evs if rev <= prev and p > ppos]
            assert not late, (wid, ppos, prev, late[:3])
    assert len(seen[9]) == last - 1       # the replaying watch: every revision once


def test_fragment_large_revision(serve_factory):
    s = serve_factory(max_request_bytes=64 * 1024)
    w = WatchClient(s)
    try:
        for i in range(40):
            put(s, b"f/%03d" % i, b"z" * 4000)
        # one revision bigger than --max-request-bytes: a range delete, with prev_kv
        w.create(b"f/", range_end=b"f0", fragment=True, prev_kv=True)
        w.create(b"f/", range_end=b"f0", prev_kv=True)
        s.rpc.kv.DeleteRange(pb.DeleteRangeRequest(key=b"f/", range_end=b"f0"))
        frag, whole = [], []
        while sum(len(r.events) for r in frag) < 40 or not whole:
            r = w.next()
            (frag if r.watch_id == 0 else whole).append(r)
        assert len(frag) > 1 and all(r.fragment for r in frag[:-1]) and not frag[-1].fragment
        assert all(r.ByteSize() <= 64 * 1024 + 512 for r in frag)
        assert [e.kv.key for r in frag for e in r.events] == [b"f/%03d" % i for i in range(40)]
        assert len(whole) == 1 and len(whole[0].events) == 40 and not whole[0].fragment
    finally:
        w.close()


def test_duplicate_watch_id_and_limit(serve_factory):
    from kvtrees.server.limits import Limits
    s = serve_factory(limits=Limits(max_watches_per_stream=2))
    w = WatchClient(s)
    try:
        assert w.create(b"a", watch_id=7).watch_id == 7
        w.send(create_request=pb.WatchCreateRequest(key=b"b", watch_id=7))
        r = w.next()
        assert r.created and r.canceled and "duplicate" in r.cancel_reason
        w.create(b"b")
        w.send(create_request=pb.WatchCreateRequest(key=b"c"))
        r = w.next()
        assert r.canceled and "too many watches" in r.cancel_reason
    finally:
        w.close()


def test_slow_reader_stays_bounded_and_complete(serve_factory):
    """A stream whose client reads nothing while 3,000 revisions are written still gets
    every event once, in order, afterwards (the pumps block, the store's watchers spill
    and catch up from storage)."""
    from kvtrees.server.limits import Limits
    s = serve_factory(limits=Limits(watch_queue=4), watch_queue_limit=16)
    w = WatchClient(s)
    try:
        w.create(b"s/", range_end=b"s0")
        for i in range(3000):
            s.store.put(b"s/%d" % (i % 7), b"%d" % i)
        revs = [e.kv.mod_revision for _, e in w.events(3000, timeout=60)]
        assert revs == list(range(2, 3002))
        assert w.quiet()
    finally:
        w.close()


def test_stream_flood_is_refused_and_unary_calls_still_served(serve_factory):
    """Streams past the cap get RESOURCE_EXHAUSTED ("too many requests"); unary calls
    keep working meanwhile, and closing streams frees their slots."""
    from kvtrees.server.limits import Limits
    s = serve_factory(limits=Limits(max_streams=4, max_concurrent_rpcs=12))
    clients = []
    try:
        for _ in range(4):
            c = WatchClient(s)
            c.create(b"flood")
            clients.append(c)
        extra = WatchClient(s)
        extra.send(create_request=pb.WatchCreateRequest(key=b"flood"))
        try:
            extra.next(5)
            raise AssertionError("a fifth stream was accepted")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert e.details() == "etcdserver: too many requests"
        extra.close()
        for i in range(20):
            put(s, b"flood", b"%d" % i)
        assert len(clients[0].events(20)) == 20
        clients.pop().close()
        deadline = time.monotonic() + 5
        while True:                  # the freed slot is reusable
            c = WatchClient(s)
            c.send(create_request=pb.WatchCreateRequest(key=b"flood"))
            try:
                assert c.next(5).created
                clients.append(c)
                break
            except grpc.RpcError:
                c.close()
                assert time.monotonic() < deadline
                time.sleep(0.1)
    finally:
        for c in clients:
            c.close()
