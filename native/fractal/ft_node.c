/* ft_node.c - in-memory nodes and their serialized form (one blob per node).
 *
 * Blob layout (little-endian):
 *   u32 magic, u8 kind, u8 pad[3], u32 height, u32 n, u64 id          (24 bytes)
 *   INTERNAL:  n x (u64 child, u64 partition id, u32 count, u64 bytes), (n-1) x pivot
 *   LEAF, PARTITION: n x (u64 basement/segment id, u32 count, u64 bytes), (n-1) x pivot
 *              PARTITION then: n x FT_SEG_BLOOM bytes (per-segment Bloom filters),
 *              u64 older run's partition id, u32 runs (absent in files before runs:
 *              read as 0 and 1)
 *   BASEMENT, SEGMENT: records with a record index, in the form header byte 5 says:
 *              FT_INDEX_FRONT (written now): u32 count, u32 L, count x u64 key word,
 *                count x u32 blob offset of the record, then count x record;
 *              FT_INDEX_TAIL (written before): buffer, then count x (u32 offset, u64
 *                key word), u32 L;
 *              0 (written before any index): buffer only.
 *              L is the length of the prefix all the node's keys share and the key
 *              word is the 8 key bytes after it, big-endian, zero-padded (ft_key_word).
 *              A point query binary-searches the words and reads one record, in place
 *              in the read map (ft_read.c), instead of decoding the node; in the front
 *              form the words of a 32 KiB basement lie in its first page
 *   pivot:  u32 kl, key
 *   buffer: u32 count, count x record
 *   record: u8 type, u64 msn, u32 kl, u32 vl, key, value
 * A decoded basement or segment keeps the blob as its arena: its records point into
 * it (no copies); records added later are owned (one malloc each, counted in `owned`)
 * until ft_compact packs everything into a fresh arena, so the memory charge is exact.
 * Internal headers and leaves hold no records and drop the blob.
 */
#include "ft_int.h"

#define NODE_HDR 24u

int ft_test_no_index, ft_test_tail_index;

fnode *ft_node_alloc(uint8_t kind, uint32_t height) {
    fnode *n = calloc(1, sizeof *n);
    if (!n) { kvt_seterr(KVT_ENOMEM, "fractal: no memory for a node"); return NULL; }
    n->kind = kind;
    n->height = height;
    return n;
}

/* Room for cap children (and cap-1 pivots, cap buffers or basement counters). */
int ft_node_grow(fnode *n, uint32_t cap) {
    if (cap <= n->cap) return KVT_OK;
    uint64_t *c = realloc(n->child, cap * sizeof *c);
    if (c) n->child = c;
    fkey *p = realloc(n->piv, cap * sizeof *p);
    if (p) n->piv = p;
    int ok = c && p;
    if (ok && n->kind == FT_INTERNAL) {
        uint64_t *pt = realloc(n->part, cap * sizeof *pt);
        if (pt) { n->part = pt; memset(pt + n->cap, 0, (cap - n->cap) * sizeof *pt); }
        ok = pt != NULL;
    }
    if (ok && (ft_is_list(n) || n->kind == FT_INTERNAL)) {
        uint32_t *bc = realloc(n->bcount, cap * sizeof *bc);
        if (bc) n->bcount = bc;
        uint64_t *bb = realloc(n->bbytes, cap * sizeof *bb);
        if (bb) n->bbytes = bb;
        ok = bc && bb;
    }
    if (ok && n->kind == FT_PARTITION) {
        uint8_t *bl = realloc(n->bloom, (size_t)cap * FT_SEG_BLOOM);
        if (bl) n->bloom = bl;
        ok = bl != NULL;
    }
    if (!ok) return kvt_seterr(KVT_ENOMEM, "fractal: no memory for %u children", cap);
    n->cap = cap;
    return KVT_OK;
}

void ft_node_destroy(fnode *n) {
    if (!n) return;
    for (uint32_t i = 0; i + 1 < n->n; i++) free(n->piv[i].k);
    fvec_free(&n->ents);
    free(n->child); free(n->piv); free(n->part); free(n->bcount); free(n->bbytes); free(n->bloom);
    free(n->arena);
    free(n);
}

uint64_t ft_node_buffered(const fnode *n) {
    uint64_t s = 0;
    if (n->kind == FT_INTERNAL)
        for (uint32_t i = 0; i < n->n; i++) s += n->bbytes[i];
    return s;
}

int ft_is_records(const fnode *n) { return n->kind == FT_BASEMENT || n->kind == FT_SEGMENT; }
int ft_is_list(const fnode *n) { return n->kind == FT_LEAF || n->kind == FT_PARTITION; }

/* Bytes this node holds: arena, record arrays, owned records (+16 bytes malloc overhead). */
uint64_t ft_node_mem(const fnode *n) {
    uint64_t m = sizeof *n + n->arena_len + (uint64_t)n->cap * 64;
    if (n->kind == FT_PARTITION) m += (uint64_t)n->cap * FT_SEG_BLOOM;
    for (uint32_t i = 0; i + 1 < n->n; i++) m += n->piv[i].kl + 16;
    m += (uint64_t)n->ents.cap * sizeof(frec) + n->owned;
    return m;
}

/* Copy a basement's or segment's records into one fresh arena (owned ones are freed). */
int ft_compact(fnode *b) {
    fvec *v = &b->ents;
    size_t total = 0;
    for (uint32_t i = 0; i < v->n; i++) total += (size_t)v->r[i].kl + v->r[i].vl;
    uint8_t *a = malloc(total ? total : 1), *w = a;
    if (!a) return kvt_seterr(KVT_ENOMEM, "fractal: no memory to compact basement %llu",
                              (unsigned long long)b->id);
    for (uint32_t i = 0; i < v->n; i++) {
        frec *r = &v->r[i];
        memcpy(w, r->k, r->kl);
        memcpy(w + r->kl, r->v, r->vl);
        frec_free(r);
        r->k = w;
        r->v = w + r->kl;
        w += r->kl + r->vl;
    }
    free(b->arena);
    b->arena = a;
    b->arena_len = total;
    b->owned = 0;
    return KVT_OK;
}

/* ---- segment Bloom filters: 4 probes (double hashing) into FT_SEG_BLOOM * 8 bits ---- */

static uint64_t key_hash(const uint8_t *k, size_t kl) {
    uint64_t h = 0xcbf29ce484222325ull;               /* FNV-1a, then a final mix */
    for (size_t i = 0; i < kl; i++) h = (h ^ k[i]) * 0x100000001b3ull;
    h ^= h >> 33; h *= 0xff51afd7ed558ccdull; h ^= h >> 33;
    return h;
}

static void bloom_add(uint8_t *f, const uint8_t *k, size_t kl) {
    uint64_t h = key_hash(k, kl);
    uint32_t a = (uint32_t)h, b = (uint32_t)(h >> 32) | 1;
    for (uint32_t i = 0; i < 4; i++) {
        uint32_t bit = (a + i * b) % (FT_SEG_BLOOM * 8);
        f[bit >> 3] |= (uint8_t)(1u << (bit & 7));
    }
}

void ft_bloom_add(fnode *pn, uint32_t j, const uint8_t *k, size_t kl) {
    bloom_add(pn->bloom + (size_t)j * FT_SEG_BLOOM, k, kl);
}

void ft_bloom_build(fnode *pn, uint32_t j, const fvec *v) {
    uint8_t *f = pn->bloom + (size_t)j * FT_SEG_BLOOM;
    memset(f, 0, FT_SEG_BLOOM);
    for (uint32_t i = 0; i < v->n; i++) bloom_add(f, v->r[i].k, v->r[i].kl);
}

uint64_t ft_bloom_hash(const uint8_t *k, size_t kl) { return key_hash(k, kl); }

int ft_bloom_maybe_h(const fnode *pn, uint32_t j, uint64_t h) {
    const uint8_t *f = pn->bloom + (size_t)j * FT_SEG_BLOOM;
    uint32_t a = (uint32_t)h, b = (uint32_t)(h >> 32) | 1;
    for (uint32_t i = 0; i < 4; i++) {
        uint32_t bit = (a + i * b) % (FT_SEG_BLOOM * 8);
        if (!(f[bit >> 3] & (1u << (bit & 7)))) return 0;
    }
    return 1;
}

int ft_bloom_maybe(const fnode *pn, uint32_t j, const uint8_t *k, size_t kl) {
    return ft_bloom_maybe_h(pn, j, key_hash(k, kl));
}

/* ---- encoding ---- */

static int put_u8(kvt_buf *b, uint8_t v) { return kvt_buf_append(b, &v, 1); }
static int put_u32(kvt_buf *b, uint32_t v) { uint8_t x[4]; kvt_put32(x, v); return kvt_buf_append(b, x, 4); }
static int put_u64(kvt_buf *b, uint64_t v) { uint8_t x[8]; kvt_put64(x, v); return kvt_buf_append(b, x, 8); }

static int enc_recs(kvt_buf *b, const fvec *v) {
    KVT_TRY(kvt_buf_reserve(b, b->len + v->bytes));
    for (uint32_t i = 0; i < v->n; i++) {
        const frec *r = &v->r[i];
        KVT_TRY(put_u8(b, r->type));
        KVT_TRY(put_u64(b, r->msn));
        KVT_TRY(put_u32(b, r->kl));
        KVT_TRY(put_u32(b, r->vl));
        KVT_TRY(kvt_buf_append(b, r->k, r->kl));
        KVT_TRY(kvt_buf_append(b, r->v, r->vl));
    }
    return KVT_OK;
}

static int enc_pivots(kvt_buf *b, const fnode *n) {
    for (uint32_t i = 0; i + 1 < n->n; i++) {
        KVT_TRY(put_u32(b, n->piv[i].kl));
        KVT_TRY(kvt_buf_append(b, n->piv[i].k, n->piv[i].kl));
    }
    return KVT_OK;
}

/* The record index after a buffer that starts at byte start of the blob (FT_INDEX_TAIL,
 * written before FT_INDEX_FRONT; kept for the test hook that writes old blobs). */
static int enc_tail_index(kvt_buf *b, const fvec *v, size_t start, uint32_t common) {
    KVT_TRY(kvt_buf_reserve(b, b->len + FT_IDX_ENTRY * (size_t)v->n + 4));
    size_t off = start + 4;
    for (uint32_t i = 0; i < v->n; i++) {
        const frec *r = &v->r[i];
        KVT_TRY(put_u32(b, (uint32_t)off));
        KVT_TRY(put_u64(b, ft_key_word(r->k + common, r->kl - common)));
        off += frec_size(r);
    }
    return put_u32(b, common);
}

/* Keys are sorted: the first and the last share the longest prefix. */
static uint32_t common_prefix(const fvec *v) {
    uint32_t common = 0;
    if (v->n) {
        const frec *a = &v->r[0], *z = &v->r[v->n - 1];
        uint32_t lim = a->kl < z->kl ? a->kl : z->kl;
        while (common < lim && a->k[common] == z->k[common]) common++;
    }
    return common;
}

/* FT_INDEX_FRONT: count, prefix length, all the key words, all the offsets, then the
 * records. The words of a 32 KiB basement fit in its first page, so a get touches that
 * page and the record's (the tail form also touched the last one or two). */
static int enc_front(kvt_buf *b, const fvec *v) {
    uint32_t common = common_prefix(v);
    KVT_TRY(kvt_buf_reserve(b, b->len + 8 + FT_IDX_ENTRY * (size_t)v->n + v->bytes));
    KVT_TRY(put_u32(b, v->n));
    KVT_TRY(put_u32(b, common));
    for (uint32_t i = 0; i < v->n; i++)
        KVT_TRY(put_u64(b, ft_key_word(v->r[i].k + common, v->r[i].kl - common)));
    size_t off = b->len + 4 * (size_t)v->n;
    for (uint32_t i = 0; i < v->n; i++) {
        KVT_TRY(put_u32(b, (uint32_t)off));
        off += frec_size(&v->r[i]);
    }
    return enc_recs(b, v);
}

int ft_encode(const fnode *n, kvt_buf *b) {
    b->len = 0;
    KVT_TRY(put_u32(b, FT_NODE_MAGIC));
    uint8_t form = !ft_is_records(n) || ft_test_no_index ? 0
                 : ft_test_tail_index ? FT_INDEX_TAIL : FT_INDEX_FRONT;
    uint8_t kind[4] = { n->kind, form, 0, 0 };
    KVT_TRY(kvt_buf_append(b, kind, 4));
    KVT_TRY(put_u32(b, n->height));
    KVT_TRY(put_u32(b, ft_is_records(n) ? 0 : n->n));
    KVT_TRY(put_u64(b, n->id));
    if (ft_is_records(n)) {
        if (form == FT_INDEX_FRONT) return enc_front(b, &n->ents);
        KVT_TRY(put_u32(b, n->ents.n));
        KVT_TRY(enc_recs(b, &n->ents));
        return form ? enc_tail_index(b, &n->ents, NODE_HDR, common_prefix(&n->ents)) : KVT_OK;
    }
    for (uint32_t i = 0; i < n->n; i++) {
        KVT_TRY(put_u64(b, n->child[i]));
        if (n->kind == FT_INTERNAL) KVT_TRY(put_u64(b, n->part[i]));
        KVT_TRY(put_u32(b, n->bcount[i]));
        KVT_TRY(put_u64(b, n->bbytes[i]));
    }
    KVT_TRY(enc_pivots(b, n));
    if (n->kind != FT_PARTITION) return KVT_OK;
    KVT_TRY(kvt_buf_append(b, n->bloom, (size_t)n->n * FT_SEG_BLOOM));
    KVT_TRY(put_u64(b, n->older));
    return put_u32(b, n->runs);
}

/* ---- decoding: every length is bounds-checked, damage -> KVT_ECORRUPT ---- */

typedef struct rd { const uint8_t *p; size_t len, off; uint64_t id; } rd;

static int rd_err(const rd *r, const char *what) {
    return kvt_seterr(KVT_ECORRUPT, "fractal: node %llu damaged: %s at byte %zu",
                      (unsigned long long)r->id, what, r->off);
}
static int rd_need(rd *r, size_t n, const char *what) {
    return r->len - r->off < n ? rd_err(r, what) : KVT_OK;
}
static uint32_t rd32(rd *r) { uint32_t v = kvt_get32(r->p + r->off); r->off += 4; return v; }
static uint64_t rd64(rd *r) { uint64_t v = kvt_get64(r->p + r->off); r->off += 8; return v; }

static int dec_recs(rd *r, fvec *v, uint32_t cnt) {
    if (cnt > (r->len - r->off) / FT_REC_HDR) return rd_err(r, "record count");
    KVT_TRY(fvec_reserve(v, cnt));
    for (uint32_t i = 0; i < cnt; i++) {
        KVT_TRY(rd_need(r, FT_REC_HDR, "record header"));
        frec x = { .type = r->p[r->off] };
        r->off++;
        x.msn = rd64(r);
        x.kl = rd32(r);
        x.vl = rd32(r);
        if (x.type < FT_PUT || x.type > FT_UPSERT || x.kl == 0 || x.kl > KVT_MAX_KEY)
            return rd_err(r, "record type or key length");
        if (x.type == FT_PUTBLOB && x.vl != FT_BLOBREF) return rd_err(r, "blob reference");
        KVT_TRY(rd_need(r, (size_t)x.kl + x.vl, "record body"));
        x.k = r->p + r->off;
        x.v = x.k + x.kl;
        r->off += (size_t)x.kl + x.vl;
        v->r[v->n++] = x;
        v->bytes += frec_size(&x);
    }
    return KVT_OK;
}

/* On failure n->n is cut so that ft_node_destroy frees exactly the pivots set. */
static int dec_pivots(rd *r, fnode *n) {
    uint32_t want = n->n;
    for (uint32_t i = 0; i + 1 < want; i++) {
        n->n = i + 1;
        KVT_TRY(rd_need(r, 4, "pivot length"));
        uint32_t kl = rd32(r);
        if (kl == 0 || kl > KVT_MAX_KEY) return rd_err(r, "pivot length");
        KVT_TRY(rd_need(r, kl, "pivot"));
        KVT_TRY(fkey_set(&n->piv[i], r->p + r->off, kl));
        r->off += kl;
    }
    n->n = want;
    return KVT_OK;
}

static int dec_children(rd *r, fnode *n, uint32_t cnt) {
    KVT_TRY(ft_node_grow(n, cnt));
    size_t per = ft_is_list(n) ? 20 : 28;
    KVT_TRY(rd_need(r, per * cnt, "child list"));
    for (uint32_t i = 0; i < cnt; i++) {
        n->child[i] = rd64(r);
        if (n->kind == FT_INTERNAL) n->part[i] = rd64(r);
        n->bcount[i] = rd32(r);
        n->bbytes[i] = rd64(r);
        if (n->kind == FT_INTERNAL && (n->part[i] == 0) != (n->bcount[i] == 0))
            return rd_err(r, "partition id and count disagree");
    }
    n->n = cnt;
    KVT_TRY(dec_pivots(r, n));
    if (n->kind != FT_PARTITION) return KVT_OK;
    KVT_TRY(rd_need(r, (size_t)cnt * FT_SEG_BLOOM, "segment filters"));
    memcpy(n->bloom, r->p + r->off, (size_t)cnt * FT_SEG_BLOOM);
    r->off += (size_t)cnt * FT_SEG_BLOOM;
    n->older = 0;
    n->runs = 1;
    if (r->off == r->len) return KVT_OK;          /* written before runs existed */
    KVT_TRY(rd_need(r, 12, "run link"));
    n->older = rd64(r);
    n->runs = rd32(r);
    if (n->runs == 0 || n->runs > FT_MAX_RUNS || (n->runs == 1) != (n->older == 0))
        return rd_err(r, "run count");
    return KVT_OK;
}

/* Records, in any of the three forms (header byte 5). The index is used in place only
 * (ft_read.c); decoding checks that its offsets name the records. */
static int dec_records(rd *r, fnode *n, uint8_t form) {
    KVT_TRY(rd_need(r, 4, "buffer count"));
    uint32_t cnt = rd32(r);
    if (form == FT_INDEX_FRONT) {
        if (cnt > (r->len - r->off) / (FT_IDX_ENTRY + FT_REC_HDR)) return rd_err(r, "record count");
        KVT_TRY(rd_need(r, 4 + FT_IDX_ENTRY * (size_t)cnt, "record index"));
        size_t offs = r->off + 4 + 8 * (size_t)cnt;
        r->off += 4 + FT_IDX_ENTRY * (size_t)cnt;
        KVT_TRY(dec_recs(r, &n->ents, cnt));
        size_t at = offs + 4 * (size_t)cnt;
        for (uint32_t i = 0; i < cnt; at += frec_size(&n->ents.r[i]), i++)
            if (kvt_get32(r->p + offs + 4 * (size_t)i) != at) return rd_err(r, "record index");
        return KVT_OK;
    }
    KVT_TRY(dec_recs(r, &n->ents, cnt));
    if (form != FT_INDEX_TAIL) return KVT_OK;
    size_t ix = FT_IDX_ENTRY * (size_t)cnt + 4;
    KVT_TRY(rd_need(r, ix, "record index"));
    r->off += ix;
    return KVT_OK;
}

static int dec_body(rd *r, fnode *n, uint32_t cnt, uint8_t form) {
    if (ft_is_records(n)) return dec_records(r, n, form);
    if (cnt == 0 || cnt > 1u << 20) return rd_err(r, "child count");
    return dec_children(r, n, cnt);
}

int ft_decode(kvt_engine *e, uint64_t id, uint8_t *data, size_t len, fnode **out) {
    rd r = { .p = data, .len = len, .id = id };
    KVT_TRY(rd_need(&r, NODE_HDR, "header"));
    uint32_t magic = rd32(&r);
    uint8_t kind = data[4];
    r.off = 8;
    uint32_t height = rd32(&r), cnt = rd32(&r);
    uint64_t nid = rd64(&r);
    if (magic != FT_NODE_MAGIC || kind < FT_INTERNAL || kind > FT_SEGMENT || nid != id)
        return rd_err(&r, "magic, kind or id");
    if ((kind == FT_INTERNAL) != (height > 0) || height > 64) return rd_err(&r, "height");
    fnode *n = ft_node_alloc(kind, height);
    if (!n) return KVT_ENOMEM;
    n->id = id;
    if (data[5] > FT_INDEX_FRONT || (data[5] && !ft_is_records(n))) {
        ft_node_destroy(n);
        return rd_err(&r, "record index form");
    }
    int rc = dec_body(&r, n, cnt, data[5]);
    if (rc == KVT_OK && r.off != len) rc = rd_err(&r, "trailing bytes");
    if (rc < 0) {
        ft_node_destroy(n);        /* records point into data (not owned): kept */
        return rc;
    }
    if (ft_is_records(n)) {                    /* records point into the blob */
        n->arena = data;
        n->arena_len = len;
    } else {
        free(data);
    }
    *out = n;
    return KVT_OK;
}
