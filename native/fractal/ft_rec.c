/* ft_rec.c - records (messages and basement entries), sorted vectors, pivots. */
#include "ft_int.h"

int frec_new(uint8_t type, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl,
             uint64_t msn, frec *out) {
    uint8_t *m = malloc(kl + vl + 1);
    if (!m) return kvt_seterr(KVT_ENOMEM, "fractal: no memory for a %zu-byte record", kl + vl);
    memcpy(m, k, kl);
    if (vl) memcpy(m + kl, v, vl);
    *out = (frec){ .k = m, .v = m + kl, .kl = (uint32_t)kl, .vl = (uint32_t)vl,
                   .msn = msn, .type = type, .owned = 1 };
    return KVT_OK;
}

int frec_detach(frec *r) {
    if (r->owned) return KVT_OK;
    frec c;
    KVT_TRY(frec_new(r->type, r->k, r->kl, r->v, r->vl, r->msn, &c));
    *r = c;
    return KVT_OK;
}

void frec_free(frec *r) {
    if (r->owned) free((void *)r->k);
    r->k = r->v = NULL;
    r->owned = 0;
}

int frec_cmp(const frec *a, const frec *b) {
    int c = kvt_keycmp(a->k, a->kl, b->k, b->kl);
    if (c) return c;
    return a->msn < b->msn ? -1 : (a->msn > b->msn ? 1 : 0);
}

uint32_t fvec_lower(const fvec *v, const uint8_t *k, size_t kl) {
    uint32_t lo = 0, hi = v->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (kvt_keycmp(v->r[mid].k, v->r[mid].kl, k, kl) < 0) lo = mid + 1; else hi = mid;
    }
    return lo;
}

uint32_t fvec_upper(const fvec *v, const uint8_t *k, size_t kl) {
    uint32_t lo = 0, hi = v->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (kvt_keycmp(v->r[mid].k, v->r[mid].kl, k, kl) <= 0) lo = mid + 1; else hi = mid;
    }
    return lo;
}

int fvec_reserve(fvec *v, uint32_t n) {
    if (n <= v->cap) return KVT_OK;
    uint32_t c = v->cap ? v->cap : 8;
    while (c < n) c *= 2;
    frec *r = realloc(v->r, (size_t)c * sizeof *r);
    if (!r) return kvt_seterr(KVT_ENOMEM, "fractal: no memory for %u records", c);
    v->r = r;
    v->cap = c;
    return KVT_OK;
}

int fvec_insert(fvec *v, uint32_t pos, const frec *r) {
    KVT_TRY(fvec_reserve(v, v->n + 1));
    memmove(v->r + pos + 1, v->r + pos, (size_t)(v->n - pos) * sizeof *r);
    v->r[pos] = *r;
    v->n++;
    v->bytes += frec_size(r);
    return KVT_OK;
}

void fvec_free(fvec *v) {
    for (uint32_t i = 0; i < v->n; i++) frec_free(&v->r[i]);
    free(v->r);
    *v = (fvec){0};
}

/* k against pivot p: their first 8 bytes (p->w, kept beside the pointer) decide most
 * comparisons without touching the pivot's bytes (a cache miss each: they are mallocs
 * of their own). */
static inline int piv_cmp(const fkey *p, uint64_t w, const uint8_t *k, size_t kl) {
    if (p->w != w) return p->w < w ? -1 : 1;
    return kvt_keycmp(p->k, p->kl, k, kl);
}

/* Child index for key k: the number of pivots <= k. */
uint32_t fpiv_child(const fkey *piv, uint32_t npiv, const uint8_t *k, size_t kl) {
    uint32_t lo = 0, hi = npiv;
    uint64_t w = ft_key_word(k, kl);
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (piv_cmp(&piv[mid], w, k, kl) <= 0) lo = mid + 1; else hi = mid;
    }
    return lo;
}

/* Child holding the greatest key < k: the number of pivots < k. */
uint32_t fpiv_child_lt(const fkey *piv, uint32_t npiv, const uint8_t *k, size_t kl) {
    uint32_t lo = 0, hi = npiv;
    uint64_t w = ft_key_word(k, kl);
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (piv_cmp(&piv[mid], w, k, kl) < 0) lo = mid + 1; else hi = mid;
    }
    return lo;
}

int fkey_set(fkey *d, const uint8_t *k, size_t kl) {
    uint8_t *m = malloc(kl ? kl : 1);
    if (!m) return kvt_seterr(KVT_ENOMEM, "fractal: no memory for a pivot");
    memcpy(m, k, kl);
    d->k = m;
    d->kl = (uint32_t)kl;
    d->w = ft_key_word(k, kl);
    return KVT_OK;
}

int ft_blob_of(const frec *r, uint64_t *pgno, uint64_t *len) {
    if (r->type != FT_PUTBLOB || r->vl != FT_BLOBREF) return 0;
    *pgno = kvt_get64(r->v);
    *len = kvt_get64(r->v + 8);
    return 1;
}

/* A record leaves the tree for good (overwritten or deleted): free its value blob. */
int ft_rec_release(kvt_engine *e, frec *r) {
    uint64_t pg, len;
    int rc = KVT_OK;
    if (ft_blob_of(r, &pg, &len)) rc = kvt_blob_free(e->p, pg);
    frec_free(r);
    return rc;
}

int ft_rec_value(kvt_engine *e, const frec *r, kvt_buf *out) {
    uint64_t pg, len;
    if (r->type == FT_DEL) return KVT_OK;
    if (!ft_blob_of(r, &pg, &len)) return r->vl ? kvt_buf_append(out, r->v, r->vl) : KVT_OK;
    kvt_buf tmp = {0};
    int rc = kvt_blob_read(e->p, pg, len, &tmp);
    if (rc == KVT_OK && tmp.len) rc = kvt_buf_append(out, tmp.data, tmp.len);
    kvt_buf_free(&tmp);
    return rc;
}

/* A folded value becomes a record of its own, out of line when big (like a put). */
static int fold_record(kvt_engine *e, uint8_t type, const frec *up, const kvt_buf *v,
                       frec *out) {
    const uint8_t *data = v->len ? v->data : (const uint8_t *)"";
    if (type == FT_UPSERT || v->len <= e->big_value)
        return frec_new(type, up->k, up->kl, data, v->len, up->msn, out);
    kvt_pgno pg;
    uint8_t ref[FT_BLOBREF];
    KVT_TRY(kvt_blob_write(e->p, data, v->len, &pg));
    kvt_put64(ref, pg);
    kvt_put64(ref + 8, v->len);
    int rc = frec_new(FT_PUTBLOB, up->k, up->kl, ref, sizeof ref, up->msn, out);
    if (rc < 0) kvt_blob_free(e->p, pg);
    return rc;
}

int ft_fold(kvt_engine *e, const frec *old, frec *up) {
    if (up->type != FT_UPSERT) return KVT_OK;
    kvt_buf v = {0};
    uint8_t type = old && old->type == FT_UPSERT ? FT_UPSERT : FT_PUT;
    int rc = old ? ft_rec_value(e, old, &v) : KVT_OK;   /* PUTBLOB: one blob read */
    if (rc == KVT_OK) rc = kvt_buf_append_newest(&v, up->v, up->vl, KVT_MAX_VALUE);
    frec r;
    if (rc == KVT_OK) rc = fold_record(e, type, up, &v, &r);
    kvt_buf_free(&v);
    if (rc < 0) return rc;
    frec_free(up);
    *up = r;
    return KVT_OK;
}
