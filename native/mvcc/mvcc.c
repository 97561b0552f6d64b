/* mvcc.c - the MVCC handle: revision counters, the writer lock, point reads and the
 * record of a change (contract: kvt_mvcc.h). Puts: mvcc_put.c. */
#include <sched.h>
#include <stdlib.h>
#include "mvcc_int.h"

/* ---- lifetime ------------------------------------------------------------------ */

int kvt_mvcc_open(kvt_db *db, uint64_t head, int durable, kvt_mvcc **out) {
    if (!out) return kvt_seterr(KVT_EINVAL, "kvt_mvcc_open: out is NULL");
    *out = NULL;
    if (!db) return kvt_seterr(KVT_ECLOSED, "kvt_mvcc_open: no handle");
    kvt_mvcc *m = calloc(1, sizeof *m);
    if (!m) return kvt_seterr(KVT_ENOMEM, "out of memory for an MVCC handle");
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        free(m);
        return kvt_seterr(KVT_ENOMEM, "cannot create the MVCC writer lock");
    }
    if (pthread_mutex_init(&m->heads_mu, NULL) != 0) {
        pthread_mutex_destroy(&m->lock);
        free(m);
        return kvt_seterr(KVT_ENOMEM, "cannot create the MVCC head-cache lock");
    }
    int rc = hc_init(&m->heads, MVCC_HEAD_CACHE_ENTRIES);
    if (rc < 0) {
        pthread_mutex_destroy(&m->heads_mu);
        pthread_mutex_destroy(&m->lock);
        free(m);
        return rc;
    }
    if (pthread_mutex_init(&m->q_mu, NULL) != 0) {
        hc_free(&m->heads);
        pthread_mutex_destroy(&m->heads_mu);
        pthread_mutex_destroy(&m->lock);
        free(m);
        return kvt_seterr(KVT_ENOMEM, "cannot create the MVCC write-group queue");
    }
    m->db = db;
    m->durable = durable != 0;
    m->head = head;
    atomic_store(&m->visible, head);
    *out = m;
    return KVT_OK;
}

/* Every call that touches the db counts itself in flight; close sets closed first and
 * then waits for the count to drain (both sequentially consistent, so a call either
 * sees closed or is counted before close starts waiting). */
int mvcc_enter(kvt_mvcc *m) {
    if (!m) return kvt_seterr(KVT_ECLOSED, "no MVCC handle");
    atomic_fetch_add(&m->inflight, 1);
    if (atomic_load(&m->closed)) {
        atomic_fetch_sub(&m->inflight, 1);
        return kvt_seterr(KVT_ECLOSED, "store is closed");
    }
    return KVT_OK;
}

void mvcc_leave(kvt_mvcc *m) { atomic_fetch_sub(&m->inflight, 1); }

int kvt_mvcc_close(kvt_mvcc *m) {
    if (!m) return KVT_OK;
    atomic_store(&m->closed, 1);
    while (atomic_load(&m->inflight) > 0) sched_yield();
    return KVT_OK;
}

void kvt_mvcc_free(kvt_mvcc *m) {
    if (!m) return;
    kvt_mvcc_close(m);
    pthread_mutex_destroy(&m->lock);
    pthread_mutex_destroy(&m->heads_mu);
    pthread_mutex_destroy(&m->q_mu);
    hc_free(&m->heads);
    kvt_buf_free(&m->rec);
    kvt_buf_free(&m->key);
    kvt_buf_free(&m->aux);
    kvt_buf_free(&m->val);
    free(m->leases);
    free(m);
}

void kvt_mvcc_release(void *p) { free(p); }

/* ---- revision counters and the writer lock ---------------------------------------- */

uint64_t kvt_mvcc_head(kvt_mvcc *m) { return atomic_load(&m->head); }

uint64_t kvt_mvcc_visible(kvt_mvcc *m) { return atomic_load(&m->visible); }

/* A lock-free _Atomic uint64_t has the representation of a uint64_t (static check). */
_Static_assert(sizeof(_Atomic uint64_t) == sizeof(uint64_t), "atomic counter layout");
const uint64_t *kvt_mvcc_head_word(kvt_mvcc *m) { return (const uint64_t *)&m->head; }
const uint64_t *kvt_mvcc_visible_word(kvt_mvcc *m) { return (const uint64_t *)&m->visible; }

int kvt_mvcc_lock(kvt_mvcc *m) {
    KVT_TRY(mvcc_enter(m));
    pthread_mutex_lock(&m->lock);
    return KVT_OK;
}

void kvt_mvcc_unlock(kvt_mvcc *m) {
    pthread_mutex_unlock(&m->lock);
    mvcc_leave(m);
}

void kvt_mvcc_publish(kvt_mvcc *m, uint64_t rev) {
    uint64_t cur = atomic_load(&m->visible);
    while (cur < rev && !atomic_compare_exchange_weak(&m->visible, &cur, rev)) {}
}

/* Under heads_mu: the head moves together with the cache entries of its keys, and a
 * reader learns a key only while no write is between noting keys and moving the head. */
void kvt_mvcc_note(kvt_mvcc *m, const uint8_t *k, size_t kl, uint64_t rev) {
    pthread_mutex_lock(&m->heads_mu);
    m->writing = 1;
    hc_set(&m->heads, k, kl, rev, NULL);
    pthread_mutex_unlock(&m->heads_mu);
}

void mvcc_note_header(kvt_mvcc *m, const uint8_t *k, size_t kl, const kvt_mvcc_kv *hdr) {
    pthread_mutex_lock(&m->heads_mu);
    m->writing = 1;
    hc_set(&m->heads, k, kl, hdr->mod, hdr);
    pthread_mutex_unlock(&m->heads_mu);
}

int mvcc_head_header(kvt_mvcc *m, const uint8_t *k, size_t kl, kvt_mvcc_kv *hdr) {
    pthread_mutex_lock(&m->heads_mu);
    int known = hc_lookup_header(&m->heads, k, kl, hdr);
    pthread_mutex_unlock(&m->heads_mu);
    return known;
}

void kvt_mvcc_set_head(kvt_mvcc *m, uint64_t rev) {
    pthread_mutex_lock(&m->heads_mu);
    atomic_store(&m->head, rev);
    m->writing = 0;
    pthread_mutex_unlock(&m->heads_mu);
    if (!m->durable) kvt_mvcc_publish(m, rev);
}

/* ---- live leases (sorted array: few, and changed far less often than read) ---------- */

static size_t lease_pos(const kvt_mvcc *m, uint64_t id) {
    size_t lo = 0, hi = m->nleases;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (m->leases[mid] < id) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

int mvcc_lease_live(const kvt_mvcc *m, uint64_t id) {
    size_t i = lease_pos(m, id);
    return i < m->nleases && m->leases[i] == id;
}

int kvt_mvcc_lease_add(kvt_mvcc *m, uint64_t id) {
    size_t i = lease_pos(m, id);
    if (i < m->nleases && m->leases[i] == id) return KVT_OK;
    if (m->nleases == m->capleases) {
        size_t cap = m->capleases ? 2 * m->capleases : 16;
        uint64_t *n = realloc(m->leases, cap * sizeof *n);
        if (!n) return kvt_seterr(KVT_ENOMEM, "no memory for the lease set");
        m->leases = n;
        m->capleases = cap;
    }
    memmove(m->leases + i + 1, m->leases + i, (m->nleases - i) * sizeof *m->leases);
    m->leases[i] = id;
    m->nleases++;
    return KVT_OK;
}

void kvt_mvcc_lease_remove(kvt_mvcc *m, uint64_t id) {
    size_t i = lease_pos(m, id);
    if (i >= m->nleases || m->leases[i] != id) return;
    memmove(m->leases + i, m->leases + i + 1, (m->nleases - i - 1) * sizeof *m->leases);
    m->nleases--;
}

/* ---- point reads ------------------------------------------------------------------ */

typedef struct lookup {
    const uint8_t *prefix;
    size_t plen;
    kvt_mvcc_kv *out;
    kvt_buf *value;
    int found, rc;
} lookup;

/* The scan starts at the key's version at or below the wanted revision: its first
 * entry is the answer if it still belongs to the key. */
static int lookup_first(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    lookup *l = ctx;
    if (kl != l->plen + 8 || memcmp(k, l->prefix, l->plen) != 0) return 1;
    l->rc = mvcc_entry_parse(v, vl, mvcc_kv_rev(k, kl), l->out);
    if (l->rc == KVT_OK) {
        l->rc = kvt_buf_set(l->value, v + KVT_MVCC_HDR, vl - KVT_MVCC_HDR);
        if (l->rc == KVT_EBUFSMALL) l->value->len = vl - KVT_MVCC_HDR;
    }
    l->found = 1;
    return 1;
}

/* Seek: the newest version at or below rev of the key whose engine-key prefix is in key
 * (prefix_len bytes; the buffer gets the revision appended). */
static int seek_version(kvt_mvcc *m, kvt_buf *key, size_t prefix_len, uint64_t rev,
                        kvt_mvcc_kv *out, kvt_buf *value) {
    kvt_db *db = m->db;
    mvcc_kv_set_rev(key, prefix_len, rev);
    lookup l = {key->data, prefix_len, out, value, 0, KVT_OK};
    /* the key's versions end where its terminator 00 01 would be 00 02 */
    uint8_t end[KVT_MAX_KEY];
    memcpy(end, key->data, prefix_len);
    end[prefix_len - 1] = 2;
    KVT_TRY(kvt_db_usable(db, 0));
    pthread_rwlock_rdlock(&db->rw);
    int rc = db->ops->scan_until
        ? db->ops->scan_until(db->eng, key->data, key->len, end, prefix_len, lookup_first, &l)
        : db->ops->scan(db->eng, key->data, key->len, 1, 0, lookup_first, &l);
    pthread_rwlock_unlock(&db->rw);
    KVT_TRY(rc);
    KVT_TRY(l.rc);
    return l.found ? KVT_OK : KVT_NOTFOUND;
}

/* Exact get of the version at mod; on success value holds the value only. On
 * KVT_EBUFSMALL out->vlen is what value must hold (header included). */
static int get_version(kvt_mvcc *m, kvt_buf *key, size_t prefix_len, uint64_t mod,
                       kvt_mvcc_kv *out, kvt_buf *value) {
    kvt_db *db = m->db;
    mvcc_kv_set_rev(key, prefix_len, mod);
    KVT_TRY(kvt_db_usable(db, 0));
    value->len = 0;
    pthread_rwlock_rdlock(&db->rw);
    int rc = db->ops->get(db->eng, key->data, key->len, value);
    pthread_rwlock_unlock(&db->rw);
    if (rc == KVT_OK && value->len > value->cap) rc = KVT_EBUFSMALL;
    if (rc == KVT_EBUFSMALL) out->vlen = value->len;
    if (rc != KVT_OK) return rc;
    KVT_TRY(mvcc_entry_parse(value->data, value->len, mod, out));
    memmove(value->data, value->data + KVT_MVCC_HDR, out->vlen);
    value->len = out->vlen;
    return KVT_OK;
}

/* Remember a seek's answer (mod 0: no version) if it is the key's newest overall: the
 * seek was at the head and no write is in progress. stale: the cached mod whose entry
 * the exact get did not find (compacted away), replaced; 0: learn only a new key. */
static void learn(kvt_mvcc *m, const uint8_t *k, size_t kl, uint64_t rev,
                  const kvt_mvcc_kv *hdr, uint64_t stale) {
    pthread_mutex_lock(&m->heads_mu);
    uint64_t cur;
    if (atomic_load(&m->head) == rev && !m->writing &&
        (!hc_lookup(&m->heads, k, kl, &cur, NULL) || (stale && cur == stale)))
        hc_set(&m->heads, k, kl, hdr->mod, hdr);
    pthread_mutex_unlock(&m->heads_mu);
}

/* An exact get read version mod's header: keep it if the cache still names mod as the
 * key's newest (a version's header never changes, so no revision check is needed). */
static void learn_header(kvt_mvcc *m, const uint8_t *k, size_t kl, const kvt_mvcc_kv *hdr) {
    pthread_mutex_lock(&m->heads_mu);
    uint64_t cur;
    if (hc_lookup(&m->heads, k, kl, &cur, NULL) && cur == hdr->mod)
        hc_set(&m->heads, k, kl, hdr->mod, hdr);
    pthread_mutex_unlock(&m->heads_mu);
}

/* The newest version of k at or below rev: an exact get when the head cache knows the
 * key's newest version and it is <= rev, else a seek (then learned). key holds the
 * key's engine prefix (prefix_len bytes). */
int mvcc_read_version(kvt_mvcc *m, const uint8_t *k, size_t kl, kvt_buf *key,
                        size_t prefix_len, uint64_t rev, kvt_mvcc_kv *out, kvt_buf *value) {
    uint64_t head_mod = 0;
    pthread_mutex_lock(&m->heads_mu);
    int has_hdr = 0;
    int known = hc_lookup(&m->heads, k, kl, &head_mod, &has_hdr);
    pthread_mutex_unlock(&m->heads_mu);
    uint64_t stale = 0;
    if (known && head_mod <= rev) {
        if (head_mod == 0) return KVT_NOTFOUND;
        int rc = get_version(m, key, prefix_len, head_mod, out, value);
        if (rc == KVT_OK && !has_hdr) learn_header(m, k, kl, out);   /* (once per version) */
        if (rc != KVT_NOTFOUND) return rc;
        stale = head_mod;               /* gone: a tombstone compaction removed */
    }
    int rc = seek_version(m, key, prefix_len, rev, out, value);
    if (rc == KVT_OK || rc == KVT_NOTFOUND) {
        const kvt_mvcc_kv none = {0};
        learn(m, k, kl, rev, rc == KVT_OK ? out : &none, stale);
    }
    return rc;
}

int mvcc_check_key(const uint8_t *k, size_t kl) {
    if (!k || kl == 0) return kvt_seterr(KVT_EINVAL, "empty key");
    return KVT_OK;
}

int kvt_mvcc_get(kvt_mvcc *m, const uint8_t *k, size_t kl, uint64_t rev, uint8_t *dst,
                 size_t cap, kvt_mvcc_kv *out) {
    KVT_TRY(mvcc_check_key(k, kl));
    KVT_TRY(mvcc_enter(m));
    uint8_t stack[512];
    kvt_buf key = {stack, 0, sizeof stack, 0};
    kvt_buf value = {dst, 0, dst ? cap : 0, 1};
    if (1 + 2 * kl + 10 > sizeof stack) {      /* the escaped key may not fit the stack */
        key.data = NULL;
        key.cap = 0;
    }
    int rc = mvcc_kv_prefix(&key, k, kl);
    if (rc == KVT_OK) rc = mvcc_read_version(m, k, kl, &key, key.len, rev, out, &value);
    if (rc == KVT_OK && value.len > value.cap) rc = KVT_EBUFSMALL;
    if (key.data != stack) kvt_buf_free(&key);
    mvcc_leave(m);
    return rc;
}

/* ---- puts ------------------------------------------------------------------------ */

/* Append one change to m->rec: the versioned entry (value, or a tombstone), its
 * revision-log entry (rev e->mod, sub) and the move of the key's lease attachment from
 * old_lease to e->lease. m->key holds the engine prefix of k (prefix_len bytes). */
int mvcc_record_change(kvt_mvcc *m, size_t prefix_len, const uint8_t *k, size_t kl,
                       const uint8_t *v, size_t vl, const kvt_mvcc_kv *e, uint32_t sub,
                       uint64_t old_lease) {
    kvt_buf *rec = &m->rec;
    KVT_TRY(kvt_buf_reserve(&m->val, KVT_MVCC_HDR + vl));
    mvcc_entry_header(m->val.data, e);
    if (vl) memcpy(m->val.data + KVT_MVCC_HDR, v, vl);
    mvcc_kv_set_rev(&m->key, prefix_len, e->mod);
    KVT_TRY(kvt_db_record_add(rec, KVT_BATCH_OP_PUT, m->key.data, m->key.len, m->val.data,
                              KVT_MVCC_HDR + vl));
    uint8_t rk[MVCC_REVLOG_KEY];
    mvcc_revlog_key(rk, e->mod, sub);
    KVT_TRY(kvt_db_record_add(rec, KVT_BATCH_OP_PUT, rk, sizeof rk, k, kl));
    if (old_lease == e->lease) return KVT_OK;
    if (old_lease) {
        KVT_TRY(mvcc_attach_key(&m->aux, old_lease, k, kl));
        KVT_TRY(kvt_db_record_add(rec, KVT_BATCH_OP_DEL, m->aux.data, m->aux.len, NULL, 0));
    }
    if (!e->lease) return KVT_OK;
    KVT_TRY(mvcc_attach_key(&m->aux, e->lease, k, kl));
    return kvt_db_record_add(rec, KVT_BATCH_OP_PUT, m->aux.data, m->aux.len,
                             (const uint8_t *)"", 0);
}

