/* bt_key.c - key comparison (including keys spilled to overflow blobs), binary search,
 * and building leaf/branch cells. */
#include "bt_int.h"

uint32_t bt_key_local(const bt_tree *t, size_t klen) {
    return klen <= t->kmax ? (uint32_t)klen : t->kpre + 8u;
}

int bt_full_key(const bt_tree *t, const bt_cell *c, kvt_buf *buf, const uint8_t **k) {
    if (!c->kblob) { *k = c->key; return KVT_OK; }
    KVT_TRY(kvt_blob_read(t->pager, c->kblob, c->klen, buf));
    if (buf->len != c->klen)
        return kvt_seterr(KVT_ECORRUPT, "btree: key blob %llu: length %zu, expected %u",
                          (unsigned long long)c->kblob, buf->len, c->klen);
    *k = buf->data;
    return KVT_OK;
}

int bt_cmp(const bt_tree *t, const uint8_t *k, size_t kl, const bt_cell *c,
           bt_scratch *s, int *rc) {
    if (!c->kblob) return kvt_keycmp(k, kl, c->key, c->klen);
    /* spilled: the cell key is longer than kpre; decide on the prefix when possible */
    size_t n = kl < t->kpre ? kl : t->kpre;
    int r = memcmp(k, c->key, n);
    if (r) return r;
    if (kl <= t->kpre) return -1;
    const uint8_t *full;
    *rc = bt_full_key(t, c, &s->a, &full);
    if (*rc < 0) return 0;
    return kvt_keycmp(k, kl, full, c->klen);
}

/* Compare k with the key of slot i during a binary search. Only what the comparison
 * needs is decoded (slot offset, key length, key bytes, all bounds-checked); a spilled
 * key takes the full decode. The first 8 bytes are compared as one big-endian word,
 * which decides almost every comparison (also of short branch separators) without a
 * memcmp call. */
static int slot_cmp(const bt_tree *t, const kvt_page *pg, uint32_t i, const uint8_t *k,
                    size_t kl, bt_scratch *s, int *rc) {
    const uint8_t *d = pg->data;
    uint32_t off = kvt_get16(d + BT_HDR + 2u * i);
    uint32_t fixed = bt_is_leaf(d) ? BT_LEAF_FIXED : BT_BRANCH_FIXED;
    uint32_t klen = off + 2u <= t->ps ? kvt_get16(d + off) : 0;
    if (off < bt_lo(d) || klen == 0 || klen > t->kmax || off + fixed + klen > t->ps) {
        bt_cell c;                        /* spilled or damaged: the checked path */
        *rc = bt_cell_at(t, pg, i, &c);
        return *rc < 0 ? 0 : bt_cmp(t, k, kl, &c, s, rc);
    }
    const uint8_t *ck = d + off + fixed;
    uint64_t a = bt_be_prefix(k, kl), b = bt_be_prefix(ck, klen);
    if (a != b) return a < b ? -1 : 1;
    return kvt_keycmp(k, kl, ck, klen);
}

/* Start loading the cells of both possible next probes while this one is compared: a
 * page that is a cache hit in the pool is usually cold in the CPU cache, and its cells
 * lie at unrelated offsets, so a plain binary search waits for one DRAM miss per probe.
 * (Prefetches never fault, so a damaged slot is harmless here.) */
static inline void prefetch_next(const uint8_t *d, uint32_t lo, uint32_t mid, uint32_t hi) {
    if (hi - lo < 3) return;
    __builtin_prefetch(d + kvt_get16(d + BT_HDR + 2u * ((lo + mid) / 2)));
    __builtin_prefetch(d + kvt_get16(d + BT_HDR + 2u * ((mid + 1 + hi) / 2)));
}

int bt_search(const bt_tree *t, const kvt_page *pg, const uint8_t *k, size_t kl,
              bt_scratch *s, uint32_t *idx, int *eq) {
    uint32_t lo = 0, hi = bt_count(pg->data);
    int rc = KVT_OK;
    *eq = 0;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        prefetch_next(pg->data, lo, mid, hi);
        int r = slot_cmp(t, pg, mid, k, kl, s, &rc);
        KVT_TRY(rc);
        if (r > 0) {
            lo = mid + 1;
        } else {
            hi = mid;
            if (r == 0) { *eq = 1; break; }
        }
    }
    *idx = *eq ? hi : lo;
    return KVT_OK;
}

int bt_route(const bt_tree *t, const kvt_page *pg, const uint8_t *k, size_t kl,
             bt_scratch *s, uint32_t *j) {
    uint32_t lo = 0, hi = bt_count(pg->data);
    int rc = KVT_OK;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        prefetch_next(pg->data, lo, mid, hi);
        int r = slot_cmp(t, pg, mid, k, kl, s, &rc);
        KVT_TRY(rc);
        if (r == 0) { lo = mid + 1; break; }
        if (r > 0) lo = mid + 1; else hi = mid;
    }
    *j = lo;
    return KVT_OK;
}

int bt_key_encode(bt_tree *t, const uint8_t *k, size_t kl, uint8_t *dst) {
    if (kl <= t->kmax) { memcpy(dst, k, kl); return KVT_OK; }
    kvt_pgno first;
    KVT_TRY(kvt_blob_write(t->pager, k, kl, &first));
    memcpy(dst, k, t->kpre);
    kvt_put64(dst + t->kpre, first);
    return KVT_OK;
}

int bt_build_leaf(bt_tree *t, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl,
                  uint8_t *dst, uint32_t *n) {
    uint32_t kloc = bt_key_local(t, kl);
    int inline_val = BT_LEAF_FIXED + kloc + vl <= t->max_local;
    kvt_pgno vblob = 0;
    if (!inline_val) KVT_TRY(kvt_blob_write(t->pager, v, vl, &vblob));
    int rc = bt_key_encode(t, k, kl, dst + BT_LEAF_FIXED);
    if (rc < 0) {
        if (vblob) kvt_blob_free(t->pager, vblob);
        return rc;
    }
    kvt_put16(dst, (uint16_t)kl);
    kvt_put32(dst + 2, (uint32_t)vl | (inline_val ? 0 : BT_VOVF));
    uint8_t *vp = dst + BT_LEAF_FIXED + kloc;
    if (inline_val) {
        if (vl) memcpy(vp, v, vl);
        *n = BT_LEAF_FIXED + kloc + (uint32_t)vl;
    } else {
        kvt_put64(vp, vblob);
        *n = BT_LEAF_FIXED + kloc + 8;
    }
    return KVT_OK;
}

int bt_build_branch(bt_tree *t, const uint8_t *k, size_t kl, kvt_pgno child,
                    uint8_t *dst, uint32_t *n) {
    KVT_TRY(bt_key_encode(t, k, kl, dst + BT_BRANCH_FIXED));
    kvt_put16(dst, (uint16_t)kl);
    kvt_put64(dst + 2, child);
    *n = BT_BRANCH_FIXED + bt_key_local(t, kl);
    return KVT_OK;
}

int bt_free_cell_blobs(bt_tree *t, const bt_cell *c) {
    if (c->kblob) KVT_TRY(kvt_blob_free(t->pager, c->kblob));
    if (c->vblob) KVT_TRY(kvt_blob_free(t->pager, c->vblob));
    return KVT_OK;
}

int bt_read_value(const bt_tree *t, const bt_cell *c, kvt_buf *out) {
    if (!c->vblob) return kvt_buf_set(out, c->val, c->vlen);
    return kvt_blob_read(t->pager, c->vblob, c->vlen, out);
}

void bt_scratch_free(bt_scratch *s) {
    kvt_buf_free(&s->a);
    kvt_buf_free(&s->b);
}
