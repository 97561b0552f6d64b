"""ReadIndex (Raft thesis §6.4): linearizable reads without writing to the log.

The leader records its commit index when a read arrives, then confirms it is still
the leader by a heartbeat round that carries the request's context. Once a quorum
acknowledges that heartbeat, every read queued up to it can be served once the
state machine has applied the recorded index. Reads are answered in arrival order.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List, Optional

from .types import Message


class ReadIndexStatus:
    __slots__ = ("req", "index", "acks")

    def __init__(self, req: Message, index: int) -> None:
        self.req = req
        self.index = index
        self.acks: Dict[int, bool] = {}


class ReadOnly:
    """Pending ReadIndex requests of a leader, keyed by their context bytes."""

    def __init__(self) -> None:
        self.pending: "OrderedDict[bytes, ReadIndexStatus]" = OrderedDict()

    def add_request(self, index: int, m: Message) -> None:
        """Queue read m at commit index ``index``; a duplicate context is ignored. O(1)."""
        ctx = m.entries[0].data
        if ctx not in self.pending:
            self.pending[ctx] = ReadIndexStatus(m, index)

    def recv_ack(self, node_id: int, ctx: bytes) -> Optional[Dict[int, bool]]:
        """A heartbeat response carrying ctx from node_id; the acks so far, or None. O(1)."""
        rs = self.pending.get(ctx)
        if rs is None:
            return None
        rs.acks[node_id] = True
        return rs.acks

    def advance(self, ctx: bytes) -> List[ReadIndexStatus]:
        """Release every request up to and including ctx (a heartbeat acked by a quorum
        confirms leadership for all reads queued before it too). O(released)."""
        if ctx not in self.pending:
            return []
        out: List[ReadIndexStatus] = []
        while self.pending:
            k, rs = self.pending.popitem(last=False)
            out.append(rs)
            if k == ctx:
                break
        return out

    def last_pending_request_ctx(self) -> bytes:
        """The newest queued context (b"" if none). O(1)."""
        if not self.pending:
            return b""
        return next(reversed(self.pending))

    def reset(self) -> None:
        """Drop every pending read (on a role change)."""
        self.pending.clear()
