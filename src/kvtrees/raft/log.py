"""The Raft log: stable storage (read-only here) plus the unstable tail not yet persisted.

Layout, by index::

    storage: [first_index ............ last stable]
    unstable:                    [offset ............ last]   (may overlap & replace)
    committed <= last;  applied <= committed

``Unstable`` holds entries (and possibly an incoming snapshot) that Ready will hand to
the application for persisting; ``stable_to``/``stable_snap_to`` drop them once the
application says they are durable.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

from .errors import LogCompactedError, LogUnavailableError, RaftError
from .storage import NO_LIMIT, Storage, limit_size
from .types import Entry, Snapshot


class Unstable:
    """Entries and a snapshot received but not yet written to stable storage.

    ``entries[i]`` has index ``offset + i``."""

    __slots__ = ("snapshot", "entries", "offset")

    def __init__(self, offset: int) -> None:
        self.snapshot: Optional[Snapshot] = None
        self.entries: List[Entry] = []
        self.offset = offset

    def maybe_first_index(self) -> Optional[int]:
        """First index after an unstable snapshot, if there is one."""
        if self.snapshot is not None:
            return self.snapshot.metadata.index + 1
        return None

    def maybe_last_index(self) -> Optional[int]:
        """Last unstable index, or the unstable snapshot's index, or None."""
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.metadata.index
        return None

    def maybe_term(self, i: int) -> Optional[int]:
        """Term of entry i if the unstable part knows it, else None. O(1)."""
        if i < self.offset:
            if self.snapshot is not None and self.snapshot.metadata.index == i:
                return self.snapshot.metadata.term
            return None
        last = self.maybe_last_index()
        if last is None or i > last:
            return None
        return self.entries[i - self.offset].term

    def stable_to(self, i: int, t: int) -> None:
        """Entries up to (i, t) are durable; drop them (unless they were replaced)."""
        gt = self.maybe_term(i)
        if gt is None or gt != t or i < self.offset:
            return
        del self.entries[:i + 1 - self.offset]
        self.offset = i + 1

    def stable_snap_to(self, i: int) -> None:
        """The unstable snapshot at index i is durable."""
        if self.snapshot is not None and self.snapshot.metadata.index == i:
            self.snapshot = None

    def restore(self, s: Snapshot) -> None:
        """Replace everything unstable by snapshot s."""
        self.offset = s.metadata.index + 1
        self.entries = []
        self.snapshot = s

    def truncate_and_append(self, ents: Sequence[Entry]) -> None:
        """Append ents, replacing any unstable entries from ents[0].index on."""
        after = ents[0].index
        if after == self.offset + len(self.entries):
            self.entries.extend(ents)
        elif after <= self.offset:
            # Replace everything unstable; storage's overlapping suffix is replaced
            # when these entries are persisted.
            self.offset = after
            self.entries = list(ents)
        else:
            del self.entries[after - self.offset:]
            self.entries.extend(ents)

    def slice(self, lo: int, hi: int) -> List[Entry]:
        """Unstable entries [lo, hi). O(hi - lo)."""
        if lo > hi or lo < self.offset or hi > self.offset + len(self.entries):
            raise RaftError(f"unstable slice [{lo},{hi}) out of [{self.offset},"
                            f"{self.offset + len(self.entries)})")
        return self.entries[lo - self.offset:hi - self.offset]


class RaftLog:
    """The whole log as Raft sees it. Term lookups are O(1); slices O(result)."""

    def __init__(self, storage: Storage, max_next_ents_size: int = NO_LIMIT) -> None:
        self.storage = storage
        first = storage.first_index()
        last = storage.last_index()
        self.unstable = Unstable(last + 1)
        self.committed = first - 1
        self.applied = first - 1
        self.max_next_ents_size = max_next_ents_size

    def __repr__(self) -> str:
        return (f"RaftLog(committed={self.committed}, applied={self.applied}, "
                f"unstable.offset={self.unstable.offset}, len(unstable)={len(self.unstable.entries)})")

    # ---- indexes and terms -----------------------------------------------------------

    def first_index(self) -> int:
        """First index still available (after the snapshot). O(1)."""
        i = self.unstable.maybe_first_index()
        return i if i is not None else self.storage.first_index()

    def last_index(self) -> int:
        """Index of the last entry, stable or not. O(1)."""
        i = self.unstable.maybe_last_index()
        return i if i is not None else self.storage.last_index()

    def term(self, i: int) -> int:
        """Term of entry i. Raises LogCompactedError/LogUnavailableError outside the log."""
        dummy = self.first_index() - 1
        if i < dummy:
            raise LogCompactedError(f"entry {i} is compacted")
        if i > self.last_index():
            raise LogUnavailableError(f"entry {i} is past the end")
        t = self.unstable.maybe_term(i)
        if t is not None:
            return t
        return self.storage.term(i)

    def term_or_zero(self, i: int) -> int:
        """Term of entry i, or 0 when it is compacted or beyond the end."""
        try:
            return self.term(i)
        except (LogCompactedError, LogUnavailableError):
            return 0

    def last_term(self) -> int:
        """Term of the last entry. O(1)."""
        return self.term(self.last_index())

    def match_term(self, i: int, t: int) -> bool:
        """Does the entry at i have term t? O(1)."""
        return self.term_or_zero(i) == t

    def is_up_to_date(self, lasti: int, term: int) -> bool:
        """Is a log ending at (lasti, term) at least as up to date as ours (§5.4.1)?"""
        lt = self.last_term()
        return term > lt or (term == lt and lasti >= self.last_index())

    # ---- appending -------------------------------------------------------------------

    def maybe_append(self, index: int, log_term: int, committed: int,
                     ents: Sequence[Entry]) -> Tuple[int, bool]:
        """Follower side of APP: if our entry at index has log_term, append ents
        (truncating at the first conflict) and advance commit. Returns (last new index,
        accepted)."""
        if not self.match_term(index, log_term):
            return 0, False
        lastnewi = index + len(ents)
        ci = self.find_conflict(ents)
        if ci:
            if ci <= self.committed:
                raise RaftError(f"entry {ci} conflicts with committed entry (committed {self.committed})")
            self.append(ents[ci - (index + 1):])
        self.commit_to(min(committed, lastnewi))
        return lastnewi, True

    def append(self, ents: Sequence[Entry]) -> int:
        """Append to the unstable tail (replacing from ents[0].index). Returns last index."""
        if not ents:
            return self.last_index()
        after = ents[0].index - 1
        if after < self.committed:
            raise RaftError(f"append after {after} is below committed {self.committed}")
        self.unstable.truncate_and_append(ents)
        return self.last_index()

    def find_conflict(self, ents: Sequence[Entry]) -> int:
        """Index of the first entry of ents that is new or has a different term; 0 if
        all of ents are already in the log."""
        for e in ents:
            if not self.match_term(e.index, e.term):
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> Tuple[int, int]:
        """The largest (i, term(i)) with i <= index and term(i) <= term: where a probe
        should resume so one round trip skips a whole conflicting term."""
        while index > 0:
            t = self.term_or_zero(index)
            if t == 0 and index < self.first_index() - 1:
                return index, 0
            if t <= term:
                return index, t
            index -= 1
        return 0, 0

    # ---- commit, apply, stability ----------------------------------------------------

    def commit_to(self, tocommit: int) -> None:
        """Raise the commit index (never lowers it). O(1)."""
        if tocommit > self.committed:
            if self.last_index() < tocommit:
                raise RaftError(f"commit {tocommit} is past last index {self.last_index()}")
            self.committed = tocommit

    def maybe_commit(self, max_index: int, term: int) -> bool:
        """Leader: commit max_index if a quorum has it and it is of the current term
        (§5.4.2: never count replicas of an older term's entry)."""
        if max_index > self.committed and self.term_or_zero(max_index) == term:
            self.commit_to(max_index)
            return True
        return False

    def applied_to(self, i: int) -> None:
        """Record that entries up to i were applied. O(1)."""
        if i == 0:
            return
        if self.committed < i or i < self.applied:
            raise RaftError(f"applied {i} out of range [{self.applied}, {self.committed}]")
        self.applied = i

    def stable_to(self, i: int, t: int) -> None:
        """Entries up to (i, t) are durable. O(entries dropped)."""
        self.unstable.stable_to(i, t)

    def stable_snap_to(self, i: int) -> None:
        """The unstable snapshot at i is durable. O(1)."""
        self.unstable.stable_snap_to(i)

    def unstable_entries(self) -> List[Entry]:
        """The entries to persist next. O(n)."""
        return list(self.unstable.entries)

    def has_next_ents(self) -> bool:
        """Are there committed entries not yet applied? O(1)."""
        off = max(self.applied + 1, self.first_index())
        return self.committed + 1 > off

    def next_ents(self) -> List[Entry]:
        """Committed entries not yet applied (bounded by max_next_ents_size)."""
        off = max(self.applied + 1, self.first_index())
        if self.committed + 1 > off:
            return self.slice(off, self.committed + 1, self.max_next_ents_size)
        return []

    def snapshot(self) -> Snapshot:
        """The newest snapshot (unstable first). O(1)."""
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot()

    def restore(self, s: Snapshot) -> None:
        """Replace the log by a snapshot (follower installing one)."""
        self.committed = s.metadata.index
        self.unstable.restore(s)

    # ---- reading ---------------------------------------------------------------------

    def entries(self, i: int, max_size: int = NO_LIMIT) -> List[Entry]:
        """Entries from i to the end, limited to max_size bytes. O(result)."""
        if i > self.last_index():
            return []
        return self.slice(i, self.last_index() + 1, max_size)

    def all_entries(self) -> List[Entry]:
        """Every entry after the snapshot (tests and checks). O(n)."""
        return self.entries(self.first_index())

    def slice(self, lo: int, hi: int, max_size: int = NO_LIMIT) -> List[Entry]:
        """Entries [lo, hi) limited to max_size bytes (at least one)."""
        if lo > hi:
            raise RaftError(f"invalid slice {lo} > {hi}")
        fi = self.first_index()
        if lo < fi:
            raise LogCompactedError(f"entry {lo} is compacted (first is {fi})")
        if hi > self.last_index() + 1:
            raise LogUnavailableError(f"slice [{lo},{hi}) past last index {self.last_index()}")
        if lo == hi:
            return []
        uoff = self.unstable.offset
        ents: List[Entry] = []
        if lo < uoff:
            ents = self.storage.entries(lo, min(hi, uoff), max_size)
            if len(ents) < min(hi, uoff) - lo:
                return ents  # storage hit the size limit
        if hi > uoff:
            unst = self.unstable.slice(max(lo, uoff), hi)
            ents = ents + unst if ents else list(unst)
        return limit_size(ents, max_size)
