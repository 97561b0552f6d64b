"""Stateful model test: random operation sequences against a SortedDict model.

One hypothesis RuleBasedStateMachine per engine. Steps: put, delete, batch (with or
without an exception that must discard it), get, bulk loads that grow the tree past
the small cache, range reads (forward/reverse, bounds inside, between and outside the
keys), reopen (close + open: everything must survive), checkpoint, and a full check()
in the teardown of every example. Sized for CI; the slow-marked soak runs far more
(--runslow or KVTREES_SLOW=1).
"""

from __future__ import annotations

import random
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition, rule,
                                 run_state_machine_as_test)
from sortedcontainers import SortedDict

import kvtrees
from conftest import ENGINES, engine_unavailable_reason, small_options

# Few distinct short keys so that operations collide; some long keys (up to the 4 KiB
# limit) so that pages split on few entries; values from empty to overflow-sized.
short_keys = st.binary(min_size=1, max_size=3).map(lambda b: bytes(x % 8 + 0x61 for x in b))
long_keys = st.builds(lambda c, n: bytes([c]) * n, st.integers(0x61, 0x68),
                      st.sampled_from([100, 1000, 4096]))
keys = st.one_of(short_keys, short_keys, short_keys, long_keys)
values = st.one_of(st.binary(max_size=20), st.binary(max_size=20),
                   st.builds(lambda c, n: bytes([c]) * n, st.integers(0, 255),
                             st.sampled_from([0, 500, 3000, 9000, 70_000])))
bounds = st.one_of(st.none(), short_keys)


class Discard(Exception):
    """Raised inside a batch block to check that the batch is thrown away."""


class EngineMachine(RuleBasedStateMachine):
    engine = "btree"

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix=f"kvt-model-{self.engine}-")
        self.path = self.dir + "/db"
        self.model = SortedDict()
        self.eng = None

    def open(self) -> None:
        self.eng = kvtrees.open_engine(self.path, engine=self.engine,
                                       **small_options(self.engine, sync="none"))

    @initialize()
    def start(self) -> None:
        self.open()

    # ---- writes -------------------------------------------------------------------
    @rule(k=keys, v=values)
    def put(self, k, v):
        self.eng.put(k, v)
        self.model[k] = v

    @rule(k=keys)
    def delete(self, k):
        existed = self.eng.delete(k)
        assert existed == (k in self.model)
        self.model.pop(k, None)

    @rule(ops=st.lists(st.tuples(st.booleans(), keys, values), min_size=0, max_size=20),
          fail=st.booleans())
    def batch(self, ops, fail):
        shadow = dict()
        try:
            with self.eng.batch() as b:
                for is_put, k, v in ops:
                    if is_put:
                        b.put(k, v)
                        shadow[k] = v
                    else:
                        b.delete(k)
                        shadow[k] = None
                if fail:
                    raise Discard()
        except Discard:
            return
        for k, v in shadow.items():
            if v is None:
                self.model.pop(k, None)
            else:
                self.model[k] = v

    @rule(seed=st.integers(0, 2**32 - 1), n=st.sampled_from([200, 1500]),
          sequential=st.booleans(), delete=st.booleans())
    def bulk(self, seed, n, sequential, delete):
        """Grow (or shrink) the tree by many keys at once: splits, merges, evictions."""
        rng = random.Random(seed)
        base = rng.randrange(1000)
        with self.eng.batch() as b:
            for i in range(n):
                j = base + i if sequential else rng.randrange(5000)
                k = b"bulk%06d" % j
                if delete:
                    b.delete(k)
                    self.model.pop(k, None)
                else:
                    v = bytes([j % 256]) * rng.randrange(0, 64)
                    b.put(k, v)
                    self.model[k] = v

    @precondition(lambda self: len(self.model) > 0)
    @rule(data=st.data())
    def delete_range_of_existing(self, data):
        """Delete a run of existing keys (drives merges after bulk loads)."""
        i = data.draw(st.integers(0, len(self.model) - 1))
        n = data.draw(st.integers(1, 400))
        victims = list(self.model.islice(i, i + n))
        with self.eng.batch() as b:
            for k in victims:
                b.delete(k)
        for k in victims:
            del self.model[k]

    # ---- reads --------------------------------------------------------------------
    @rule(k=keys)
    def get(self, k):
        assert self.eng.get(k) == self.model.get(k)

    @precondition(lambda self: len(self.model) > 0)
    @rule(data=st.data())
    def get_existing(self, data):
        k = self.model.peekitem(data.draw(st.integers(0, len(self.model) - 1)))[0]
        assert self.eng.get(k) == self.model[k]

    @rule(start=bounds, end=bounds, reverse=st.booleans(), limit=st.sampled_from([None, 5]))
    def items(self, start, end, reverse, limit):
        exp = list(self.model.irange(start, end, inclusive=(True, False), reverse=reverse))
        it = self.eng.items(start, end, reverse=reverse)
        if limit is None:
            got = list(it)
            assert [k for k, _ in got] == exp
            assert all(v == self.model[k] for k, v in got)
        else:                       # a partially consumed iterator, then dropped
            got = [next(it, None) for _ in range(limit)]
            want = [(k, self.model[k]) for k in exp[:limit]]
            assert got == want + [None] * (limit - len(want))

    @rule(reverse=st.booleans())
    def keys_values(self, reverse):
        ks = list(self.model.keys())
        if reverse:
            ks.reverse()
        assert list(self.eng.keys(reverse=reverse)) == ks
        assert list(self.eng.values(reverse=reverse)) == [self.model[k] for k in ks]

    # ---- durability steps ----------------------------------------------------------
    @rule()
    def reopen(self):
        self.eng.close()
        self.open()
        assert list(self.eng.items()) == list(self.model.items())

    @rule()
    def checkpoint(self):
        self.eng.checkpoint()

    @rule()
    def check(self):
        self.eng.check()

    @invariant()
    def open_and_usable(self):
        assert self.eng is not None and not self.eng.closed

    def teardown(self):
        try:
            if self.eng is not None and not self.eng.closed:
                self.eng.check()
                assert list(self.eng.items()) == list(self.model.items())
                self.eng.close()
                self.open()            # and the final state survives a reopen
                assert list(self.eng.items()) == list(self.model.items())
                self.eng.check()
        finally:
            if self.eng is not None:
                self.eng.close()
            shutil.rmtree(self.dir, ignore_errors=True)


MODEL_SETTINGS = settings(
    max_examples=50,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SOAK_SETTINGS = settings(MODEL_SETTINGS, max_examples=1000, stateful_step_count=150)


def _machine_for(engine: str):
    return type(f"EngineMachine_{engine}", (EngineMachine,), {"engine": engine})


@pytest.mark.parametrize("soak", [False, pytest.param(True, marks=pytest.mark.slow)],
                         ids=["ci", "soak"])
@pytest.mark.parametrize("engine_name", ENGINES)
def test_engine_matches_model(engine_name, soak):
    reason = engine_unavailable_reason(engine_name)
    if reason:
        pytest.skip(reason)
    run_state_machine_as_test(_machine_for(engine_name),
                              settings=SOAK_SETTINGS if soak else MODEL_SETTINGS)
