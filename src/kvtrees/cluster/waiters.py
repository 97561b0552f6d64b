"""Callers waiting for their proposal to be applied: proposal id -> waiter, woken on the
applying thread with the apply's result or error."""

from __future__ import annotations

import threading
from typing import Any, Dict, Optional, Tuple

class Waiter:
    """One caller's wait for one proposal: woken by its apply (done) or nudged (the
    leader changed: the proposal may have been lost with the old one)."""

    __slots__ = ("_event", "_lock", "_result", "_error", "done", "_nudged")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._result: Any = None
        self._error: Optional[BaseException] = None
        self.done = False
        self._nudged = False

    def set(self, result: Any, error: Optional[BaseException]) -> None:
        with self._lock:
            self._result, self._error, self.done = result, error, True
        self._event.set()

    def nudge(self) -> None:
        with self._lock:
            if not self.done:
                self._nudged = True
                self._event.set()

    def wait(self, timeout: float) -> bool:
        """Block until done, nudged or timeout; True when done."""
        self._event.wait(timeout)
        with self._lock:
            if not self.done and self._nudged:
                self._nudged = False
                self._event.clear()
            return self.done

    def result(self) -> Any:
        """The apply's result, or raise its error."""
        if self._error is not None:
            raise self._error
        return self._result


class Waiters:
    """Proposal id -> Waiter. Thread-safe; every operation O(1)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: Dict[Tuple[int, int], Waiter] = {}

    def register(self, pid: Tuple[int, int]) -> Waiter:
        w = Waiter()
        with self._lock:
            self._waiting[pid] = w
        return w

    def forget(self, pid: Tuple[int, int]) -> None:
        """The caller gave up (timeout): a later apply wakes nobody."""
        with self._lock:
            self._waiting.pop(pid, None)

    def wake(self, pid: Tuple[int, int], result: Any,
             error: Optional[BaseException] = None) -> None:
        with self._lock:
            w = self._waiting.pop(pid, None)
        if w is not None:
            w.set(result, error)

    def nudge_all(self) -> None:
        """Wake every waiter to propose again (the leader changed). O(waiters)."""
        with self._lock:
            waiting = list(self._waiting.values())
        for w in waiting:
            w.nudge()

    def fail_all(self, error: BaseException) -> None:
        """Wake every waiter with error (the member is stopping). O(waiters)."""
        with self._lock:
            waiting, self._waiting = self._waiting, {}
        for w in waiting.values():
            w.set(None, error)

    def __len__(self) -> int:
        return len(self._waiting)
