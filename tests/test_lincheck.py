"""The linearizability checker (kvtrees.lincheck).

Hand-made histories with known answers; agreement with a brute-force search over all
orders on thousands of small random histories; randomized concurrent histories
produced by a sequential model (must be accepted) and the same with injected
anomalies that no order can explain (must be rejected). Pure Python, no store or
engine involved.
"""

from __future__ import annotations

import itertools
import math
import random
import threading

import pytest

from kvtrees.lincheck import UNKNOWN, History, KVModel, Operation, Verdict, check_kv

INF = math.inf


def op(kind, key, inp, out, call, ret, client=0):
    return Operation(client, kind, key, inp, out, call, ret)


def put(k, v, call, ret, c=0):
    return op("put", k, v, None, call, ret, c)


def get(k, out, call, ret, c=0):
    return op("get", k, None, out, call, ret, c)


# ---- hand-made -----------------------------------------------------------------------

LINEARIZABLE = {
    "empty": [],
    "sequential": [put("k", 1, 0, 1), get("k", 1, 2, 3), put("k", 2, 4, 5), get("k", 2, 6, 7)],
    "read of absent key": [get("k", None, 0, 1), put("k", 1, 2, 3)],
    "concurrent read sees old": [put("k", 1, 0, 1), put("k", 2, 2, 6), get("k", 1, 3, 4)],
    "concurrent read sees new": [put("k", 1, 0, 1), put("k", 2, 2, 6), get("k", 2, 3, 4)],
    "overlapping writers, reads agree": [put("k", 1, 0, 10, 1), put("k", 2, 0, 10, 2),
                                         get("k", 2, 11, 12), get("k", 2, 13, 14)],
    "touching intervals are concurrent": [put("k", 1, 0, 5), get("k", None, 5, 6)],
    "unknown write may take effect": [put("k", 1, 0, 1), put("k", 2, 2, INF),
                                      get("k", 2, 5, 6)],
    "unknown write may never happen": [put("k", 1, 0, 1), put("k", 2, 2, INF),
                                       get("k", 1, 5, 6)],
    "cas chain": [put("k", 0, 0, 1), op("cas", "k", (0, 1), True, 2, 3),
                  op("cas", "k", (0, 2), False, 4, 5), get("k", 1, 6, 7)],
    "delete": [put("k", 1, 0, 1), op("delete", "k", None, True, 2, 3),
               op("delete", "k", None, False, 4, 5), get("k", None, 6, 7)],
    "independent keys": [put("a", 1, 0, 10), get("b", None, 1, 2), get("a", 1, 11, 12)],
}

NOT_LINEARIZABLE = {
    "stale read after write returned": [put("k", 1, 0, 1), put("k", 2, 2, 3),
                                        get("k", 1, 4, 5)],
    "value never written": [put("k", 1, 0, 1), get("k", 7, 2, 3)],
    "new then old (inversion)": [put("k", 1, 0, 1), put("k", 2, 2, 10),
                                 get("k", 2, 3, 4), get("k", 1, 5, 6)],
    "read before write started": [get("k", 1, 0, 1), put("k", 1, 2, 3)],
    "two successful cas from one state": [put("k", 0, 0, 1),
                                          op("cas", "k", (0, 1), True, 2, 5, 1),
                                          op("cas", "k", (0, 2), True, 2, 5, 2)],
    "unknown write seen then unseen": [put("k", 1, 0, 1), put("k", 2, 2, INF),
                                       get("k", 2, 3, 4), get("k", 1, 5, 6)],
    "delete of absent key claims success": [op("delete", "k", None, True, 0, 1)],
    "one bad key among good ones": [put("a", 1, 0, 1), get("a", 1, 2, 3),
                                    put("b", 1, 0, 1), put("b", 2, 2, 3), get("b", 1, 4, 5)],
}


@pytest.mark.parametrize("name", sorted(LINEARIZABLE))
def test_hand_made_linearizable(name):
    r = check_kv(LINEARIZABLE[name])
    assert r.verdict == Verdict.OK, r


@pytest.mark.parametrize("name", sorted(NOT_LINEARIZABLE))
def test_hand_made_not_linearizable(name):
    r = check_kv(NOT_LINEARIZABLE[name])
    assert r.verdict == Verdict.ILLEGAL, r
    assert r.stuck_at is not None


def test_failing_key_is_named():
    r = check_kv(NOT_LINEARIZABLE["one bad key among good ones"])
    assert r.key == "b"


def test_step_budget_gives_unknown():
    # Many fully concurrent writes and reads with no answer: the search must explore.
    ops = [put("k", i, 0, 100, i) for i in range(12)] + [get("k", 99, 0, 100, 50)]
    r = check_kv(ops, max_steps=50)
    assert r.verdict == Verdict.UNKNOWN
    assert check_kv(ops).verdict == Verdict.ILLEGAL


def test_bad_interval_is_rejected():
    with pytest.raises(ValueError):
        check_kv([put("k", 1, 5, 4)])


# ---- agreement with brute force ------------------------------------------------------

def brute_force(ops):
    """Try every order consistent with real time. Exponential: tiny histories only."""
    model = KVModel()
    for key, part in model.partition(ops).items():
        if not any(_legal_order(model, p) for p in itertools.permutations(part)):
            return False
    return True


def _legal_order(model, order):
    for i, a in enumerate(order):
        for b in order[i + 1:]:
            if b.ret < a.call:
                return False  # b finished before a started, yet comes after it
    state = model.init()
    for o in order:
        ok, state = model.step(state, o)
        if not ok:
            return False
    return True


def random_small_history(rng):
    ops = []
    for c in range(rng.randrange(1, 7)):
        call = rng.randrange(0, 10)
        ret = INF if rng.random() < 0.1 else call + rng.randrange(0, 6)
        kind = rng.choice(["put", "get", "get", "delete", "cas"])
        val = rng.randrange(3)
        if kind == "put":
            ops.append(op("put", "k", val, None, call, ret, c))
        elif kind == "get":
            out = UNKNOWN if ret == INF else rng.choice([None, 0, 1, 2])
            ops.append(op("get", "k", None, out, call, ret, c))
        elif kind == "delete":
            out = UNKNOWN if ret == INF else rng.random() < 0.5
            ops.append(op("delete", "k", None, out, call, ret, c))
        else:
            out = UNKNOWN if ret == INF else rng.random() < 0.5
            ops.append(op("cas", "k", (rng.choice([None, 0, 1]), val), out, call, ret, c))
    return ops


def test_agrees_with_brute_force_on_small_random_histories():
    rng = random.Random(11)
    outcomes = {True: 0, False: 0}
    for _ in range(3000):
        ops = random_small_history(rng)
        want = brute_force(ops)
        got = check_kv(ops)
        assert got.ok == want, (ops, got)
        outcomes[want] += 1
    assert min(outcomes.values()) > 300  # both answers are well represented


# ---- randomized histories from a sequential model ------------------------------------

def generate(rng, n_ops=400, clients=6, keys=3):
    """A concurrent history whose every operation takes effect atomically at a random
    point inside its interval, in the order of those points: linearizable by
    construction. Values written are unique."""
    pending = []
    t = [0.0] * clients
    for i in range(n_ops):
        c = rng.randrange(clients)
        call = t[c] + rng.random()
        ret = call + rng.random() * 3
        t[c] = ret
        point = rng.uniform(call, ret)
        kind = rng.choice(["put", "get", "get", "delete", "cas"])
        pending.append((point, i, c, kind, "k%d" % rng.randrange(keys), call, ret))
    store, ops, next_val = {}, [], [0]

    def fresh():
        next_val[0] += 1
        return next_val[0]

    for point, i, c, kind, key, call, ret in sorted(pending):
        cur = store.get(key)
        if kind == "put":
            v = fresh()
            store[key] = v
            ops.append(op("put", key, v, None, call, ret, c))
        elif kind == "get":
            ops.append(op("get", key, None, cur, call, ret, c))
        elif kind == "delete":
            store.pop(key, None)
            ops.append(op("delete", key, None, cur is not None, call, ret, c))
        else:
            expected = cur if rng.random() < 0.6 else -1
            v = fresh()
            swapped = cur == expected
            if swapped:
                store[key] = v
            ops.append(op("cas", key, (expected, v), swapped, call, ret, c))
    rng.shuffle(ops)  # the checker must not depend on input order
    return ops


@pytest.mark.parametrize("seed", range(20))
def test_generated_histories_are_accepted(seed):
    ops = generate(random.Random(seed))
    r = check_kv(ops)
    assert r.ok, r


def with_unknown_outcomes(rng, ops, share=0.1):
    """Make some operations time out: their result is lost and they never return."""
    out = []
    for o in ops:
        if rng.random() < share:
            o = Operation(o.client, o.kind, o.key, o.input, UNKNOWN, o.call, INF)
        out.append(o)
    return out


@pytest.mark.parametrize("seed", range(10))
def test_generated_histories_with_timeouts_are_accepted(seed):
    rng = random.Random(100 + seed)
    r = check_kv(with_unknown_outcomes(rng, generate(rng)))
    assert r.ok, r


def inject_stale_read(rng, ops):
    """Replace one get's result by a value that was overwritten before the get began:
    put(v) returned before put(w) was called, which returned before the get was
    called. With unique values no order can explain it."""
    puts = sorted((o for o in ops if o.kind == "put"), key=lambda o: o.call)
    gets = [o for o in ops if o.kind == "get"]
    rng.shuffle(gets)
    for g in gets:
        for q in puts:
            if q.key != g.key or q.ret >= g.call:
                continue
            later = [p for p in puts if p.key == g.key and p.call > q.ret and p.ret < g.call]
            if later:
                bad = Operation(g.client, "get", g.key, None, q.input, g.call, g.ret)
                return [bad if o is g else o for o in ops]
    return None


def inject_phantom(rng, ops):
    g = rng.choice([o for o in ops if o.kind == "get"])
    bad = Operation(g.client, "get", g.key, None, -42, g.call, g.ret)
    return [bad if o is g else o for o in ops]


def inject_lost_write_at_quiescence(rng, ops):
    """After everything returned: a put, then a read that does not see it."""
    end = max(o.ret for o in ops) + 1
    key = rng.choice([o.key for o in ops])
    return ops + [put(key, -7, end, end + 1, 99), get(key, None, end + 2, end + 3, 98)]


def inject_double_cas(rng, ops):
    """After everything returned: two concurrent CAS from the same value both succeed."""
    end = max(o.ret for o in ops) + 1
    key = rng.choice([o.key for o in ops])
    return ops + [put(key, -1, end, end + 1, 97),
                  op("cas", key, (-1, -2), True, end + 2, end + 4, 96),
                  op("cas", key, (-1, -3), True, end + 2, end + 4, 95)]


INJECTIONS = {"stale read": inject_stale_read, "phantom value": inject_phantom,
              "lost write": inject_lost_write_at_quiescence, "double cas": inject_double_cas}


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("anomaly", sorted(INJECTIONS))
def test_injected_anomalies_are_rejected(anomaly, seed):
    rng = random.Random(seed)
    base = generate(rng)
    assert check_kv(base).ok
    bad = INJECTIONS[anomaly](rng, base)
    assert bad is not None, "the generator gave no place to inject this anomaly"
    r = check_kv(bad)
    assert r.verdict == Verdict.ILLEGAL, r


# ---- the recorder ----------------------------------------------------------------------

def test_history_recorder_with_threads():
    h = History()
    store, lock = {}, threading.Lock()

    def client(c):
        rng = random.Random(c)
        for i in range(200):
            key = "k%d" % rng.randrange(2)
            if rng.random() < 0.5:
                v = c * 1000 + i
                oid = h.invoke(c, "put", key, v)
                with lock:
                    store[key] = v
                h.complete(oid, None)
            else:
                oid = h.invoke(c, "get", key)
                with lock:
                    v = store.get(key)
                h.complete(oid, v)
        h.invoke(c, "put", "k0", -c)  # never completes: unknown outcome

    threads = [threading.Thread(target=client, args=(c,)) for c in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ops = h.operations()
    assert len(ops) == 4 * 201
    assert sum(1 for o in ops if o.ret == INF) == 4
    assert check_kv(ops).ok
