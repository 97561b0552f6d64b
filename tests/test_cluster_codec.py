"""The replicated store's log entry codec: every request round-trips, damage is an
error (never a different request)."""

import pytest
from hypothesis import given, settings, strategies as st

from kvtrees.cluster import codec
from kvtrees.cluster.codec import CodecError, decode_entry, encode_entry
from kvtrees.cluster.requests import LeaseRefreshRequest, MemberAttrRequest
from kvtrees.requests import (CompactRequest, DeleteRangeRequest, LeaseGrantRequest,
                              LeaseRevokeRequest, PutRequest, TxnRequest)
from kvtrees.txn import Transactions

t = Transactions()
keys = st.binary(min_size=1, max_size=40)


def same(a, b) -> bool:
    """Compare objects overload ==, so requests are compared by their encoding."""
    return type(a) is type(b) and encode_entry(0, 0, a) == encode_entry(0, 0, b)


def roundtrip(req, pid=(3, 7)):
    data = encode_entry(pid[0], pid[1], req)
    got_pid, got = decode_entry(data)
    assert got_pid == pid
    return got


@given(keys, st.binary(max_size=200), st.integers(0, (1 << 63) - 1), st.booleans(),
       st.integers(0, (1 << 64) - 1), st.integers(0, (1 << 64) - 1))
@settings(max_examples=200, deadline=None)
def test_put_roundtrip(k, v, lease, prev, proposer, seq):
    req = PutRequest(k, v, lease, prev)
    assert roundtrip(req, (proposer, seq)) == req
    generic = bytearray()
    codec._encode(req, generic)             # the put fast paths speak the same format
    assert encode_entry(proposer, seq, req)[17:] == bytes(generic)
    assert codec._decode(bytes(generic), 0)[0] == req


@pytest.mark.parametrize("req", [
    DeleteRangeRequest(b"a"), DeleteRangeRequest(b"a", b"\x00", True),
    DeleteRangeRequest(b"a", b"b"), LeaseGrantRequest(1 << 62, 60),
    LeaseRevokeRequest(5), CompactRequest(123456789), LeaseRefreshRequest(9),
    MemberAttrRequest(77, "n1", ("http://127.0.0.1:2379", "http://[::1]:1")),
])
def test_simple_requests_roundtrip(req):
    assert roundtrip(req) == req


def test_txn_roundtrip_nested_with_every_part():
    req = TxnRequest(
        [t.value(b"a") == b"x", t.version("b") != 0, t.create("c") < 5, t.mod("d") > "3",
         t.lease("e") == 7],
        [t.put("a", "b", lease=5, prev_kv=True), t.get("a", limit=3, sort_order="descend",
                                                     revision=4, keys_only=True),
         t.get_prefix("p", min_mod_revision=2), t.delete_range("a", "z", prev_kv=True),
         t.txn([t.value("q") == "w"], [t.delete("q")], [t.put("q", "")])],
        [t.delete_prefix("x")])
    got = roundtrip(req)
    assert same(got, req)
    assert got.success[1].kwargs == {"limit": 3, "sort_order": "descend", "revision": 4,
                                     "keys_only": True}
    assert got.success[4].failure[0].value == b""


@given(st.recursive(st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70) |
                    st.binary(max_size=20) | st.text(max_size=10),
                    lambda c: st.lists(c, max_size=4) |
                    st.dictionaries(st.text(max_size=5), c, max_size=4), max_leaves=20))
@settings(max_examples=200, deadline=None)
def test_values_roundtrip(value):
    """The value encoding under the records (kwargs of a txn's get use it)."""
    req = LeaseRefreshRequest(value)           # any value fits a field
    assert roundtrip(req).lease_id == value


@pytest.mark.parametrize("req", [
    TxnRequest([t.value("a") == "b"], [t.put("a", "c")], []),
    PutRequest(b"key", b"value", 300, True)])
def test_every_truncation_and_trailing_byte_is_an_error(req):
    data = encode_entry(1, 2, req)
    for n in range(len(data)):
        with pytest.raises(CodecError):
            decode_entry(data[:n])
    with pytest.raises(CodecError):
        decode_entry(data + b"N")


@pytest.mark.parametrize("mutate", [
    lambda d: b"\x02" + d[1:],                 # unknown format version
    lambda d: d[:17] + b"X" + d[18:],          # unknown tag
    lambda d: d[:18] + b"\xee" + d[19:],       # unknown record type
    lambda d: d[:19] + b"\x09" + d[20:],       # wrong field count
])
@pytest.mark.parametrize("req", [PutRequest(b"k", b"v", 0, False),
                                 DeleteRangeRequest(b"k", b"z")])
def test_malformed_entries_are_errors(mutate, req):
    data = encode_entry(1, 2, req)
    with pytest.raises(CodecError):
        decode_entry(mutate(data))


def test_unencodable_values_are_refused():
    with pytest.raises(TypeError):
        encode_entry(1, 2, PutRequest(b"k", 1.5, 0, False))
