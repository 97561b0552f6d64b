"""One test per Raft rule (the list follows etcd-io/raft's raft_test.go and the Raft
paper/thesis sections), on small synchronous networks (tests/raft_net.py).

Pure Raft core: no store or engine is involved.
"""

from __future__ import annotations

import random

import pytest

from kvtrees.raft import (ConfChange, ConfChangeError, ConfChangeType, ConfState, Config, Entry,
                          EntryType, HardState, LogCompactedError, LogUnavailableError,
                          MemoryStorage, Message, MsgType, ProgressState, ProposalDroppedError,
                          Raft, RaftError, RawNode, StateType, StepLocalMsgError,
                          StepPeerNotFoundError, bootstrap)
from kvtrees.raft.log import RaftLog
from kvtrees.raft.progress import Inflights, Progress
from raft_net import Net

F, C, P, L = StateType.FOLLOWER, StateType.CANDIDATE, StateType.PRE_CANDIDATE, StateType.LEADER


def storage_with(entries, hs=None):
    s = MemoryStorage()
    s.append(entries)
    if hs is not None:
        s.set_hard_state(hs)
    return s


def ents(*terms, start=1):
    return [Entry(t, start + i, b"e%d" % (start + i)) for i, t in enumerate(terms)]


# ---- elections -------------------------------------------------------------------------

@pytest.mark.parametrize("pre_vote", [False, True])
def test_leader_election(pre_vote):
    net = Net([1, 2, 3], pre_vote=pre_vote)
    net.elect(1)
    assert [net.raft(i).state for i in (2, 3)] == [F, F]
    assert {net.raft(i).term for i in (1, 2, 3)} == {1}
    assert all(net.raft(i).lead == 1 for i in (1, 2, 3))
    assert net.msgs_of(MsgType.PRE_VOTE) if pre_vote else not net.msgs_of(MsgType.PRE_VOTE)


def test_election_timeout_is_randomized_in_range():
    net = Net([1, 2, 3])
    seen = set()
    r = net.raft(1)
    for _ in range(200):
        r.become_follower(r.term + 1, 0)
        seen.add(r.randomized_election_timeout)
    assert min(seen) == 10 and max(seen) == 19 and len(seen) == 10


def test_follower_campaigns_after_election_timeout():
    net = Net([1, 2, 3])
    net.tick(1, 20)  # at most 2 * election_tick - 1 ticks
    assert net.raft(1).state == L


def test_single_node_elects_itself_and_commits_after_persisting():
    net = Net([1])
    net.nodes[1].campaign()
    r = net.raft(1)
    assert r.state == L
    # The empty entry of the new term is not committed until its own storage has it.
    assert r.log.committed == 0
    net.pump()
    assert r.log.committed == 1
    net.nodes[1].propose(b"x")
    assert r.log.committed == 1
    net.pump()
    assert r.log.committed == 2 and net.applied[1] == [b"x"]


def test_one_vote_per_term_survives_restart():
    net = Net([1, 2, 3], pre_vote=False)
    net.cut = {(2, 1), (2, 3), (3, 2), (1, 3), (3, 1), (1, 2)}
    net.nodes[2].step(Message(MsgType.VOTE, to=2, frm=1, term=5, index=0, log_term=0))
    net.handle_ready(2)
    assert net.raft(2).vote == 1 and net.storage[2].hard_state.vote == 1
    net.restart(2)
    net.nodes[2].step(Message(MsgType.VOTE, to=2, frm=3, term=5, index=0, log_term=0))
    net.handle_ready(2)
    resp = net.outbox[-1]
    assert resp.type == MsgType.VOTE_RESP and resp.to == 3 and resp.reject


@pytest.mark.parametrize("cand_index,cand_term,granted", [
    (3, 1, False),   # older last term
    (2, 2, False),   # same term, shorter log
    (3, 2, True),    # same last entry
    (4, 2, True),    # same term, longer
    (1, 3, True),    # newer last term wins even if shorter
])
def test_vote_requires_up_to_date_log(cand_index, cand_term, granted):
    s = storage_with(ents(1, 1, 2))
    r = Raft(Config(id=1, storage=s, peers=[1, 2], pre_vote=False))
    r.step(Message(MsgType.VOTE, to=1, frm=2, term=5, index=cand_index, log_term=cand_term))
    resp = r.msgs[-1]
    assert resp.type == MsgType.VOTE_RESP and resp.reject == (not granted)
    assert r.vote == (2 if granted else 0)


def test_candidate_with_majority_of_rejections_steps_down():
    net = Net([1, 2, 3], pre_vote=False)
    for i in (2, 3):
        net.raft(i).log.append([Entry(5, 1)])  # longer-term logs reject node 1
    net.nodes[1].campaign()
    net.pump()
    assert net.raft(1).state == F


def test_prevote_does_not_disrupt_a_stable_cluster():
    net = Net([1, 2, 3])
    net.elect(1)
    net.isolate(3)
    net.tick(3, 100)  # many failed pre-elections
    assert net.raft(3).term == 1 and net.raft(3).state == P
    net.heal()
    net.tick_all(3)
    assert net.raft(1).state == L and net.raft(1).term == 1


def test_without_prevote_a_partitioned_node_bumps_its_term():
    net = Net([1, 2, 3], pre_vote=False, check_quorum=False)
    net.elect(1)
    net.isolate(3)
    net.tick(3, 100)
    assert net.raft(3).term > 3


def test_vote_is_ignored_within_leader_lease():
    net = Net([1, 2, 3])
    net.elect(1)
    r2 = net.raft(2)
    r2.step(Message(MsgType.VOTE, to=2, frm=3, term=9, index=10, log_term=9))
    assert r2.term == 1 and not r2.msgs  # ignored, not even answered
    # A forced vote (leadership transfer) is honoured.
    r2.step(Message(MsgType.VOTE, to=2, frm=3, term=9, index=10, log_term=9,
                    context=b"CampaignTransfer"))
    assert r2.term == 9 and r2.vote == 3


def test_check_quorum_leader_steps_down_when_isolated():
    net = Net([1, 2, 3])
    net.elect(1)
    net.isolate(1)
    net.tick(1, 21)
    assert net.raft(1).state == F


def test_stale_leader_learns_new_term_from_answer_to_its_append():
    net = Net([1, 2, 3])
    net.elect(1)
    net.isolate(1)
    for _ in range(40):
        net.tick_all(1)
        if net.raft(2).state == L or net.raft(3).state == L:
            break
    new_term = max(net.raft(2).term, net.raft(3).term)
    assert new_term > 1
    net.heal()
    # Old leader (if it did not step down yet) sends a stale-term append; the answer
    # carries the new term and makes it a follower.
    net.raft(1).become_follower(1, 0)
    net.raft(1).become_candidate()
    net.raft(1).term = 1
    net.raft(1).become_leader()
    net.nodes[1].propose(b"stale")
    net.pump()
    assert net.raft(1).state == F and net.raft(1).term == new_term


def test_pre_vote_response_does_not_change_term_of_voter():
    s = storage_with(ents(1))
    r = Raft(Config(id=2, storage=s, peers=[1, 2, 3]))
    r.step(Message(MsgType.PRE_VOTE, to=2, frm=1, term=7, index=1, log_term=1))
    resp = r.msgs[-1]
    assert resp.type == MsgType.PRE_VOTE_RESP and not resp.reject and resp.term == 7
    assert r.term == 0 and r.vote == 0


def test_stale_pre_vote_is_rejected_with_current_term():
    s = storage_with(ents(1), HardState(5, 0, 0))
    r = Raft(Config(id=2, storage=s, peers=[1, 2, 3]))
    r.step(Message(MsgType.PRE_VOTE, to=2, frm=1, term=3, index=1, log_term=1))
    resp = r.msgs[-1]
    assert resp.type == MsgType.PRE_VOTE_RESP and resp.reject and resp.term == 5


def test_no_campaign_with_unapplied_conf_change():
    s = MemoryStorage()
    bootstrap(s, [1, 2, 3])
    r = Raft(Config(id=1, storage=s))
    # Committed conf changes 1..3 not applied yet: not even a member in its own view.
    r.step(Message(MsgType.HUP))
    assert r.state == F


# ---- log replication -------------------------------------------------------------------

def test_log_replication_and_commit_on_all():
    net = Net([1, 2, 3])
    net.elect(1)
    for k in range(5):
        net.propose(1, b"v%d" % k)
    net.tick_all(2)
    for i in (1, 2, 3):
        assert net.applied[i] == [b"v%d" % k for k in range(5)]


def test_proposal_on_follower_is_forwarded():
    net = Net([1, 2, 3])
    net.elect(1)
    net.propose(3, b"via-follower")
    net.tick_all(2)
    assert all(net.applied[i] == [b"via-follower"] for i in (1, 2, 3))


def test_proposal_without_leader_is_dropped():
    net = Net([1, 2, 3])
    with pytest.raises(ProposalDroppedError):
        net.nodes[1].propose(b"x")


def test_leader_only_commits_entries_of_its_own_term():
    """Raft §5.4.2 / Figure 8: an old-term entry on a quorum is not committed by count."""
    s = storage_with(ents(1, 2), HardState(2, 0, 1))
    r = Raft(Config(id=1, storage=s, peers=[1, 2, 3], pre_vote=False))
    r.become_candidate()  # term 3
    r.become_leader()     # appends the term-3 entry at index 3 (unstable)
    r.step(Message(MsgType.APP_RESP, to=1, frm=2, term=3, index=2))
    assert r.log.committed == 1, "index 2 (term 2) must not be committed by counting"
    r.step(Message(MsgType.APP_RESP, to=1, frm=2, term=3, index=3))
    assert r.log.committed == 1, "the leader's own copy of index 3 is not durable yet"
    s.append(r.log.unstable_entries())
    r.persisted_to(3, 3)
    assert r.log.committed == 3


@pytest.mark.parametrize("follower_terms,leader_terms", [
    ((1, 1, 1, 4, 4), (1, 1, 1, 5, 5, 6)),        # conflicting suffix of a lost term
    ((1, 1), (1, 1, 2, 2, 3)),                     # short follower
    ((1, 2, 2, 2, 2, 2, 2), (1, 3, 3)),            # long conflicting follower
])
def test_conflicting_follower_log_is_repaired(follower_terms, leader_terms):
    net = Net([1, 2], pre_vote=False)
    for i, terms in ((1, leader_terms), (2, follower_terms)):
        net.storage[i].append(ents(*terms))
        net.storage[i].set_hard_state(HardState(max(terms), 0, 1))
        net.restart(i)
    net.elect(1)
    net.tick_all(3)
    l1 = [(e.index, e.term) for e in net.raft(1).log.all_entries()]
    l2 = [(e.index, e.term) for e in net.raft(2).log.all_entries()]
    assert l1 == l2 and net.raft(2).log.committed == net.raft(1).log.committed


def test_conflict_hint_skips_a_whole_term_per_round_trip():
    net = Net([1, 2], pre_vote=False)
    net.storage[1].append(ents(1, *([3] * 50)))
    net.storage[1].set_hard_state(HardState(3, 0, 1))
    net.storage[2].append(ents(1, *([2] * 50)))
    net.storage[2].set_hard_state(HardState(2, 0, 1))
    for i in (1, 2):
        net.restart(i)
    net.elect(1)
    rejects = [m for m in net.msgs_of(MsgType.APP_RESP, frm=2) if m.reject]
    assert 1 <= len(rejects) <= 2, f"{len(rejects)} rejections for one conflicting term"
    assert [e.term for e in net.raft(2).log.all_entries()][:2] == [1, 3]


@pytest.mark.parametrize("index,term,want", [
    (10, 3, (10, 3)), (10, 2, (5, 2)), (5, 1, (2, 1)), (10, 0, (0, 0)), (3, 2, (3, 2)),
])
def test_find_conflict_by_term(index, term, want):
    log = RaftLog(storage_with(ents(1, 1, 2, 2, 2, 3, 3, 3, 3, 3)))
    assert log.find_conflict_by_term(index, term) == want


def test_maybe_append_never_truncates_committed_entries():
    log = RaftLog(storage_with(ents(1, 1, 1)))
    log.commit_to(3)
    with pytest.raises(RaftError, match="committed"):
        log.maybe_append(1, 1, 3, [Entry(2, 2)])
    assert log.maybe_append(0, 0, 3, ents(1, 1, 1)) == (3, True)  # duplicates are fine
    assert log.maybe_append(3, 2, 3, []) == (0, False)            # log term mismatch


def test_follower_rejects_append_with_missing_predecessor():
    r = Raft(Config(id=2, storage=MemoryStorage(), peers=[1, 2]))
    r.step(Message(MsgType.APP, to=2, frm=1, term=1, index=5, log_term=1, entries=ents(1, start=6)))
    resp = r.msgs[-1]
    assert resp.type == MsgType.APP_RESP and resp.reject and resp.reject_hint == 0


def test_heartbeat_commit_is_capped_by_match():
    net = Net([1, 2, 3])
    net.elect(1)
    net.isolate(3)
    net.propose(1, b"x")
    net.hold = True
    net.tick(1)
    hbs = {m.to: m for m in net.outbox if m.type == MsgType.HEARTBEAT}
    r = net.raft(1)
    # 3 missed index 2: telling it commit=2 could make it "commit" an entry it lacks.
    assert r.prs.progress[3].match == 1 < r.log.committed == 2
    assert hbs[3].commit == 1 and hbs[2].commit == 2


# ---- flow control ----------------------------------------------------------------------

def test_inflight_window_bounds_messages_in_replicate_state():
    net = Net([1, 2], max_inflight_msgs=3)
    net.elect(1)
    assert net.raft(1).prs.progress[2].state == ProgressState.REPLICATE
    net.cut = {(2, 1)}  # acks are lost
    before = len(net.msgs_of(MsgType.APP, to=2))
    for k in range(10):
        net.propose(1, b"p%d" % k)
    apps = net.msgs_of(MsgType.APP, to=2)[before:]
    assert len(apps) == 3 and net.raft(1).prs.progress[2].inflights.full()


def test_heartbeat_response_frees_one_inflight_slot():
    pr = Progress(1, 2)
    pr.become_replicate()
    pr.inflights.add(1)
    pr.inflights.add(2)
    assert pr.is_paused()
    pr.inflights.free_first_one()
    assert not pr.is_paused()


def test_probe_state_sends_one_append_until_answered():
    net = Net([1, 2])
    net.elect(1)
    r = net.raft(1)
    r.prs.progress[2].become_probe()
    net.cut = {(2, 1)}
    before = len(net.msgs_of(MsgType.APP, to=2))
    for k in range(5):
        net.propose(1, b"p%d" % k)
    assert len(net.msgs_of(MsgType.APP, to=2)) - before == 1
    net.heal()
    net.tick(1)  # heartbeat response un-pauses the probe
    assert r.prs.progress[2].state == ProgressState.REPLICATE
    assert r.prs.progress[2].match == r.log.last_index()


def test_entries_are_batched_up_to_max_size():
    net = Net([1, 2], max_size_per_msg=3 * (24 + 10))
    net.elect(1)
    net.hold = True
    r = net.raft(1)
    r.prs.progress[2].become_probe()
    for k in range(10):
        net.nodes[1].propose(b"0123456789")
    net.handle_ready(1)
    net.outbox.clear()
    r.prs.progress[2].probe_sent = False
    r.send_append(2)
    m = r.msgs[-1]
    assert m.type == MsgType.APP and len(m.entries) == 3


def test_pipelining_sends_ahead_without_waiting():
    net = Net([1, 2], max_inflight_msgs=16)
    net.elect(1)
    net.cut = {(2, 1)}
    before = len(net.msgs_of(MsgType.APP, to=2))
    for k in range(5):
        net.propose(1, b"p%d" % k)
    assert len(net.msgs_of(MsgType.APP, to=2)) - before == 5
    assert net.raft(1).prs.progress[2].next == net.raft(1).log.last_index() + 1


def test_inflights_free_le():
    inf = Inflights(4)
    for i in (3, 6, 9):
        inf.add(i)
    inf.free_le(6)
    assert inf.count() == 1
    inf.free_le(100)
    assert inf.count() == 0


@pytest.mark.parametrize("state,rejected,hint,ok,next_after", [
    (ProgressState.REPLICATE, 4, 0, False, 11),  # stale rejection (<= match)
    (ProgressState.REPLICATE, 7, 0, True, 6),    # back to match + 1
    (ProgressState.PROBE, 9, 3, False, 11),      # not the outstanding probe
    (ProgressState.PROBE, 10, 3, True, 4),       # hint moves next back
])
def test_progress_maybe_decr_to(state, rejected, hint, ok, next_after):
    pr = Progress(11, 8)
    pr.match = 5
    pr.state = state
    assert pr.maybe_decr_to(rejected, hint) == ok
    assert pr.next == next_after


# ---- leadership transfer ---------------------------------------------------------------

def test_transfer_to_up_to_date_follower():
    net = Net([1, 2, 3])
    net.elect(1)
    net.nodes[1].transfer_leader(2)
    net.pump()
    assert net.raft(2).state == L and net.raft(1).state == F
    assert net.raft(2).term == 2


def test_transfer_to_lagging_follower_catches_it_up_first():
    net = Net([1, 2, 3])
    net.elect(1)
    net.isolate(3)
    for k in range(3):
        net.propose(1, b"x%d" % k)
    net.heal()
    net.nodes[1].transfer_leader(3)
    net.pump()
    assert net.raft(3).state == L
    assert net.raft(3).log.last_index() >= 5


def test_proposals_dropped_during_transfer_and_transfer_times_out():
    net = Net([1, 2, 3])
    net.elect(1)
    net.isolate(3)
    net.nodes[1].transfer_leader(3)
    net.pump()
    assert net.raft(1).lead_transferee == 3
    with pytest.raises(ProposalDroppedError):
        net.nodes[1].propose(b"x")
    net.tick(1, 10)
    assert net.raft(1).lead_transferee == 0 and net.raft(1).state == L
    net.propose(1, b"after")


def test_transfer_forwarded_from_follower():
    net = Net([1, 2, 3])
    net.elect(1)
    net.nodes[2].raft.step(Message(MsgType.TRANSFER_LEADER, frm=2))
    net.pump()
    assert net.raft(2).state == L


# ---- ReadIndex ---------------------------------------------------------------------------

def test_read_index_on_leader_needs_heartbeat_quorum():
    net = Net([1, 2, 3])
    net.elect(1)
    net.propose(1, b"x")
    net.isolate(1)
    net.nodes[1].read_index(b"r1")
    net.pump()
    assert net.read_states[1] == []  # no quorum confirmed leadership
    net.heal()
    net.nodes[1].read_index(b"r2")
    net.pump()
    ctxs = [rs.request_ctx for rs in net.read_states[1]]
    assert ctxs == [b"r1", b"r2"]
    assert all(rs.index == net.raft(1).log.committed for rs in net.read_states[1])


def test_read_index_from_follower():
    net = Net([1, 2, 3])
    net.elect(1)
    net.propose(1, b"x")
    net.nodes[3].read_index(b"f")
    net.pump()
    assert [(rs.request_ctx, rs.index) for rs in net.read_states[3]] == [(b"f", 2)]


def test_read_index_waits_for_commit_in_new_term():
    """A new leader's commit index may lag the old leader's until it commits an entry
    of its own term, so reads wait for that."""
    s = storage_with(ents(1, 1), HardState(1, 0, 1))
    r = Raft(Config(id=1, storage=s, peers=[1, 2, 3], pre_vote=False))
    r.become_candidate()
    r.become_leader()
    r.msgs.clear()
    r.step(Message(MsgType.READ_INDEX, frm=1, entries=[Entry(data=b"early")]))
    assert r.pending_read_index_msgs and not r.msgs and not r.read_states
    s.append(r.log.unstable_entries())
    r.persisted_to(3, 2)
    r.step(Message(MsgType.APP_RESP, to=1, frm=2, term=2, index=3))
    assert r.log.committed == 3 and not r.pending_read_index_msgs
    hb = [m for m in r.msgs if m.type == MsgType.HEARTBEAT and m.context == b"early"]
    assert {m.to for m in hb} == {2, 3}
    r.step(Message(MsgType.HEARTBEAT_RESP, to=1, frm=3, term=2, context=b"early"))
    assert [(rs.request_ctx, rs.index) for rs in r.read_states] == [(b"early", 3)]


def test_single_node_read_index_is_immediate():
    net = Net([1])
    net.nodes[1].campaign()
    net.pump()
    net.nodes[1].read_index(b"solo")
    net.pump()
    assert [rs.request_ctx for rs in net.read_states[1]] == [b"solo"]


# ---- snapshots ---------------------------------------------------------------------------

def compact_leader(net, i, keep=0):
    st = net.storage[i]
    applied = net.raft(i).log.applied
    st.create_snapshot(applied, net.raft(i).prs.conf_state(), b"state@%d" % applied)
    st.compact(applied - keep)


def test_lagging_follower_gets_a_snapshot():
    net = Net([1, 2, 3])
    net.elect(1)
    net.isolate(3)
    for k in range(10):
        net.propose(1, b"x%d" % k)
    compact_leader(net, 1)
    net.heal()
    net.tick_all(2)
    snaps = net.msgs_of(MsgType.SNAP, frm=1, to=3)
    assert len(snaps) == 1
    # The transport reports delivery; the leader then resumes normal replication.
    net.nodes[1].report_snapshot(3, ok=True)
    net.tick_all(2)
    assert net.storage[3].snapshot().metadata.index == snaps[0].snapshot.metadata.index
    assert net.raft(1).prs.progress[3].state == ProgressState.REPLICATE
    net.propose(1, b"after")
    net.tick_all(1)
    assert net.applied[3] == [b"after"]


def test_failed_snapshot_is_retried():
    net = Net([1, 2, 3])
    net.elect(1)
    net.isolate(3)
    for k in range(5):
        net.propose(1, b"x%d" % k)
    compact_leader(net, 1)
    net.cut = {(1, 3)}
    # The transport gives up on 3: probe from its match, which is compacted away.
    net.nodes[1].report_unreachable(3)
    net.propose(1, b"y")
    pr = net.raft(1).prs.progress[3]
    assert pr.state == ProgressState.SNAPSHOT
    net.nodes[1].report_snapshot(3, ok=False)
    assert pr.state == ProgressState.PROBE and pr.probe_sent
    net.heal()
    net.tick_all(3)
    assert len(net.msgs_of(MsgType.SNAP, frm=1, to=3)) >= 2


def test_snapshot_older_than_commit_is_ignored():
    s = storage_with(ents(1, 1, 1), HardState(1, 0, 3))
    r = Raft(Config(id=2, storage=s, peers=[1, 2]))
    from kvtrees.raft import Snapshot, SnapshotMetadata
    snap = Snapshot(b"", SnapshotMetadata(2, 1, ConfState([1, 2])))
    assert not r.restore(snap)
    assert r.log.last_index() == 3


def test_snapshot_matching_log_fast_forwards_commit():
    s = storage_with(ents(1, 1, 1), HardState(1, 0, 1))
    r = Raft(Config(id=2, storage=s, peers=[1, 2]))
    from kvtrees.raft import Snapshot, SnapshotMetadata
    assert not r.restore(Snapshot(b"", SnapshotMetadata(3, 1, ConfState([1, 2]))))
    assert r.log.committed == 3


# ---- membership ----------------------------------------------------------------------------

def test_learner_receives_log_but_does_not_vote_or_count():
    net = Net([1, 2], learners=[3])
    net.elect(1)
    net.propose(1, b"x")
    net.tick_all(1)
    assert net.applied[3] == [b"x"]
    assert not net.msgs_of(MsgType.VOTE, to=3) and not net.msgs_of(MsgType.PRE_VOTE, to=3)
    net.tick(3, 50)
    assert net.raft(3).state == F  # a learner never campaigns
    net.isolate(2)
    net.propose(1, b"y")
    assert net.raft(1).log.committed < net.raft(1).log.last_index()  # 1 + learner: no quorum


def test_add_learner_then_promote():
    net = Net([1, 2, 3])
    net.elect(1)
    net.add_node(4)
    net.nodes[1].propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, 4))
    net.pump()
    net.tick_all(2)
    assert 4 in net.raft(1).prs.learners and 4 in net.raft(4).prs.learners
    net.nodes[1].propose_conf_change(ConfChange(ConfChangeType.ADD_NODE, 4))
    net.pump()
    net.tick_all(2)
    assert net.raft(1).prs.voters == {1, 2, 3, 4} and net.raft(4).promotable()


def test_only_one_conf_change_at_a_time():
    net = Net([1, 2, 3])
    net.elect(1)
    net.hold = True
    net.nodes[1].propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, 4))
    net.nodes[1].propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, 5))
    types = [e.type for e in net.raft(1).log.unstable.entries[-2:]]
    assert types == [EntryType.CONF_CHANGE, EntryType.NORMAL]


def test_no_conf_change_before_leader_applies_its_own_term():
    net = Net([1, 2, 3])
    net.hold = True
    net.nodes[1].campaign()
    r = net.raft(1)
    r.become_candidate()
    r.become_leader()
    net.nodes[1].propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, 4))
    assert r.log.unstable.entries[-1].type == EntryType.NORMAL


def test_removed_leader_steps_down_and_rest_elect():
    net = Net([1, 2, 3])
    net.elect(1)
    net.nodes[1].propose_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, 1))
    net.pump()
    assert net.raft(1).state == F and not net.raft(1).promotable()
    for _ in range(60):
        net.tick_all(1)
        if any(net.raft(i).state == L for i in (2, 3)):
            break
    lead = [i for i in (2, 3) if net.raft(i).state == L]
    assert lead and net.raft(lead[0]).prs.voters == {2, 3}


def test_conf_change_validation():
    with pytest.raises(ConfChangeError):
        Net([1]).nodes[1].apply_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, 1))
    with pytest.raises(ConfChangeError):
        Net([1]).nodes[1].apply_conf_change(ConfChange(ConfChangeType.ADD_NODE, 0))
    with pytest.raises(RaftError):
        ConfChange.decode(b"\x00")
    with pytest.raises(RaftError):
        ConfChange.decode(b"\x09" + b"\x00" * 8)


def test_new_member_learns_founding_config_from_bootstrapped_log():
    stores = {i: MemoryStorage() for i in (1, 2, 3)}
    for s in stores.values():
        bootstrap(s, [1, 2, 3])
    net = Net([])
    net.ids, net.storage = [1, 2, 3], stores
    net.nodes = {i: RawNode(Config(id=i, storage=stores[i], rng=random.Random(i)))
                 for i in (1, 2, 3)}
    net.applied = {i: [] for i in (1, 2, 3)}
    net.read_states = {i: [] for i in (1, 2, 3)}
    net.pump()
    assert net.raft(1).prs.voters == {1, 2, 3}
    net.elect(1)
    net.add_node(4)
    net.nodes[1].propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, 4))
    net.pump()
    net.tick_all(3)
    assert net.raft(4).prs.voters == {1, 2, 3} and net.raft(4).prs.learners == {4}


# ---- restart, errors, storage ----------------------------------------------------------------

def test_restart_keeps_term_vote_log_and_commit():
    net = Net([1, 2, 3])
    net.elect(1)
    net.propose(1, b"x")
    net.tick_all(1)
    before = (net.raft(2).term, net.raft(2).vote, net.raft(2).log.committed,
              net.raft(2).log.last_index())
    net.restart(2)
    r = net.raft(2)
    assert (r.term, r.vote, r.log.committed, r.log.last_index()) == before
    assert r.state == F and r.lead == 0


def test_rawnode_rejects_local_messages_and_unknown_responders():
    n = RawNode(Config(id=1, storage=MemoryStorage(), peers=[1, 2]))
    with pytest.raises(StepLocalMsgError):
        n.step(Message(MsgType.HUP, frm=2, to=1))
    with pytest.raises(StepPeerNotFoundError):
        n.step(Message(MsgType.APP_RESP, frm=9, to=1, term=1))


@pytest.mark.parametrize("bad", [dict(id=0), dict(heartbeat_tick=0), dict(election_tick=1),
                                 dict(max_inflight_msgs=0), dict(max_size_per_msg=0)])
def test_config_validation(bad):
    kw = dict(id=1, storage=MemoryStorage(), peers=[1])
    kw.update(bad)
    with pytest.raises(RaftError):
        Raft(Config(**kw))


def test_hard_state_commit_below_snapshot_is_raised_to_it():
    s = MemoryStorage()
    from kvtrees.raft import Snapshot, SnapshotMetadata
    s.apply_snapshot(Snapshot(b"", SnapshotMetadata(5, 2, ConfState([1]))))
    s.set_hard_state(HardState(2, 0, 3))  # the crash lost the hard state after the snapshot
    r = Raft(Config(id=1, storage=s))
    assert r.log.committed == 5


def test_hard_state_commit_out_of_range_is_an_error():
    s = storage_with(ents(1), HardState(1, 0, 5))
    with pytest.raises(RaftError, match="commit"):
        Raft(Config(id=1, storage=s, peers=[1]))


def test_memory_storage_bounds_and_compaction():
    s = storage_with(ents(1, 1, 2, 2, 3))
    assert [e.index for e in s.entries(2, 5)] == [2, 3, 4]
    assert len(s.entries(1, 6, max_size=1)) == 1  # never empty
    s.create_snapshot(3, ConfState([1]), b"sm")
    s.compact(3)
    assert s.first_index() == 4 and s.term(3) == 2
    with pytest.raises(LogCompactedError):
        s.entries(3, 5)
    with pytest.raises(LogCompactedError):
        s.term(2)
    with pytest.raises(LogUnavailableError):
        s.term(6)
    s.append([Entry(4, 5, b"new"), Entry(4, 6, b"new")])  # replaces index 5
    assert [(e.index, e.term) for e in s.entries(4, 7)] == [(4, 2), (5, 4), (6, 4)]
    with pytest.raises(RaftError):
        s.append([Entry(4, 9)])  # gap


def test_raft_log_slices_across_stable_and_unstable():
    log = RaftLog(storage_with(ents(1, 1, 1)))
    log.append(ents(2, 2, start=4))
    assert [e.index for e in log.slice(2, 6)] == [2, 3, 4, 5]
    assert [e.index for e in log.slice(2, 6, max_size=2 * 26)] == [2, 3]
    log.stable_to(5, 2)
    assert log.unstable.offset == 6 and not log.unstable.entries
    log.append([Entry(3, 5)])  # conflict replaces 5 in unstable
    assert log.unstable.offset == 5 and log.last_term() == 3


def test_propose_batch_goes_out_in_one_append_per_follower():
    net = Net([1, 2, 3])
    net.elect(1)
    before = len(net.msgs_of(MsgType.APP, frm=1))
    net.nodes[1].propose_batch([b"a", b"b", b"c", b"d"])
    net.pump()
    apps = net.msgs_of(MsgType.APP, frm=1)[before:]
    with_entries = [m for m in apps if m.entries]
    assert len(with_entries) == 2 and all(len(m.entries) == 4 for m in with_entries)
    net.tick_all(1)
    assert all(net.applied[i] == [b"a", b"b", b"c", b"d"] for i in (1, 2, 3))


def test_new_member_after_compaction_gets_snapshot_with_membership():
    stores = {i: MemoryStorage() for i in (1, 2, 3)}
    for s in stores.values():
        bootstrap(s, [1, 2, 3])
    net = Net([])
    net.ids, net.storage = [1, 2, 3], stores
    net.nodes = {i: RawNode(Config(id=i, storage=stores[i], rng=random.Random(i)))
                 for i in (1, 2, 3)}
    net.applied = {i: [] for i in (1, 2, 3)}
    net.read_states = {i: [] for i in (1, 2, 3)}
    net.pump()
    net.elect(1)
    for k in range(5):
        net.propose(1, b"x%d" % k)
    net.add_node(4)
    net.nodes[1].propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, 4))
    net.pump()
    compact_leader(net, 1)  # the founding entries and the add are now only in the snapshot
    net.tick_all(3)
    snaps = net.msgs_of(MsgType.SNAP, frm=1, to=4)
    assert snaps and snaps[0].snapshot.metadata.conf_state == ConfState([1, 2, 3], [4])
    net.nodes[1].report_snapshot(4, ok=True)
    net.propose(1, b"after")
    net.tick_all(2)
    assert net.raft(4).prs.voters == {1, 2, 3} and net.applied[4] == [b"after"]


# ---- more cases from etcd-io/raft's list ---------------------------------------------------

@pytest.mark.parametrize("matches,log_terms,term,want", [
    ([1], [1], 1, 1),                 # single voter
    ([1], [1], 2, 0),                 # entry of an older term: not by count
    ([2, 1, 1], [1, 2], 2, 0),        # quorum match is 1, of term 1 != 2: not committed
    ([2, 1, 2], [1, 2], 2, 2),
    ([2, 1, 1, 2], [1, 2], 2, 0),     # 4 voters need 3
    ([2, 1, 2, 2], [1, 2], 2, 2),
    ([1, 1, 2, 2, 2], [1, 2], 2, 2),
])
def test_commit_table(matches, log_terms, term, want):
    s = storage_with(ents(*log_terms), HardState(term, 0, 0))
    ids = list(range(1, len(matches) + 1))
    r = Raft(Config(id=1, storage=s, peers=ids))
    for i, m in zip(ids, matches):
        r.prs.progress[i].match = m
    r.term = term
    r.maybe_commit()
    assert r.log.committed == want


def test_dueling_candidates_resolve():
    net = Net([1, 2, 3], pre_vote=False)
    net.cut = {(1, 3), (3, 1)}
    net.nodes[1].campaign()
    net.nodes[3].campaign()
    net.pump()
    assert net.raft(1).state == L and net.raft(3).state == C  # 2 voted for 1 first
    net.heal()
    net.tick_all(25)
    leaders = [i for i in (1, 2, 3) if net.raft(i).state == L]
    assert len(leaders) == 1
    assert len({net.raft(i).term for i in (1, 2, 3)}) == 1


def test_stuck_candidate_is_freed_with_check_quorum_and_prevote():
    """A node partitioned away keeps pre-campaigning without raising its term, so on
    rejoining it neither disrupts the leader nor stays stuck."""
    net = Net([1, 2, 3])
    net.elect(1)
    net.isolate(3)
    net.tick(3, 60)
    assert net.raft(3).term == 1
    net.heal()
    net.tick_all(5)
    assert net.raft(1).state == L and net.raft(3).state == F and net.raft(3).lead == 1


def test_old_term_messages_are_ignored():
    net = Net([1, 2, 3], pre_vote=False, check_quorum=False)
    net.elect(1)
    net.elect(2)
    net.elect(1)  # term 3
    stale = Message(MsgType.APP, to=1, frm=2, term=2, index=3, log_term=2,
                    entries=[Entry(2, 4, b"stale")])
    net.nodes[1].step(stale)
    net.pump()
    net.propose(1, b"fresh")
    net.tick_all(2)
    for i in (1, 2, 3):
        assert net.applied[i] == [b"fresh"]
        assert b"stale" not in [e.data for e in net.raft(i).log.all_entries()]


def test_campaign_while_leader_is_a_no_op():
    net = Net([1])
    net.nodes[1].campaign()
    net.pump()
    term = net.raft(1).term
    net.nodes[1].campaign()
    assert net.raft(1).state == L and net.raft(1).term == term


@pytest.mark.parametrize("commit,want", [(3, 3), (1, 2)])
def test_heartbeat_advances_commit_only(commit, want):
    s = storage_with(ents(1, 1, 1), HardState(1, 0, 2))
    r = Raft(Config(id=2, storage=s, peers=[1, 2]))
    r.step(Message(MsgType.HEARTBEAT, to=2, frm=1, term=1, commit=commit))
    assert r.log.committed == want
    assert r.msgs[-1].type == MsgType.HEARTBEAT_RESP


@pytest.mark.parametrize("index,log_term,commit,ents_terms,want_index,want_reject,want_commit", [
    (2, 3, 3, (), 2, True, 1),          # previous entry has another term
    (3, 3, 3, (), 3, True, 1),          # previous entry missing
    (1, 1, 1, (), 1, False, 1),
    (0, 0, 1, (2,), 1, False, 1),       # replaces index 1
    (2, 2, 3, (2, 2), 4, False, 3),
    (2, 2, 4, (2,), 3, False, 3),       # commit capped by the last new entry
    (1, 1, 4, (2,), 2, False, 2),       # conflicting suffix replaced
])
def test_handle_append_table(index, log_term, commit, ents_terms, want_index, want_reject,
                             want_commit):
    s = storage_with(ents(1, 2), HardState(2, 0, 1))
    r = Raft(Config(id=2, storage=s, peers=[1, 2]))
    new = [Entry(t, index + 1 + i) for i, t in enumerate(ents_terms)]
    r.step(Message(MsgType.APP, to=2, frm=1, term=2, index=index, log_term=log_term,
                   commit=commit, entries=new))
    resp = r.msgs[-1]
    assert (resp.index, resp.reject, r.log.committed) == (want_index, want_reject, want_commit)


def test_all_roles_step_down_on_higher_term():
    for make in ("follower", "pre", "candidate", "leader"):
        r = Raft(Config(id=1, storage=storage_with(ents(1)), peers=[1, 2, 3], pre_vote=False,
                        check_quorum=False))
        if make == "pre":
            r.become_pre_candidate()
        elif make in ("candidate", "leader"):
            r.become_candidate()
            if make == "leader":
                r.become_leader()
        r.step(Message(MsgType.APP, to=1, frm=2, term=9, index=1, log_term=1))
        assert (r.state, r.term, r.lead) == (F, 9, 2), make


def test_leader_steps_down_when_quorum_lost_but_not_when_active():
    net = Net([1, 2, 3])
    net.elect(1)
    net.tick_all(30)
    assert net.raft(1).state == L  # heartbeats answered: quorum active
    net.cut = {(2, 1), (3, 1)}      # it still sends, but hears nothing back
    net.tick(1, 21)
    assert net.raft(1).state == F


def test_demoting_a_voter_to_learner():
    net = Net([1, 2, 3])
    net.elect(1)
    net.nodes[1].propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, 3))
    net.pump()
    net.tick_all(2)
    for i in (1, 2, 3):
        assert net.raft(i).prs.voters == {1, 2} and net.raft(i).prs.learners == {3}
    assert not net.raft(3).promotable()
    net.isolate(3)  # a learner is not needed for a quorum
    net.propose(1, b"two-voters")
    assert net.applied[2] == [b"two-voters"]
    with pytest.raises(ConfChangeError):
        # Demoting every voter would leave no one to elect a leader.
        Net([1]).nodes[1].apply_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, 1))


# ---- a leader's connection closed (the transport's hint) -------------------------------

def test_leader_lost_elects_within_the_random_part_of_the_timeout():
    """Both followers saw the crashed leader's connections close: they drop the lease
    and one of them leads within half an election timeout (5 of 10 ticks), not the up
    to 10 more of a plain timeout."""
    net = Net([1, 2, 3])
    net.elect(1)
    net.isolate(1)
    for i in (2, 3):
        net.nodes[i].report_leader_lost(1)
        assert net.raft(i).lead == 0
    ticks = 0
    while not any(net.raft(i).state == L for i in (2, 3)):
        for i in (2, 3):
            net.nodes[i].tick()
        net.pump()
        ticks += 1
        assert ticks <= 5, "no leader within half an election timeout"
    assert {net.raft(i).term for i in (2, 3)} == {2}


def test_leader_lost_is_ignored_for_a_non_leader_and_cannot_disrupt():
    net = Net([1, 2, 3])
    net.elect(1)
    net.nodes[2].report_leader_lost(3)           # not its leader: nothing changes
    assert net.raft(2).lead == 1 and net.raft(2).election_elapsed == 0
    net.nodes[2].report_leader_lost(1)           # a spurious hint: 1 is alive
    net.tick(2, 10)                              # 2 pre-votes; 3 is in lease, 1 leads
    net.tick_all(3)
    assert net.raft(1).state == L and net.raft(1).term == 1
    assert net.raft(2).lead == 1 and net.raft(3).lead == 1
