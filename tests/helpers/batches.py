"""The numbered-batch workload shared by the crash and corruption tests.

Batch i puts KEYS_PER_BATCH keys b"b%08d/%02d" tagged with i, sets b"last" = i and,
when i % 5 == 0, deletes the tagged keys of batch i - DELETE_LAG. So after any crash the
only correct states are "batches 1..L applied, nothing else", L = int(get(b"last")).
"""

import random

KEYS_PER_BATCH = 6
DELETE_LAG = 3


def batch_keys(i: int):
    return [b"b%08d/%02d" % (i, j) for j in range(KEYS_PER_BATCH)]


def batch_value(i: int, j: int, rng: random.Random) -> bytes:
    # Tagged with the id; sometimes long enough to need overflow pages / big messages.
    pad = rng.choice([0, 10, 100, 1000, 6000])
    return b"%d:%d:" % (i, j) + b"p" * pad


def deleted_by(i: int):
    """Ids whose keys batch i deletes."""
    return [i - DELETE_LAG] if i % 5 == 0 and i - DELETE_LAG >= 1 else []


def expected_state(last: int) -> dict:
    """Tagged keys that batches 1..last leave behind -> batch id."""
    gone = set()
    for d in range(1, last + 1):
        gone.update(deleted_by(d))
    out = {}
    for i in range(1, last + 1):
        if i not in gone:
            for key in batch_keys(i):
                out[key] = i
    return out


def verify_batches(eng, acked: int, in_flight: int) -> int:
    """Check the all-or-nothing prefix property; return L (the last batch present).

    acked: highest batch id known durable; in_flight: highest id ever attempted."""
    raw = eng.get(b"last")
    last = int(raw) if raw is not None else 0
    assert last >= acked, f"acknowledged batch {acked} lost (state ends at batch {last})"
    assert last <= in_flight, f"batch {last} present but only {in_flight} were attempted"
    want = expected_state(last)
    got = {}
    for key, value in eng.items(b"b", b"c"):
        i = int(key[1:9])
        j = int(key[10:])
        assert value.startswith(b"%d:%d:" % (i, j)), (key, value[:40])
        assert set(value[len(b"%d:%d:" % (i, j)):]) <= {ord("p")}, key
        got[key] = i
    extra = sorted(set(got) - set(want))[:5]
    missing = sorted(set(want) - set(got))[:5]
    assert not extra and not missing, (
        f"state is not batches 1..{last} exactly: extra {extra} missing {missing}")
    assert sorted(got) == list(eng.keys(b"b", b"c"))
    return last


def commit_batch(eng, i: int, rng: random.Random) -> None:
    with eng.batch() as b:
        for j, key in enumerate(batch_keys(i)):
            b.put(key, batch_value(i, j, rng))
        for d in deleted_by(i):
            for key in batch_keys(d):
                b.delete(key)
        b.put(b"last", b"%d" % i)
