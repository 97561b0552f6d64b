"""A linearizability checker for key-value histories (Wing & Gong's search with Lowe's
memoization, the algorithm porcupine uses).

A history is a list of :class:`Operation`: who called what, with which result, and
when it was invoked and when it returned. It is *linearizable* if the operations can
be put in one order that (1) respects real time: if A returned before B was invoked, A
comes first, and (2) is a legal sequential run of the model (a get returns the last
value put). Operations on different keys are independent, so the history is split
per key and each part checked alone (P-compositionality).

The search walks the time-ordered list of call and return events. At a call it tries
to linearize that operation next (if the model accepts it), removing it from the
list; at a return whose operation is not yet linearized it backtracks. Lowe's
memoization skips any (set of linearized operations, model state) already explored,
which makes typical histories cheap. The worst case is exponential: ``max_steps``
bounds the work and yields ``UNKNOWN``.

An operation whose outcome is unknown (the client timed out, the server crashed) has
``ret = math.inf`` and ``output = UNKNOWN``: it may take effect at any point after its
call, or never (being last, it then affects nothing).

Two operations whose intervals merely touch (A.ret == B.call) count as concurrent.
"""

from __future__ import annotations

import itertools
import math
import threading
from dataclasses import dataclass
from enum import Enum
from typing import Any, Dict, Hashable, List, Optional, Sequence, Tuple

__all__ = ["UNKNOWN", "Operation", "Verdict", "CheckResult", "KVModel", "check_operations",
           "check_kv", "History"]


class _Unknown:
    """Marker: the operation's result was never observed."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()


@dataclass(frozen=True)
class Operation:
    """One client call. ``kind`` is "put", "get", "delete" or "cas".

    Inputs/outputs: put(value) -> None; get() -> value or None; delete() -> True if the
    key existed (or UNKNOWN); cas((expected, new)) -> True if it swapped. ``expected``
    None means "the key is absent"; a cas never deletes."""

    client: int
    kind: str
    key: Hashable
    input: Any
    output: Any
    call: float
    ret: float


class Verdict(Enum):
    OK = "linearizable"
    ILLEGAL = "not linearizable"
    UNKNOWN = "undecided (step budget exhausted)"


@dataclass
class CheckResult:
    verdict: Verdict
    key: Optional[Hashable] = None          # the key whose sub-history failed
    stuck_at: Optional[Operation] = None    # an operation no linearization got past
    steps: int = 0

    @property
    def ok(self) -> bool:
        """True when the history is linearizable."""
        return self.verdict == Verdict.OK

    def __repr__(self) -> str:
        where = f" (key {self.key!r}, stuck at {self.stuck_at})" if self.key is not None else ""
        return f"CheckResult({self.verdict.value}{where}, {self.steps} steps)"


class KVModel:
    """Sequential specification of one key: the state is its value (None: absent)."""

    def init(self) -> Hashable:
        """The state before any operation: the key is absent."""
        return None

    def partition(self, ops: Sequence[Operation]) -> Dict[Hashable, List[Operation]]:
        """Operations grouped by key (each group is checked alone). O(n)."""
        parts: Dict[Hashable, List[Operation]] = {}
        for op in ops:
            parts.setdefault(op.key, []).append(op)
        return parts

    def step(self, state: Hashable, op: Operation) -> Tuple[bool, Hashable]:
        """(is op with its output legal in state?, the state after it)."""
        out = op.output
        kind = op.kind
        if kind == "get":
            return (out is UNKNOWN or out == state), state
        if kind == "put":
            return True, op.input
        if kind == "delete":
            return (out is UNKNOWN or out == (state is not None)), None
        if kind == "cas":
            expected, new = op.input
            swapped = state == expected
            if out is not UNKNOWN and out != swapped:
                return False, state
            return True, (new if swapped else state)
        raise ValueError(f"unknown operation kind {kind!r}")


class _Event:
    """A node of the doubly linked list of call/return events."""

    __slots__ = ("op_id", "is_call", "match", "prev", "next")

    def __init__(self, op_id: int, is_call: bool) -> None:
        self.op_id = op_id
        self.is_call = is_call
        self.match: Optional[_Event] = None
        self.prev: Optional[_Event] = None
        self.next: Optional[_Event] = None


def _event_list(ops: Sequence[Operation]) -> _Event:
    """The events sorted by time (calls before returns at equal times), behind a head."""
    keyed = []
    for i, op in enumerate(ops):
        if op.ret < op.call:
            raise ValueError(f"operation returns before it is called: {op}")
        keyed.append((op.call, 0, i, True))
        keyed.append((op.ret, 1, i, False))
    keyed.sort(key=lambda k: (k[0], k[1], k[2]))
    head = _Event(-1, False)
    calls: Dict[int, _Event] = {}
    prev = head
    for _, _, i, is_call in keyed:
        ev = _Event(i, is_call)
        if is_call:
            calls[i] = ev
        else:
            calls[i].match = ev
        prev.next, ev.prev = ev, prev
        prev = ev
    return head


def _lift(e: _Event) -> None:
    e.prev.next = e.next
    e.next.prev = e.prev  # a call always has at least its own return after it
    m = e.match
    m.prev.next = m.next
    if m.next is not None:
        m.next.prev = m.prev


def _unlift(e: _Event) -> None:
    m = e.match
    m.prev.next = m
    if m.next is not None:
        m.next.prev = m
    e.prev.next = e
    e.next.prev = e


def _check_part(model: KVModel, ops: Sequence[Operation],
                max_steps: Optional[int]) -> Tuple[Verdict, Optional[Operation], int]:
    head = _event_list(ops)
    entry = head.next
    state = model.init()
    linearized = 0
    seen = set()
    stack: List[Tuple[_Event, Hashable]] = []
    steps = 0
    deepest: Optional[Operation] = None
    while head.next is not None:
        steps += 1
        if max_steps is not None and steps > max_steps:
            return Verdict.UNKNOWN, None, steps
        if entry.is_call:
            ok, new_state = model.step(state, ops[entry.op_id])
            if ok:
                bit = 1 << entry.op_id
                key = (linearized | bit, new_state)
                if key not in seen:
                    seen.add(key)
                    stack.append((entry, state))
                    state = new_state
                    linearized |= bit
                    _lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
        else:
            # A return whose operation is not linearized yet: every order tried so far
            # from this prefix fails. Undo the last choice and try the next candidate.
            if not stack:
                return Verdict.ILLEGAL, deepest or ops[entry.op_id], steps
            if deepest is None:
                deepest = ops[entry.op_id]
            entry, state = stack.pop()
            linearized &= ~(1 << entry.op_id)
            _unlift(entry)
            entry = entry.next
    return Verdict.OK, None, steps


def check_operations(model: KVModel, ops: Sequence[Operation],
                     max_steps: Optional[int] = None) -> CheckResult:
    """Is the history linearizable with respect to model? Checks each partition alone;
    ``max_steps`` (per partition) bounds the search. Time: O(n log n) to sort plus the
    search, usually near-linear with memoization, exponential in the worst case."""
    total = 0
    undecided: Optional[CheckResult] = None
    for key, part in model.partition(ops).items():
        verdict, stuck, steps = _check_part(model, part, max_steps)
        total += steps
        if verdict == Verdict.ILLEGAL:
            return CheckResult(Verdict.ILLEGAL, key, stuck, total)
        if verdict == Verdict.UNKNOWN and undecided is None:
            undecided = CheckResult(Verdict.UNKNOWN, key, None, 0)
    if undecided is not None:
        undecided.steps = total
        return undecided
    return CheckResult(Verdict.OK, steps=total)


def check_kv(ops: Sequence[Operation], max_steps: Optional[int] = None) -> CheckResult:
    """check_operations with the key-value model."""
    return check_operations(KVModel(), ops, max_steps)


@dataclass
class _Pending:
    client: int
    kind: str
    key: Hashable
    input: Any
    call: float
    output: Any = UNKNOWN
    ret: float = math.inf


class History:
    """Thread-safe recorder of a client history with a logical clock.

    ``op = h.invoke(client, "put", key, value)`` before sending the request and
    ``h.complete(op, output)`` after the answer; an operation never completed (timeout,
    crash) is reported with an unknown outcome."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clock = itertools.count(1)
        self._ops: List[_Pending] = []

    def invoke(self, client: int, kind: str, key: Hashable, input: Any = None) -> int:
        """Record the call of an operation; returns its id. O(1)."""
        with self._lock:
            self._ops.append(_Pending(client, kind, key, input, next(self._clock)))
            return len(self._ops) - 1

    def complete(self, op_id: int, output: Any = None) -> None:
        """Record the return of operation op_id with its output. O(1)."""
        with self._lock:
            p = self._ops[op_id]
            p.output = output
            p.ret = next(self._clock)

    def operations(self) -> List[Operation]:
        """The history so far; operations not completed have an unknown outcome."""
        with self._lock:
            return [Operation(p.client, p.kind, p.key, p.input, p.output, p.call, p.ret)
                    for p in self._ops]

    def __len__(self) -> int:
        return len(self._ops)
