"""etcd's Watch service: one bidirectional stream carries many watches.

Per stream: a reader thread takes create/cancel/progress requests; each watch has a
pump thread that moves events from its store watcher into the stream's bounded
response queue; the RPC's own thread sends from that queue. When the client reads
slowly the queue fills, pumps block, and the store's watchers (which never block a
writer) spill and later catch up from storage: memory per stream stays bounded by
the queue length and the store's per-watcher queue limit.

As etcd: watch ids count from 0 per stream (or are chosen by the client), the created
response comes first, a start revision below the compacted one answers
compact_revision and cancels the watch, a progress request is answered with watch_id
-1 and the store's revision R once every watch of the stream has sent its events up to
R (each store watcher returns a Progress(R) mark after them), and with fragment=true a revision's events larger than --max-request-bytes go out
in several responses.
"""
from __future__ import annotations

import logging
import queue
import threading

from .. import errors as kerr
from ..watch import Progress
from . import convert, rpcerrors
from .member import Member
from .proto import rpc_pb2, rpc_pb2_grpc

_log = logging.getLogger("kvtrees.server.watch")
_END = object()
EVENTS_PER_RESPONSE = 1000     # a response is cut at a revision boundary past this many
PROGRESS_NOTIFY_INTERVAL = 600.0   # seconds (etcd's default, 10 minutes)


class _Watch:
    """One watch on a stream: its store watcher and the thread pumping it."""

    def __init__(self, stream: "_Stream", wid: int, req, created_rev: int):
        self.stream = stream
        self.id = wid
        self.req = req
        self.created_rev = created_rev
        store = stream.member.store
        end = convert.range_end(req.range_end)
        key = req.key or b"\x00"
        self.events, self.cancel_store = store.watch(
            key, start_revision=req.start_revision or None, prev_kv=req.prev_kv,
            filters=[int(f) for f in req.filters], range_end=end)
        self.thread = threading.Thread(target=self._pump, daemon=True,
                                       name="kvtrees-watch-pump-%d" % wid)

    def _pump(self) -> None:
        interval = self.stream.progress_interval if self.req.progress_notify else None
        try:
            while not self.stream.closed.is_set():
                try:
                    first = self.events.get(interval)
                except TimeoutError:
                    self.stream.send(rpc_pb2.WatchResponse(
                        header=self.stream.member.header(), watch_id=self.id))
                    continue
                if first is None:          # cancelled
                    return
                if type(first) is Progress:
                    self.stream.progress_reached(self.id, first.revision)
                    continue
                evs, mark = self._drain(first)
                self._send_events(evs)
                if mark is not None:       # after the events at or below it
                    self.stream.progress_reached(self.id, mark.revision)
        except kerr.CompactedError as e:
            self.stream.send(rpc_pb2.WatchResponse(
                header=self.stream.member.header(), watch_id=self.id,
                compact_revision=e.compact_revision, canceled=True,
                cancel_reason=rpcerrors.COMPACTED.message[len("etcdserver: "):]))
            self.stream.forget(self.id)
        except kerr.ClosedError:
            self.stream.finish()
        except Exception:
            _log.exception("watch %d failed", self.id)
            self.stream.finish()

    def _drain(self, first) -> tuple:
        """(first plus every event already waiting, cut at a revision boundary; the
        Progress mark that ended the batch, or None)."""
        evs = [first]
        while True:
            try:
                ev = self.events.get(0)
            except TimeoutError:
                return evs, None
            if ev is None:
                return evs, None
            if type(ev) is Progress:
                return evs, ev
            evs.append(ev)
            if len(evs) >= EVENTS_PER_RESPONSE and ev.mod_revision != evs[-2].mod_revision:
                return evs, None

    def _send_events(self, evs: list) -> None:
        rev = max(evs[-1].mod_revision, self.created_rev)
        pb = [_converted(e, self.req.prev_kv) for e in evs]
        header = self.stream.member.header(rev)
        resp = rpc_pb2.WatchResponse(header=header, watch_id=self.id, events=pb)
        limit = self.stream.member.limits.max_request_bytes
        if not self.req.fragment or resp.ByteSize() <= limit:
            self.stream.send(resp)
            return
        for part, last in _fragments(pb, limit):
            self.stream.send(rpc_pb2.WatchResponse(header=header, watch_id=self.id,
                                                   events=part, fragment=not last))

    def stop(self) -> None:
        self.cancel_store()


_CONVERTED: dict = {}          # id(store event) -> (event, with_prev, mvccpb.Event)
_CONVERTED_MAX = 8192


def _converted(ev, with_prev: bool):
    """convert.event(ev, with_prev), once per store event: the store hands the same
    event object to every watch it matches, so 1,000 watches on one prefix convert
    each event once, not 1,000 times. The entry holds ev, so its id is not reused
    while cached. O(1) amortized."""
    key = id(ev)
    hit = _CONVERTED.get(key)
    if hit is not None and hit[0] is ev and hit[1] == with_prev:
        return hit[2]
    out = convert.event(ev, with_prev)
    if len(_CONVERTED) >= _CONVERTED_MAX:
        _CONVERTED.clear()
    _CONVERTED[key] = (ev, with_prev, out)
    return out


def _fragments(events: list, limit: int):
    """Split events into chunks of at most `limit` encoded bytes (at least one event
    each); yields (chunk, is_last)."""
    chunk, size = [], 0
    for ev in events:
        n = ev.ByteSize() + 4
        if chunk and size + n > limit:
            yield chunk, False
            chunk, size = [], 0
        chunk.append(ev)
        size += n
    yield chunk, True


class _Stream:
    """State of one Watch RPC."""

    def __init__(self, member: Member, context, progress_interval: float):
        self.member = member
        self.context = context
        self.progress_interval = progress_interval
        self.out: queue.Queue = queue.Queue(maxsize=member.limits.watch_queue)
        self.closed = threading.Event()
        self._watches: dict = {}
        self._lock = threading.Lock()
        self._next_id = 0
        self._progress: list = []      # [revision, watch ids not there yet], oldest first

    def send(self, resp) -> None:
        """Queue a response; blocks while the queue is full (backpressure)."""
        while not self.closed.is_set():
            try:
                self.out.put(resp, timeout=0.5)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            try:
                self.out.put_nowait(_END)
            except queue.Full:
                pass

    def forget(self, wid: int) -> None:
        with self._lock:
            w = self._watches.pop(wid, None)
            self._progress_drop(wid)
        if w is not None:
            w.stop()

    # ---- progress requests: answered in order, each once every watch has sent its
    # events up to the request's revision
    def request_progress(self) -> None:
        rev = self.member.store.revision
        with self._lock:
            watches = list(self._watches.values())
            if watches:
                self._progress.append([rev, {w.id for w in watches}])
            else:
                self._progress_send(rev)
        for w in watches:
            w.events.request_progress(rev)

    def progress_reached(self, wid: int, rev: int) -> None:
        """Watch wid has queued every event up to rev (its pump calls this)."""
        with self._lock:
            for entry in self._progress:
                if entry[0] == rev and wid in entry[1]:
                    entry[1].discard(wid)
                    break
            self._progress_flush()

    def _progress_drop(self, wid: int) -> None:
        """A watch went away: requests no longer wait for it (caller holds _lock)."""
        for entry in self._progress:
            entry[1].discard(wid)
        self._progress_flush()

    def _progress_flush(self) -> None:
        # under _lock, so the answers go out in request order
        while self._progress and not self._progress[0][1]:
            self._progress_send(self._progress.pop(0)[0])

    def _progress_send(self, rev: int) -> None:
        self.send(rpc_pb2.WatchResponse(header=self.member.header(rev), watch_id=-1))

    def read_requests(self, requests) -> None:
        try:
            for req in requests:
                if self.closed.is_set():
                    break
                kind = req.WhichOneof("request_union")
                if kind == "create_request":
                    self._create(req.create_request)
                elif kind == "cancel_request":
                    self._cancel(req.cancel_request.watch_id)
                elif kind == "progress_request":
                    self.request_progress()
        except Exception as exc:        # the client went away or sent garbage
            _log.debug("watch stream reader ended: %r", exc)
            self.finish()
        # a half-closed stream (the client sends no more requests) stays open for
        # events, as in etcd; it ends when the client cancels the RPC

    def _refuse(self, wid: int, reason: str) -> None:
        self.send(rpc_pb2.WatchResponse(header=self.member.header(), watch_id=wid,
                                        created=True, canceled=True, cancel_reason=reason))

    def _create(self, req) -> None:
        try:
            self.member.auth.check_range(self.context, req.key or b"\x00",
                                         convert.range_end(req.range_end), "read")
        except rpcerrors.RpcError as e:
            self._refuse(-1, e.message)
            return
        with self._lock:
            if req.watch_id:
                wid = req.watch_id
                if wid in self._watches:
                    self._refuse(wid, "mvcc: duplicate watch ID provided on the WatchStream")
                    return
            else:
                while self._next_id in self._watches:
                    self._next_id += 1
                wid = self._next_id
                self._next_id += 1
            if len(self._watches) >= self.member.limits.max_watches_per_stream:
                self._refuse(wid, "kvtrees: too many watches on this stream")
                return
            if not req.key and not req.range_end:
                self._refuse(wid, rpcerrors.EMPTY_KEY.message)
                return
            rev = self.member.store.revision
            w = _Watch(self, wid, req, rev)
            self._watches[wid] = w
        # the created response goes before any event: the pump starts after it is queued
        self.send(rpc_pb2.WatchResponse(header=self.member.header(rev), watch_id=wid,
                                        created=True))
        w.thread.start()

    def _cancel(self, wid: int) -> None:
        with self._lock:
            w = self._watches.pop(wid, None)
            self._progress_drop(wid)
        if w is None:
            return
        w.stop()
        self.send(rpc_pb2.WatchResponse(header=self.member.header(), watch_id=wid,
                                        canceled=True))

    def close(self) -> None:
        self.finish()
        with self._lock:
            watches, self._watches = list(self._watches.values()), {}
        for w in watches:
            w.stop()


class WatchService(rpc_pb2_grpc.WatchServicer):
    def __init__(self, member: Member, progress_interval: float = PROGRESS_NOTIFY_INTERVAL):
        self.member = member
        self.progress_interval = progress_interval
        self._streams: set = set()
        self._lock = threading.Lock()

    def Watch(self, request_iterator, context):
        try:
            slot = self.member.stream_slot()
        except rpcerrors.RpcError as e:
            context.abort(e.code, e.message)
        with slot:
            yield from self._serve(request_iterator, context)

    def _serve(self, request_iterator, context):
        stream = _Stream(self.member, context, self.progress_interval)
        with self._lock:
            self._streams.add(stream)
        context.add_callback(stream.close)
        reader = threading.Thread(target=stream.read_requests, args=(request_iterator,),
                                  daemon=True, name="kvtrees-watch-reader")
        reader.start()
        try:
            while True:
                try:
                    item = stream.out.get(timeout=0.5)
                except queue.Empty:
                    if stream.closed.is_set():   # finished while the queue was full
                        break
                    continue
                if item is _END:
                    break
                yield item
        finally:
            stream.close()
            with self._lock:
                self._streams.discard(stream)
        if self.member.stopping.is_set():
            err = rpcerrors.STOPPED
            context.abort(err.code, err.message)

    def close_all(self) -> None:
        """End every open watch stream (server shutdown)."""
        with self._lock:
            streams = list(self._streams)
        for s in streams:
            s.close()

    def open_watches(self) -> int:
        """Watches open on all streams. O(streams)."""
        with self._lock:
            return sum(len(s._watches) for s in self._streams)
