"""A fault-injecting TCP proxy for one direction of one member-to-member link.

Listens on 127.0.0.1 (an ephemeral port) and forwards each accepted connection to
``target``. Faults, switchable at any time:

* ``blackhole``: bytes in either direction are read and discarded (a partition that
  TCP cannot see: the sender's writes succeed, nothing arrives);
* ``delay``: seconds to hold each chunk before forwarding it;
* ``corrupt_every``: flip one bit in every Nth forwarded chunk (0: never);
* ``reset()``: close every open connection now.

Because a link A->B has its own proxy, cutting only A->B makes an asymmetric partition.
``close()`` stops every thread it started.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import List, Tuple


class FaultProxy:
    def __init__(self, target: Tuple[str, int]) -> None:
        self.target = target
        self.blackhole = False
        self.delay = 0.0
        self.corrupt_every = 0
        self.corrupted = 0
        self.chunks = 0
        self._lock = threading.Lock()
        self._socks: List[socket.socket] = []
        self._threads: List[threading.Thread] = []
        self._closed = threading.Event()
        self._srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind(("127.0.0.1", 0))
        self._srv.listen(16)
        self._srv.settimeout(0.2)
        self.addr = self._srv.getsockname()
        self._spawn(self._accept_loop)

    def _spawn(self, fn, *args) -> None:
        t = threading.Thread(target=fn, args=args, daemon=True)
        with self._lock:
            self._threads.append(t)
        t.start()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=1.0)
            except OSError:
                client.close()
                continue
            for s in (client, upstream):
                s.settimeout(0.2)
            with self._lock:
                self._socks += [client, upstream]
            self._spawn(self._pump, client, upstream)
            self._spawn(self._pump, upstream, client)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        while not self._closed.is_set():
            try:
                data = src.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not data:
                break
            if self.blackhole:
                continue
            if self.delay:
                time.sleep(self.delay)
            data = self._maybe_corrupt(data)
            try:
                dst.sendall(data)
            except OSError:
                break
        self._close_pair(src, dst)

    def _maybe_corrupt(self, data: bytes) -> bytes:
        self.chunks += 1
        if self.corrupt_every and self.chunks % self.corrupt_every == 0:
            self.corrupted += 1
            b = bytearray(data)
            b[len(b) // 2] ^= 0x10
            return bytes(b)
        return data

    def _close_pair(self, *socks: socket.socket) -> None:
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass

    def reset(self) -> None:
        with self._lock:
            socks, self._socks = self._socks, []
        self._close_pair(*socks)

    def close(self) -> None:
        self._closed.set()
        try:
            self._srv.close()
        except OSError:
            pass
        self.reset()
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(timeout=2)
