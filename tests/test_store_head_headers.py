"""A put takes the key's current version header (create revision, version, lease) from
the MVCC head cache when the cache knows it, reading nothing from the engine. These
sequences change a key's newest version by every other path (delete, txn, lease revoke,
compaction, reopen) and then put it again: the put's create revision, version and lease
must be those a fresh read of the key would give. Both engines; each ends with check()."""

from store_fixtures import db, engine  # noqa: F401  (fixtures)

from etcd_model import open_store


def meta(db, key):
    return db.get(key)[1]


def test_put_after_delete_starts_a_new_generation(db):
    db.put("k", "1")
    db.put("k", "2")
    db.delete("k")
    rev = db.put("k", "3").revision
    kv = meta(db, "k")
    assert (kv.create_revision, kv.version, kv.mod_revision) == (rev, 1, rev)


def test_put_after_txn_write_continues_the_version(db):
    t = db.transactions
    db.put("k", "1")
    db.transaction([t.version("k") == 1], [t.put("k", "2")], [])
    db.transaction([], [t.delete("k")], [])
    db.transaction([], [t.put("k", "3")], [])
    created = meta(db, "k").create_revision
    db.put("k", "4")
    kv = meta(db, "k")
    assert (kv.create_revision, kv.version) == (created, 2)


def test_put_moves_the_lease_attachment(db):
    a, b = db.lease(60), db.lease(60)
    db.put("k", "1", lease=a)
    db.put("k", "2", lease=b)           # the header's lease is a: detached from a
    assert db.lease_keys(a.id) == [] and db.lease_keys(b.id) == [b"k"]
    a.revoke()
    assert db.get("k")[0] == b"2"
    db.put("k", "3")                    # the header's lease is b: detached from b
    assert db.lease_keys(b.id) == []
    b.revoke()
    assert db.get("k")[0] == b"3"
    assert meta(db, "k").lease == 0


def test_put_after_a_lease_revoke_deleted_the_key(db):
    a = db.lease(60)
    db.put("k", "1", lease=a)
    db.put("k", "2", lease=a)
    a.revoke()
    rev = db.put("k", "3").revision
    kv = meta(db, "k")
    assert (kv.create_revision, kv.version, kv.lease) == (rev, 1, 0)


def test_put_after_compaction_removed_the_tombstone(db):
    db.put("k", "1")
    db.delete("k")
    db.put("other", "x")
    db.compact(db.revision)             # the tombstone, the key's newest version, goes
    rev = db.put("k", "2").revision
    kv = meta(db, "k")
    assert (kv.create_revision, kv.version) == (rev, 1)


def test_put_after_reopen(engine, tmp_path):  # noqa: F811
    d = open_store(engine, tmp_path / "db")
    d.put("k", "1")
    created = d.put("k", "2").revision - 1
    d.close()
    d = open_store(engine, tmp_path / "db")
    d.put("k", "3")
    kv = meta(d, "k")
    assert (kv.create_revision, kv.version) == (created, 3)
    d.check()
    d.close()


def test_headers_match_a_model_over_many_keys(db):
    """Puts, deletes and txns over a few keys in a fixed pattern, reading a key's header
    only now and then (a read refreshes the cached header, so most puts must rely on
    what the previous put cached); every header read, and all at the end, must match
    the model's create revision and version."""
    t = db.transactions
    model = {}                         # key -> (create, version, mod)
    for i in range(600):
        k = "k%d" % (i % 7)
        step = i % 5
        if step == 3:
            db.delete(k)
            model.pop(k, None)
            continue
        if step == 4:
            db.transaction([], [t.put(k, str(i))], [])
            rev = db.revision
        else:
            rev = db.put(k, str(i)).revision
        create, version, _ = model.get(k, (rev, 0, 0))
        model[k] = (create, version + 1, rev)
        if i % 37 == 0:
            kv = meta(db, k)
            assert (kv.create_revision, kv.version, kv.mod_revision) == model[k], (i, k)
    for k, want in model.items():
        kv = meta(db, k)
        assert (kv.create_revision, kv.version, kv.mod_revision) == want, k
