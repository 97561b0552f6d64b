/* kvt_mvcc.h - etcd's MVCC key layout over a kvt_db: the store's per-key hot paths in C.
 *
 * The layout (docs/STORE.md; src/kvtrees/mvcc.py is the Python side of the same rules):
 *     k + esc(key) + 00 01 + ~rev (8 bytes BE)  -> flags(1) create(8) version(8) lease(8)
 *                                                 value          (integers big-endian)
 *     r + rev (8 BE) + sub (4 BE)              -> key            (revision log)
 *     a + lease (8 BE) + key                    -> ""             (key attached to lease)
 * esc() doubles each 00 byte as 00 FF, so all versions of a key are contiguous, newest
 * first, and "newest version at or below rev" is one seek.
 *
 * A kvt_mvcc handle owns the store's revision counters:
 *   head    - the newest revision committed to the engine; writers build on it;
 *   visible - the newest revision readers may see. With durable=1 it moves to a
 *             revision only after the fsync covering that revision's log record
 *             returned, so no reader observes a write a crash could still lose.
 * Every store write assigns its revision and commits under the handle's writer lock, so
 * log order is revision order. kvt_mvcc_put does all of it in one call, fsync wait
 * included (kvt_mvcc_put_begin/_end split it for a caller that keeps the GIL for the
 * in-memory half); writes built elsewhere (the
 * Python txn, delete, lease and compaction paths) hold the same lock through
 * kvt_mvcc_lock()/kvt_mvcc_unlock() and report their keys and revision with
 * kvt_mvcc_note() and kvt_mvcc_set_head() and, once durable, kvt_mvcc_publish().
 * Point reads go through a cache of each recent key's newest revision (head_cache.c):
 * an exact engine get instead of a seek.
 *
 * Lifetime: kvt_mvcc_close() (before kvt_close of its db) waits for calls in flight and
 * makes every later call fail with KVT_ECLOSED; kvt_mvcc_free() then releases memory.
 */
#ifndef KVT_MVCC_H
#define KVT_MVCC_H
#include <stddef.h>
#include <stdint.h>
#include "kvtrees.h"

#define KVT_MVCC_HDR 25            /* flags, create, version, lease before the value */
#define KVT_MVCC_TOMBSTONE 1       /* flags bit */
#define KVT_MVCC_RANGE_KEYS_ONLY 1 /* kvt_mvcc_range flags */
#define KVT_MVCC_RANGE_COUNT_ONLY 2
#define KVT_MVCC_BUSY 2            /* kvt_mvcc_put_begin: would wait; nothing done */

/* CDEF BEGIN */
typedef struct kvt_mvcc kvt_mvcc;

/* One version of a key (or a tombstone), its value in the caller's buffer. */
typedef struct kvt_mvcc_kv {
    uint64_t create, mod, version, lease;
    int tombstone;
    size_t vlen;                   /* value length, also when it did not fit */
} kvt_mvcc_kv;

/* What a put did: its revision and the previous live version of the key (prev.mod 0:
 * none). The previous value is copied only when asked, into prev_buf when it fits,
 * else into prev_heap (malloc'd; release with kvt_mvcc_release). */
typedef struct kvt_mvcc_put_result {
    uint64_t rev;                  /* set as soon as assigned, also on a failed sync */
    uint64_t create, version;      /* of the new version */
    kvt_mvcc_kv prev;
    uint8_t *prev_heap;
} kvt_mvcc_put_result;

int  kvt_mvcc_open(kvt_db *db, uint64_t head, int durable, kvt_mvcc **out);
int  kvt_mvcc_close(kvt_mvcc *m);
void kvt_mvcc_free(kvt_mvcc *m);
void kvt_mvcc_release(void *p);

uint64_t kvt_mvcc_head(kvt_mvcc *m);
uint64_t kvt_mvcc_visible(kvt_mvcc *m);
/* Where the two counters live, for callers that read them without a call (Python reads
 * them through these pointers: a cffi call releases and retakes the GIL, which costs far
 * more than the load under contention). Aligned 64-bit words written atomically; valid
 * until kvt_mvcc_free. */
const uint64_t *kvt_mvcc_head_word(kvt_mvcc *m);
const uint64_t *kvt_mvcc_visible_word(kvt_mvcc *m);
int  kvt_mvcc_lock(kvt_mvcc *m);           /* the writer lock, for writes built outside */
void kvt_mvcc_unlock(kvt_mvcc *m);
/* A write built outside (lock held) reports each key it changed, then its revision;
 * with durable=0 the revision is visible at once. */
void kvt_mvcc_note(kvt_mvcc *m, const uint8_t *k, size_t kl, uint64_t rev);
void kvt_mvcc_set_head(kvt_mvcc *m, uint64_t rev);
void kvt_mvcc_publish(kvt_mvcc *m, uint64_t rev);   /* visible := max(visible, rev) */
/* The live lease ids (writer lock held): a put naming a lease not in the set fails with
 * KVT_ENOLEASE, nothing written, so a put cannot attach a key to a revoked lease. */
int  kvt_mvcc_lease_add(kvt_mvcc *m, uint64_t id);
void kvt_mvcc_lease_remove(kvt_mvcc *m, uint64_t id);

/* Newest version of key at or below rev, tombstones included. KVT_OK: out filled and
 * the value copied to dst; KVT_NOTFOUND: no version; KVT_EBUFSMALL: out->vlen is the
 * size needed, call again. O(log n): one engine seek. */
int  kvt_mvcc_get(kvt_mvcc *m, const uint8_t *k, size_t kl, uint64_t rev, uint8_t *dst,
                  size_t cap, kvt_mvcc_kv *out);

/* Put key=value (lease 0: none) at revision head+1 in one atomic record (versioned key,
 * revision-log entry, lease attachment changes); returns once durable when the handle
 * is. KVT_ENOLEASE: the lease is not live (kvt_mvcc_lease_add), nothing written. */
int  kvt_mvcc_put(kvt_mvcc *m, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl,
                  uint64_t lease, int want_prev, uint8_t *prev_buf, size_t prev_cap,
                  kvt_mvcc_put_result *res);
/* kvt_mvcc_put in two halves, for a caller that holds a lock of its own (Python's GIL)
 * and gives it up only to wait: _begin commits the put (not yet durable) only if it can
 * do so without waiting for another writer or running a checkpoint, and returns
 * KVT_MVCC_BUSY with nothing done otherwise (then call kvt_mvcc_put, which waits).
 * After KVT_OK, kvt_mvcc_put_end must follow: it waits for the fsync (durable handle),
 * publishes the revision and returns the put's final code. A negative code from
 * _begin: the put failed, nothing written, no _end. */
int  kvt_mvcc_put_begin(kvt_mvcc *m, const uint8_t *k, size_t kl, const uint8_t *v,
                        size_t vl, uint64_t lease, int want_prev, uint8_t *prev_buf,
                        size_t prev_cap, kvt_mvcc_put_result *res, uint64_t *lsn);
int  kvt_mvcc_put_end(kvt_mvcc *m, uint64_t lsn, kvt_mvcc_put_result *res);
/* A txn whose compares and ops each name one key: compares on version, create, mod,
 * value or lease; ops put (no lease), delete, get (plain). Request (little-endian):
 *   u32 ncompare, per compare: u8 target (0 version 1 create 2 mod 3 value 4 lease),
 *       u8 op (0 == 1 != 2 < 3 >), u32 klen, key, then u32 vlen + value (value) or
 *       i64 operand (the others);
 *   u32 nsuccess, ops; u32 nfailure, ops; per op: u8 kind (1 put 2 delete 3 get),
 *       u8 flags (1: prev_kv), u32 klen, key, [put: u32 vlen, value, u64 lease].
 * Response (malloc'd into *resp; release with kvt_mvcc_release): u8 succeeded, u64
 * revision (the txn's, or the head for a txn that wrote nothing), then per op of the
 * taken branch: u8 kind and
 *   put:    u64 create, u64 version (of the new version), u8 has_prev, [kv];
 *   delete: u8 deleted, u8 has_prev, [kv];
 *   get:    u8 found, [kv];
 *   kv:     u64 create, mod, version, lease, u32 klen, key, u32 vlen, value.
 * All changes share one new revision, committed and (durable handle) fsynced before
 * return; KVT_EINVAL for a malformed request, KVT_ENOLEASE for a put naming a lease
 * that is not live; nothing written then. */
int  kvt_mvcc_txn(kvt_mvcc *m, const uint8_t *req, size_t rl, uint8_t **resp,
                  size_t *resp_len);
/* A range read at rev: the live version of each user key whose engine keys lie in
 * [lo, hi) (engine bounds: 'k' + esc(start) + 00 01 ..., as src/kvtrees/mvcc.py's
 * range_bounds), in key order. Every live key is counted; the first limit of them (0:
 * all) are returned, without values with KVT_MVCC_RANGE_KEYS_ONLY, none with
 * KVT_MVCC_RANGE_COUNT_ONLY. Response (malloc'd into *resp; kvt_mvcc_release):
 * u64 count, u32 nkvs, then nkvs kvs as in kvt_mvcc_txn's response (u64 create, mod,
 * version, lease, u32 klen, key, u32 vlen, value). Reads take no lock: the engine's
 * iterator is safe beside writers, and versions above rev are skipped. O(versions in
 * the range); KVT_ECORRUPT for an entry that is not of the layout. */
int  kvt_mvcc_range(kvt_mvcc *m, const uint8_t *lo, size_t ll, const uint8_t *hi, size_t hl,
                    uint64_t rev, uint64_t limit, int flags, uint8_t **resp,
                    size_t *resp_len);
/* CDEF END */

#endif
