"""The store on Raft, in process: 3 ClusterMembers on loopback (short timeouts).
Every member goes through the same revisions and ends with the same hash_kv; the
applied index is stamped with the entry's effects, so restarts neither re-apply nor
skip; only the leader expires leases; snapshots bring a lagging or new member up."""

import pytest

import kvtrees
from kvtrees import mvcc
from kvtrees.cluster import open_cluster_store
from kvtrees.cluster.codec import encode_entry
from kvtrees.errors import LeaseNotFoundError, NoLeaderError, RequestTimeoutError
from kvtrees.requests import LeaseGrantRequest, PutRequest, TxnRequest

from helpers.cluster_members import Members, until
from helpers.raft_cluster import wait_for

ENGINES = ["btree", "fractal"]


@pytest.fixture(params=ENGINES)
def engine(request):
    return request.param


@pytest.fixture
def cluster(engine, tmp_path):
    c = Members(tmp_path, engine)
    yield c
    stores = c.stores()
    for s in stores:
        s.check()
    c.close()


def check_all(c: Members) -> None:
    c.wait_converged()
    revs = {s.revision for s in c.stores()}
    assert len(revs) == 1
    for s in c.stores():
        s.check()


def test_writes_through_every_member_give_the_same_history(cluster):
    c = cluster
    c.leader()
    s1, s2, s3 = c.stores()
    t = s1.transactions
    assert s1.put("a", "1").revision == 2
    assert s2.put("b", "2").revision == 3
    ok, _ = s3.transaction([t.value("a") == "1"], [t.put("a", "x"), t.delete("b")], [])
    assert ok
    lease = s2.lease(30)
    s3.put("l", "v", lease=lease)
    assert s1.get("l")[1].lease == lease.id          # linearizable read on another member
    assert s1.delete_prefix("a").deleted == 1
    s3.revoke_lease(lease.id)
    with pytest.raises(LeaseNotFoundError):
        s2.put("m", "v", lease=lease.id)
    with pytest.raises(LeaseNotFoundError):
        s1.refresh_lease(lease.id)
    for i in range(30):
        c.stores()[i % 3].put("k%02d" % i, str(i))
    s2.compact(s2.revision - 5)
    check_all(c)
    assert [kv.key for kv in s3.range(b"k", b"l").kvs][:2] == [b"k00", b"k01"]
    assert all(s.compact_revision == s2.compact_revision for s in c.stores())


def test_linearizable_read_on_a_follower_sees_an_acknowledged_write(cluster):
    c = cluster
    lead, fol = c.leader().store, c.follower().store
    for i in range(20):
        lead.put("r", str(i))
        assert fol.get("r")[0] == str(i).encode()
        assert fol.range("r").kvs[0].value == str(i).encode()
    # a serializable read does not wait for the leader: it may be behind, never ahead
    v, _ = fol.get("r", serializable=True)
    assert v in (None, b"19") or int(v) <= 19
    check_all(c)


def test_a_reproposed_entry_is_applied_once(cluster):
    c = cluster
    lead = c.leader()
    s = lead.store
    rev = s.put("d", "0").revision
    data = encode_entry(lead.id, 42, PutRequest(b"d", b"1", 0, False))
    for _ in range(3):
        lead.driver.propose(data)
    s.put("d", "2")
    check_all(c)
    assert s.revision == rev + 2          # the three copies gave one revision
    assert [kv.value for kv in (s.get("d", revision=rev + 1)[1],)] == [b"1"]


def test_restart_neither_reapplies_nor_skips(cluster, engine):
    c = cluster
    c.leader()
    for i in range(40):
        c.stores()[i % 3].put("k%d" % (i % 7), str(i))
    check_all(c)
    rev_before = c.stores()[0].revision
    c.stop("n3")                                   # writes go on without it
    for i in range(25):
        until(lambda i=i: c.m["n1"].store.put("x%d" % i, "v"))
    c.start("n3")                                  # from its own log and store
    c.m["n3"].store.put("after", "restart")
    check_all(c)
    assert c.m["n3"].store.revision == rev_before + 26
    for name in list(c.m):                          # every member restarted at once
        c.stop(name)
        c.start(name)
    c.leader()
    assert len({s.revision for s in c.stores()}) == 1
    c.m["n2"].store.put("again", "1")
    check_all(c)
    assert c.m["n1"].store.revision == rev_before + 27


def test_apply_at_stamps_the_index_with_the_effects(engine, tmp_path):
    """A replicated store's engine holds exactly the entries up to applied_index: the
    index lands in the entry's own batch, for writes, failures and no-op txns alike."""
    s = open_cluster_store(str(tmp_path / "s"), engine)
    t = s.transactions
    s.apply_at(1, PutRequest(b"a", b"1", 0, False))
    s.apply_at(2, LeaseGrantRequest(7, 10))
    with pytest.raises(LeaseNotFoundError):
        s.apply_at(3, PutRequest(b"b", b"1", 99, False))
    s.apply_at(4, TxnRequest([t.value("a") == "no"], [], []))      # writes nothing
    with pytest.raises(ValueError):
        s.apply_at(4, PutRequest(b"a", b"2", 0, False))            # already applied
    assert s.applied_index == 4 and s.revision == 2
    assert s._eng.get(mvcc.META_APPLIED) == mvcc.be64(4)
    s.check()
    s.close()
    s = open_cluster_store(str(tmp_path / "s"), engine)
    assert s.applied_index == 4 and s.revision == 2 and 7 in [le.id for le in s.leases()]
    s.check()
    s.close()
    plain = kvtrees.open(str(tmp_path / "plain"), engine)   # a single store: no index
    plain.put("a", "1")
    assert plain.applied_index == 0 and plain._eng.get(mvcc.META_APPLIED) is None
    plain.check()
    plain.close()


def test_lease_expiry_is_decided_by_the_leader_only(engine, tmp_path):
    c = Members(tmp_path, engine, min_lease_ttl=1)
    try:
        c.leader()
        s = c.m["n1"].store
        lease = s.lease(1)
        s.put("held", "v", lease=lease)
        c.wait_converged()
        c.stop("n2")
        c.stop("n3")                        # n1 alone: no leader, so nobody expires it
        wait_for(lambda: not c.m["n1"].store.is_leader(), 5, "n1 to step down")
        import time
        time.sleep(1.6)
        assert s.get("held", serializable=True)[0] == b"v"
        with pytest.raises((NoLeaderError, RequestTimeoutError)):
            s.propose_and_wait(PutRequest(b"w", b"v", 0, False), timeout=0.5)
        c.start("n2")
        c.start("n3")
        c.leader()
        wait_for(lambda: all(st.get("held", serializable=True)[0] is None
                             for st in c.stores()), 10, "the leader to revoke the lease")
        check_all(c)
    finally:
        for st in c.stores():
            st.check()
        c.close()


def test_lagging_and_new_members_catch_up_by_snapshot(engine, tmp_path):
    c = Members(tmp_path, engine, snapshot_every=30, snapshot_keep=5)
    try:
        c.leader()
        c.stop("n3")
        for i in range(120):
            until(lambda i=i: c.m["n1"].store.put("k%03d" % i, "v%d" % i))
        c.start("n3")
        check_all(c)
        assert c.m["n3"].driver.snapshots_installed >= 1
        # a fourth member: added as a learner, caught up, promoted
        url = c.add_url("n4")
        lead = c.leader()
        from kvtrees.cluster.peers import member_id
        from kvtrees.cluster.member import member_context
        from kvtrees.raft import ConfChange, ConfChangeType
        new_id = member_id(lead.token, [url])
        lead.driver.propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, new_id,
                                                   member_context("n4", [url])))
        c.start("n4", state="existing", initial=c.initial + ",n4=" + url)
        check_all(c)
        c.leader().driver.propose_conf_change(ConfChange(ConfChangeType.ADD_NODE, new_id))
        wait_for(lambda: new_id in c.leader().status().conf_state.voters, 10, "promotion")
        c.m["n4"].store.put("from", "n4")
        check_all(c)
        assert "%x" % new_id in c.m["n1"].store.members
    finally:
        for st in c.stores():
            st.check()
        c.close()


def test_a_run_of_puts_applied_as_one_batch_equals_entry_by_entry(engine, tmp_path):
    """apply_entries groups plain puts on distinct keys into one batch; the outcome
    (revisions, results, data, lease attachments, watch events) is the one apply_at per
    entry gives."""
    from kvtrees.raft.types import Entry
    from kvtrees.requests import DeleteRangeRequest
    reqs = [LeaseGrantRequest(5, 60), PutRequest(b"l", b"0", 5, False)]
    reqs += [PutRequest(b"k%d" % (i % 6), b"v%d" % i, 0, i % 2 == 0) for i in range(20)]
    reqs += [PutRequest(b"l", b"1", 0, True), DeleteRangeRequest(b"k1"),
             PutRequest(b"k1", b"again", 0, True), PutRequest(b"k2", b"x", 0, False)]
    entries = [Entry(term=1, index=i + 1, data=encode_entry(1, i + 1, r))
               for i, r in enumerate(reqs)]
    grouped = open_cluster_store(str(tmp_path / "g"), engine)
    single = open_cluster_store(str(tmp_path / "s"), engine)
    grouped.member_id = single.member_id = 1
    seen = {"g": [], "s": []}
    grouped.add_watch_prefix_callback(b"k", lambda ev: seen["g"].append(ev))
    single.add_watch_prefix_callback(b"k", lambda ev: seen["s"].append(ev))
    grouped.apply_entries(entries)
    for e in entries:
        single.apply_entry(e)
    assert grouped.applied_index == single.applied_index == len(reqs)
    assert grouped.revision == single.revision
    assert grouped.hash_kv() == single.hash_kv()
    assert grouped.lease_keys(5) == single.lease_keys(5) == []
    wait_for(lambda: len(seen["g"]) == len(seen["s"]) > 0, 5, "watch events")
    assert [(type(e).__name__, e.key, e.mod_revision) for e in seen["g"]] == \
        [(type(e).__name__, e.key, e.mod_revision) for e in seen["s"]]
    for s in (grouped, single):
        s.check()
        s.close()


def test_a_partitioned_leader_acknowledges_nothing_and_history_is_linearizable(
        engine, tmp_path):
    """Every member-to-member link through its own FaultProxy; clients write and read
    two keys through all three members while the leader is cut off (both directions)
    and healed. The history (kvtrees.lincheck) is linearizable: the old leader neither
    acknowledges a write nor serves a stale read while the others elect a new one."""
    import random
    import threading
    import time
    from helpers.faultproxy import FaultProxy
    from kvtrees.lincheck import History, check_kv
    c = Members(tmp_path, engine, request_timeout=1.0)
    proxies = {}
    try:
        for a, ma in c.m.items():
            for b, mb in c.m.items():
                if a != b:
                    proxies[(a, b)] = p = FaultProxy(mb.transport.addr)
                    ma.transport.add_peer(mb.id, p.addr)
        old = c.leader()
        old_name = next(n for n, m in c.m.items() if m is old)
        h, stop = History(), threading.Event()
        done = {n: 0 for n in c.m}
        fails = {n: 0 for n in c.m}

        def client(cid, name):
            rng, store = random.Random(cid), c.m[name].store
            n = 0
            while not stop.is_set():
                n += 1
                key = rng.choice([b"x", b"y"])
                try:
                    if rng.random() < 0.5:
                        op = h.invoke(cid, "put", key, b"%d-%d" % (cid, n))
                        store.put(key, b"%d-%d" % (cid, n))
                        h.complete(op, None)
                    else:
                        op = h.invoke(cid, "get", key)
                        h.complete(op, store.get(key)[0])
                    done[name] += 1
                except (NoLeaderError, RequestTimeoutError):
                    fails[name] += 1          # outcome unknown: left incomplete
                    time.sleep(0.02)
        threads = [threading.Thread(target=client, args=(i, n))
                   for i, n in enumerate(list(c.m) * 2)]
        for t in threads:
            t.start()
        time.sleep(0.4)
        for (a, b), p in proxies.items():
            if old_name in (a, b):
                p.blackhole = True
                p.reset()
        others = [m for n, m in c.m.items() if n != old_name]
        wait_for(lambda: any(m.store.is_leader() for m in others), 10, "a new leader")
        before = dict(done)
        time.sleep(1.5)
        assert sum(done[n] - before[n] for n in c.m if n != old_name) > 5
        for p in proxies.values():
            p.blackhole = False
        time.sleep(0.8)
        stop.set()
        for t in threads:
            t.join(10)
        assert fails[old_name] >= 1
        c.wait_converged(15)
        res = check_kv(h.operations(), max_steps=2_000_000)
        assert res.ok, res
    finally:
        for st in c.stores():
            st.check()
        c.close()
        for p in proxies.values():
            p.close()


def test_a_first_start_refused_by_its_flags_can_be_started_again(engine, tmp_path):
    """Bad --initial-cluster flags leave an empty Raft log; the next start with good
    flags bootstraps from them (it is not taken for a restart)."""
    from kvtrees.cluster import ClusterMember
    from helpers.cluster_members import free_port
    url = "http://127.0.0.1:%d" % free_port()
    with pytest.raises(ValueError):
        ClusterMember(str(tmp_path / "m"), "n1", "n1=http://127.0.0.1:1", [url],
                      engine=engine, heartbeat_ms=20, election_ms=200)
    m = ClusterMember(str(tmp_path / "m"), "n1", "n1=" + url, [url], engine=engine,
                      heartbeat_ms=20, election_ms=200)
    try:
        wait_for(m.store.is_leader, 10, "the single member to lead")
        assert m.store.put("k", "v").revision == 2
        m.store.check()
    finally:
        m.close()


def test_messages_from_a_removed_member_are_dropped(engine, tmp_path):
    """A removed member that missed its own removal may still forward proposals to the
    leader it remembers; they must not be applied behind its back (it would wait for
    them in vain). Its peers drop every message from a node not in the member table,
    as etcd's peers refuse a removed member."""
    from kvtrees.cluster import serving
    from kvtrees.raft import Entry, Message, MsgType
    c = Members(tmp_path, engine)
    try:
        lead = c.leader()
        victim = next(n for n, m in c.m.items() if m is not lead)
        gone_id = c.m[victim].id
        serving.remove(lead, gone_id)
        c.stop(victim)
        ghost = encode_entry(gone_id, 1, PutRequest(b"ghost", b"1", 0, False))
        lead._deliver(Message(MsgType.PROP, to=lead.id, frm=gone_id,
                              entries=[Entry(data=ghost)]))
        lead.store.put("after", "1")
        c.wait_converged()
        assert lead.store.get("ghost")[0] is None
        # a member's own forwarded proposal still gets through
        other = next(m for m in c.m.values() if m is not lead)
        mine = encode_entry(other.id, 1, PutRequest(b"mine", b"1", 0, False))
        lead._deliver(Message(MsgType.PROP, to=lead.id, frm=other.id,
                              entries=[Entry(data=mine)]))
        wait_for(lambda: lead.store.get("mine", serializable=True)[0] == b"1", 5, "mine")
        check_all(c)
    finally:
        for st in c.stores():
            st.check()
        c.close()
