"""A free TCP port on 127.0.0.1 for the networked tests (every server they start binds
loopback only)."""

import contextlib
import socket


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
