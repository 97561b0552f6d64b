/* iter.c - point reads and chunked range iterators.
 *
 * An iterator never holds a lock between calls: each chunk (up to CHUNK_ENTRIES entries
 * or about CHUNK_BYTES) is copied out of the engine under the read lock, starting at the
 * range start (inclusive) or strictly after the last key returned (before it, in
 * reverse). So it never returns a key twice or out of order, and writers are blocked
 * for one chunk at most. An engine with scan_at resumes where the last chunk stopped
 * (no descent) while nothing was written in between; the start key is the fallback.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "db_internal.h"

#define CHUNK_ENTRIES 256
#define CHUNK_BYTES   (1u << 20)
/* The first chunk is small and each refill makes it four times larger: a caller that
 * takes one entry (a seek) copies a few entries, not 256, and a seek followed by 100
 * nexts takes 3 chunks (8 + 32 + 128 entries), not 6 (each chunk costs the caller a
 * native call and, in Python, the chunk's split into objects). */
#define CHUNK_FIRST   16
#define CHUNK_GROWTH  8
#define ARENA_FIRST   (8u << 10)

int kvt_get(kvt_db *db, const uint8_t *k, size_t kl, uint8_t *dst, size_t cap, size_t *vlen) {
    if (!db) return kvt_seterr(KVT_ECLOSED, "kvt_get: no handle");
    if (kl == 0 || !k) return kvt_seterr(KVT_EINVAL, "empty key");
    if (kl > KVT_MAX_KEY) return kvt_seterr(KVT_ETOOLARGE, "key of %zu bytes over the limit", kl);
    if (atomic_load_explicit(&db->fatal, memory_order_relaxed)) return kvt_db_usable(db, 0);
    kvt_buf out = {.data = dst, .len = 0, .cap = dst ? cap : 0, .fixed = 1};
    pthread_rwlock_rdlock(&db->rw);
    int rc = db->ops->get(db->eng, k, kl, &out);
    pthread_rwlock_unlock(&db->rw);
    if (vlen) *vlen = (rc == KVT_OK || rc == KVT_EBUFSMALL) ? out.len : 0;
    if (rc == KVT_OK && out.len > out.cap) rc = KVT_EBUFSMALL;   /* engine ignored fixed */
    return rc;
}


struct kvt_iter {
    kvt_db *db;
    int reverse, has_start, has_end, started, done;
    kvt_buf start, end;          /* range bounds */
    kvt_buf last;                /* last key returned: the next chunk resumes after it */
    kvt_buf arena;               /* key and value bytes of the current chunk, k v k v ... */
    int n, pos;
    int chunk;                   /* entries the next chunk may hold */
    int stopped;                 /* the range bound or the tree's end was reached */
    int full;                    /* the last chunk stopped on its size limit */
    int uniform;                 /* every entry of the chunk has lens[0], lens[1] */
    /* Not zeroed at creation (only [0, n) is ever read): */
    kvt_scan_pos spos;           /* where the last chunk stopped; w[0] 0: nowhere */
    size_t off[CHUNK_ENTRIES];   /* where entry i's key starts in the arena */
    uint32_t lens[2 * CHUNK_ENTRIES];   /* kl0, vl0, kl1, vl1, ... */
};

/* ---- filling a chunk ------------------------------------------------------------ */

static int past_bound(const kvt_iter *it, const uint8_t *k, size_t kl) {
    if (!it->reverse)
        return it->has_end && kvt_keycmp(k, kl, it->end.data, it->end.len) >= 0;
    return it->has_start && kvt_keycmp(k, kl, it->start.data, it->start.len) < 0;
}

static int collect(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    kvt_iter *it = ctx;
    if (past_bound(it, k, kl)) { it->stopped = 1; return 1; }
    if (it->n == it->chunk || (it->n > 0 && it->arena.len + kl + vl > CHUNK_BYTES)) {
        it->full = 1;
        return 1;
    }
    if (it->n == 0) it->uniform = 1;
    else if (kl != it->lens[0] || vl != it->lens[1]) it->uniform = 0;
    size_t at = it->arena.len;
    if (at + kl + vl > it->arena.cap) KVT_TRY(kvt_buf_reserve(&it->arena, at + kl + vl));
    memcpy(it->arena.data + at, k, kl);
    if (vl) memcpy(it->arena.data + at + kl, v, vl);
    it->arena.len = at + kl + vl;
    it->off[it->n] = at;
    it->lens[2 * it->n] = (uint32_t)kl;
    it->lens[2 * it->n + 1] = (uint32_t)vl;
    it->n++;
    return 0;
}

/* Where the next scan starts: the bound (inclusive going forward, exclusive going
 * backward since end is exclusive), or strictly after/before the last key. A chunk is
 * refilled only once all of it was returned, so the last key returned is its last. */
static int fill_chunk(kvt_iter *it) {
    kvt_db *db = it->db;
    if (it->n > 0) {
        KVT_TRY(kvt_buf_set(&it->last, it->arena.data + it->off[it->n - 1],
                            it->lens[2 * (it->n - 1)]));
        it->started = 1;
    }
    const uint8_t *from = NULL;
    size_t fl = 0;
    int inclusive = 1;
    if (it->started) { from = it->last.data; fl = it->last.len; inclusive = 0; }
    else if (!it->reverse && it->has_start) { from = it->start.data; fl = it->start.len; }
    else if (it->reverse && it->has_end) { from = it->end.data; fl = it->end.len; inclusive = 0; }
    it->n = it->pos = 0;
    it->full = 0;
    it->arena.len = 0;
    /* One allocation covers the first chunks of a short seek (the arena then doubles
     * as chunks grow) instead of a doubling from 64 bytes on every iterator. */
    if (!it->arena.cap) KVT_TRY(kvt_buf_reserve(&it->arena, ARENA_FIRST));
    KVT_TRY(kvt_db_usable(db, 0));
    pthread_rwlock_rdlock(&db->rw);
    int rc = db->ops->scan_at
        ? db->ops->scan_at(db->eng, from, fl, inclusive, it->reverse, &it->spos, collect, it)
        : db->ops->scan(db->eng, from, fl, inclusive, it->reverse, collect, it);
    pthread_rwlock_unlock(&db->rw);
    KVT_TRY(rc);
    if (!it->full) it->stopped = 1;   /* the scan ran out of entries */
    if (it->chunk < CHUNK_ENTRIES) it->chunk *= CHUNK_GROWTH;
    if (it->chunk > CHUNK_ENTRIES) it->chunk = CHUNK_ENTRIES;
    return KVT_OK;
}

/* ---- public API ----------------------------------------------------------------- */

int kvt_iter_new(kvt_db *db, const uint8_t *start, size_t sl, const uint8_t *end, size_t el,
                 int reverse, kvt_iter **out) {
    if (!out) return kvt_seterr(KVT_EINVAL, "kvt_iter_new: out is NULL");
    *out = NULL;
    if (!db) return kvt_seterr(KVT_ECLOSED, "kvt_iter_new: no handle");
    if ((start && sl > KVT_MAX_KEY) || (end && el > KVT_MAX_KEY))
        return kvt_seterr(KVT_ETOOLARGE, "range bound over the %u-byte key limit", KVT_MAX_KEY);
    KVT_TRY(kvt_db_usable(db, 0));
    kvt_iter *it = malloc(sizeof *it);
    if (!it) return kvt_seterr(KVT_ENOMEM, "out of memory for an iterator");
    memset(it, 0, offsetof(kvt_iter, spos));
    it->spos.w[0] = 0;
    it->db = db;
    it->reverse = reverse != 0;
    it->has_start = start != NULL;
    it->has_end = end != NULL;
    it->chunk = CHUNK_FIRST;
    int rc = KVT_OK;
    if (start) rc = kvt_buf_set(&it->start, start, sl);
    if (rc == KVT_OK && end) rc = kvt_buf_set(&it->end, end, el);
    if (rc < 0) { kvt_iter_free(it); return rc; }
    if (start && end && kvt_keycmp(start, sl, end, el) >= 0) it->done = 1;
    *out = it;
    return KVT_OK;
}

int kvt_iter_next(kvt_iter *it, const uint8_t **k, size_t *kl, const uint8_t **v, size_t *vl) {
    if (!it) return kvt_seterr(KVT_EINVAL, "NULL iterator");
    if (it->pos == it->n) {
        if (it->done || it->stopped) { it->done = 1; return KVT_NOTFOUND; }
        KVT_TRY(fill_chunk(it));
        if (it->n == 0) { it->done = 1; return KVT_NOTFOUND; }
    }
    int i = it->pos++;
    const uint8_t *kp = it->arena.data + it->off[i];
    *k = kp;
    *kl = it->lens[2 * i];
    *v = kp + *kl;
    *vl = it->lens[2 * i + 1];
    return KVT_OK;
}

int kvt_iter_next_many(kvt_iter *it, kvt_chunk *out) {
    if (!it || !out) return kvt_seterr(KVT_EINVAL, "kvt_iter_next_many: NULL argument");
    memset(out, 0, sizeof *out);
    if (it->pos == it->n) {
        if (it->done || it->stopped) { it->done = 1; return KVT_NOTFOUND; }
        KVT_TRY(fill_chunk(it));
        if (it->n == 0) { it->done = 1; return KVT_NOTFOUND; }
    }
    out->data = (const char *)it->arena.data + it->off[it->pos];
    out->bytes = it->arena.len - it->off[it->pos];
    out->lens = it->lens + 2 * it->pos;
    out->n = (size_t)(it->n - it->pos);
    out->uniform = it->uniform;         /* of the whole chunk, so of what is left too */
    out->kl = it->lens[2 * it->pos];
    out->vl = it->lens[2 * it->pos + 1];
    it->pos = it->n;
    return KVT_OK;
}

void kvt_iter_free(kvt_iter *it) {
    if (!it) return;
    kvt_buf_free(&it->start);
    kvt_buf_free(&it->end);
    kvt_buf_free(&it->last);
    kvt_buf_free(&it->arena);
    free(it);
}
