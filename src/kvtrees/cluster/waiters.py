"""Callers waiting for their proposal to be applied: proposal id -> waiter, woken on the
applying thread with the apply's result or error."""

from __future__ import annotations

import threading
from typing import Any, Dict, Optional, Tuple

_PENDING = object()


class Waiter:
    """One caller's wait for one proposal."""

    __slots__ = ("_event", "_result", "_error")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._result: Any = _PENDING
        self._error: Optional[BaseException] = None

    def set(self, result: Any, error: Optional[BaseException]) -> None:
        self._result, self._error = result, error
        self._event.set()

    def wait(self, timeout: float) -> bool:
        """True once woken (then result() answers), False on timeout."""
        return self._event.wait(timeout)

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

    def fail_all(self, error: BaseException) -> None:
        """Wake every waiter with error (the member is stopping). O(waiters)."""
        with self._lock:
            waiting, self._waiting = self._waiting, {}
        for w in waiting.values():
            w.set(None, error)

    def __len__(self) -> int:
        return len(self._waiting)
