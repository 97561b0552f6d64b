/* mvcc_txn.c - kvt_mvcc_txn: the common txn shape in one call (see kvt_mvcc.h for the
 * request and response formats). Compares read the state before the txn; each op sees
 * the txn's own earlier writes (an overlay of the keys written); every change of the
 * txn shares one revision and gets its own revision-log entry (sub 0, 1, ...).
 */
#include <stdlib.h>
#include "mvcc_int.h"

enum { T_VERSION, T_CREATE, T_MOD, T_VALUE, T_LEASE };
enum { OP_EQ, OP_NE, OP_LT, OP_GT };
enum { TX_PUT = 1, TX_DELETE = 2, TX_GET = 3 };

typedef struct rd {                     /* request reader */
    const uint8_t *p, *end;
    int bad;
} rd;

static uint8_t rd_u8(rd *r) {
    if (r->end - r->p < 1) { r->bad = 1; return 0; }
    return *r->p++;
}

static uint32_t rd_u32(rd *r) {
    if (r->end - r->p < 4) { r->bad = 1; return 0; }
    uint32_t v = kvt_get32(r->p);
    r->p += 4;
    return v;
}

static uint64_t rd_u64(rd *r) {
    if (r->end - r->p < 8) { r->bad = 1; return 0; }
    uint64_t v = kvt_get64(r->p);
    r->p += 8;
    return v;
}

static const uint8_t *rd_bytes(rd *r, uint32_t n) {
    if ((size_t)(r->end - r->p) < n) { r->bad = 1; return NULL; }
    const uint8_t *b = r->p;
    r->p += n;
    return b;
}

/* One key's state as this txn sees it: the overlay of its writes first. */
typedef struct ov {
    const uint8_t *k, *v;
    uint32_t kl, vl;
    kvt_mvcc_kv e;                      /* e.tombstone: deleted by this txn */
} ov;

typedef struct txn {
    kvt_mvcc *m;
    uint64_t head, rev;
    uint32_t sub;
    ov *ovl;
    uint32_t nov, capov;
    kvt_buf *out;
} txn;

static int bad_request(void) { return kvt_seterr(KVT_EINVAL, "malformed txn request"); }

/* The live version of k (found 0: none); its value in t->m->val (or the overlay). */
static int current(txn *t, const uint8_t *k, uint32_t kl, int need_value, kvt_mvcc_kv *e,
                   const uint8_t **v, int *found) {
    for (uint32_t i = t->nov; i-- > 0;) {
        ov *o = &t->ovl[i];
        if (o->kl == kl && memcmp(o->k, k, kl) == 0) {
            *e = o->e;
            *v = o->v;
            *found = !o->e.tombstone;
            return KVT_OK;
        }
    }
    kvt_mvcc *m = t->m;
    *found = 0;
    if (!need_value && mvcc_head_header(m, k, kl, e)) {   /* the header is all it needs */
        *found = e->mod && !e->tombstone;
        *v = NULL;
        return KVT_OK;
    }
    int rc = mvcc_kv_prefix(&m->key, k, kl);
    if (rc == KVT_ETOOLARGE) return KVT_OK;     /* too long to be stored: absent */
    KVT_TRY(rc);
    rc = mvcc_read_version(m, k, kl, &m->key, m->key.len, t->head, e, &m->val);
    if (rc < 0) return rc;
    *found = rc == KVT_OK && !e->tombstone;
    *v = m->val.data;
    return KVT_OK;
}

static int cmp_int(int op, int64_t a, int64_t b) {
    return op == OP_EQ ? a == b : op == OP_NE ? a != b : op == OP_LT ? a < b : a > b;
}

static int compare_holds(txn *t, rd *r, int *holds) {
    uint8_t target = rd_u8(r), op = rd_u8(r);
    uint32_t kl = rd_u32(r);
    const uint8_t *k = rd_bytes(r, kl);
    uint32_t vl = target == T_VALUE ? rd_u32(r) : 0;
    const uint8_t *operand = target == T_VALUE ? rd_bytes(r, vl) : NULL;
    int64_t n = target == T_VALUE ? 0 : (int64_t)rd_u64(r);
    if (r->bad || target > T_LEASE || op > OP_GT || kl == 0) return bad_request();
    kvt_mvcc_kv e = {0};
    const uint8_t *v = NULL;
    int found = 0;
    KVT_TRY(current(t, k, kl, target == T_VALUE, &e, &v, &found));
    if (target == T_VALUE) {             /* as etcd: fails on a missing key */
        int c = found ? kvt_keycmp(v, e.vlen, operand, vl) : 0;
        *holds = found && cmp_int(op, c, 0);
        return KVT_OK;
    }
    uint64_t actual = !found ? 0 : target == T_VERSION ? e.version
                    : target == T_CREATE ? e.create : target == T_MOD ? e.mod : e.lease;
    *holds = cmp_int(op, (int64_t)actual, n);
    return KVT_OK;
}

/* ---- response ------------------------------------------------------------------ */

static int out_u8(txn *t, uint8_t v) { return kvt_buf_append(t->out, &v, 1); }

static int out_u64(txn *t, uint64_t v) {
    uint8_t b[8];
    kvt_put64(b, v);
    return kvt_buf_append(t->out, b, 8);
}

static int out_blob(txn *t, const uint8_t *p, size_t n) {
    uint8_t b[4];
    kvt_put32(b, (uint32_t)n);
    KVT_TRY(kvt_buf_append(t->out, b, 4));
    return n ? kvt_buf_append(t->out, p, n) : KVT_OK;
}

static int out_kv(txn *t, const uint8_t *k, uint32_t kl, const kvt_mvcc_kv *e,
                  const uint8_t *v) {
    KVT_TRY(out_u64(t, e->create));
    KVT_TRY(out_u64(t, e->mod));
    KVT_TRY(out_u64(t, e->version));
    KVT_TRY(out_u64(t, e->lease));
    KVT_TRY(out_blob(t, k, kl));
    return out_blob(t, v, e->vlen);
}

/* ---- ops ----------------------------------------------------------------------- */

static int overlay(txn *t, const uint8_t *k, uint32_t kl, const uint8_t *v, uint32_t vl,
                   const kvt_mvcc_kv *e) {
    if (t->nov == t->capov) {
        uint32_t cap = t->capov ? 2 * t->capov : 8;
        ov *n = realloc(t->ovl, cap * sizeof *n);
        if (!n) return kvt_seterr(KVT_ENOMEM, "no memory for a txn overlay");
        t->ovl = n;
        t->capov = cap;
    }
    t->ovl[t->nov++] = (ov){k, v, kl, vl, *e};
    return KVT_OK;
}

static int run_op(txn *t, rd *r) {
    uint8_t kind = rd_u8(r), flags = rd_u8(r);
    uint32_t kl = rd_u32(r);
    const uint8_t *k = rd_bytes(r, kl);
    uint32_t vl = kind == TX_PUT ? rd_u32(r) : 0;
    const uint8_t *v = kind == TX_PUT ? rd_bytes(r, vl) : NULL;
    uint64_t lease = kind == TX_PUT ? rd_u64(r) : 0;
    if (r->bad || kind < TX_PUT || kind > TX_GET || kl == 0) return bad_request();
    if (lease && !mvcc_lease_live(t->m, lease))     /* nothing is committed yet */
        return kvt_seterr(KVT_ENOLEASE, "requested lease %#llx not found",
                          (unsigned long long)lease);
    kvt_mvcc_kv cur = {0};
    const uint8_t *cv = NULL;
    int found = 0;
    KVT_TRY(current(t, k, kl, kind == TX_GET || (flags & 1), &cur, &cv, &found));
    KVT_TRY(out_u8(t, kind));
    if (kind == TX_GET) {
        KVT_TRY(out_u8(t, (uint8_t)found));
        return found ? out_kv(t, k, kl, &cur, cv) : KVT_OK;
    }
    kvt_mvcc_kv e = {.mod = t->rev, .lease = lease};
    if (kind == TX_PUT) {
        e.create = found ? cur.create : t->rev;
        e.version = found ? cur.version + 1 : 1;
        e.vlen = vl;
        KVT_TRY(out_u64(t, e.create));
        KVT_TRY(out_u64(t, e.version));
    } else {
        KVT_TRY(out_u8(t, (uint8_t)found));
        if (!found) return out_u8(t, 0);
        e.tombstone = 1;
    }
    int with_prev = (flags & 1) && found;
    KVT_TRY(out_u8(t, (uint8_t)with_prev));
    if (with_prev) KVT_TRY(out_kv(t, k, kl, &cur, cv));
    KVT_TRY(mvcc_kv_prefix(&t->m->key, k, kl));
    KVT_TRY(mvcc_record_change(t->m, t->m->key.len, k, kl, v, vl, &e, t->sub++,
                               found ? cur.lease : 0));
    return overlay(t, k, kl, v, vl, &e);
}

/* Under the writer lock: compares, the taken branch, the commit. */
static int txn_locked(txn *t, rd *r, uint64_t *lsn) {
    kvt_mvcc *m = t->m;
    KVT_TRY(kvt_db_usable(m->db, 0));
    t->head = atomic_load(&m->head);
    t->rev = t->head + 1;
    m->rec.len = 0;
    int ok = 1;
    uint32_t ncmp = rd_u32(r);
    for (uint32_t i = 0; i < ncmp && !r->bad; i++) {
        int holds = 0;
        KVT_TRY(compare_holds(t, r, &holds));
        ok &= holds;
    }
    KVT_TRY(out_u8(t, (uint8_t)ok));
    size_t rev_at = t->out->len;
    KVT_TRY(out_u64(t, 0));
    for (int branch = 1; branch >= 0; branch--) {     /* success, then failure */
        uint32_t nops = rd_u32(r);
        if (r->bad) return bad_request();
        for (uint32_t i = 0; i < nops; i++) {
            if (branch == ok) KVT_TRY(run_op(t, r));
            else {                                   /* the branch not taken: skip it */
                uint8_t kind = rd_u8(r);
                rd_u8(r);
                rd_bytes(r, rd_u32(r));
                if (kind == TX_PUT) {
                    rd_bytes(r, rd_u32(r));
                    rd_u64(r);
                }
                if (r->bad) return bad_request();
            }
        }
    }
    if (r->p != r->end) return bad_request();
    if (t->sub == 0) {                               /* read-only: no revision */
        kvt_put64(t->out->data + rev_at, t->head);
        return KVT_OK;
    }
    KVT_TRY(kvt_db_usable(m->db, 1));
    KVT_TRY(kvt_db_commit_logged(m->db, m->rec.data, m->rec.len, lsn));
    kvt_put64(t->out->data + rev_at, t->rev);
    for (uint32_t i = 0; i < t->nov; i++)    /* the header each key's write left */
        mvcc_note_header(m, t->ovl[i].k, t->ovl[i].kl, &t->ovl[i].e);
    kvt_mvcc_set_head(m, t->rev);
    return KVT_OK;
}

int kvt_mvcc_txn(kvt_mvcc *m, const uint8_t *req, size_t rl, uint8_t **resp,
                 size_t *resp_len) {
    if (!resp || !resp_len || (!req && rl)) return kvt_seterr(KVT_EINVAL, "kvt_mvcc_txn: NULL");
    *resp = NULL;
    *resp_len = 0;
    KVT_TRY(mvcc_enter(m));
    kvt_buf out = {0};
    txn t = {.m = m, .out = &out};
    rd r = {req, req + rl, 0};
    uint64_t lsn = 0;
    pthread_mutex_lock(&m->lock);
    int rc = txn_locked(&t, &r, &lsn);
    pthread_mutex_unlock(&m->lock);
    if (rc == KVT_OK && t.sub && m->durable) {
        rc = kvt_db_sync_upto(m->db, lsn);
        if (rc == KVT_OK) kvt_mvcc_publish(m, t.rev);
    }
    free(t.ovl);
    mvcc_leave(m);
    if (rc < 0) {
        kvt_buf_free(&out);
        return rc;
    }
    *resp = out.data;
    *resp_len = out.len;
    return KVT_OK;
}
