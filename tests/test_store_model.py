"""Hypothesis stateful test: the store against tests/etcd_model.py (put, delete, range
delete, txn, compact, range at a past revision, watch replay), on every engine."""

import itertools
import shutil
import tempfile

import pytest
from hypothesis import settings, HealthCheck
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from etcd_model import EtcdModel, ModelCompacted, load_kvtrees, open_store

kvtrees, ENGINES = load_kvtrees()
KEYS = st.sampled_from([b"a", b"a\x00", b"b", b"b/1", b"c"])
VALUES = st.binary(max_size=8)
_dirs = itertools.count()


def machine_for(engine):
    class StoreVsModel(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.tmp = tempfile.mkdtemp(prefix="kvt-model-")
            self.path = "%s/%d" % (self.tmp, next(_dirs))
            self.db = open_store(engine, self.path)
            self.m = EtcdModel()

        def teardown(self):
            self.db.check()
            self.db.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

        @rule(k=KEYS, v=VALUES)
        def put(self, k, v):
            r = self.db.put(k, v)
            self.m.apply([("put", k, v)])
            assert r.revision == self.m.rev

        @rule(k=KEYS)
        def delete(self, k):
            assert self.db.delete(k) == self.m.apply([("delete", k, None)])

        @rule(s=KEYS, e=KEYS)
        def delete_range(self, s, e):
            r = self.db.delete_range(s, e)
            self.m.apply([("delete", s, e)])
            assert r.revision == self.m.rev

        @rule(k=KEYS, k2=KEYS, v=VALUES, ver=st.integers(0, 3))
        def txn(self, k, k2, v, ver):
            t = self.db.transactions
            cur = self.m.get(k)
            holds = (cur[4] if cur else 0) == ver
            ops = [t.put(k, v)] + ([t.delete(k2)] if k2 != k else [])
            ok, _ = self.db.transaction([t.version(k) == ver], ops, [t.get(k2)])
            assert ok == holds
            if holds:
                self.m.apply([("put", k, v)] + ([("delete", k2, None)] if k2 != k else []))

        @rule(data=st.data())
        def compact(self, data):
            if self.m.rev <= self.m.compact_rev:
                return
            rev = data.draw(st.integers(self.m.compact_rev + 1, self.m.rev))
            self.db.compact(rev)
            self.m.compact(rev)

        @rule(data=st.data())
        def range_at_revision(self, data):
            rev = data.draw(st.integers(max(1, self.m.compact_rev), self.m.rev))
            got = [(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version)
                   for kv in self.db.range(b"\x00", b"\x00", revision=rev).kvs]
            assert got == self.m.range(b"\x00", None, rev)

        @rule(data=st.data(), k=KEYS)
        def get_at_revision(self, data, k):
            # point reads go through the store's head cache (newest revision per key) when
            # they can: current and past revisions must both match the model
            rev = data.draw(st.one_of(st.none(), st.integers(max(1, self.m.compact_rev),
                                                             self.m.rev)))
            value, kv = self.db.get(k, revision=rev)
            want = self.m.get(k, rev)
            got = None if kv is None else (kv.key, value, kv.create_revision,
                                           kv.mod_revision, kv.version)
            assert got == want

        @rule(k=KEYS, v=VALUES, stale=st.booleans())
        def txn_mod_compare(self, k, v, stale):
            # Kubernetes' GuaranteedUpdate: put if mod_revision(k) is what we last saw
            t = self.db.transactions
            cur = self.m.get(k)
            mod = (cur[3] if cur else 0) + (1 if stale else 0)
            ok, resp = self.db.transaction([t.mod(k) == mod], [t.put(k, v, prev_kv=True)],
                                           [t.get(k)])
            assert ok == (not stale)
            if ok:
                self.m.apply([("put", k, v)])
                prev = resp[0].prev_kv
                assert (None if prev is None else (prev.key, prev.value, prev.create_revision,
                                                   prev.mod_revision, prev.version)) == cur
            else:
                assert [(kv.key, val) for val, kv in resp[0]] == \
                    ([(k, cur[1])] if cur else [])

        @rule(data=st.data(), prefix=st.sampled_from([b"a", b"b", b"b/"]))
        def watch_replay(self, data, prefix):
            start = data.draw(st.integers(max(1, self.m.compact_rev), self.m.rev + 1))
            end = kvtrees.store.mvcc.prefix_end(prefix)
            want = self.m.events(prefix, end, start)
            events, cancel = self.db.watch_prefix(prefix, start_revision=start)
            got = []
            for _ in want:
                e = events.get(2)
                kind = "put" if isinstance(e, kvtrees.store.PutEvent) else "delete"
                got.append((kind, e.key, e.value, e.mod_revision))
            cancel()
            assert got == want

        @precondition(lambda self: self.m.compact_rev > 1)
        @rule()
        def read_below_compaction_fails(self):
            with pytest.raises(kvtrees.CompactedError):
                self.db.get(b"a", revision=self.m.compact_rev - 1)

        @rule()
        def reopen(self):
            h = self.db.hash_kv()
            self.db.close()
            self.db = open_store(engine, self.path)
            assert self.db.hash_kv() == h and self.db.revision == self.m.rev

        @invariant()
        def same_revision(self):
            assert self.db.revision == self.m.rev

    return StoreVsModel


@pytest.mark.parametrize("engine", ENGINES)
def test_store_matches_model(engine):
    machine = machine_for(engine)
    machine.TestCase.settings = settings(max_examples=25, stateful_step_count=40,
                                         deadline=None,
                                         suppress_health_check=list(HealthCheck))
    machine.TestCase().runTest()
