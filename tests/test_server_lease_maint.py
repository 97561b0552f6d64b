"""Lease, Maintenance and Cluster services over gRPC, both engines."""
from __future__ import annotations

import time

from server_fixtures import grpc, rpc_error, served, serve_factory  # noqa: F401

from kvtrees.server.proto import rpc_pb2 as pb

C = grpc.StatusCode


def grant(s, ttl, lid=0):
    return s.rpc.lease.LeaseGrant(pb.LeaseGrantRequest(TTL=ttl, ID=lid))


def test_lease_grant_ttl_keepalive_revoke(served):
    g = grant(served, 60)
    assert g.ID > 0 and g.TTL == 60
    assert grant(served, 1).TTL == 2                      # etcd's minimum TTL
    assert grant(served, 30, lid=0x1234).ID == 0x1234
    assert rpc_error(grant, served, 30, 0x1234) == (C.FAILED_PRECONDITION,
                                                     "etcdserver: lease already exists")
    assert rpc_error(grant, served, 9_000_000_001) == (C.OUT_OF_RANGE,
                                                        "etcdserver: too large lease TTL")
    served.rpc.kv.Put(pb.PutRequest(key=b"lk", value=b"v", lease=g.ID))
    served.rpc.kv.Put(pb.PutRequest(key=b"lk2", value=b"v", lease=g.ID))
    t = served.rpc.lease.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=g.ID, keys=True))
    assert t.grantedTTL == 60 and 58 <= t.TTL <= 60 and list(t.keys) == [b"lk", b"lk2"]
    ids = {le.ID for le in served.rpc.lease.LeaseLeases(pb.LeaseLeasesRequest()).leases}
    assert g.ID in ids and 0x1234 in ids
    reqs = [pb.LeaseKeepAliveRequest(ID=g.ID), pb.LeaseKeepAliveRequest(ID=0x999)]
    resps = list(served.rpc.lease.LeaseKeepAlive(iter(reqs), timeout=10))
    assert [(r.ID, r.TTL) for r in resps] == [(g.ID, 60), (0x999, 0)]   # unknown: TTL 0
    rev = served.store.revision
    served.rpc.lease.LeaseRevoke(pb.LeaseRevokeRequest(ID=g.ID))
    assert served.store.revision == rev + 1                  # both keys in one revision
    r = served.rpc.kv.Range(pb.RangeRequest(key=b"lk", range_end=b"lk3"))
    assert r.count == 0
    t = served.rpc.lease.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=g.ID))
    assert t.TTL == -1                                        # as etcd: not an error
    assert rpc_error(served.rpc.lease.LeaseRevoke, pb.LeaseRevokeRequest(ID=g.ID)) == (
        C.NOT_FOUND, "etcdserver: requested lease not found")


def test_lease_expiry_deletes_keys(served):
    g = grant(served, 2)
    served.rpc.kv.Put(pb.PutRequest(key=b"eph", value=b"v", lease=g.ID))
    deadline = time.monotonic() + 10
    while served.rpc.kv.Range(pb.RangeRequest(key=b"eph")).count:
        assert time.monotonic() < deadline, "lease did not expire"
        time.sleep(0.2)
    assert served.rpc.lease.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=g.ID)).TTL == -1


def test_status_hash_member_list(served):
    for i in range(5):
        served.rpc.kv.Put(pb.PutRequest(key=b"k%d" % i, value=b"v"))
    st = served.rpc.maint.Status(pb.StatusRequest())
    assert st.header.revision == 6 and st.dbSize > 0 and st.leader == st.header.member_id
    assert st.raftTerm == st.header.raft_term and not st.errors
    h = served.rpc.maint.HashKV(pb.HashKVRequest(revision=0))
    assert h.compact_revision == -1 and h.header.revision == 6     # as etcd
    h4 = served.rpc.maint.HashKV(pb.HashKVRequest(revision=4))
    assert h4.hash != h.hash
    assert served.rpc.maint.HashKV(pb.HashKVRequest(revision=4)).hash == h4.hash
    assert served.rpc.maint.Hash(pb.HashRequest()).hash == served.store.hash_kv(0)[0]
    ml = served.rpc.cluster.MemberList(pb.MemberListRequest())
    assert len(ml.members) == 1 and ml.members[0].ID == st.header.member_id
    assert ml.members[0].clientURLs == ["http://" + served.address]
    served.rpc.maint.Defragment(pb.DefragmentRequest())
    served.rpc.maint.MoveLeader(pb.MoveLeaderRequest(targetID=st.header.member_id))
    assert rpc_error(served.rpc.maint.MoveLeader, pb.MoveLeaderRequest(targetID=1))[1] == \
        "etcdserver: bad leader transferee"
    assert rpc_error(served.rpc.cluster.MemberAdd, pb.MemberAddRequest(
        peerURLs=["http://127.0.0.1:1"]))[0] == C.UNIMPLEMENTED


def test_defragment_gives_space_back(served):
    """Fill, delete 9 keys in 10, compact: Defragment then shrinks dbSize on the B+tree
    (pages rewritten low, the free tail trimmed); on both engines the data, the revision
    and the store's invariants are unchanged."""
    value = b"v" * 500
    for i in range(0, 8000, 100):
        served.rpc.kv.Txn(pb.TxnRequest(success=[pb.RequestOp(request_put=pb.PutRequest(
            key=b"d%06d" % j, value=value)) for j in range(i, i + 100)]))
    for i in range(0, 8000, 100):
        served.rpc.kv.Txn(pb.TxnRequest(success=[pb.RequestOp(
            request_delete_range=pb.DeleteRangeRequest(key=b"d%06d" % j))
            for j in range(i, i + 100) if j % 10]))
    rev = served.store.revision
    served.rpc.kv.Compact(pb.CompactionRequest(revision=rev, physical=True))
    before = served.rpc.maint.Status(pb.StatusRequest()).dbSize
    hash_before = served.store.hash_kv(0)[0]
    r = served.rpc.maint.Defragment(pb.DefragmentRequest())
    after = served.rpc.maint.Status(pb.StatusRequest()).dbSize
    assert r.header.revision == rev and served.store.hash_kv(0)[0] == hash_before
    got = served.rpc.kv.Range(pb.RangeRequest(key=b"d", range_end=b"e", keys_only=True))
    assert [kv.key for kv in got.kvs] == [b"d%06d" % i for i in range(0, 8000, 10)]
    if served.engine == "btree":
        assert after < before / 2, (before, after)
    served.store.check()


def test_hash_kv_equal_across_engines(tmp_path):
    """The same writes through the server give the same HashKV on both engines."""
    from server_fixtures import Served
    hashes = []
    for eng in ("btree", "fractal"):
        s = Served(tmp_path / eng, eng)
        try:
            for i in range(30):
                s.rpc.kv.Put(pb.PutRequest(key=b"k%d" % (i % 7), value=b"%d" % i))
            s.rpc.kv.DeleteRange(pb.DeleteRangeRequest(key=b"k3"))
            s.rpc.kv.Compact(pb.CompactionRequest(revision=20, physical=True))
            hashes.append(s.rpc.maint.HashKV(pb.HashKVRequest()).hash)
        finally:
            s.close()
    assert hashes[0] == hashes[1]


def test_member_ids_survive_restart_and_term_grows(serve_factory, tmp_path):
    s = serve_factory("ids")
    h1 = s.rpc.maint.Status(pb.StatusRequest()).header
    s.close()
    s2 = serve_factory("ids")
    h2 = s2.rpc.maint.Status(pb.StatusRequest()).header
    assert (h2.cluster_id, h2.member_id) == (h1.cluster_id, h1.member_id)
    assert h2.raft_term == h1.raft_term + 1


def test_nospace_alarm_at_quota_then_disarm(serve_factory):
    s = serve_factory(quota_backend_bytes=4 * 1024 * 1024)
    big = b"x" * 200_000
    err = None
    for i in range(200):
        try:
            s.rpc.kv.Put(pb.PutRequest(key=b"q%d" % i, value=big))
        except grpc.RpcError as e:
            err = e
            break
    assert err is not None, "quota never reached"
    assert (err.code(), err.details()) == (C.RESOURCE_EXHAUSTED,
                                           "etcdserver: mvcc: database space exceeded")
    me = s.rpc.maint.Status(pb.StatusRequest()).header.member_id
    alarms = s.rpc.maint.Alarm(pb.AlarmRequest(action=pb.AlarmRequest.GET)).alarms
    assert [(a.memberID, a.alarm) for a in alarms] == [(me, pb.NOSPACE)]
    assert s.rpc.maint.Status(pb.StatusRequest()).errors == ["memberID:%d alarm:NOSPACE " % me]
    rev = s.store.revision
    assert rpc_error(s.rpc.kv.Put, pb.PutRequest(key=b"small", value=b"x"))[1] == \
        "etcdserver: mvcc: database space exceeded"
    s.rpc.kv.DeleteRange(pb.DeleteRangeRequest(key=b"q0"))      # deletes still work
    assert s.store.revision == rev + 1
    d = s.rpc.maint.Alarm(pb.AlarmRequest(action=pb.AlarmRequest.DEACTIVATE, memberID=me,
                                          alarm=pb.NOSPACE))
    assert [(a.memberID, a.alarm) for a in d.alarms] == [(me, pb.NOSPACE)]
    assert not s.rpc.maint.Alarm(pb.AlarmRequest(action=pb.AlarmRequest.GET)).alarms


def test_alarm_member_zero_as_etcd(served):
    A = pb.AlarmRequest
    r = served.rpc.maint.Alarm(A(action=A.ACTIVATE, memberID=0, alarm=pb.NOSPACE))
    assert [(a.memberID, a.alarm) for a in r.alarms] == [(0, pb.NOSPACE)]
    assert len(served.rpc.maint.Alarm(A(action=A.GET)).alarms) == 1
    served.rpc.maint.Alarm(A(action=A.DEACTIVATE, memberID=0, alarm=pb.NOSPACE))
    assert not served.rpc.maint.Alarm(A(action=A.GET)).alarms
