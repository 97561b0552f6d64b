"""What the gRPC server asks of a cluster member: live identity (cluster id, member id,
raft term) for response headers, Raft status for Maintenance.Status, the member table,
membership changes and leadership transfer, waiting until the change is applied."""

from __future__ import annotations

import time
from typing import List, Optional, Sequence

from ..errors import ClusterError, NoLeaderError, RequestTimeoutError
from ..raft import ConfChange, ConfChangeType, StateType
from ..server.identity import Identity
from . import peers
from .member import ClusterMember, member_context


class MembershipError(ClusterError):
    """A membership request etcd refuses (its message is etcd's, without the
    "etcdserver: " prefix)."""


class LeadershipError(ClusterError):
    """MoveLeader sent to a member that is not the leader, or to a bad transferee."""


class ClusterIdentity(Identity):
    """The Identity of a cluster member: raft_term is Raft's current term, cluster_id
    the replicated one."""

    def __init__(self, member: ClusterMember, client_urls: Sequence[str]) -> None:
        self._member = member
        super().__init__(0, member.id, 0, member.name, list(client_urls),
                         list(member.peer_urls))

    @property
    def cluster_id(self) -> int:
        """The id the founding conf changes recorded (0 until this member has applied
        them: a member just added, before it caught up)."""
        return self._member.store.cluster_id()

    @cluster_id.setter
    def cluster_id(self, value: int) -> None:
        pass

    @property
    def raft_term(self) -> int:
        st = self._member.status()
        return st.term if st is not None else 0

    @raft_term.setter
    def raft_term(self, value: int) -> None:
        pass                      # Raft's term, not a counter kept here


def raft_status(member: ClusterMember) -> dict:
    """leader, raft_index (commit), raft_applied_index, raft_term, is_learner."""
    st = member.status()
    if st is None:
        return dict(leader=0, raft_index=0, raft_applied_index=0, raft_term=0,
                    is_learner=False)
    return dict(leader=st.lead, raft_index=st.commit, raft_applied_index=st.applied,
                raft_term=st.term, is_learner=member.id in st.conf_state.learners)


def members(member: ClusterMember) -> List[dict]:
    """Every member: id, name, peer_urls, client_urls, learner; ordered by id."""
    out = []
    for key, m in sorted(member.store.members.items(), key=lambda kv: int(kv[0], 16)):
        out.append(dict(id=int(key, 16), name=m.get("name", ""),
                        peer_urls=list(m.get("peer_urls", [])),
                        client_urls=list(m.get("client_urls", [])),
                        learner=bool(m.get("learner"))))
    return out


def _find(member: ClusterMember, mid: int) -> Optional[dict]:
    return next((m for m in members(member) if m["id"] == mid), None)


def _change(member: ClusterMember, cc: ConfChange, done, timeout: float) -> None:
    """Propose cc until done() holds (re-proposing: a leader takes one change at a
    time and drops the rest)."""
    deadline = time.monotonic() + timeout
    while not done():
        if not member.store.leader_id():
            if time.monotonic() >= deadline:
                raise NoLeaderError()
            time.sleep(0.02)
            continue
        member.driver.propose_conf_change(cc)
        until = min(deadline, time.monotonic() + member.election)
        while time.monotonic() < until and not done():
            time.sleep(0.01)
        if time.monotonic() >= deadline and not done():
            raise RequestTimeoutError()


def add(member: ClusterMember, peer_urls: Sequence[str], learner: bool,
        timeout: float = 10.0) -> dict:
    """etcd's MemberAdd: the new member's id comes from the cluster token and its peer
    URLs (the new member computes the same). Returns the added member."""
    if not peer_urls:
        raise MembershipError("member peer URLs are not provided")
    for u in peer_urls:
        peers.parse_peer_url(u)
    taken = {u for m in members(member) for u in m["peer_urls"]}
    if taken & set(peer_urls):
        raise MembershipError("Peer URLs already exists")
    mid = peers.member_id(member.token, list(peer_urls))
    kind = ConfChangeType.ADD_LEARNER if learner else ConfChangeType.ADD_NODE
    _change(member, ConfChange(kind, mid, member_context("", peer_urls,
                                                         member.store.cluster_id())),
            lambda: _find(member, mid) is not None, timeout)
    return _find(member, mid)


def remove(member: ClusterMember, mid: int, timeout: float = 10.0) -> None:
    """etcd's MemberRemove."""
    if _find(member, mid) is None:
        raise MembershipError("member not found")
    _change(member, ConfChange(ConfChangeType.REMOVE_NODE, mid),
            lambda: _find(member, mid) is None, timeout)


def promote(member: ClusterMember, mid: int, timeout: float = 10.0) -> None:
    """etcd's MemberPromote: only a learner that is in sync with the leader (its
    match at least 90% of the leader's, as etcd checks) can become a voter."""
    m = _find(member, mid)
    if m is None:
        raise MembershipError("member not found")
    if not m["learner"]:
        raise MembershipError("can only promote a learner member")
    st = member.status()
    if st is not None and st.state == StateType.LEADER:
        prog = st.progress.get(mid)
        if prog is None or prog["match"] < 0.9 * st.commit:
            raise MembershipError("can only promote a learner member which is in sync "
                                  "with leader")
    _change(member, ConfChange(ConfChangeType.ADD_NODE, mid),
            lambda: not (_find(member, mid) or {}).get("learner", True), timeout)


def move_leader(member: ClusterMember, target: int, timeout: float = 10.0) -> None:
    """etcd's MoveLeader: asked of the leader; returns once target leads."""
    st = member.status()
    if st is None or st.state != StateType.LEADER:
        raise LeadershipError("not leader")
    m = _find(member, target)
    if m is None or m["learner"]:
        raise LeadershipError("bad leader transferee")
    if target == member.id:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        member.driver.transfer_leader(target)
        until = min(deadline, time.monotonic() + 2 * member.election)
        while time.monotonic() < until:
            if member.store.leader_id() == target:
                return
            time.sleep(0.01)
    raise RequestTimeoutError("request timed out, leader transfer took too long")
