"""RaftLog (stable storage + unstable tail) against a plain list model, by hypothesis
stateful testing: appends that replace suffixes, persisting prefixes of the unstable
tail, commit, apply, snapshot + compaction, and restarts from storage. Pure Raft core:
no store or engine is involved."""

from __future__ import annotations

from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kvtrees.raft import ConfState, Entry, LogCompactedError, MemoryStorage
from kvtrees.raft.log import RaftLog


class RaftLogMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.storage = MemoryStorage()
        self.log = RaftLog(self.storage)
        self.model = []        # model[i] = term of entry i + 1, as Raft sees the log
        self.stored = []       # the same for what storage holds (survives a restart)
        self.committed = 0
        self.applied = 0
        self.snap_index = 0
        self.term = 1

    @rule(n=st.integers(1, 6), back=st.integers(0, 4), bump=st.booleans())
    def append(self, n, back, bump):
        """Append n entries of the current term after index `start - 1` (a suffix
        past the commit may be replaced, as a follower does on a conflict)."""
        self.term += bump
        start = max(self.committed + 1, len(self.model) + 1 - back)
        ents = [Entry(self.term, start + i, b"%d" % (start + i)) for i in range(n)]
        self.log.append(ents)
        del self.model[start - 1:]
        self.model += [self.term] * n

    @rule(k=st.integers(0, 10))
    def persist(self, k):
        """The application writes a prefix of the unstable entries and says so."""
        ents = self.log.unstable_entries()[:k]
        if not ents:
            return
        self.storage.append(ents)
        self.log.stable_to(ents[-1].index, ents[-1].term)
        self.stored = self.model[:ents[-1].index]

    @rule(d=st.integers(0, 10))
    def commit(self, d):
        c = min(len(self.model), self.committed + d)
        self.log.commit_to(c)
        self.committed = max(self.committed, c)

    @rule()
    def apply_all(self):
        got = self.log.next_ents()
        assert [(e.index, e.term) for e in got] == [
            (i, self.model[i - 1]) for i in range(max(self.applied, self.log.first_index() - 1) + 1,
                                                   self.committed + 1)]
        if got:
            self.log.applied_to(got[-1].index)
            self.applied = got[-1].index

    def _snapshot_limit(self) -> int:
        """The newest applied index whose entry storage holds as Raft sees it: an
        application snapshots its state at an index it has persisted (the Ready contract
        persists entries before applying them), never at one whose stored entry a newer
        unstable one has replaced."""
        agree = 0
        while agree < min(len(self.stored), len(self.model)) and \
                self.stored[agree] == self.model[agree]:
            agree += 1
        return min(self.applied, agree)

    @precondition(lambda self: self._snapshot_limit() > self.snap_index)
    @rule(keep=st.integers(0, 3))
    def snapshot_and_compact(self, keep):
        at = self._snapshot_limit()
        self.storage.create_snapshot(at, ConfState([1]), b"s")
        self.snap_index = at
        if at - keep >= self.storage.first_index():
            self.storage.compact(at - keep)

    @precondition(lambda self: len(self.stored) >= self.committed)
    @rule()
    def restart(self):
        """Volatile state is lost: the log is rebuilt from storage alone."""
        self.log = RaftLog(self.storage)
        self.log.commit_to(self.committed)
        if self.applied >= self.log.first_index() - 1:
            self.log.applied_to(self.applied)
        self.model = list(self.stored)

    @invariant()
    def matches_model(self):
        log = self.log
        assert log.last_index() == len(self.model)
        first = log.first_index()
        assert first == self.storage.first_index()
        for i in range(first - 1, len(self.model) + 1):
            want = self.model[i - 1] if i else 0
            assert log.term(i) == want, i
        if first > 1:
            try:
                log.term(first - 2)
                raise AssertionError("compacted term answered")
            except LogCompactedError:
                pass
        ents = log.entries(first)
        assert [(e.index, e.term) for e in ents] == [(i, self.model[i - 1])
                                                     for i in range(first, len(self.model) + 1)]
        assert log.committed == self.committed


TestRaftLogModel = RaftLogMachine.TestCase
TestRaftLogModel.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
