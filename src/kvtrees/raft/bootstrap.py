"""Bootstrapping a brand-new cluster with a self-describing log.

Each founding member writes the same first entries: one ADD_NODE conf change per
founding voter, all in term 1, and a hard state committing them (what etcd does).
Because the membership is in the log, a member added later learns the founding
configuration by replaying the log from index 1, or from a snapshot that covers it.
"""

from __future__ import annotations

from typing import Protocol, Sequence

from .errors import RaftError
from .types import ConfChange, ConfChangeType, Entry, EntryType, HardState


class WritableStorage(Protocol):
    """The write side of a Storage (MemoryStorage and FileLogStorage have it)."""

    def append(self, entries: Sequence[Entry]) -> None:
        """Durably append entries."""

    def set_hard_state(self, hs: HardState) -> None:
        """Durably record the hard state."""

    def last_index(self) -> int:
        """Index of the last entry (0 when empty)."""


def bootstrap_entries(voters: Sequence[int]) -> list:
    """The conf-change entries 1..n that found a cluster of ``voters``. O(n)."""
    if not voters:
        raise RaftError("a cluster needs at least one voter")
    return [Entry(term=1, index=i + 1, type=EntryType.CONF_CHANGE,
                  data=ConfChange(ConfChangeType.ADD_NODE, v).encode())
            for i, v in enumerate(sorted(voters))]


def bootstrap(storage: WritableStorage, voters: Sequence[int]) -> None:
    """Write the founding entries and hard state into an empty storage. O(n)."""
    if storage.last_index() != 0:
        raise RaftError("bootstrap needs an empty log")
    ents = bootstrap_entries(voters)
    storage.append(ents)
    storage.set_hard_state(HardState(term=1, vote=0, commit=len(ents)))
