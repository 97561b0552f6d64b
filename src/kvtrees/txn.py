"""Transaction building blocks, shaped like python-etcd3's `client.transactions`.

    db.transaction(
        compare=[db.transactions.value(b"k") == b"v", db.transactions.version(b"k") > 0],
        success=[db.transactions.put(b"k", b"w"), db.transactions.get(b"k")],
        failure=[db.transactions.delete(b"k")])

Validation (types, sizes, duplicate keys, > MAX_TXN_OPS operations) happens before
anything is written; the store executes the taken branch in one engine batch under one
revision.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, Optional

MAX_TXN_OPS = 128           # etcd's default --max-txn-ops
MAX_REQUEST_BYTES = 1572864  # etcd's default --max-request-bytes (1.5 MiB)

_OPS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, ">": operator.gt}
TARGETS = ("value", "version", "create", "mod", "lease")
_KV_FIELD = {"value": "value", "version": "version", "create": "create_revision",
             "mod": "mod_revision", "lease": "lease"}


def to_key(key: Any) -> bytes:
    """str (utf-8) or bytes-like -> non-empty bytes; TypeError/ValueError otherwise."""
    if type(key) is bytes and key:      # the common case first
        return key
    if isinstance(key, str):
        key = _utf8(key, "key")
    elif isinstance(key, (bytes, bytearray, memoryview)):
        key = bytes(key)
    else:
        raise TypeError("key must be str or bytes, not %s" % type(key).__name__)
    if not key:
        raise ValueError("key must not be empty")
    return key


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError("%s must be bytes or a str encodable as UTF-8 (%s)"
                         % (what, e.reason)) from None


def to_value(value: Any) -> bytes:
    if type(value) is bytes:
        return value
    if isinstance(value, str):
        return _utf8(value, "value")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError("value must be str or bytes, not %s" % type(value).__name__)


def to_lease_id(lease: Any) -> int:
    """Lease object, int id, or None/0 (no lease) -> int id."""
    if lease is None:
        return 0
    lid = getattr(lease, "id", lease)
    if isinstance(lid, bool) or not isinstance(lid, int):
        raise TypeError("lease must be a Lease or an int id")
    if lid < 0 or lid >= 1 << 63:
        raise ValueError("lease id out of range")
    return lid


def _revision_operand(target: str, other: Any) -> int:
    """The int a version/create/mod compare takes: an int, or (as python-etcd3, which
    int()s it) a decimal string such as the '0' of its own put_if_not_exists."""
    if isinstance(other, str):
        try:
            return int(other.strip())
        except ValueError:
            raise ValueError("%s compares with an int or a decimal string, not %r"
                             % (target, other)) from None
    if isinstance(other, bool) or not isinstance(other, int):
        raise TypeError("%s compares with an int (or a decimal string), not %s"
                        % (target, type(other).__name__))
    return other


@dataclass
class Compare:
    target: str
    key: bytes
    op: str = "=="
    operand: Any = None
    range_end: Optional[bytes] = None   # set: every key in [key, range_end) must hold

    def _set(self, op, other):
        self.op = op
        if self.target == "value":
            self.operand = to_value(other)
        elif self.target == "lease":
            self.operand = to_lease_id(other)
        else:
            self.operand = _revision_operand(self.target, other)
        return self

    def __eq__(self, other):  # type: ignore[override]
        return self._set("==", other)

    def __ne__(self, other):  # type: ignore[override]
        return self._set("!=", other)

    def __lt__(self, other):
        return self._set("<", other)

    def __gt__(self, other):
        return self._set(">", other)

    __hash__ = None  # type: ignore[assignment]

    def holds_all(self, kvs: list) -> bool:
        """A range compare against the live KeyValues in its range: every one must
        hold; an empty range evaluates as one absent key (as etcd). O(len(kvs))."""
        if not kvs:
            return self.holds(None)
        return all(self.holds(kv) for kv in kvs)

    def holds(self, kv) -> bool:
        """Evaluate against the key's current KeyValue (None: key absent)."""
        if self.operand is None:
            raise ValueError("compare on %r has no operand (use ==, !=, < or >)" % self.key)
        if kv is None:
            # as etcd: a value compare on a missing key always fails; others see zeros
            if self.target == "value":
                return False
            actual = 0
        else:
            actual = getattr(kv, _KV_FIELD[self.target])
        return _OPS[self.op](actual, self.operand)


@dataclass
class Put:
    key: bytes
    value: bytes
    lease: int = 0
    prev_kv: bool = False
    ignore_value: bool = False    # keep the key's current value (etcd's ignore_value)
    ignore_lease: bool = False    # keep the key's current lease (etcd's ignore_lease)


@dataclass
class Get:
    key: bytes
    range_end: Optional[bytes] = None
    kwargs: dict = field(default_factory=dict)


@dataclass
class Delete:
    key: bytes
    range_end: Optional[bytes] = None   # None: the single key
    prev_kv: bool = False


@dataclass
class Txn:
    compare: list
    success: list
    failure: list


class Transactions:
    """The `db.transactions` namespace (python-etcd3 style)."""

    @staticmethod
    def value(key, range_end=None) -> Compare:
        return _compare("value", key, range_end)

    @staticmethod
    def version(key, range_end=None) -> Compare:
        return _compare("version", key, range_end)

    @staticmethod
    def create(key, range_end=None) -> Compare:
        return _compare("create", key, range_end)

    @staticmethod
    def mod(key, range_end=None) -> Compare:
        return _compare("mod", key, range_end)

    @staticmethod
    def lease(key, range_end=None) -> Compare:
        return _compare("lease", key, range_end)

    @staticmethod
    def put(key, value, lease=None, prev_kv=False, ignore_value=False,
            ignore_lease=False) -> Put:
        """ignore_value / ignore_lease: keep the key's current value / lease (the key
        must exist when the txn runs, else the txn fails with KeyNotFoundError)."""
        if ignore_value and value not in (b"", ""):
            raise ValueError("value is provided")
        if ignore_lease and lease:
            raise ValueError("lease is provided")
        return Put(to_key(key), to_value(value), to_lease_id(lease), prev_kv,
                   bool(ignore_value), bool(ignore_lease))

    @staticmethod
    def get(key, range_end=None, **kwargs) -> Get:
        return Get(to_key(key), None if range_end is None else to_key(range_end),
                   _get_options(kwargs))

    @staticmethod
    def get_prefix(prefix, **kwargs) -> Get:
        from .mvcc import prefix_end
        p = to_key(prefix)
        return Get(p, prefix_end(p) or b"\x00", _get_options(kwargs))

    @staticmethod
    def delete(key, range_end=None, prev_kv=False) -> Delete:
        return Delete(to_key(key), None if range_end is None else to_key(range_end), prev_kv)

    @staticmethod
    def delete_prefix(prefix, prev_kv=False) -> Delete:
        from .mvcc import prefix_end
        p = to_key(prefix)
        return Delete(p, prefix_end(p) or b"\x00", prev_kv)

    @staticmethod
    def delete_range(start, end, prev_kv=False) -> Delete:
        return Delete(to_key(start), to_key(end), prev_kv)

    @staticmethod
    def txn(compare=(), success=(), failure=()) -> Txn:
        return Txn(list(compare), list(success), list(failure))


def _compare(target: str, key, range_end) -> Compare:
    """A compare on key, or (range_end given; b"\\0": every key >= key) on every key
    in [key, range_end), as etcd's Compare.range_end."""
    return Compare(target, to_key(key), range_end=None if range_end is None
                   else to_key(range_end))


GET_OPTIONS = ("revision", "limit", "keys_only", "sort_order", "sort_target",
               "min_mod_revision", "max_mod_revision", "min_create_revision",
               "max_create_revision")


def _get_options(kwargs: dict) -> dict:
    """Reject unknown keywords of a txn get when it is built, not mid-transaction."""
    unknown = sorted(set(kwargs) - set(GET_OPTIONS))
    if unknown:
        raise TypeError("transactions.get: unexpected arguments %s (accepted: %s)"
                        % (", ".join(unknown), ", ".join(GET_OPTIONS)))
    return dict(kwargs)


# ---------------------------------------------------------------- validation

def validate_txn(compare, success, failure, max_ops: int = MAX_TXN_OPS) -> int:
    """Check a txn before running it; return its request size in bytes.

    As etcd's checkTxnRequest: the longest of compare/success/failure counts against
    max_ops, and a nested txn gets what its parent left (max_ops minus that count)."""
    opc = max(len(compare), len(success), len(failure))
    if opc > max_ops:
        raise ValueError("too many operations in txn request (%d > %d)" % (opc, max_ops))
    size = 0
    for c in compare:
        if not isinstance(c, Compare) or c.operand is None:
            raise TypeError("compare items must be transactions.<target>(key) <op> operand")
        size += (len(c.key) + len(c.range_end or b"")
                 + (len(c.operand) if isinstance(c.operand, bytes) else 8))
    for branch in (success, failure):
        for op in branch:
            if not isinstance(op, (Put, Get, Delete, Txn)):
                raise TypeError("txn ops must come from db.transactions, got %r" % (op,))
            if isinstance(op, Txn):
                size += validate_txn(op.compare, op.success, op.failure, max_ops - opc)
            else:
                size += (len(op.key) + len(getattr(op, "range_end", None) or b"")
                         + len(getattr(op, "value", b"")))
        if len(branch) > 1 or (branch and isinstance(branch[0], Txn)):
            _check_intervals(branch)          # (one plain op cannot overlap itself)
    return size


def _check_intervals(ops) -> tuple[set, list]:
    """etcd's checkIntervals: no key put twice and no put inside a deleted range, across
    nested txns (a nested txn's success and failure may overlap: only one runs)."""
    dels = [(op.key, op.range_end) for op in ops if isinstance(op, Delete)]
    puts: set = set()
    for op in ops:
        if not isinstance(op, Txn):
            continue
        then_p, then_d = _check_intervals(op.success)
        else_p, else_d = _check_intervals(op.failure)
        for k in then_p:
            _dup_check(k, puts, dels)
            puts.add(k)
        for k in else_p:
            if k not in then_p:
                _dup_check(k, puts, dels)
            elif _hits(k, dels):
                raise ValueError("duplicate key given in txn request")
            puts.add(k)
        dels.extend(then_d)
        dels.extend(else_d)
    for op in ops:
        if isinstance(op, Put):
            _dup_check(op.key, puts, dels)
            puts.add(op.key)
    return puts, dels


def _dup_check(key: bytes, puts: set, dels: list) -> None:
    if key in puts or _hits(key, dels):
        raise ValueError("duplicate key given in txn request")


def _hits(key: bytes, dels: list) -> bool:
    return any(_in_range(key, s, e) for s, e in dels)


def _in_range(key: bytes, start: bytes, end: Optional[bytes]) -> bool:
    if end is None:
        return key == start
    if end == b"\x00":
        return key >= start
    return start <= key < end
