/* batch.c - atomic write batches: the WAL record format, commit and apply.
 *
 * A batch is built directly in its WAL record form, so commit appends it as is:
 *   u32 count, then per op: u8 op (1 put, 2 delete, 3 upsert, 4 page), u32 klen,
 *   [u32 vlen], key, [value]   (vlen and value for put and upsert: the upsert's operand;
 *   a page op, written only by paged.c, names a full leaf: key u64 page, value u32 crc)
 * (little-endian). Commit order: writer mutex, WAL append, exclusive rwlock, apply every
 * op to the engine, unlock, checkpoint if the log or the deferred frees grew too large,
 * writer mutex unlock, then wait for durability per the sync mode (group commit).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "db_internal.h"

struct kvt_batch {
    kvt_db *db;
    kvt_buf rec;
    uint32_t count;
};

/* ---- record parsing / applying --------------------------------------------------- */

static int bad_record(size_t off) {
    return kvt_seterr(KVT_ECORRUPT, "wal.log: malformed batch record at byte %zu", off);
}

/* Decode the op at *off, advancing it; validates every length against the record. */
static int next_op(const uint8_t *rec, size_t len, size_t *off, batch_op *o) {
    size_t p = *off;
    if (len - p < 5) return bad_record(p);
    o->op = rec[p];
    o->kl = kvt_get32(rec + p + 1);
    p += 5;
    o->vl = 0;
    if (o->op == KVT_BATCH_OP_PUT || o->op == KVT_BATCH_OP_UPSERT || o->op == KVT_BATCH_OP_PAGE) {
        if (len - p < 4) return bad_record(p);
        o->vl = kvt_get32(rec + p);
        p += 4;
    } else if (o->op != KVT_BATCH_OP_DEL) return bad_record(*off);
    if (o->kl == 0 || o->kl > KVT_MAX_KEY || o->vl > KVT_MAX_VALUE) return bad_record(*off);
    if (o->op == KVT_BATCH_OP_PAGE && (o->kl != 8 || o->vl != 8)) return bad_record(*off);
    if (len - p < (size_t)o->kl + o->vl) return bad_record(*off);
    o->k = rec + p;
    o->v = rec + p + o->kl;
    *off = p + o->kl + o->vl;
    return KVT_OK;
}

int kvt_db_record_next(const uint8_t *rec, size_t len, size_t *off, batch_op *o) {
    return next_op(rec, len, off, o);
}

/* An upsert through the engine's own op, or as get + append + put when it has none. */
static int apply_upsert(kvt_db *db, const batch_op *o) {
    if (db->ops->upsert) return db->ops->upsert(db->eng, o->k, o->kl, o->v, o->vl);
    kvt_buf v = {0};
    int rc = db->ops->get(db->eng, o->k, o->kl, &v);
    if (rc == KVT_NOTFOUND) { v.len = 0; rc = KVT_OK; }
    if (rc == KVT_OK) rc = kvt_buf_append_newest(&v, o->v, o->vl, KVT_MAX_VALUE);
    if (rc == KVT_OK) rc = db->ops->put(db->eng, o->k, o->kl, v.len ? v.data : o->v, v.len);
    kvt_buf_free(&v);
    return rc;
}

/* Apply a whole record to the engine (caller holds the write lock or is recovering).
 * existed, if given, receives the result of the last delete. */
static int apply_ops(kvt_db *db, const uint8_t *rec, size_t len, int *existed) {
    if (len < 4) return bad_record(0);
    uint32_t count = kvt_get32(rec);
    size_t off = 4;
    for (uint32_t i = 0; i < count; i++) {
        batch_op o = {0};
        KVT_TRY(next_op(rec, len, &off, &o));
        if (o.op == KVT_BATCH_OP_PUT) KVT_TRY(db->ops->put(db->eng, o.k, o.kl, o.v, o.vl));
        else if (o.op == KVT_BATCH_OP_UPSERT) KVT_TRY(apply_upsert(db, &o));
        else if (o.op == KVT_BATCH_OP_PAGE) KVT_TRY(kvt_db_paged_apply(db, &o));
        else KVT_TRY(db->ops->del(db->eng, o.k, o.kl, existed));
    }
    if (off != len) return bad_record(off);
    return KVT_OK;
}

/* The engine's end-of-record hook runs whatever the record's outcome (the B+tree
 * releases the write path it kept pinned for ascending puts). */
static int apply_record(kvt_db *db, const uint8_t *rec, size_t len, int *existed) {
    int rc = apply_ops(db, rec, len, existed);
    int end = db->ops->apply_end ? db->ops->apply_end(db->eng) : KVT_OK;
    return rc < 0 ? rc : end;
}

int kvt_db_apply_record(kvt_db *db, const uint8_t *rec, size_t len, int *existed) {
    return apply_record(db, rec, len, existed);
}

/* ---- encoding ------------------------------------------------------------------ */

static int check_sizes(size_t kl, size_t vl, int is_put) {
    if (kl == 0) return kvt_seterr(KVT_EINVAL, "empty key");
    if (kl > KVT_MAX_KEY)
        return kvt_seterr(KVT_ETOOLARGE, "key of %zu bytes exceeds the %u-byte limit", kl,
                          KVT_MAX_KEY);
    if (is_put && vl > KVT_MAX_VALUE)
        return kvt_seterr(KVT_ETOOLARGE, "value of %zu bytes exceeds the %u-byte limit", vl,
                          KVT_MAX_VALUE);
    return KVT_OK;
}

/* is_put: the op carries a value (put and upsert). */
static size_t op_size(size_t kl, size_t vl, int is_put) { return 5 + (is_put ? 4 : 0) + kl + vl; }

/* Encode one op at dst (op_size bytes). */
static void encode_op(uint8_t *dst, uint8_t op, const uint8_t *k, size_t kl, const uint8_t *v,
                      size_t vl) {
    int is_put = op != KVT_BATCH_OP_DEL;
    dst[0] = op;
    kvt_put32(dst + 1, (uint32_t)kl);
    dst += 5;
    if (is_put) { kvt_put32(dst, (uint32_t)vl); dst += 4; }
    memcpy(dst, k, kl);
    if (vl) memcpy(dst + kl, v, vl);
}

int kvt_db_record_add(kvt_buf *rec, uint8_t op, const uint8_t *k, size_t kl,
                      const uint8_t *v, size_t vl) {
    int is_put = op != KVT_BATCH_OP_DEL;
    KVT_TRY(check_sizes(kl, vl, is_put));
    if (rec->len < 4) KVT_TRY(kvt_buf_set(rec, "\0\0\0\0", 4));
    size_t n = op_size(kl, vl, is_put);
    if (rec->len + n > KVT_BATCH_MAX_BYTES)
        return kvt_seterr(KVT_ETOOLARGE, "record would exceed %llu bytes",
                          (unsigned long long)KVT_BATCH_MAX_BYTES);
    KVT_TRY(kvt_buf_reserve(rec, rec->len + n));
    encode_op(rec->data + rec->len, op, k, kl, v, vl);
    rec->len += n;
    kvt_put32(rec->data, kvt_get32(rec->data) + 1);
    return KVT_OK;
}

/* ---- commit ------------------------------------------------------------------- */

static uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Checkpoint when the log passes wal_limit, or when the pages a checkpoint would free or
 * write pass the larger of wal_limit and the data file's size. Random updates defer nearly
 * every page they touch, so a fixed limit would checkpoint (3 fsyncs, a full flush) every
 * few thousand writes on a tree larger than the cache; relative to the file, the
 * deferred pages (at most the last checkpoint's) keep the file under about twice its
 * live size, and dirty pages are bounded by the cache anyway. */
static int need_checkpoint_after(kvt_db *db, size_t more) {
    /* Pages the log names count as log: recovery reads them as it reads the log. */
    if (kvt_wal_bytes(db->wal) + db->logged_bytes + more > db->opt.wal_limit) return 1;
    uint64_t pending = kvt_pager_pending_free(db->pager);
    if (pending <= db->opt.wal_limit) return 0;
    kvt_pager_stats ps;
    kvt_pager_get_stats(db->pager, &ps);
    return pending > ps.pages_total * kvt_pager_page_size(db->pager);
}

static int need_checkpoint(kvt_db *db) { return need_checkpoint_after(db, 0); }

int kvt_db_checkpoint_due(kvt_db *db, size_t len) {
    return need_checkpoint_after(db, len + 64);   /* + the record's framing, roughly */
}

/* Under the writer mutex: log, apply, maybe checkpoint. */
static int commit_locked(kvt_db *db, const uint8_t *rec, size_t len, int *existed,
                         uint64_t *lsn, int ascending) {
    KVT_TRY(kvt_db_usable(db, 1));
    int rc;
    if (ascending && (rc = kvt_db_paged_commit(db, rec, len, lsn)) <= 0) {
        KVT_TRY(rc);
        atomic_fetch_add_explicit(&db->commits, 1, memory_order_relaxed);
        if (need_checkpoint(db)) KVT_TRY(kvt_db_checkpoint_locked(db));
        return KVT_OK;
    }
    rc = kvt_wal_append(db->wal, rec, len, lsn);
    /* Refused before anything was written (too large, no memory): not fatal. A failed
     * write latches (the log may hold a torn record now). */
    if (rc == KVT_ETOOLARGE || rc == KVT_ENOMEM) return rc;
    if (rc < 0) return kvt_db_latch(db, rc);
    pthread_rwlock_wrlock(&db->rw);
    rc = kvt_db_apply_record(db, rec, len, existed);
    pthread_rwlock_unlock(&db->rw);
    if (rc < 0) return kvt_db_latch(db, rc);   /* engine half-applied: reopen replays */
    atomic_fetch_add_explicit(&db->commits, 1, memory_order_relaxed);
    if (need_checkpoint(db)) KVT_TRY(kvt_db_checkpoint_locked(db));
    return KVT_OK;
}

static int wait_durable(kvt_db *db, uint64_t lsn) {
    int mode = db->opt.sync_mode;
    if (mode == 2) return KVT_OK;
    uint64_t now = mono_ns();
    if (mode == 1) {
        uint64_t last = atomic_load_explicit(&db->last_sync_ns, memory_order_relaxed);
        if (now - last < (uint64_t)db->opt.sync_interval_ms * 1000000ull) return KVT_OK;
        /* only one committer per interval does the sync */
        if (!atomic_compare_exchange_strong(&db->last_sync_ns, &last, now)) return KVT_OK;
        lsn = kvt_wal_lsn(db->wal);
    }
    int rc = kvt_wal_sync(db->wal, lsn);
    if (rc < 0) return kvt_db_latch(db, rc);
    if (mode == 0) atomic_store_explicit(&db->last_sync_ns, now, memory_order_relaxed);
    return KVT_OK;
}

int kvt_db_commit_logged(kvt_db *db, const uint8_t *rec, size_t len, uint64_t *lsn) {
    pthread_mutex_lock(&db->writer);
    int rc = commit_locked(db, rec, len, NULL, lsn, 0);
    pthread_mutex_unlock(&db->writer);
    return rc;
}

int kvt_db_sync_upto(kvt_db *db, uint64_t lsn) {
    if (atomic_load(&db->data_unsynced)) {   /* pages the log names, before the log */
        pthread_mutex_lock(&db->writer);
        int r = kvt_db_paged_sync(db);
        pthread_mutex_unlock(&db->writer);
        KVT_TRY(r);
    }
    int rc = kvt_wal_sync(db->wal, lsn);
    if (rc < 0) return kvt_db_latch(db, rc);
    atomic_store_explicit(&db->last_sync_ns, mono_ns(), memory_order_relaxed);
    return KVT_OK;
}

static int commit_record(kvt_db *db, const uint8_t *rec, size_t len, int *existed,
                         int ascending) {
    uint64_t lsn = 0;
    pthread_mutex_lock(&db->writer);
    int rc = commit_locked(db, rec, len, existed, &lsn, ascending);
    pthread_mutex_unlock(&db->writer);
    KVT_TRY(rc);
    return wait_durable(db, lsn);
}

/* A one-op batch, encoded on the stack when small. */
static int commit_one(kvt_db *db, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl,
                      int is_put, int *existed) {
    if (!db) return kvt_seterr(KVT_ECLOSED, "no handle");
    if ((kl && !k) || (vl && !v)) return kvt_seterr(KVT_EINVAL, "NULL key or value pointer");
    KVT_TRY(check_sizes(kl, vl, is_put));
    size_t len = 4 + op_size(kl, vl, is_put);
    uint8_t stack[1024];
    uint8_t *rec = len <= sizeof stack ? stack : malloc(len);
    if (!rec) return kvt_seterr(KVT_ENOMEM, "cannot allocate a %zu-byte record", len);
    kvt_put32(rec, 1);
    encode_op(rec + 4, is_put ? KVT_BATCH_OP_PUT : KVT_BATCH_OP_DEL, k, kl, v, vl);
    int rc = commit_record(db, rec, len, existed, 0);
    if (rec != stack) free(rec);
    return rc;
}

int kvt_put(kvt_db *db, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    return commit_one(db, k, kl, v, vl, 1, NULL);
}

int kvt_delete(kvt_db *db, const uint8_t *k, size_t kl, int *existed) {
    int ex = 0;
    int rc = commit_one(db, k, kl, NULL, 0, 0, &ex);
    if (existed) *existed = rc == KVT_OK ? ex : 0;
    return rc;
}

/* ---- many puts from one packed buffer -------------------------------------------- */

/* Validate a packed put-many buffer (kvtrees.h): the record format with puts only, each
 * length within the limits, nothing after the last op. *n receives the op count. */
static int check_puts(const uint8_t *buf, size_t len, uint32_t *n, int *ascending) {
    if (!buf || len < 4) return kvt_seterr(KVT_EINVAL, "put_many: buffer of %zu bytes", len);
    *n = kvt_get32(buf);
    size_t off = 4;
    const uint8_t *prev = NULL;
    uint32_t prevl = 0;
    int asc = 1;
    for (uint32_t i = 0; i < *n; i++) {
        if (len - off < 9 || buf[off] != KVT_BATCH_OP_PUT)
            return kvt_seterr(KVT_EINVAL, "put_many: op %u at byte %zu is not a put", i, off);
        uint32_t kl = kvt_get32(buf + off + 1), vl = kvt_get32(buf + off + 5);
        KVT_TRY(check_sizes(kl, vl, 1));
        off += 9;
        if (len - off < (uint64_t)kl + vl)
            return kvt_seterr(KVT_EINVAL, "put_many: op %u runs past the buffer's end", i);
        if (asc && prev && kvt_keycmp(prev, prevl, buf + off, kl) >= 0) asc = 0;
        prev = buf + off;
        prevl = kl;
        off += (size_t)kl + vl;
    }
    if (ascending) *ascending = asc;
    if (off != len)
        return kvt_seterr(KVT_EINVAL, "put_many: %zu bytes after the last of %u ops",
                          len - off, *n);
    return KVT_OK;
}

int kvt_put_many(kvt_db *db, const uint8_t *buf, size_t len) {
    if (!db) return kvt_seterr(KVT_ECLOSED, "no handle");
    uint32_t n;
    int ascending;
    KVT_TRY(check_puts(buf, len, &n, &ascending));
    if (len > KVT_BATCH_MAX_BYTES)
        return kvt_seterr(KVT_ETOOLARGE, "record of %zu bytes exceeds %llu bytes", len,
                          (unsigned long long)KVT_BATCH_MAX_BYTES);
    if (n == 0) return kvt_db_usable(db, 1);
    return commit_record(db, buf, len, NULL, ascending);
}

/* ---- batch objects ------------------------------------------------------------ */

int kvt_batch_new(kvt_db *db, kvt_batch **out) {
    if (!out) return kvt_seterr(KVT_EINVAL, "kvt_batch_new: out is NULL");
    *out = NULL;
    if (!db) return kvt_seterr(KVT_ECLOSED, "kvt_batch_new: no handle");
    kvt_batch *b = calloc(1, sizeof *b);
    if (!b) return kvt_seterr(KVT_ENOMEM, "out of memory for a batch");
    b->db = db;
    int rc = kvt_buf_set(&b->rec, "\0\0\0\0", 4);
    if (rc < 0) { free(b); return rc; }
    *out = b;
    return KVT_OK;
}

static int batch_add(kvt_batch *b, uint8_t op, const uint8_t *k, size_t kl, const uint8_t *v,
                     size_t vl) {
    int is_put = op != KVT_BATCH_OP_DEL;
    if (!b) return kvt_seterr(KVT_EINVAL, "NULL batch");
    if ((kl && !k) || (vl && !v)) return kvt_seterr(KVT_EINVAL, "NULL key or value pointer");
    KVT_TRY(check_sizes(kl, vl, is_put));
    size_t n = op_size(kl, vl, is_put);
    if (b->count == UINT32_MAX || b->rec.len + n > KVT_BATCH_MAX_BYTES)
        return kvt_seterr(KVT_ETOOLARGE, "batch would exceed %llu bytes or 2^32 ops",
                          (unsigned long long)KVT_BATCH_MAX_BYTES);
    KVT_TRY(kvt_buf_reserve(&b->rec, b->rec.len + n));
    encode_op(b->rec.data + b->rec.len, op, k, kl, v, vl);
    b->rec.len += n;
    b->count++;
    return KVT_OK;
}

int kvt_batch_put(kvt_batch *b, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    return batch_add(b, KVT_BATCH_OP_PUT, k, kl, v, vl);
}

int kvt_batch_delete(kvt_batch *b, const uint8_t *k, size_t kl) {
    return batch_add(b, KVT_BATCH_OP_DEL, k, kl, NULL, 0);
}

int kvt_batch_upsert(kvt_batch *b, const uint8_t *k, size_t kl, const uint8_t *operand,
                     size_t ol) {
    return batch_add(b, KVT_BATCH_OP_UPSERT, k, kl, operand, ol);
}

int kvt_batch_put_many(kvt_batch *b, const uint8_t *buf, size_t len) {
    if (!b) return kvt_seterr(KVT_EINVAL, "NULL batch");
    uint32_t n;
    KVT_TRY(check_puts(buf, len, &n, NULL));
    size_t ops = len - 4;
    if (n > UINT32_MAX - b->count || b->rec.len + ops > KVT_BATCH_MAX_BYTES)
        return kvt_seterr(KVT_ETOOLARGE, "batch would exceed %llu bytes or 2^32 ops",
                          (unsigned long long)KVT_BATCH_MAX_BYTES);
    KVT_TRY(kvt_buf_reserve(&b->rec, b->rec.len + ops));
    memcpy(b->rec.data + b->rec.len, buf + 4, ops);
    b->rec.len += ops;
    b->count += n;
    return KVT_OK;
}

size_t kvt_batch_count(kvt_batch *b) { return b ? b->count : 0; }

void kvt_batch_clear(kvt_batch *b) {
    if (!b) return;
    b->rec.len = 4;
    b->count = 0;
}

int kvt_batch_commit(kvt_batch *b) {
    if (!b) return kvt_seterr(KVT_EINVAL, "NULL batch");
    if (!b->count) return kvt_db_usable(b->db, 1);
    kvt_put32(b->rec.data, b->count);
    int rc = commit_record(b->db, b->rec.data, b->rec.len, NULL, 0);
    kvt_batch_clear(b);
    return rc;
}

void kvt_batch_free(kvt_batch *b) {
    if (!b) return;
    kvt_buf_free(&b->rec);
    free(b);
}
