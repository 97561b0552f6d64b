"""The leader's view of each follower: flow control (probe / replicate / snapshot) and
the in-flight window, plus the tracker that turns match indexes and votes into quorum
decisions.

Flow control, as etcd-io/raft does it:

* PROBE: we do not know where the follower's log ends; send at most one APP per
  heartbeat interval and wait for the answer (``probe_sent``).
* REPLICATE: the follower is known to match up to ``match``; stream APPs
  optimistically (``next`` moves ahead on send), bounded by the in-flight window.
* SNAPSHOT: the follower needs entries we compacted away; send nothing until the
  snapshot is reported delivered or failed.
"""

from __future__ import annotations

from collections import deque
from enum import IntEnum
from typing import Dict, Iterable, List, Optional, Tuple

from .types import ConfState


class ProgressState(IntEnum):
    PROBE = 0
    REPLICATE = 1
    SNAPSHOT = 2


class Inflights:
    """A bounded FIFO of the last index of each APP sent but not yet acknowledged."""

    __slots__ = ("size", "_q")

    def __init__(self, size: int) -> None:
        self.size = size
        self._q: deque = deque()

    def add(self, last_index: int) -> None:
        """O(1). Callers check full() first."""
        self._q.append(last_index)

    def free_le(self, to: int) -> None:
        """Forget every message whose last index is <= to. O(freed)."""
        q = self._q
        while q and q[0] <= to:
            q.popleft()

    def free_first_one(self) -> None:
        """Forget the oldest message (a heartbeat answer shows the peer alive)."""
        if self._q:
            self._q.popleft()

    def full(self) -> bool:
        """Is the window full? O(1)."""
        return len(self._q) >= self.size

    def count(self) -> int:
        """Messages in flight. O(1)."""
        return len(self._q)

    def reset(self) -> None:
        """Forget every message in flight."""
        self._q.clear()


class Progress:
    """Replication state of one peer, kept by the leader."""

    __slots__ = ("match", "next", "state", "pending_snapshot", "recent_active",
                 "probe_sent", "inflights", "is_learner")

    def __init__(self, next_index: int, max_inflight: int, is_learner: bool = False) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.pending_snapshot = 0
        self.recent_active = False
        self.probe_sent = False
        self.inflights = Inflights(max_inflight)
        self.is_learner = is_learner

    def __repr__(self) -> str:
        return (f"Progress({self.state.name} match={self.match} next={self.next}"
                f"{' learner' if self.is_learner else ''} inflight={self.inflights.count()})")

    def _reset_state(self, state: ProgressState) -> None:
        self.probe_sent = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        """Back to probing: after a snapshot, resume just past it."""
        if self.state == ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        """Stream optimistically from match + 1."""
        self._reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        """Wait for a snapshot at snapshot_index to be delivered."""
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def maybe_update(self, n: int) -> bool:
        """The peer acknowledged up to n. Returns whether match moved."""
        updated = False
        if self.match < n:
            self.match = n
            updated = True
            self.probe_sent = False
        if self.next < n + 1:
            self.next = n + 1
        return updated

    def optimistic_update(self, n: int) -> None:
        """Entries up to n were sent (replicate state). O(1)."""
        self.next = n + 1

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """The peer rejected an APP whose previous index was ``rejected``; its log may
        end at or before ``match_hint``. Returns False for a stale rejection."""
        if self.state == ProgressState.REPLICATE:
            if rejected <= self.match:
                return False  # stale: we already know it matches further
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False  # not the probe we are waiting for
        self.next = max(min(rejected, match_hint + 1), 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        """Should the leader hold back APPs to this peer?"""
        if self.state == ProgressState.PROBE:
            return self.probe_sent
        if self.state == ProgressState.REPLICATE:
            return self.inflights.full()
        return True


class ProgressTracker:
    """Progress of every member, the current configuration, and the votes of an election."""

    def __init__(self, max_inflight: int) -> None:
        self.max_inflight = max_inflight
        self.voters: set = set()
        self.learners: set = set()
        self.progress: Dict[int, Progress] = {}
        self.votes: Dict[int, bool] = {}

    def conf_state(self) -> ConfState:
        """The current membership."""
        return ConfState(self.voters, self.learners)

    def quorum(self) -> int:
        """Votes needed for a majority of voters."""
        return len(self.voters) // 2 + 1

    def is_singleton(self) -> bool:
        """Is there exactly one voter?"""
        return len(self.voters) == 1

    def ids(self) -> List[int]:
        """Every member's id, sorted."""
        return sorted(self.progress)

    def init_progress(self, node_id: int, match: int, next_index: int, is_learner: bool) -> None:
        """Track a (new) member with the given match and next."""
        pr = Progress(next_index, self.max_inflight, is_learner)
        pr.match = match
        self.progress[node_id] = pr
        (self.learners if is_learner else self.voters).add(node_id)

    def remove(self, node_id: int) -> None:
        """Stop tracking a member."""
        self.progress.pop(node_id, None)
        self.voters.discard(node_id)
        self.learners.discard(node_id)

    def committed(self) -> int:
        """The largest index acknowledged by a quorum of voters. O(v log v)."""
        if not self.voters:
            return 0
        matches = sorted((self.progress[v].match for v in self.voters), reverse=True)
        return matches[self.quorum() - 1]

    def quorum_active(self) -> bool:
        """Were a quorum of voters heard from since the last check? (check-quorum)"""
        return sum(1 for v in self.voters if self.progress[v].recent_active) >= self.quorum()

    def reset_votes(self) -> None:
        """Forget the votes of the last election."""
        self.votes = {}

    def record_vote(self, node_id: int, granted: bool) -> None:
        """Record node_id's first answer in this election."""
        if node_id not in self.votes:
            self.votes[node_id] = granted

    def tally_votes(self) -> Tuple[int, int, Optional[bool]]:
        """(granted, rejected, result): result True won, False lost, None pending."""
        granted = sum(1 for v in self.voters if self.votes.get(v) is True)
        rejected = sum(1 for v in self.voters if self.votes.get(v) is False)
        q = self.quorum()
        if granted >= q:
            return granted, rejected, True
        if rejected >= q or granted + (len(self.voters) - granted - rejected) < q:
            return granted, rejected, False
        return granted, rejected, None

    def visit(self) -> Iterable[Tuple[int, Progress]]:
        """Members in id order (deterministic message order)."""
        for i in sorted(self.progress):
            yield i, self.progress[i]
