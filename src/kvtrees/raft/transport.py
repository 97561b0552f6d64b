"""Member-to-member transport: checksummed frames over TCP (loopback in tests).

One listening socket receives from every peer; one sender thread per peer keeps a
connection open and drains a bounded queue. Raft tolerates loss, so the transport
never blocks the Ready loop: a full queue or a broken connection drops the message
and reports the peer unreachable (and a snapshot as failed), which moves the leader's
progress for it back to probing. A corrupt or malformed frame closes the connection
it came on; the sender reconnects.
"""

from __future__ import annotations

import logging
import queue
import select
import socket
import threading
from typing import Callable, Dict, List, Optional, Tuple

from .codec import (FRAME_HEADER, MAX_FRAME, MAX_MESSAGE, WireError, check_big_frame,
                    check_frame, decode_message, encode_message, frame, parse_frame_header)
from .types import Message, MsgType

log = logging.getLogger(__name__)

Address = Tuple[str, int]


class TransportStats:
    """Counters (read without locking; they are monotonic ints)."""

    def __init__(self) -> None:
        self.sent = 0
        self.received = 0
        self.dropped = 0
        self.bad_frames = 0
        self.connects = 0


def _recv_exact(sock: socket.socket, n: int) -> Optional[bytes]:
    chunks, got = [], 0
    while got < n:
        b = sock.recv(min(n - got, 1 << 20))
        if not b:
            return None
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)


class _PeerSender(threading.Thread):
    def __init__(self, t: "Transport", peer: int, addr: Address, max_queue: int) -> None:
        super().__init__(name=f"raft-send-{t.id}->{peer}", daemon=True)
        self.t = t
        self.peer = peer
        self.addr = addr
        self.q: "queue.Queue[Optional[Message]]" = queue.Queue(max_queue)
        self.sock: Optional[socket.socket] = None

    def enqueue(self, m: Message) -> bool:
        """Queue m without blocking; False when the queue is full."""
        try:
            self.q.put_nowait(m)
            return True
        except queue.Full:
            return False

    def run(self) -> None:
        """Send queued messages until stopped."""
        while True:
            m = self.q.get()
            if m is None:
                break
            self._send(m)
        self._disconnect()

    def _peer_closed(self) -> bool:
        """Did the peer close our connection (it crashed or restarted)? The peer never
        writes on it, so anything readable is its FIN or RST. Without this check the
        first message after a peer's restart went into the dead socket and was lost
        (the send only fails on the next one): a pre-vote lost that way stalled a
        failover by a whole election timeout."""
        try:
            p = select.poll()          # (a timeout socket's recv would wait: poll first)
            p.register(self.sock, select.POLLIN)
            return bool(p.poll(0)) and self.sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _send(self, m: Message) -> None:
        try:
            if self.sock is not None and self._peer_closed():
                self._disconnect()
            if self.sock is None:
                self.sock = socket.create_connection(self.addr, timeout=self.t.connect_timeout)
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.sock.settimeout(self.t.send_timeout)
                self.t.stats.connects += 1
            payload = encode_message(m)
            if len(payload) > MAX_FRAME:
                log.warning("raft %d -> %d: %s of %d bytes exceeds the %d-byte frame "
                            "limit: dropped", self.t.id, self.peer, m.type.name,
                            len(payload), MAX_FRAME)
                self.t._dropped(m)
                return
            if m.type == MsgType.SNAP:     # a big frame: allow ~20 MB/s beyond the usual
                self.sock.settimeout(self.t.send_timeout + len(payload) / (20 << 20))
            self.sock.sendall(frame(payload))
            self.t.stats.sent += 1
            if m.type == MsgType.SNAP:
                self.sock.settimeout(self.t.send_timeout)
                self.t._report_snapshot(self.peer, True)
        except OSError as e:
            log.debug("raft %d -> %d: %s", self.t.id, self.peer, e)
            self._disconnect()
            self.t._dropped(m)

    def _disconnect(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    def stop(self) -> None:
        """Ask the thread to finish (drops what is queued)."""
        while True:
            try:
                self.q.put_nowait(None)
                return
            except queue.Full:
                try:
                    self.q.get_nowait()
                except queue.Empty:
                    pass


class Transport:
    """Sends Raft messages to peers and hands received ones to ``on_message``.

    ``on_message`` runs on a receiver thread: it should only enqueue. ``send`` never
    blocks. Addresses default to loopback; binding elsewhere is the caller's choice."""

    def __init__(self, node_id: int, on_message: Callable[[Message], None],
                 listen: Address = ("127.0.0.1", 0), max_queue: int = 4096,
                 connect_timeout: float = 0.5, send_timeout: float = 2.0) -> None:
        self.id = node_id
        self.on_message = on_message
        self.on_unreachable: Optional[Callable[[int], None]] = None
        self.on_snapshot_status: Optional[Callable[[int, bool], None]] = None
        # a connection we received messages from closed (the peer may have crashed)
        self.on_peer_closed: Optional[Callable[[int], None]] = None
        self.max_queue = max_queue
        self.connect_timeout = connect_timeout
        self.send_timeout = send_timeout
        self.stats = TransportStats()
        self._senders: Dict[int, _PeerSender] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._conns: List[socket.socket] = []
        self._srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind(listen)
        self._srv.listen(64)
        self._srv.settimeout(0.2)  # so the acceptor notices close() promptly
        self.addr: Address = self._srv.getsockname()
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True,
                                          name=f"raft-accept-{node_id}")
        self._acceptor.start()

    # ---- peers -------------------------------------------------------------------------

    def add_peer(self, peer: int, addr: Address) -> None:
        """Send to peer at addr from now on (replacing an older address)."""
        with self._lock:
            old = self._senders.pop(peer, None)
            s = _PeerSender(self, peer, addr, self.max_queue)
            self._senders[peer] = s
            s.start()
        if old is not None:
            old.stop()

    def remove_peer(self, peer: int) -> None:
        """Stop sending to peer."""
        with self._lock:
            s = self._senders.pop(peer, None)
        if s is not None:
            s.stop()

    def send(self, messages: List[Message]) -> None:
        """Queue messages for their peers; drops (and reports) what cannot be queued."""
        for m in messages:
            with self._lock:
                s = self._senders.get(m.to)
            if s is None or not s.enqueue(m):
                self._dropped(m)

    # ---- failure reports ---------------------------------------------------------------

    def _dropped(self, m: Message) -> None:
        self.stats.dropped += 1
        if m.type == MsgType.SNAP:
            self._report_snapshot(m.to, False)
        cb = self.on_unreachable
        if cb is not None:
            cb(m.to)

    def _report_snapshot(self, peer: int, ok: bool) -> None:
        cb = self.on_snapshot_status
        if cb is not None:
            cb(peer, ok)

    # ---- receiving ---------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(None)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._conns.append(conn)
            threading.Thread(target=self._read_loop, args=(conn,), daemon=True,
                             name=f"raft-recv-{self.id}").start()

    def _read_loop(self, conn: socket.socket) -> None:
        peer = 0
        try:
            while not self._closed.is_set():
                head = _recv_exact(conn, FRAME_HEADER)
                if head is None:
                    return
                length, crc = parse_frame_header(head)
                if length > MAX_MESSAGE:          # read the type first: only a snapshot
                    first = _recv_exact(conn, 1)
                    if first is None:
                        return
                    check_big_frame(length, first)
                    rest = _recv_exact(conn, length - 1)
                    if rest is None:
                        return
                    payload = first + rest
                else:
                    payload = _recv_exact(conn, length)
                if payload is None:
                    return
                m = decode_message(check_frame(payload, crc))
                self.stats.received += 1
                peer = m.frm
                self.on_message(m)
        except WireError as e:
            self.stats.bad_frames += 1
            log.warning("raft %d: dropping connection: %s", self.id, e)
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass
            with self._lock:
                if conn in self._conns:
                    self._conns.remove(conn)
            cb = self.on_peer_closed
            if peer and cb is not None and not self._closed.is_set():
                cb(peer)

    def close(self) -> None:
        """Stop every thread and close every socket. Idempotent."""
        if self._closed.is_set():
            return
        self._closed.set()
        try:
            self._srv.close()
        except OSError:
            pass
        with self._lock:
            senders = list(self._senders.values())
            self._senders.clear()
            conns = list(self._conns)
        for s in senders:
            s.stop()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass
        for s in senders:
            s.join(timeout=2)
        self._acceptor.join(timeout=2)
