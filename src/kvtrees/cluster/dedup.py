"""Applying a proposal once: a proposer re-proposes a request (same proposal id) when it
may have been lost (no leader, a leader that died with it), so one id can reach the log
twice; only its first copy is applied.

The memory is a ring of the last WINDOW applied proposal ids, slot = log index mod
WINDOW, kept in the store's engine beside the data (the slot is written in the same
batch as the entry's effects and travels in snapshots): every member, restarted or
installed from a snapshot, decides the same way for the same log. A re-proposal comes
within seconds; the window covers WINDOW entries."""

from __future__ import annotations

from typing import Dict, Optional, Tuple

from .. import mvcc

WINDOW = 10000
_PREFIX = mvcc.META + b"dedup/"
_END = mvcc.META + b"dedup0"


def slot_key(index: int) -> bytes:
    return _PREFIX + mvcc.be64(index % WINDOW)


def encode_pid(pid: Tuple[int, int]) -> bytes:
    return pid[0].to_bytes(8, "big") + pid[1].to_bytes(8, "big")


class Dedup:
    """The ring's in-memory mirror: which proposal ids were applied recently."""

    def __init__(self) -> None:
        self._slots: Dict[int, Tuple[int, int]] = {}     # slot -> pid
        self._seen: Dict[Tuple[int, int], int] = {}      # pid -> slot

    def load(self, engine) -> None:
        """Read the ring from the store's engine. O(WINDOW)."""
        self._slots.clear()
        self._seen.clear()
        for k, v in engine.items(_PREFIX, _END):
            slot = int.from_bytes(k[len(_PREFIX):], "big")
            pid = (int.from_bytes(v[:8], "big"), int.from_bytes(v[8:16], "big"))
            self._slots[slot] = pid
            self._seen[pid] = slot

    def seen(self, pid: Tuple[int, int]) -> bool:
        return pid in self._seen

    def ops(self, index: int, pid: Tuple[int, int]) -> dict:
        """The engine ops recording pid at index (for the entry's batch)."""
        return {slot_key(index): encode_pid(pid)}

    def record(self, index: int, pid: Tuple[int, int]) -> None:
        """Mirror what ops() wrote, once the batch is committed. O(1)."""
        slot = index % WINDOW
        old: Optional[Tuple[int, int]] = self._slots.get(slot)
        if old is not None and self._seen.get(old) == slot:
            del self._seen[old]
        self._slots[slot] = pid
        self._seen[pid] = slot
