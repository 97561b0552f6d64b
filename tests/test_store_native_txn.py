"""The native txn path (kvt_mvcc_txn, txn_codec) against the Python one: the same random
txns on two stores, one forced through Python, give the same results, revisions, watch
events (with prev_kv) and hash_kv. Both engines; each store ends with check()."""

import random

import pytest

import kvtrees
from kvtrees import txn_codec

KEYS = [b"a", b"b", b"c\x00d", b"e"]
LEASE_A, LEASE_B = 0x1234, 0x5678         # granted on both stores; B revoked mid-way


def _random_txn(t, rng: random.Random):
    def key():
        return rng.choice(KEYS)

    def compare():
        target = rng.choice(["version", "create", "mod", "value", "lease"])
        c = getattr(t, target)(key())
        operand = (rng.choice([b"", b"v1", b"v2", b"zz"]) if target == "value"
                   else rng.choice([0, 1, 2, 5, 20]) if target == "lease"
                   else rng.choice([-1, 0, 1, 2, 5, 20]))
        return rng.choice([c.__eq__, c.__ne__, c.__lt__, c.__gt__])(operand)

    def branch():
        ops, written = [], set()
        for _ in range(rng.randrange(0, 4)):
            k, kind = key(), rng.random()
            if kind < 0.45 and k not in written:
                ops.append(t.put(k, rng.choice([b"v1", b"v2", b"v3" * 50]),
                                 lease=rng.choice([None, None, LEASE_A, LEASE_B]),
                                 prev_kv=rng.random() < 0.5))
                written.add(k)
            elif kind < 0.7 and k not in written:
                ops.append(t.delete(k, prev_kv=rng.random() < 0.5))
                written.add(k)
            else:
                ops.append(t.get(k))
        return ops
    return [compare() for _ in range(rng.randrange(0, 3))], branch(), branch()


def _outcome(run, *txn):
    try:
        return run(*txn)
    except kvtrees.LeaseNotFoundError:     # a put naming the revoked lease
        return "lease not found"


@pytest.mark.parametrize("seed", [1, 2])
def test_native_txn_matches_python_txn(engine_name, tmp_path, monkeypatch, seed):
    native = kvtrees.open(str(tmp_path / "n"), engine=engine_name, sync="none")
    python = kvtrees.open(str(tmp_path / "p"), engine=engine_name, sync="none")
    for db in (native, python):
        db.lease(60, lease_id=LEASE_A)
        db.lease(60, lease_id=LEASE_B)
    watches = [db.watch_prefix(b"", prev_kv=True) for db in (native, python)]
    real_encode = txn_codec.encode
    rng = random.Random(seed)
    used_native = 0
    for i in range(300):
        if i == 150:
            for db in (native, python):
                db.revoke_lease(LEASE_B)
        compare, success, failure = _random_txn(native.transactions, rng)
        if real_encode(compare, success, failure, True) is not None:
            used_native += 1
        got = _outcome(native.transaction, compare, success, failure)
        monkeypatch.setattr(txn_codec, "encode", lambda *a: None)
        want = _outcome(python.transaction, compare, success, failure)
        monkeypatch.setattr(txn_codec, "encode", real_encode)
        assert got == want
        assert native.revision == python.revision
    assert used_native > 250
    final = native.revision
    streams = []
    for events, cancel in watches:
        got = []
        while not got or got[-1][0] < final:
            e = events.get(5)
            got.append((e.mod_revision, type(e).__name__, e.key, e.value,
                        e.prev_kv))
        cancel()
        streams.append(got)
    assert streams[0] == streams[1]
    assert native.hash_kv() == python.hash_kv()
    for db in (native, python):
        db.check()
        db.close()


def test_native_txn_refuses_what_it_cannot_run(engine_name, tmp_path):
    """Ranges, nested txns and get options are not native: encode says so, and the
    store still runs them (in Python)."""
    db = kvtrees.open(str(tmp_path / "db"), engine=engine_name, sync="none")
    t = db.transactions
    for ops in ([t.get("a", "z")], [t.delete("a", "z")],
                [t.get("k", keys_only=True)], [t.txn([], [t.put("x", "1")], [])]):
        assert txn_codec.encode([], ops, [], False) is None
        ok, _ = db.transaction([], ops, [])
        assert ok
    assert txn_codec.encode([t.version("k") > 1 << 63], [], [], False) is None
    db.check()
    db.close()


def test_put_racing_revoke_never_strands_a_key(engine_name, tmp_path):
    """Threads put keys with a lease while another thread revokes it: each put either
    fails with LeaseNotFoundError or its key is deleted by the revoke; no key is left
    attached to the dead lease (check() verifies every attachment)."""
    import threading
    db = kvtrees.open(str(tmp_path / "db"), engine=engine_name, sync="none")
    t = db.transactions
    for round_ in range(20):
        lease = db.lease(60)
        ok = []

        def put(i):
            for j in range(20):
                try:
                    if j % 2:
                        db.put("r%d/%d/%d" % (round_, i, j), "v", lease=lease)
                    else:
                        db.transaction([], [t.put("r%d/%d/%d" % (round_, i, j), "v",
                                                  lease=lease)], [])
                    ok.append(1)
                except kvtrees.LeaseNotFoundError:
                    pass
        threads = [threading.Thread(target=put, args=(i,)) for i in range(3)]
        for th in threads:
            th.start()
        db.revoke_lease(lease)
        for th in threads:
            th.join(30)
        assert list(db.get_prefix("r%d/" % round_)) == []
        assert db.lease_keys(lease) == []
    db.check()
    db.close()


def test_c_encoder_matches_the_python_encoder():
    """kvtrees._txnpack (txn_codec.encode) gives the bytes of txn_codec.encode_py, and
    None for the same txns, over random txns that include every shape the native path
    refuses (ranges, nested txns, get options, ignore flags, operands beyond int64)."""
    from kvtrees.txn import Transactions
    t = Transactions()
    rng = random.Random(7)
    refused = encoded = 0
    for _ in range(3000):
        compare, success, failure = _random_txn(t, rng)
        if rng.random() < 0.3:
            c = getattr(t, rng.choice(["version", "mod", "create"]))(
                rng.choice(KEYS), b"z" if rng.random() < 0.5 else None)
            compare.append(c == rng.choice([0, 1 << 63, -(1 << 63), (1 << 63) - 1, 7]))
        if rng.random() < 0.3:
            success.append(rng.choice([
                t.get(b"a", b"z"), t.get(b"a", limit=1), t.delete(b"q", b"r"),
                t.put(b"x", b"", ignore_value=True), t.put(b"y", b"v", ignore_lease=True),
                t.txn([], [t.put(b"n", b"1")], []), t.get_prefix(b"p"),
                t.put(b"big", b"v", lease=(1 << 63) - 1)]))
        want_prev = rng.random() < 0.5
        want = txn_codec.encode_py(compare, success, failure, want_prev)
        assert txn_codec.encode(compare, success, failure, want_prev) == want
        refused += want is None
        encoded += want is not None
    assert refused > 500 and encoded > 500
