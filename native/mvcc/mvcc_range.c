/* mvcc_range.c - kvt_mvcc_range: a range read at a revision in one call (see kvt_mvcc.h
 * for the response format). The engine range holds every version of every key in the
 * range, each key's versions newest first; per key the first version at or below rev is
 * the one the read sees, and a tombstone there means the key is absent. All of that is
 * per-key work, so it is done here and Python only builds the results it returns.
 */
#include <stdlib.h>
#include "mvcc_int.h"

typedef struct range_scan {
    uint64_t rev, limit;              /* limit 0: every key */
    int flags;
    kvt_buf *out;
    uint64_t count;                   /* live keys at rev */
    uint32_t nkvs;                    /* of them, copied to out */
    kvt_buf group;                    /* engine prefix of the key being looked at */
    int decided;                      /* its version at rev was found (or none can be) */
} range_scan;

static int corrupt_key(const uint8_t *ek, size_t ekl) {
    return kvt_seterr(KVT_ECORRUPT, "store: malformed MVCC key of %zu bytes (first byte %02x)",
                      ekl, ekl ? ek[0] : 0);
}

static int out_u64(kvt_buf *out, uint64_t v) {
    uint8_t b[8];
    kvt_put64(b, v);
    return kvt_buf_append(out, b, 8);
}

static int out_u32(kvt_buf *out, uint32_t v) {
    uint8_t b[4];
    kvt_put32(b, v);
    return kvt_buf_append(out, b, 4);
}

/* The user key of an engine key: esc() undone (each 00 FF back to 00). */
static int out_user_key(kvt_buf *out, const uint8_t *esc, size_t n) {
    size_t at = out->len;
    KVT_TRY(out_u32(out, 0));
    KVT_TRY(kvt_buf_reserve(out, out->len + n));
    uint8_t *p = out->data + out->len;
    for (size_t i = 0; i < n; i++) {
        *p++ = esc[i];
        if (esc[i] == 0) i++;          /* skip the FF that follows an escaped 00 */
    }
    size_t kl = (size_t)(p - (out->data + out->len));
    out->len += kl;
    kvt_put32(out->data + at, (uint32_t)kl);
    return KVT_OK;
}

static int emit(range_scan *s, const uint8_t *ek, size_t ekl, const kvt_mvcc_kv *e,
                const uint8_t *value) {
    KVT_TRY(out_u64(s->out, e->create));
    KVT_TRY(out_u64(s->out, e->mod));
    KVT_TRY(out_u64(s->out, e->version));
    KVT_TRY(out_u64(s->out, e->lease));
    KVT_TRY(out_user_key(s->out, ek + 1, ekl - 11));
    int keys_only = (s->flags & KVT_MVCC_RANGE_KEYS_ONLY) != 0;
    KVT_TRY(out_u32(s->out, keys_only ? 0 : (uint32_t)e->vlen));
    if (!keys_only && e->vlen) KVT_TRY(kvt_buf_append(s->out, value, e->vlen));
    s->nkvs++;
    return KVT_OK;
}

/* One engine entry, in engine key order. */
static int visit(range_scan *s, const uint8_t *ek, size_t ekl, const uint8_t *ev, size_t evl) {
    if (ekl < 11 || ek[0] != 'k' || ek[ekl - 10] != 0 || ek[ekl - 9] != 1)
        return corrupt_key(ek, ekl);
    size_t glen = ekl - 8;
    if (s->group.len != glen || memcmp(s->group.data, ek, glen) != 0) {
        KVT_TRY(kvt_buf_set(&s->group, ek, glen));
        s->decided = 0;
    }
    if (s->decided) return KVT_OK;            /* an older version of a decided key */
    uint64_t mod = mvcc_kv_rev(ek, ekl);
    if (mod > s->rev) return KVT_OK;          /* newer than the read */
    s->decided = 1;
    kvt_mvcc_kv e;
    KVT_TRY(mvcc_entry_parse(ev, evl, mod, &e));
    if (e.tombstone) return KVT_OK;
    s->count++;
    if (s->flags & KVT_MVCC_RANGE_COUNT_ONLY) return KVT_OK;
    if (s->limit && s->nkvs >= s->limit) return KVT_OK;   /* counted, not returned */
    return emit(s, ek, ekl, &e, ev + KVT_MVCC_HDR);
}

static int scan_range(kvt_mvcc *m, range_scan *s, const uint8_t *lo, size_t ll,
                      const uint8_t *hi, size_t hl) {
    kvt_iter *it = NULL;
    KVT_TRY(kvt_iter_new(m->db, lo, ll, hi, hl, 0, &it));
    const uint8_t *k, *v;
    size_t kl, vl;
    int rc;
    while ((rc = kvt_iter_next(it, &k, &kl, &v, &vl)) == KVT_OK) {
        rc = visit(s, k, kl, v, vl);
        if (rc < 0) break;
    }
    kvt_iter_free(it);
    return rc == KVT_NOTFOUND ? KVT_OK : rc;
}

int kvt_mvcc_range(kvt_mvcc *m, const uint8_t *lo, size_t ll, const uint8_t *hi, size_t hl,
                   uint64_t rev, uint64_t limit, int flags, uint8_t **resp, size_t *resp_len) {
    if (!resp || !resp_len || !lo || !hi)
        return kvt_seterr(KVT_EINVAL, "kvt_mvcc_range: NULL argument");
    *resp = NULL;
    *resp_len = 0;
    KVT_TRY(mvcc_enter(m));
    kvt_buf out = {0};
    range_scan s = {.rev = rev, .limit = limit, .flags = flags, .out = &out};
    int rc = out_u64(&out, 0);                /* the count, filled in below */
    if (rc == KVT_OK) rc = out_u32(&out, 0);
    if (rc == KVT_OK) rc = scan_range(m, &s, lo, ll, hi, hl);
    kvt_buf_free(&s.group);
    mvcc_leave(m);
    if (rc < 0) {
        kvt_buf_free(&out);
        return rc;
    }
    kvt_put64(out.data, s.count);
    kvt_put32(out.data + 8, s.nkvs);
    *resp = out.data;
    *resp_len = out.len;
    return KVT_OK;
}
