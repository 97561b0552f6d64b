"""Deterministic simulation of 3- and 5-member Raft clusters under faults.

Each run is seeded; Raft's safety properties are checked after every step by
``helpers.raft_sim.Checker`` (see that module). The default run takes well over 10^6
steps in total (a step is one message delivery or one tick of one node);
``--runslow`` multiplies the number of seeds. A run that fails prints its seed:
``Cluster(size, seed).run(steps)`` replays it exactly.

No store or engine is involved: the Raft core is pure, its "disk" is a MemoryStorage.
"""

from __future__ import annotations

import pytest

from conftest import is_slow
from helpers.raft_sim import Cluster, Faults, SafetyViolation
import kvtrees.raft.log as raft_log
import kvtrees.raft.node as raft_node

STEPS_PER_RUN = 100_000
SEEDS = range(24 if is_slow() else 6)

PROFILES = {
    # The default mix: some loss, duplication, reordering, crashes, partitions, churn.
    "mixed": Faults(),
    # Heavy loss and frequent crashes (half of them torn in the middle of a Ready).
    "crashy": Faults(drop=0.1, crash=0.03, restart=0.15, partition=0.02, heal=0.05,
                     propose=0.5, snapshot_every=20),
}


def settle_and_check_convergence(c: Cluster) -> None:
    """After faults stop, the cluster must have made progress and every current member
    must reach the same applied index and state."""
    c.heal_and_settle()
    members = c.members()
    assert members, "no leader after healing the cluster"
    states = {(c.nodes[i].sm_index, c.nodes[i].sm_hash) for i in members}
    assert len(states) == 1, f"members diverge after healing: {states}"
    assert c.checker.max_applied > 100, "the cluster made (almost) no progress"


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("size", [3, 5])
@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_safety_under_faults(profile, size, seed):
    c = Cluster(size, seed=1000 * size + seed, faults=PROFILES[profile])
    c.run(STEPS_PER_RUN)
    # The run must exercise what it claims to (otherwise it proves nothing).
    assert len(c.checker.leader_of_term) > 1
    assert c.crashes > 0 and c.cc_done > 0
    if profile == "crashy":
        assert c.snapshots_sent > 0 and c.torn_crashes > 0
    settle_and_check_convergence(c)


@pytest.mark.slow
@pytest.mark.parametrize("size", [3, 5])
def test_long_soak(size):
    """One long run per size (1M steps each), behind --runslow."""
    c = Cluster(size, seed=77 + size, faults=PROFILES["mixed"])
    c.run(1_000_000)
    settle_and_check_convergence(c)


def test_same_seed_same_run():
    a, b = Cluster(3, seed=7), Cluster(3, seed=7)
    a.run(20_000)
    b.run(20_000)
    assert (a.now, a.checker.max_applied, a.checker.leader_of_term) == \
        (b.now, b.checker.max_applied, b.checker.leader_of_term)


def test_fault_free_run_commits_every_proposal():
    calm = Faults(drop=0, duplicate=0, max_delay=1.0, late=0, crash=0, restart=0, partition=0,
                  heal=0, propose=0.5, read=0.1, transfer=0, conf_change=0)
    c = Cluster(3, seed=1, faults=calm)
    c.run(30_000)
    c.heal_and_settle(50)
    # Founding conf changes (3) and one empty entry per term precede the proposals.
    data = {c.checker.applied_at[i][1] for i in range(1, c.checker.max_applied + 1)}
    assert len(c.accepted) > c.proposed * 0.9
    assert set(c.accepted) <= data
    assert len(c.checker.leader_of_term) == 1
    assert c.reads_served > 0


# ---- the checker catches broken Raft rules (mutations) --------------------------------

def _first_violation(monkeypatch, target, name, replacement, size=3, seeds=range(4)):
    monkeypatch.setattr(target, name, replacement)
    for seed in seeds:
        c = Cluster(size, seed=seed)
        try:
            c.run(STEPS_PER_RUN)
        except SafetyViolation as e:
            return str(e)
    return None


def test_checker_catches_votes_for_stale_logs(monkeypatch):
    """Granting votes without the up-to-date check (§5.4.1) loses committed entries."""
    msg = _first_violation(monkeypatch, raft_log.RaftLog, "is_up_to_date",
                           lambda self, lasti, term: True)
    assert msg is not None and ("leader completeness" in msg or "state machine" in msg
                                or "log matching" in msg)


def test_checker_catches_double_votes(monkeypatch):
    """Forgetting the vote before every request allows two leaders in one term."""
    orig = raft_node.Raft._handle_vote_request

    def forgetful(self, m):
        self.vote = 0
        orig(self, m)

    msg = _first_violation(monkeypatch, raft_node.Raft, "_handle_vote_request", forgetful)
    assert msg is not None and "election safety" in msg


# ---- the same simulation on the durable file log -----------------------------------------

@pytest.mark.parametrize("seed", range(2))
def test_safety_on_file_log_with_crash_recovery(tmp_path, seed):
    """Every restart reopens the node's log from its directory (recovery runs each
    time); torn crashes leave half-written records at the end of the file."""
    from kvtrees.raft.filelog import FileIO, FileLogStorage
    opened = []

    class NoSync(FileIO):
        # Crashes here are simulated, not real power cuts: the fsync itself adds only
        # waiting time (tests/test_raft_filelog.py covers its failure).
        fsync = staticmethod(lambda fd: None)

    def open_disk(node_id):
        s = FileLogStorage(str(tmp_path / f"n{node_id}"), io=NoSync())
        opened.append(s)
        return s

    faults = Faults(crash=0.01, restart=0.1, torn_crash=0.7, snapshot_every=25)
    c = Cluster(3, seed=500 + seed, faults=faults, open_disk=open_disk)
    c.run(30_000)
    assert c.crashes > 3 and len(opened) > len(c.nodes)  # restarts really reopened logs
    assert c.torn_files > 0  # and some found a half-written record at the end
    settle_and_check_convergence(c)
    for n in c.nodes.values():
        n.disk.close()


def test_checker_catches_read_index_without_leadership_check(monkeypatch):
    """Answering ReadIndex at once (no heartbeat quorum) lets a deposed leader serve
    stale reads."""
    def answer_at_once(self, m):
        self._answer_read(m, self.log.committed)

    msg = _first_violation(monkeypatch, raft_node.Raft, "_leader_read_index", answer_at_once)
    assert msg is not None and "read index" in msg
