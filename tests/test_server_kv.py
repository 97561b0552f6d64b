"""KV service over gRPC (Range, Put, DeleteRange, Txn, Compact): etcd's results,
headers and errors, on both engines; each test ends with the store's check()."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from server_fixtures import grpc, rpc_error, served, serve_factory  # noqa: F401

from kvtrees.server.proto import rpc_pb2 as pb

C = grpc.StatusCode


def put(s, k, v, **kw):
    return s.rpc.kv.Put(pb.PutRequest(key=k, value=v, **kw))


def rng(s, k, end=b"", **kw):
    return s.rpc.kv.Range(pb.RangeRequest(key=k, range_end=end, **kw))


def test_put_get_and_header(served):
    r = put(served, b"a", b"1")
    h = r.header
    assert h.revision == 2 and h.cluster_id and h.member_id and h.raft_term >= 2
    got = rng(served, b"a")
    assert got.count == 1 and not got.more
    kv = got.kvs[0]
    assert (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version) == \
        (b"a", b"1", 2, 2, 1)
    assert got.header.revision == 2 and got.header.member_id == h.member_id
    r2 = put(served, b"a", b"2", prev_kv=True)
    assert r2.prev_kv.value == b"1" and r2.header.revision == 3
    assert rng(served, b"nosuch").count == 0


def test_range_options(served):
    for i, k in enumerate([b"p/c", b"p/a", b"p/b", b"q"]):
        put(served, k, b"v%d" % (9 - i))
    r = rng(served, b"p/", b"p0")
    assert [kv.key for kv in r.kvs] == [b"p/a", b"p/b", b"p/c"] and r.count == 3
    r = rng(served, b"p/", b"p0", limit=2)
    assert len(r.kvs) == 2 and r.more and r.count == 3
    r = rng(served, b"p/", b"p0", sort_order=pb.RangeRequest.DESCEND,
            sort_target=pb.RangeRequest.MOD)
    assert [kv.key for kv in r.kvs] == [b"p/b", b"p/a", b"p/c"]
    r = rng(served, b"p/", b"p0", sort_target=pb.RangeRequest.VALUE)   # NONE -> ascend
    assert [kv.value for kv in r.kvs] == [b"v7", b"v8", b"v9"]
    r = rng(served, b"p/", b"p0", keys_only=True)
    assert all(kv.value == b"" for kv in r.kvs) and len(r.kvs) == 3
    r = rng(served, b"p/", b"p0", count_only=True)
    assert r.count == 3 and not r.kvs
    r = rng(served, b"\x00", b"\x00")
    assert r.count == 4
    r = rng(served, b"p/b", b"\x00")
    assert [kv.key for kv in r.kvs] == [b"p/b", b"p/c", b"q"]
    r = rng(served, b"p/", b"p0", min_mod_revision=3, max_mod_revision=4)
    assert [kv.key for kv in r.kvs] == [b"p/a", b"p/b"]
    r = rng(served, b"p/", b"p0", revision=3)
    assert [kv.key for kv in r.kvs] == [b"p/a", b"p/c"] and r.header.revision == 5


def test_errors_compacted_future_empty_lease(served):
    for i in range(4):
        put(served, b"k", b"%d" % i)
    served.rpc.kv.Compact(pb.CompactionRequest(revision=4, physical=True))
    assert rpc_error(rng, served, b"k", revision=3) == (
        C.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted")
    assert rpc_error(rng, served, b"k", revision=99) == (
        C.OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision")
    assert rpc_error(served.rpc.kv.Compact, pb.CompactionRequest(revision=4)) == (
        C.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted")
    assert rpc_error(rng, served, b"") == (C.INVALID_ARGUMENT,
                                            "etcdserver: key is not provided")
    assert rpc_error(put, served, b"x", b"1", lease=0x1234abcd) == (
        C.NOT_FOUND, "etcdserver: requested lease not found")
    assert rng(served, b"x").count == 0 and rng(served, b"k", revision=4).kvs[0].value == b"2"


def test_request_too_large_writes_nothing(serve_factory):
    s = serve_factory(max_request_bytes=4096)
    rev = s.store.revision
    assert rpc_error(put, s, b"big", b"x" * 5000) == (C.INVALID_ARGUMENT,
                                                       "etcdserver: request is too large")
    txn = pb.TxnRequest(success=[pb.RequestOp(request_put=pb.PutRequest(
        key=b"t", value=b"y" * 5000))])
    assert rpc_error(s.rpc.kv.Txn, txn)[1] == "etcdserver: request is too large"
    assert s.store.revision == rev and rng(s, b"big").count == 0
    put(s, b"small", b"x" * 3000)


def _put_op(k, v=b"x"):
    return pb.RequestOp(request_put=pb.PutRequest(key=k, value=v))


def test_txn_limits(serve_factory):
    s = serve_factory(max_txn_ops=4)
    assert rpc_error(s.rpc.kv.Txn, pb.TxnRequest(success=[_put_op(b"t%d" % i)
                                                          for i in range(5)])) == (
        C.INVALID_ARGUMENT, "etcdserver: too many operations in txn request")
    assert rpc_error(s.rpc.kv.Txn, pb.TxnRequest(success=[_put_op(b"d"), _put_op(b"d")])) == (
        C.INVALID_ARGUMENT, "etcdserver: duplicate key given in txn request")
    assert s.store.revision == 1
    r = s.rpc.kv.Txn(pb.TxnRequest(success=[_put_op(b"t%d" % i) for i in range(4)]))
    assert r.succeeded and r.header.revision == 2


def test_txn_compare_branches_nested(served):
    put(served, b"k", b"v1")
    cmp = pb.Compare(key=b"k", target=pb.Compare.VALUE, result=pb.Compare.EQUAL, value=b"v1")
    get_k = pb.RequestOp(request_range=pb.RangeRequest(key=b"k"))
    r = served.rpc.kv.Txn(pb.TxnRequest(compare=[cmp], success=[_put_op(b"k", b"v2"), get_k],
                                        failure=[get_k]))
    assert r.succeeded and r.header.revision == 3
    assert r.responses[0].response_put.header.revision == 3
    assert r.responses[1].response_range.kvs[0].value == b"v2"     # sees its own put
    r = served.rpc.kv.Txn(pb.TxnRequest(compare=[cmp], success=[_put_op(b"k", b"v3")],
                                        failure=[get_k]))
    assert not r.succeeded and r.responses[0].response_range.kvs[0].value == b"v2"
    assert r.header.revision == 3
    mod = pb.Compare(key=b"k", target=pb.Compare.MOD, result=pb.Compare.LESS, mod_revision=4)
    nested = pb.RequestOp(request_txn=pb.TxnRequest(
        compare=[pb.Compare(key=b"n", target=pb.Compare.CREATE, result=pb.Compare.EQUAL,
                            create_revision=0)],
        success=[_put_op(b"n", b"1")]))
    dele = pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=b"k", prev_kv=True))
    r = served.rpc.kv.Txn(pb.TxnRequest(compare=[mod], success=[nested, dele]))
    assert r.succeeded
    assert r.responses[0].response_txn.succeeded
    # etcd 3.4: a nested txn's header is present and empty; its ops carry the revision
    inner = r.responses[0].response_txn
    assert inner.HasField("header") and inner.header == pb.ResponseHeader()
    assert inner.responses[0].response_put.header.revision == r.header.revision
    assert r.responses[1].response_delete_range.deleted == 1
    assert r.responses[1].response_delete_range.prev_kvs[0].value == b"v2"
    assert rng(served, b"n").kvs[0].value == b"1" and rng(served, b"k").count == 0


def test_txn_range_compare(served):
    put(served, b"r/1", b"same")
    put(served, b"r/2", b"other")
    cmp = pb.Compare(key=b"r/", range_end=b"r0", target=pb.Compare.VALUE,
                     result=pb.Compare.EQUAL, value=b"same")
    assert not served.rpc.kv.Txn(pb.TxnRequest(compare=[cmp])).succeeded
    put(served, b"r/2", b"same")
    assert served.rpc.kv.Txn(pb.TxnRequest(compare=[cmp])).succeeded
    empty = pb.Compare(key=b"e/", range_end=b"e0", target=pb.Compare.VERSION,
                       result=pb.Compare.EQUAL, version=0)
    assert served.rpc.kv.Txn(pb.TxnRequest(compare=[empty])).succeeded


def test_txn_range_compare_is_atomic(served):
    """"Create r/<i> if nothing is in r/": decided in the store's txn, so of 8 clients
    racing exactly one wins each round (a guard read before the txn let several)."""
    import threading
    empty = pb.Compare(key=b"r/", range_end=b"r0", target=pb.Compare.VERSION,
                       result=pb.Compare.EQUAL, version=0)
    for rnd in range(5):
        gate, wins = threading.Barrier(8), []

        def race(i):
            gate.wait()
            r = served.rpc.kv.Txn(pb.TxnRequest(compare=[empty],
                                                success=[_put_op(b"r/%d" % i)]))
            if r.succeeded:
                wins.append(i)
        threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(wins) == 1 and rng(served, b"r/", b"r0").count == 1, (rnd, wins)
        served.rpc.kv.DeleteRange(pb.DeleteRangeRequest(key=b"r/", range_end=b"r0"))
    t = served.store.transactions                 # the store's own API takes range_end
    served.store.put(b"r/a", b"x")
    assert not served.store.transaction([t.version(b"r/", b"r0") == 0], [], [])[0]
    assert served.store.transaction([t.value(b"r/", b"r0") == b"x"], [], [])[0]
    assert served.store.transaction([t.value(b"r/", b"\0") == b"x"], [], [])[0]


def test_read_only_txn_header_covers_what_it_read(served):
    """Under concurrent writes a read-only txn's header revision is never below the
    mod_revision of a key it returned (a watch from header + 1 would repeat it)."""
    import threading
    stop = threading.Event()

    def writer():
        while not stop.is_set():
            put(served, b"hot", b"v")
    threads = [threading.Thread(target=writer) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        get_hot = pb.RequestOp(request_range=pb.RangeRequest(key=b"hot"))
        bad = []
        for _ in range(200):
            r = served.rpc.kv.Txn(pb.TxnRequest(success=[get_hot]))
            kvs = r.responses[0].response_range.kvs
            if kvs and kvs[0].mod_revision > r.header.revision:
                bad.append((kvs[0].mod_revision, r.header.revision))
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert not bad, bad[:5]


def test_txn_put_ignore_value_and_lease(served):
    lease = served.rpc.lease.LeaseGrant(pb.LeaseGrantRequest(TTL=60)).ID
    put(served, b"i", b"v1", lease=lease)
    keep = pb.RequestOp(request_put=pb.PutRequest(key=b"i", ignore_value=True, prev_kv=True))
    r = served.rpc.kv.Txn(pb.TxnRequest(success=[keep]))
    assert r.succeeded and r.responses[0].response_put.prev_kv.value == b"v1"
    kv = rng(served, b"i").kvs[0]
    assert (kv.value, kv.lease, kv.version) == (b"v1", 0, 2)
    keep_lease = pb.RequestOp(request_put=pb.PutRequest(key=b"i", value=b"v2",
                                                        ignore_lease=True))
    put(served, b"i", b"v1", lease=lease)
    served.rpc.kv.Txn(pb.TxnRequest(success=[keep_lease]))
    kv = rng(served, b"i").kvs[0]
    assert (kv.value, kv.lease) == (b"v2", lease)
    # a missing key fails the whole txn, as etcd: nothing written, revision unchanged
    rev = rng(served, b"i").header.revision
    missing = pb.RequestOp(request_put=pb.PutRequest(key=b"nosuch", ignore_value=True))
    assert rpc_error(served.rpc.kv.Txn, pb.TxnRequest(success=[_put_op(b"j"), missing])) \
        == (C.INVALID_ARGUMENT, "etcdserver: key not found")
    assert rng(served, b"j").count == 0 and rng(served, b"j").header.revision == rev
    bad = pb.RequestOp(request_put=pb.PutRequest(key=b"i", lease=lease, ignore_lease=True))
    assert rpc_error(served.rpc.kv.Txn, pb.TxnRequest(success=[bad]))[1] == \
        "etcdserver: lease is provided"


def test_delete_range_and_put_ignore(served):
    for k in (b"d/1", b"d/2", b"e"):
        put(served, k, b"v")
    r = served.rpc.kv.DeleteRange(pb.DeleteRangeRequest(key=b"d/", range_end=b"d0",
                                                        prev_kv=True))
    assert r.deleted == 2 and [kv.key for kv in r.prev_kvs] == [b"d/1", b"d/2"]
    r = served.rpc.kv.DeleteRange(pb.DeleteRangeRequest(key=b"nosuch"))
    assert r.deleted == 0 and r.header.revision == 5
    lease = served.rpc.lease.LeaseGrant(pb.LeaseGrantRequest(TTL=60)).ID
    put(served, b"e", b"v2", lease=lease)
    r = put(served, b"e", b"", ignore_value=True, prev_kv=True)
    assert r.prev_kv.value == b"v2"
    kv = rng(served, b"e").kvs[0]
    assert kv.value == b"v2" and kv.lease == 0
    put(served, b"e", b"v3", lease=lease)
    put(served, b"e", b"v4", ignore_lease=True)
    kv = rng(served, b"e").kvs[0]
    assert kv.value == b"v4" and kv.lease == lease
    assert rpc_error(put, served, b"nosuch", b"", ignore_value=True) == (
        C.INVALID_ARGUMENT, "etcdserver: key not found")
    assert rpc_error(put, served, b"e", b"x", ignore_value=True)[1] == \
        "etcdserver: value is provided"


KEYS = st.sampled_from([b"a", b"b", b"b/1", b"b/2", b"c"])
OPS = st.lists(st.one_of(
    st.tuples(st.just("put"), KEYS, st.binary(max_size=8)),
    st.tuples(st.just("del"), KEYS, st.booleans()),
    st.tuples(st.just("range"), KEYS, st.booleans())), max_size=25)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(ops=OPS)
def test_model(served, ops):
    """Random puts/deletes/ranges through gRPC against a dict model (values, versions
    and revisions)."""
    served.rpc.kv.DeleteRange(pb.DeleteRangeRequest(key=b"\x00", range_end=b"\x00"))
    rev = served.store.revision
    model: dict = {}
    for op, key, arg in ops:
        if op == "put":
            r = put(served, key, arg)
            rev += 1
            assert r.header.revision == rev
            old = model.get(key)
            model[key] = (arg, old[1] if old else rev, rev, old[3] + 1 if old else 1)
        elif op == "del":
            end = key + b"0" if arg else b""
            r = served.rpc.kv.DeleteRange(pb.DeleteRangeRequest(key=key, range_end=end))
            gone = [k for k in model if (k == key if not arg else key <= k < end)]
            assert r.deleted == len(gone)
            for k in gone:
                del model[k]
            if gone:
                rev += 1
            assert r.header.revision == rev
        else:
            end = b"\x00" if arg else b""
            r = rng(served, key, end)
            want = sorted((k, v) for k, v in model.items() if (k >= key if arg else k == key))
            assert [(kv.key, (kv.value, kv.create_revision, kv.mod_revision, kv.version))
                    for kv in r.kvs] == want
            assert r.header.revision == rev


def test_malformed_and_oversized_messages_leave_server_up(serve_factory):
    s = serve_factory(max_request_bytes=64 * 1024)
    raw = s.channel.unary_unary("/etcdserverpb.KV/Put", request_serializer=None,
                                response_deserializer=None)
    for junk in (b"\xff\xff\xff\xff", b"\x0a\x80\x80\x80\x80\x10", b"\x12"):
        with pytest.raises(grpc.RpcError) as ei:
            raw(junk, timeout=5)
        assert ei.value.code() in (C.INTERNAL, C.INVALID_ARGUMENT)
    with pytest.raises(grpc.RpcError) as ei:       # beyond gRPC's receive limit
        raw(pb.PutRequest(key=b"k", value=b"x" * (700 * 1024)).SerializeToString(), timeout=5)
    assert ei.value.code() == C.RESOURCE_EXHAUSTED
    assert s.store.revision == 1
    assert put(s, b"ok", b"1").header.revision == 2
