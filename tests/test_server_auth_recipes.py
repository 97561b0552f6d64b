"""Auth (users, roles, key-range permissions, root rules, tokens) and the v3lock /
v3election services over gRPC, both engines."""
from __future__ import annotations

import threading
import time

from server_fixtures import grpc, rpc_error, served, serve_factory  # noqa: F401

from kvtrees.server.proto import auth_pb2, rpc_pb2 as pb, v3election_pb2 as epb, \
    v3lock_pb2 as lpb

C = grpc.StatusCode
P = auth_pb2.Permission


def _setup_auth(s):
    a = s.rpc.auth
    a.UserAdd(pb.AuthUserAddRequest(name="root", password="rootpw"))
    assert rpc_error(a.AuthEnable, pb.AuthEnableRequest()) == (
        C.FAILED_PRECONDITION, "etcdserver: root user does not have root role")
    a.RoleAdd(pb.AuthRoleAddRequest(name="root"))
    a.UserGrantRole(pb.AuthUserGrantRoleRequest(user="root", role="root"))
    a.UserAdd(pb.AuthUserAddRequest(name="alice", password="alicepw"))
    a.RoleAdd(pb.AuthRoleAddRequest(name="app"))
    a.RoleGrantPermission(pb.AuthRoleGrantPermissionRequest(
        name="app", perm=P(permType=P.READWRITE, key=b"app/", range_end=b"app0")))
    a.RoleGrantPermission(pb.AuthRoleGrantPermissionRequest(
        name="app", perm=P(permType=P.READ, key=b"shared")))
    a.UserGrantRole(pb.AuthUserGrantRoleRequest(user="alice", role="app"))
    a.AuthEnable(pb.AuthEnableRequest())


def _token(s, name, pw):
    return s.rpc.auth.Authenticate(pb.AuthenticateRequest(name=name, password=pw)).token


def test_auth_permissions_and_root_rules(served):
    kv = served.rpc.kv
    _setup_auth(served)
    assert rpc_error(kv.Put, pb.PutRequest(key=b"app/x", value=b"1")) == (
        C.INVALID_ARGUMENT, "etcdserver: user name is empty")
    assert rpc_error(_token, served, "alice", "wrong") == (
        C.INVALID_ARGUMENT, "etcdserver: authentication failed, invalid user ID or password")
    alice = [("token", _token(served, "alice", "alicepw"))]
    root = [("token", _token(served, "root", "rootpw"))]
    kv.Put(pb.PutRequest(key=b"app/x", value=b"1"), metadata=alice)
    assert kv.Range(pb.RangeRequest(key=b"app/", range_end=b"app0"),
                    metadata=alice).count == 1
    kv.Put(pb.PutRequest(key=b"shared", value=b"s"), metadata=root)
    assert kv.Range(pb.RangeRequest(key=b"shared"), metadata=alice).count == 1
    for call, req in ((kv.Put, pb.PutRequest(key=b"shared", value=b"no")),
                      (kv.Put, pb.PutRequest(key=b"other", value=b"no")),
                      (kv.Range, pb.RangeRequest(key=b"app/", range_end=b"b")),
                      (kv.DeleteRange, pb.DeleteRangeRequest(key=b"shared")),
                      (served.rpc.auth.UserList, pb.AuthUserListRequest())):
        assert rpc_error(call, req, metadata=alice) == (C.PERMISSION_DENIED,
                                                         "etcdserver: permission denied")
    txn = pb.TxnRequest(success=[pb.RequestOp(request_put=pb.PutRequest(key=b"other",
                                                                        value=b"no"))])
    assert rpc_error(kv.Txn, txn, metadata=alice)[0] == C.PERMISSION_DENIED
    assert kv.Range(pb.RangeRequest(key=b"other"), metadata=root).count == 0
    assert rpc_error(kv.Range, pb.RangeRequest(key=b"app/x"),
                     metadata=[("token", "bogus.1")]) == (C.UNAUTHENTICATED,
                                                          "etcdserver: invalid auth token")
    users = served.rpc.auth.UserList(pb.AuthUserListRequest(), metadata=root).users
    assert list(users) == ["alice", "root"]
    assert rpc_error(served.rpc.auth.UserDelete, pb.AuthUserDeleteRequest(name="root"),
                     metadata=root)[1] == "etcdserver: invalid auth management"
    perms = served.rpc.auth.RoleGet(pb.AuthRoleGetRequest(role="app"), metadata=root).perm
    assert [(p.permType, p.key, p.range_end) for p in perms] == [
        (P.READWRITE, b"app/", b"app0"), (P.READ, b"shared", b"")]
    served.rpc.auth.AuthDisable(pb.AuthDisableRequest(), metadata=root)
    kv.Put(pb.PutRequest(key=b"other", value=b"open"))


def test_auth_state_survives_restart(serve_factory):
    s = serve_factory("a")
    _setup_auth(s)
    s.close()
    s2 = serve_factory("a")
    assert rpc_error(s2.rpc.kv.Range, pb.RangeRequest(key=b"x"))[1] == \
        "etcdserver: user name is empty"
    tok = [("token", _token(s2, "alice", "alicepw"))]
    assert s2.rpc.kv.Range(pb.RangeRequest(key=b"app/x"), metadata=tok).count == 0
    s2.rpc.auth.AuthDisable(pb.AuthDisableRequest(),
                            metadata=[("token", _token(s2, "root", "rootpw"))])


def test_lock_contention_and_release(served):
    l1 = served.rpc.lease.LeaseGrant(pb.LeaseGrantRequest(TTL=30)).ID
    l2 = served.rpc.lease.LeaseGrant(pb.LeaseGrantRequest(TTL=30)).ID
    k1 = served.rpc.lock.Lock(lpb.LockRequest(name=b"mylock", lease=l1), timeout=10).key
    assert k1 == b"mylock/%x" % l1
    got = {}

    def second():
        got["key"] = served.rpc.lock.Lock(lpb.LockRequest(name=b"mylock", lease=l2),
                                          timeout=20).key
    t = threading.Thread(target=second)
    t.start()
    time.sleep(0.5)
    assert t.is_alive()                      # blocked behind the first holder
    served.rpc.lock.Unlock(lpb.UnlockRequest(key=k1))
    t.join(10)
    assert got["key"] == b"mylock/%x" % l2
    assert rpc_error(served.rpc.lock.Lock, lpb.LockRequest(name=b"x", lease=0x77)) == (
        C.NOT_FOUND, "etcdserver: requested lease not found")
    # a waiter whose deadline passes leaves the queue (its key is deleted)
    l3 = served.rpc.lease.LeaseGrant(pb.LeaseGrantRequest(TTL=30)).ID
    assert rpc_error(served.rpc.lock.Lock, lpb.LockRequest(name=b"mylock", lease=l3),
                     timeout=1)[0] == C.DEADLINE_EXCEEDED
    deadline = time.monotonic() + 5
    while served.rpc.kv.Range(pb.RangeRequest(key=b"mylock/%x" % l3)).count:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_election_campaign_proclaim_observe_resign(served):
    e = served.rpc.election
    l1 = served.rpc.lease.LeaseGrant(pb.LeaseGrantRequest(TTL=30)).ID
    l2 = served.rpc.lease.LeaseGrant(pb.LeaseGrantRequest(TTL=30)).ID
    assert rpc_error(e.Leader, epb.LeaderRequest(name=b"el"))[1] == "election: no leader"
    lead = e.Campaign(epb.CampaignRequest(name=b"el", lease=l1, value=b"p1"), timeout=10).leader
    assert lead.key == b"el/%x" % l1 and lead.lease == l1
    observed = []
    obs = e.Observe(epb.LeaderRequest(name=b"el"), timeout=20)

    def watch():
        try:
            for r in obs:
                observed.append(r.kv.value)
                if len(observed) == 3:
                    break
        except grpc.RpcError:
            pass
    t = threading.Thread(target=watch)
    t.start()
    second = {}
    t2 = threading.Thread(target=lambda: second.update(lead=e.Campaign(
        epb.CampaignRequest(name=b"el", lease=l2, value=b"p2"), timeout=20).leader))
    t2.start()
    time.sleep(0.5)
    e.Proclaim(epb.ProclaimRequest(leader=lead, value=b"p1b"))
    assert e.Leader(epb.LeaderRequest(name=b"el")).kv.value == b"p1b"
    assert t2.is_alive()
    e.Resign(epb.ResignRequest(leader=lead))
    t2.join(10)
    assert second["lead"].key == b"el/%x" % l2
    assert rpc_error(e.Proclaim, epb.ProclaimRequest(leader=lead, value=b"x"))[1] == \
        "election: not leader"
    t.join(10)
    obs.cancel()
    assert observed == [b"p1", b"p1b", b"p2"]
