"""The stable-storage interface the Raft log reads from, and an in-memory implementation.

Raft only *reads* stable storage; the application writes to it (after each Ready) and
then calls ``advance()``. The log held by a Storage starts just after its snapshot:
``first_index() == snapshot.index + 1``; ``term(snapshot.index)`` still answers (the
snapshot's term), anything older raises :class:`LogCompactedError`.

:class:`MemoryStorage` keeps everything in a list whose element 0 is a dummy entry
carrying the snapshot's index and term (the layout etcd-io/raft uses). The durable
log (:mod:`kvtrees.raft.filelog`) builds on it.
"""

from __future__ import annotations

from typing import List, Optional, Protocol, Sequence, Tuple

from .errors import LogCompactedError, LogUnavailableError, SnapshotOutOfDateError, RaftError
from .types import ConfState, Entry, HardState, Snapshot, SnapshotMetadata

NO_LIMIT = 1 << 62


def limit_size(ents: List[Entry], max_size: int) -> List[Entry]:
    """The longest prefix of ents whose total size is <= max_size, but never empty.
    O(len(result))."""
    if not ents or max_size >= NO_LIMIT:
        return ents
    size = ents[0].size()
    n = 1
    while n < len(ents):
        size += ents[n].size()
        if size > max_size:
            break
        n += 1
    return ents[:n]


class Storage(Protocol):
    """What the Raft log needs from stable storage (read side only)."""

    def initial_state(self) -> Tuple[HardState, ConfState]:
        """The persisted hard state and membership at start-up."""

    def entries(self, lo: int, hi: int, max_size: int = NO_LIMIT) -> List[Entry]:
        """Entries [lo, hi), limited to max_size bytes (at least one entry)."""

    def term(self, index: int) -> int:
        """The term of the entry at index (first_index()-1 allowed)."""

    def last_index(self) -> int:
        """Index of the last entry."""

    def first_index(self) -> int:
        """Index of the first entry still available (older ones are in the snapshot)."""

    def snapshot(self) -> Snapshot:
        """The most recent snapshot."""


class MemoryStorage:
    """Stable storage in memory: the simulator's "disk" and the durable log's index.

    All reads are O(1) or O(result); append is O(len(entries)) plus a truncation."""

    def __init__(self) -> None:
        self.hard_state = HardState()
        self._snapshot = Snapshot()
        self._ents: List[Entry] = [Entry(0, 0)]  # dummy: snapshot index/term

    # ---- Storage interface -----------------------------------------------------------

    def initial_state(self) -> Tuple[HardState, ConfState]:
        """O(1)."""
        return self.hard_state.copy(), self._snapshot.metadata.conf_state

    def entries(self, lo: int, hi: int, max_size: int = NO_LIMIT) -> List[Entry]:
        """Entries [lo, hi) limited to max_size bytes. O(hi - lo)."""
        offset = self._ents[0].index
        if lo <= offset:
            raise LogCompactedError(f"entry {lo} is compacted (first is {offset + 1})")
        if hi > self.last_index() + 1:
            raise LogUnavailableError(f"entries up to {hi - 1} asked, last is {self.last_index()}")
        return limit_size(self._ents[lo - offset:hi - offset], max_size)

    def term(self, index: int) -> int:
        """O(1)."""
        offset = self._ents[0].index
        if index < offset:
            raise LogCompactedError(f"term of compacted entry {index} (snapshot at {offset})")
        if index - offset >= len(self._ents):
            raise LogUnavailableError(f"term of entry {index}, last is {self.last_index()}")
        return self._ents[index - offset].term

    def last_index(self) -> int:
        """O(1)."""
        return self._ents[0].index + len(self._ents) - 1

    def first_index(self) -> int:
        """O(1)."""
        return self._ents[0].index + 1

    def snapshot(self) -> Snapshot:
        """O(1)."""
        return self._snapshot

    # ---- writes (the application's side) ---------------------------------------------

    def set_hard_state(self, hs: HardState) -> None:
        """O(1)."""
        self.hard_state = hs.copy()

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Replace the whole log by snap (what a follower does when it installs one).
        O(1)."""
        if snap.metadata.index <= self._snapshot.metadata.index:
            raise SnapshotOutOfDateError(
                f"snapshot at {snap.metadata.index} is not newer than {self._snapshot.metadata.index}")
        self._snapshot = snap
        self._ents = [Entry(snap.metadata.term, snap.metadata.index)]

    def create_snapshot(self, index: int, conf_state: Optional[ConfState],
                        data: bytes) -> Snapshot:
        """Record a snapshot of the application at ``index`` (<= last index). O(1)."""
        if index <= self._snapshot.metadata.index:
            raise SnapshotOutOfDateError(
                f"snapshot at {index} is not newer than {self._snapshot.metadata.index}")
        if index > self.last_index():
            raise LogUnavailableError(f"snapshot at {index} is past the last index {self.last_index()}")
        meta = SnapshotMetadata(index, self.term(index),
                                conf_state if conf_state is not None
                                else self._snapshot.metadata.conf_state)
        self._snapshot = Snapshot(data, meta)
        return self._snapshot

    def compact(self, compact_index: int) -> None:
        """Drop entries before compact_index (which becomes the dummy). The application
        must not compact past what it has applied. O(remaining entries)."""
        offset = self._ents[0].index
        if compact_index <= offset:
            raise LogCompactedError(f"already compacted to {offset}")
        if compact_index > self.last_index():
            raise LogUnavailableError(f"compact to {compact_index} past last index {self.last_index()}")
        i = compact_index - offset
        self._ents = [Entry(self._ents[i].term, compact_index)] + self._ents[i + 1:]

    def append(self, entries: Sequence[Entry]) -> None:
        """Append entries, replacing any existing suffix they overlap. O(len(entries))."""
        if not entries:
            return
        first = self.first_index()
        last = entries[0].index + len(entries) - 1
        if last < first:
            return  # all already compacted
        if first > entries[0].index:
            entries = entries[first - entries[0].index:]
        offset = entries[0].index - self._ents[0].index
        if offset > len(self._ents):
            raise RaftError(f"append leaves a gap: last {self.last_index()}, new {entries[0].index}")
        del self._ents[offset:]
        self._ents.extend(entries)
