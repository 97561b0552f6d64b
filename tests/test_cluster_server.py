"""Three `kvtrees serve` members driven with etcdctl: writes through any member, one
leader in endpoint status, member list with names and client URLs, move-leader, member
add (learner) / promote / remove, a new member started with --initial-cluster-state
existing, headers with one cluster id and the Raft term."""

import json

import pytest

from etcd_reference import have_etcdctl
from helpers.raft_cluster import wait_for
from helpers.serve_cluster import ServeCluster, etcdctl

pytestmark = pytest.mark.skipif(not have_etcdctl(), reason="etcdctl not installed")


@pytest.fixture(params=["btree", "fractal"])
def cluster(request, tmp_path):
    c = ServeCluster(tmp_path, request.param).start_all()
    try:
        yield c
        c.check_stores()
    finally:
        c.close()


def ok(r):
    assert r.returncode == 0, r.stderr
    return r.stdout


def members(c, ep=None):
    return json.loads(ok(etcdctl(ep or c.endpoints(), "member", "list", "-w", "json")))


def check_same_data(c, names):
    """Every named member has the same hash of its keys at the same revision."""
    def same():
        got = set()
        for n in names:
            r = etcdctl(c.client[n], "endpoint", "hashkv", "-w", "json")
            if r.returncode:
                return False
            h = json.loads(r.stdout)[0]["HashKV"]
            got.add((h["header"]["revision"], h["hash"]))
        return len(got) == 1
    wait_for(same, 15, "the same hashkv on %s" % names)


def test_etcdctl_against_a_three_member_cluster(cluster):
    c = cluster
    lead = c.leader()
    fol = [n for n in c.procs if n != lead]
    ok(etcdctl(c.client[fol[0]], "put", "k", "through-a-follower"))
    assert ok(etcdctl(c.client[fol[1]], "get", "k", "--print-value-only")) == \
        "through-a-follower\n"
    # the full endpoint list: the client picks any member
    ok(etcdctl(c.endpoints(), "put", "k2", "v"))
    ml = members(c)
    assert sorted(m["name"] for m in ml["members"]) == ["n1", "n2", "n3"]
    assert sorted(m["clientURLs"][0] for m in ml["members"]) == \
        sorted("http://" + c.client[n] for n in c.procs)
    st = c.statuses()
    assert len({s["leader"] for s in st.values()}) == 1
    assert len({s["header"]["cluster_id"] for s in st.values()}) == 1
    assert len({s["raftTerm"] for s in st.values()}) == 1
    assert sum(s["leader"] == s["header"]["member_id"] for s in st.values()) == 1
    # move-leader to a follower (etcdctl finds the leader among the endpoints)
    target = st[fol[1]]["header"]["member_id"]
    out = ok(etcdctl(c.endpoints(), "move-leader", "%x" % target))
    assert "Leadership transferred" in out
    assert c.leader() == fol[1]
    check_same_data(c, list(c.procs))
    # SIGKILL the leader: once the others elected a new one, etcdctl given every
    # endpoint (the dead one included) reads and writes without being told which died
    every = c.endpoints()
    c.kill(fol[1])
    c.leader()
    ok(etcdctl(every, "put", "after-kill", "v"))
    assert ok(etcdctl(every, "get", "after-kill", "--print-value-only")) == "v\n"
    check_same_data(c, list(c.procs))


def test_member_add_promote_remove(cluster):
    c = cluster
    c.leader()
    c._ports("n4")
    r = ok(etcdctl(c.endpoints(), "member", "add", "n4", "--learner",
                   "--peer-urls=" + c.peer["n4"]))
    assert 'ETCD_INITIAL_CLUSTER_STATE="existing"' in r
    ml = members(c)["members"]
    new = next(m for m in ml if m["peerURLs"] == [c.peer["n4"]])
    assert new.get("isLearner") and not new.get("name")
    c.start("n4", state="existing", initial=c.initial_cluster(c.peer))
    c.wait_serving("n4")
    ok(etcdctl(c.endpoints(), "put", "after-add", "1"))
    wait_for(lambda: any(m.get("name") == "n4" for m in members(c)["members"]), 15,
             "n4 to publish its name")
    check_same_data(c, ["n1", "n2", "n3", "n4"])

    def promoted():
        r = etcdctl(c.endpoints(), "member", "promote", "%x" % new["ID"])
        return r.returncode == 0 or "is not a learner" in r.stderr
    wait_for(promoted, 15, "n4 to be promoted")
    ml = members(c)["members"]
    assert not any(m.get("isLearner") for m in ml)
    ok(etcdctl(c.endpoints(), "member", "remove", "%x" % new["ID"]))
    c.procs["n4"].wait(15)                 # a removed member stops by itself, as etcd's
    assert "removed from the cluster" in c.log("n4")
    c.kill("n4")
    assert len(members(c)["members"]) == 3
    ok(etcdctl(c.endpoints(), "put", "after-remove", "1"))
    check_same_data(c, ["n1", "n2", "n3"])
    r = etcdctl(c.endpoints(), "member", "remove", "%x" % new["ID"])
    assert r.returncode != 0 and "member not found" in r.stderr
