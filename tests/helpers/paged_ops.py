"""The op sequence of the logged-pages tests: ascending put_many loads (whose full
leaves the B+tree logs by reference), then writes into those leaves in the same
checkpoint generation (overwrites, deletes of runs that merge leaves, more loads),
so recovery finds the logged pages exactly as logged only if they were never changed
in place. Each op is ("many", pairs) | ("put", k, v) | ("del", k)."""

import random

LOAD_BATCH = 300           # ~37 KiB per put_many: several full 4 KiB leaves each


def key(i: int) -> bytes:
    return b"k%09d" % i


def value(i: int, tag: int) -> bytes:
    return (b"%d/%d:" % (i, tag)).ljust(100, b"v")


def load_batches(n: int):
    """n ascending put_many batches, LOAD_BATCH keys each, tagged with their index."""
    return [[(key(i), value(i, b)) for i in range(b * LOAD_BATCH, (b + 1) * LOAD_BATCH)]
            for b in range(n)]


def paged_ops(seed: int, loads: int = 40):
    rng = random.Random(seed)
    ops = []
    n = 0
    for b in range(loads):
        ops.append(("many", [(key(i), value(i, b)) for i in range(n, n + LOAD_BATCH)]))
        n += LOAD_BATCH
        if b % 4 == 3:         # into leaves logged earlier in this generation
            for _ in range(20):
                i = rng.randrange(n)
                ops.append(("put", key(i), value(i, 1000 + b)))
            lo = rng.randrange(max(1, n - 200))
            for i in range(lo, lo + rng.randrange(20, 150)):
                ops.append(("del", key(i)))
    return ops


def apply_op(eng, op) -> None:
    if op[0] == "many":
        eng.put_many(op[1])
    elif op[0] == "put":
        eng.put(op[1], op[2])
    else:
        eng.delete(op[1])


def model_op(m: dict, op) -> None:
    """One op of a run ("many", pairs) / ("put", k, v) / ("delete", k) on the model."""
    if op[0] == "many":
        m.update(op[1])
    elif op[0] == "put":
        m[op[1]] = op[2]
    else:
        m.pop(op[1], None)


def model(ops) -> dict:
    m = {}
    for op in ops:
        model_op(m, op)
    return m
