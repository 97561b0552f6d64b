/* ft_read.c - point queries and range scans. Readers never modify the tree: pending
 * messages along the root-to-leaf path are applied in memory (the newest wins).
 *
 * get: walk down; the first message for the key met on the way is the newest one
 * (MSN invariant, ft_int.h); else read the one basement that may hold the key.
 * scan: one leaf at a time, one basement at a time: the basement's entries in the key
 * range are merged with the path's messages in the same range, then the walk restarts
 * from the root at the leaf's bound (cheap: the path is cached), so no pin is held
 * between leaves.
 */
#include "ft_int.h"

static int value_out(kvt_engine *e, const frec *r, kvt_buf *out) {
    uint64_t pg, len;
    if (r->type == FT_DEL) return KVT_NOTFOUND;
    if (ft_blob_of(r, &pg, &len)) return kvt_blob_read(e->p, pg, len, out);
    return kvt_buf_set(out, r->v, r->vl);
}

static int find_in(const fvec *v, const uint8_t *k, size_t kl) {
    uint32_t pos = fvec_lower(v, k, kl);
    return pos < v->n && kvt_keycmp(v->r[pos].k, v->r[pos].kl, k, kl) == 0 ? (int)pos : -1;
}

/* ---- the record for a key in one basement or segment ---------------------------- */

/* A record found for a point query, in a cached node (pinned) or read in place from the
 * node's blob in the read map (view open; key and value bytes copied to tmp when they
 * straddle two pages). A basement or segment not in the cache is not loaded and
 * decoded whole for a get: its records are walked in place up to the key (they are
 * sorted), which costs a few cache lines instead of a 32 KiB copy, a decode and an
 * eviction, and leaves the node cache to the nodes writes and scans need. */
typedef struct hit {
    fnode *node;
    kvt_blob_view view;
    kvt_buf tmp;
    frec rec;
    int have;
} hit;

static int hit_done(kvt_engine *e, hit *h, int rc) {
    if (h->node) ft_unpin(e, h->node);
    h->node = NULL;
    rc = kvt_blob_view_close(&h->view, rc);
    kvt_buf_free(&h->tmp);
    return rc;
}

static int view_corrupt(kvt_engine *e, uint64_t id, const char *what) {
    return kvt_seterr(KVT_ECORRUPT, "fractal: %s: node %llu (read in place): bad %s",
                      kvt_pager_path(e->p), (unsigned long long)id, what);
}

/* The record at blob offset off: header fields in *r, its key compared with k. */
static int view_rec(kvt_engine *e, uint64_t id, kvt_blob_view *v, size_t off,
                    const uint8_t *k, size_t kl, uint8_t *keybuf, frec *r, int *cmp) {
    uint8_t small[FT_REC_HDR];
    const uint8_t *p;
    KVT_TRY(kvt_blob_view_read(v, off, FT_REC_HDR, small, &p));
    *r = (frec){ .type = p[0], .msn = kvt_get64(p + 1), .kl = kvt_get32(p + 9),
                 .vl = kvt_get32(p + 13) };
    if (r->type < FT_PUT || r->type > FT_UPSERT || r->kl == 0 || r->kl > KVT_MAX_KEY ||
        (r->type == FT_PUTBLOB && r->vl != FT_BLOBREF) || r->vl > v->len)
        return view_corrupt(e, id, "record header");
    KVT_TRY(kvt_blob_view_read(v, off + FT_REC_HDR, r->kl, keybuf, &r->k));
    *cmp = kvt_keycmp(r->k, r->kl, k, kl);
    return KVT_OK;
}

/* The records with k's word from index position lo on, in order (words sorted): the
 * one equal to k, if any, in *r at *off (*c 0). entry(i) gives record i's offset and
 * word. Only an exact match is wanted, so k is never compared with the keys' shared
 * prefix first: a k outside it matches no record whatever word it lands on. */
#define SCAN_WORD(entry)                                                        \
    for (; lo < cnt; lo++) {                                                    \
        KVT_TRY(entry);                                                         \
        if (w != want) break;                                                   \
        KVT_TRY(view_rec(e, id, v, o, k, kl, keybuf, r, c));                    \
        if (*c >= 0) { *off = o; break; }                                       \
    }

/* Prefetch the index entries the first three levels of a binary search over cnt
 * entries of size sz at blob offset at will probe: their cache misses overlap instead
 * of following each other. */
static void prefetch_probes(const kvt_blob_view *v, size_t at, uint32_t cnt, size_t sz) {
    for (uint32_t d = 2; d <= 8; d *= 2)
        for (uint32_t j = 1; j < d; j += 2)
            kvt_blob_view_prefetch(v, at + sz * (size_t)(cnt / d * j), sz);
}

/* FT_INDEX_TAIL (blobs written before FT_INDEX_FRONT): entries of u32 offset and u64
 * word after the records, then the prefix length. */
static int entry_tail(kvt_blob_view *v, size_t idx, uint32_t i, uint32_t *off, uint64_t *word) {
    uint8_t small[FT_IDX_ENTRY];
    const uint8_t *p;
    KVT_TRY(kvt_blob_view_read(v, idx + FT_IDX_ENTRY * (size_t)i, FT_IDX_ENTRY, small, &p));
    *off = kvt_get32(p);
    *word = kvt_get64(p + 4);
    return KVT_OK;
}

static int search_tail(kvt_engine *e, uint64_t id, kvt_blob_view *v, uint32_t cnt,
                       const uint8_t *k, size_t kl, uint8_t *keybuf, frec *r, size_t *off,
                       int *c) {
    size_t idx = v->len - 4 - FT_IDX_ENTRY * (size_t)cnt;
    uint8_t small[4];
    const uint8_t *p;
    kvt_blob_view_prefetch(v, v->len - 4, 4);
    prefetch_probes(v, idx, cnt, FT_IDX_ENTRY);
    KVT_TRY(kvt_blob_view_read(v, v->len - 4, 4, small, &p));
    uint32_t common = kvt_get32(p), o, lo = 0, hi = cnt;
    if (common > KVT_MAX_KEY) return view_corrupt(e, id, "record index prefix");
    if (kl < common) return KVT_OK;               /* shorter than every key: absent */
    uint64_t want = ft_key_word(k + common, kl - common), w;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        KVT_TRY(entry_tail(v, idx, mid, &o, &w));
        if (w < want) lo = mid + 1;
        else hi = mid;
    }
    SCAN_WORD(entry_tail(v, idx, lo, &o, &w))
    return KVT_OK;
}

/* FT_INDEX_FRONT: from byte 32 the cnt words, then the cnt offsets. The words of a
 * basement of default size lie in its first page: the search runs on them in place. */
static int front_entry(kvt_blob_view *v, const uint8_t *words, uint32_t cnt, uint32_t i,
                       uint32_t *off, uint64_t *word) {
    uint8_t small[8];
    const uint8_t *p;
    if (words) {
        *word = kvt_get64(words + 8 * (size_t)i);
    } else {
        KVT_TRY(kvt_blob_view_read(v, 32 + 8 * (size_t)i, 8, small, &p));
        *word = kvt_get64(p);
    }
    KVT_TRY(kvt_blob_view_read(v, 32 + 8 * (size_t)cnt + 4 * (size_t)i, 4, small, &p));
    *off = kvt_get32(p);
    return KVT_OK;
}

static int search_front(kvt_engine *e, uint64_t id, kvt_blob_view *v, uint32_t cnt,
                        uint32_t common, const uint8_t *k, size_t kl, uint8_t *keybuf,
                        frec *r, size_t *off, int *c) {
    const uint8_t *words = NULL, *p;
    uint8_t small[8];
    uint32_t o, lo = 0, hi = cnt;
    if (common > KVT_MAX_KEY) return view_corrupt(e, id, "record index prefix");
    if (kl < common) return KVT_OK;               /* shorter than every key: absent */
    int rc = kvt_blob_view_ptr(v, 32, 8 * (size_t)cnt, &words);
    if (rc != KVT_OK && rc != KVT_NOTFOUND) return rc;
    for (uint32_t d = 2; words && d <= 8; d *= 2)      /* see prefetch_probes */
        for (uint32_t j = 1; j < d; j += 2) __builtin_prefetch(words + 8 * (size_t)(cnt / d * j));
    uint64_t want = ft_key_word(k + common, kl - common), w;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (words) {
            w = kvt_get64(words + 8 * (size_t)mid);
        } else {
            KVT_TRY(kvt_blob_view_read(v, 32 + 8 * (size_t)mid, 8, small, &p));
            w = kvt_get64(p);
        }
        if (w < want) lo = mid + 1;
        else hi = mid;
    }
    SCAN_WORD(front_entry(v, words, cnt, lo, &o, &w))
    return KVT_OK;
}

/* Find k in node id's blob (view open). Layout: ft_node.c; with the record index a
 * binary search, in a blob written before it a walk up to k (records are sorted). */
static int view_walk(kvt_engine *e, uint64_t id, uint8_t kind, const uint8_t *k, size_t kl,
                     hit *h) {
    kvt_blob_view *v = &h->view;
    uint8_t small[28], key[KVT_MAX_KEY];
    const uint8_t *p, *q;
    KVT_TRY(kvt_blob_view_read(v, 0, 28, small, &p));  /* 28: an empty unindexed node */
    if (kvt_get32(p) != FT_NODE_MAGIC || p[4] != kind || kvt_get64(p + 16) != id)
        return view_corrupt(e, id, "header");
    uint32_t cnt = kvt_get32(p + 24);
    frec r;
    int c = 1;
    size_t off = 28;
    if (p[5] == FT_INDEX_FRONT || p[5] == FT_INDEX_TAIL) {
        if (cnt > (v->len - 32) / (FT_IDX_ENTRY + FT_REC_HDR))
            return view_corrupt(e, id, "record count");
        if (p[5] == FT_INDEX_FRONT) {
            KVT_TRY(kvt_blob_view_ptr(v, 28, 4, &q));   /* the header's page: in place */
            KVT_TRY(search_front(e, id, v, cnt, kvt_get32(q), k, kl, key, &r, &off, &c));
        } else if (cnt)
            KVT_TRY(search_tail(e, id, v, cnt, k, kl, key, &r, &off, &c));
    } else if (p[5] == 0) {
        for (uint32_t i = 0; i < cnt; i++, off += FT_REC_HDR + (size_t)r.kl + r.vl) {
            KVT_TRY(view_rec(e, id, v, off, k, kl, key, &r, &c));
            if (c >= 0) break;
        }
    } else {
        return view_corrupt(e, id, "record index form");
    }
    if (c != 0) return KVT_OK;                     /* not here */
    size_t at = off + FT_REC_HDR + r.kl;
    int rc = kvt_blob_view_ptr(v, at, r.vl, &r.v);  /* in place unless it straddles pages */
    if (rc == KVT_NOTFOUND) {
        KVT_TRY(kvt_buf_reserve(&h->tmp, r.vl));
        rc = kvt_blob_view_read(v, at, r.vl, h->tmp.data, &r.v);
    }
    KVT_TRY(rc);
    r.k = k;                                       /* the key bytes may be on the stack */
    h->rec = r;
    h->have = 1;
    return KVT_OK;
}

/* The record for k in node id of the given kind (a basement or segment): h->have and
 * h->rec; hit_done must follow. */
static int find_rec(kvt_engine *e, uint64_t id, uint8_t kind, const uint8_t *k, size_t kl,
                    hit *h) {
    memset(h, 0, sizeof *h);
    fnode *n;
    int rc = ft_peek(e, id, &n);
    if (rc == KVT_NOTFOUND) {
        uint64_t pg, len;
        KVT_TRY(ft_blob_loc(e, id, &pg, &len));
        rc = kvt_blob_view_open(e->p, pg, len, &h->view);
        if (rc == KVT_OK) return view_walk(e, id, kind, k, kl, h);
        if (rc != KVT_NOTFOUND) return rc;
        KVT_TRY(ft_get(e, id, &n));                /* no view: load and cache it */
    }
    KVT_TRY(rc);
    h->node = n;
    if (n->kind != kind)
        return kvt_seterr(KVT_ECORRUPT, "fractal: node %llu is of kind %u, expected kind %u",
                          (unsigned long long)id, n->kind, kind);
    int pos = find_in(&n->ents, k, kl);
    if (pos >= 0) {
        h->rec = n->ents.r[pos];
        h->have = 1;
    }
    return KVT_OK;
}

/* Pin partition id (a run of some buffer; id 0: *out NULL, the buffer is empty). */
static int get_part_id(kvt_engine *e, uint64_t id, fnode **out) {
    *out = NULL;
    return id ? ft_get_kind(e, id, FT_PARTITION, out) : KVT_OK;
}

/* Pin the newest run of buffer i of internal node n (*out NULL if the buffer is empty). */
static int get_part(kvt_engine *e, const fnode *n, uint32_t i, fnode **out) {
    return get_part_id(e, n->part[i], out);
}

#define NO_MSG 2   /* lookup_part: no message for the key (KVT_NOTFOUND is an answer) */
#define UPS_MSG 3  /* lookup_part: an upsert, its operand put in front of ups */

/* Operands of the upserts met so far (newest last) go after the value found below. */
static int prepend(kvt_buf *ups, const frec *r) {
    kvt_buf t = {0};
    int rc = r->vl ? kvt_buf_append(&t, r->v, r->vl) : KVT_OK;
    if (rc == KVT_OK) rc = kvt_buf_append_newest(&t, ups->data, ups->len, KVT_MAX_VALUE);
    if (rc < 0) { kvt_buf_free(&t); return rc; }
    kvt_buf_free(ups);
    *ups = t;
    return KVT_OK;
}

/* The answer of get: the base record's value (r NULL or DEL: none) followed by the
 * upserts' operands when there were any. */
static int answer(kvt_engine *e, const frec *r, int nups, const kvt_buf *ups, kvt_buf *out) {
    if (!nups) return r ? value_out(e, r, out) : KVT_NOTFOUND;
    kvt_buf t = {0};
    int rc = r ? ft_rec_value(e, r, &t) : KVT_OK;
    if (rc == KVT_OK) rc = kvt_buf_append_newest(&t, ups->data, ups->len, KVT_MAX_VALUE);
    if (rc == KVT_OK) rc = kvt_buf_set(out, t.len ? t.data : (const uint8_t *)"", t.len);
    kvt_buf_free(&t);
    return rc;
}

/* The message for k in segment id: KVT_OK/KVT_NOTFOUND with the answer, NO_MSG none,
 * UPS_MSG an upsert (its operand added to ups). */
static int lookup_seg(kvt_engine *e, uint64_t id, const uint8_t *k, size_t kl, int *nups,
                      kvt_buf *ups, kvt_buf *out) {
    hit h;
    int rc = find_rec(e, id, FT_SEGMENT, k, kl, &h);
    if (rc < 0) return hit_done(e, &h, rc);
    if (!h.have) rc = NO_MSG;
    else if (h.rec.type != FT_UPSERT) rc = answer(e, &h.rec, *nups, ups, out);
    else if ((rc = prepend(ups, &h.rec)) == KVT_OK) { rc = UPS_MSG; (*nups)++; }
    return hit_done(e, &h, rc);
}

/* Hint that basement or segment id, with cnt entries, will be searched: its header and
 * the words the search probes first (FT_INDEX_FRONT layout, ft_node.c). */
static void get_prefetch(kvt_engine *e, uint64_t id, uint32_t cnt) {
    uint64_t pg, len;
    if (ft_blob_loc(e, id, &pg, &len) != KVT_OK) return;    /* reported by find_rec */
    size_t off[4] = { 24, 32 + 8 * (size_t)(cnt / 2), 32 + 8 * (size_t)(cnt / 4),
                      32 + 8 * (size_t)(cnt / 4 * 3) };
    kvt_blob_prefetch(e->p, pg, len, off, 4);
}

/* Pin node id during the locked walk: cached, else loaded (the lock dropped meanwhile). */
static int walk_pin(kvt_engine *e, uint64_t id, fnode **out) {
    *out = ft_pin_locked(e, id);
    if (*out) return KVT_OK;
    ft_unlock(e);
    int rc = ft_get(e, id, out);
    ft_lock(e);
    if (rc < 0) *out = NULL;
    return rc;
}

/* The path of k, under one lock (the nodes on it are cached as a rule): the segments
 * whose filter may hold k, in the order a get must read them (levels top down, runs
 * newest first: the first message met is the newest), into seg[*nseg], and the
 * basement (*bid, with *bcnt entries). */
static int walk_path(kvt_engine *e, const uint8_t *k, size_t kl, uint64_t *seg,
                     uint32_t *nseg, uint32_t *scnt0, uint64_t *bid, uint32_t *bcnt) {
    uint64_t hash = ft_bloom_hash(k, kl);
    fnode *n, *pn, *c;
    int depth = 0;
    ft_lock(e);
    int rc = walk_pin(e, e->root, &n);
    while (rc == KVT_OK && n->kind == FT_INTERNAL) {
        if (++depth > 64) {
            rc = kvt_seterr(KVT_ECORRUPT, "fractal: node %llu: path deeper than 64",
                            (unsigned long long)n->id);
            break;
        }
        uint32_t i = fpiv_child(n->piv, n->n - 1, k, kl), runs = 0;
        for (uint64_t id = n->part[i]; id && rc == KVT_OK; runs++) {
            if (runs == FT_MAX_RUNS) {
                rc = kvt_seterr(KVT_ECORRUPT, "fractal: node %llu: more than %u runs",
                                (unsigned long long)n->id, FT_MAX_RUNS);
                break;
            }
            if ((rc = walk_pin(e, id, &pn)) < 0) break;
            if (pn->kind != FT_PARTITION)
                rc = kvt_seterr(KVT_ECORRUPT, "fractal: node %llu is of kind %u, expected "
                                "kind %u", (unsigned long long)id, pn->kind, FT_PARTITION);
            uint32_t j = pn->n ? fpiv_child(pn->piv, pn->n - 1, k, kl) : 0;
            if (rc == KVT_OK && pn->n && ft_bloom_maybe_h(pn, j, hash)) {
                if (*nseg == 0) *scnt0 = pn->bcount[j];
                seg[(*nseg)++] = pn->child[j];
            }
            id = pn->older;
            ft_unpin_locked(e, pn);
        }
        if (rc < 0) break;
        rc = walk_pin(e, n->child[i], &c);
        ft_unpin_locked(e, n);
        n = c;
    }
    if (rc == KVT_OK && n->kind != FT_LEAF)
        rc = kvt_seterr(KVT_ECORRUPT, "fractal: node %llu is not a leaf", (unsigned long long)n->id);
    if (rc == KVT_OK) {
        uint32_t b = fpiv_child(n->piv, n->n - 1, k, kl);
        *bid = n->child[b];
        *bcnt = n->bcount[b];
    }
    if (n) ft_unpin_locked(e, n);
    ft_unlock(e);
    return rc;
}

/* Walk down: the first PUT/DEL message or the basement entry is the base, the upserts
 * met above it are folded onto it (ups holds their operands, oldest first). The path is
 * walked under one lock first; then the basement's first misses are prefetched (it is
 * seldom cached) and the segments the filters named are read in order, overlapping them. */
static int lookup_walk(kvt_engine *e, const uint8_t *k, size_t kl, kvt_buf *ups, kvt_buf *out) {
    uint64_t seg[64 * FT_MAX_RUNS], bid = 0;
    uint32_t nseg = 0, scnt0 = 0, bcnt = 0;
    int nups = 0;
    KVT_TRY(walk_path(e, k, kl, seg, &nseg, &scnt0, &bid, &bcnt));
    if (nseg) get_prefetch(e, seg[0], scnt0);   /* it usually answers: the basement waits */
    else get_prefetch(e, bid, bcnt);
    for (uint32_t i = 0; i < nseg; i++) {
        int rc = lookup_seg(e, seg[i], k, kl, &nups, ups, out);
        if (rc != NO_MSG && rc != UPS_MSG) return rc;
    }
    hit h;
    int rc = find_rec(e, bid, FT_BASEMENT, k, kl, &h);
    if (rc == KVT_OK) rc = answer(e, h.have ? &h.rec : NULL, nups, ups, out);
    return hit_done(e, &h, rc);
}

int ft_lookup(kvt_engine *e, const uint8_t *k, size_t kl, kvt_buf *out) {
    kvt_buf ups = {0};
    int rc = lookup_walk(e, k, kl, &ups, out);
    kvt_buf_free(&ups);
    return rc;
}

/* ---- scans ---- */

typedef struct bound { const uint8_t *k; size_t kl; int inc; } bound;   /* k NULL: none */

typedef struct scan {
    kvt_engine *e;
    kvt_scan_fn fn;
    void *ctx;
    int reverse;
    kvt_buf cur;                 /* resume key */
    int has_cur, incl;
    kvt_buf blob;                /* out-of-line values */
    const frec **m;              /* path messages of the current basement */
    uint32_t nm, capm;
    frec *syn;                   /* folded upsert chains m points at (owned) */
    uint32_t nsyn, capsyn;
    fnode **segs;                /* buffer segments pinned for m */
    uint32_t nsegs, capsegs;
    fnode *path[64], *part[64];      /* internal nodes and their partition on the path */
    uint32_t idx[64];
    int depth;
    bound stop;                  /* forward scans: end before this key (k NULL: none) */
} scan;

static uint32_t range_start(const fvec *v, bound lo) {
    if (!lo.k) return 0;
    return lo.inc ? fvec_lower(v, lo.k, lo.kl) : fvec_upper(v, lo.k, lo.kl);
}

static uint32_t range_end(const fvec *v, bound hi) {
    if (!hi.k) return v->n;
    return hi.inc ? fvec_upper(v, hi.k, hi.kl) : fvec_lower(v, hi.k, hi.kl);
}

static int cmp_msg(const void *a, const void *b) {
    return frec_cmp(*(const frec *const *)a, *(const frec *const *)b);
}

static void unpin_segs(scan *s) {
    for (uint32_t i = 0; i < s->nsegs; i++) ft_unpin(s->e, s->segs[i]);
    s->nsegs = 0;
    for (uint32_t i = 0; i < s->nsyn; i++) frec_free(&s->syn[i]);
    s->nsyn = 0;
}

/* Fold the messages g[0..n) of one key (oldest first, the newest an UPSERT) into one
 * record in s->syn: a PUT over the newest PUT/DEL of the chain, else an UPSERT of all
 * the operands (merge_emit folds that onto the basement entry). */
static int fold_chain(scan *s, const frec **g, uint32_t n, const frec **out) {
    uint32_t base = n;
    for (uint32_t i = n; i-- > 0;)
        if (g[i]->type != FT_UPSERT) { base = i; break; }
    kvt_buf v = {0};
    int rc = base < n ? ft_rec_value(s->e, g[base], &v) : KVT_OK;
    for (uint32_t i = base < n ? base + 1 : 0; i < n && rc == KVT_OK; i++)
        rc = kvt_buf_append_newest(&v, g[i]->v, g[i]->vl, KVT_MAX_VALUE);
    frec *r = &s->syn[s->nsyn];
    if (rc == KVT_OK)
        rc = frec_new(base < n ? FT_PUT : FT_UPSERT, g[n - 1]->k, g[n - 1]->kl,
                      v.len ? v.data : (const uint8_t *)"", v.len, g[n - 1]->msn, r);
    kvt_buf_free(&v);
    if (rc < 0) return rc;
    s->nsyn++;
    *out = r;
    return KVT_OK;
}

/* Pin the segments of partition pn that overlap [lo, hi] (kept until unpin_segs). */
static int pin_segs(scan *s, const fnode *pn, bound lo, bound hi, uint32_t *first) {
    *first = s->nsegs;
    if (pn->n == 0) return KVT_OK;
    uint32_t a = lo.k ? fpiv_child(pn->piv, pn->n - 1, lo.k, lo.kl) : 0;
    uint32_t b = hi.k ? fpiv_child(pn->piv, pn->n - 1, hi.k, hi.kl) : pn->n - 1;
    if (b < a) return KVT_OK;
    if (s->nsegs + (b - a + 1) > s->capsegs) {
        uint32_t c = (s->nsegs + (b - a + 1)) * 2;
        fnode **g = realloc(s->segs, c * sizeof *g);
        if (!g) return kvt_seterr(KVT_ENOMEM, "fractal: no memory for a scan");
        s->segs = g;
        s->capsegs = c;
    }
    for (uint32_t j = a; j <= b; j++) {
        KVT_TRY(ft_get_kind(s->e, pn->child[j], FT_SEGMENT, &s->segs[s->nsegs]));
        s->nsegs++;
    }
    return KVT_OK;
}

/* Pin an older run of a buffer on the path (kept until unpin_segs, like segments). */
static int pin_older(scan *s, uint64_t id, fnode **out) {
    if (s->nsegs + 1 > s->capsegs) {
        uint32_t c = (s->nsegs + 1) * 2;
        fnode **g = realloc(s->segs, c * sizeof *g);
        if (!g) return kvt_seterr(KVT_ENOMEM, "fractal: no memory for a scan");
        s->segs = g;
        s->capsegs = c;
    }
    KVT_TRY(get_part_id(s->e, id, out));
    s->segs[s->nsegs++] = *out;
    return KVT_OK;
}

/* Add v's messages in [lo, hi] to s->m. */
static int collect_vec(scan *s, const fvec *v, bound lo, bound hi) {
    uint32_t a = range_start(v, lo), b = range_end(v, hi);
    if (b <= a) return KVT_OK;
    if (s->nm + (b - a) > s->capm) {
        uint32_t c = (s->nm + (b - a)) * 2;
        const frec **m = realloc(s->m, c * sizeof *m);
        if (!m) return kvt_seterr(KVT_ENOMEM, "fractal: no memory for a scan");
        s->m = m;
        s->capm = c;
    }
    for (uint32_t i = a; i < b; i++) s->m[s->nm++] = &v->r[i];
    return KVT_OK;
}

/* Messages of the path in [lo, hi], sorted, one (the newest) per key. Their segments
 * stay pinned until unpin_segs. */
static int collect(scan *s, bound lo, bound hi) {
    s->nm = 0;
    for (int d = 0; d < s->depth; d++) {
        for (const fnode *pn = s->part[d]; pn;) {         /* the buffer's runs */
            uint32_t first;
            KVT_TRY(pin_segs(s, pn, lo, hi, &first));
            for (uint32_t g = first; g < s->nsegs; g++) KVT_TRY(collect_vec(s, &s->segs[g]->ents, lo, hi));
            fnode *older = NULL;
            if (pn->older) KVT_TRY(pin_older(s, pn->older, &older));
            pn = older;
        }
    }
    if (s->nm < 2) return KVT_OK;
    qsort(s->m, s->nm, sizeof *s->m, cmp_msg);
    if (s->nm > s->capsyn) {                      /* reserved: s->m points into syn */
        frec *y = realloc(s->syn, s->nm * sizeof *y);
        if (!y) return kvt_seterr(KVT_ENOMEM, "fractal: no memory for a scan");
        s->syn = y;
        s->capsyn = s->nm;
    }
    uint32_t w = 0, first = 0;                    /* the newest of each key, upserts folded */
    for (uint32_t i = 0; i < s->nm; i++) {
        if (i + 1 < s->nm && kvt_keycmp(s->m[i]->k, s->m[i]->kl, s->m[i + 1]->k, s->m[i + 1]->kl) == 0)
            continue;
        const frec *r = s->m[i];
        if (r->type == FT_UPSERT && i > first) KVT_TRY(fold_chain(s, s->m + first, i + 1 - first, &r));
        s->m[w++] = r;
        first = i + 1;
    }
    s->nm = w;
    return KVT_OK;
}

static int emit(scan *s, const frec *r) {
    if (r->type == FT_DEL) return 0;
    uint64_t pg, len;
    if (ft_blob_of(r, &pg, &len)) {
        s->blob.len = 0;
        KVT_TRY(kvt_blob_read(s->e->p, pg, len, &s->blob));
        return s->fn(s->ctx, r->k, r->kl, s->blob.data, s->blob.len);
    }
    return s->fn(s->ctx, r->k, r->kl, r->v, r->vl);
}

/* An entry with a (folded) upsert over it: its value followed by the operand. */
static int emit_folded(scan *s, const frec *ent, const frec *up) {
    s->blob.len = 0;
    KVT_TRY(ft_rec_value(s->e, ent, &s->blob));
    KVT_TRY(kvt_buf_append_newest(&s->blob, up->v, up->vl, KVT_MAX_VALUE));
    return s->fn(s->ctx, up->k, up->kl, s->blob.len ? s->blob.data : (const uint8_t *)"", s->blob.len);
}

/* Merge entries [a, b) of basement v with the collected messages, in scan order. */
static int merge_emit(scan *s, const fvec *v, uint32_t a, uint32_t b) {
    uint32_t ne = b - a, nm = s->nm, i = 0, j = 0;
    while (i < ne || j < nm) {
        const frec *ei = NULL, *mj = NULL;
        if (i < ne) ei = &v->r[s->reverse ? b - 1 - i : a + i];
        if (j < nm) mj = s->m[s->reverse ? nm - 1 - j : j];
        int c = !ei ? 1 : !mj ? -1 : kvt_keycmp(ei->k, ei->kl, mj->k, mj->kl);
        if (s->reverse && ei && mj) c = -c;
        int rc;
        if (c < 0) { rc = emit(s, ei); i++; }
        else if (c == 0 && mj->type == FT_UPSERT) { rc = emit_folded(s, ei, mj); i++; j++; }
        else { rc = emit(s, mj); j++; if (c == 0) i++; }
        if (rc != 0) return rc;
    }
    return 0;
}

static int tighter_lo(bound a, bound b) {       /* is b a tighter lower bound than a? */
    if (!b.k) return 0;
    if (!a.k) return 1;
    int c = kvt_keycmp(b.k, b.kl, a.k, a.kl);
    return c > 0 || (c == 0 && !b.inc);
}

static int tighter_hi(bound a, bound b) {
    if (!b.k) return 0;
    if (!a.k) return 1;
    int c = kvt_keycmp(b.k, b.kl, a.k, a.kl);
    return c < 0 || (c == 0 && !b.inc);
}

/* Segment ids of run pn overlapping [lo, hi] into ids (at most cap in all). */
static void run_seg_ids(const fnode *pn, bound lo, bound hi, uint64_t *ids, uint32_t *n, uint32_t cap) {
    if (pn->n == 0) return;
    uint32_t a = lo.k ? fpiv_child(pn->piv, pn->n - 1, lo.k, lo.kl) : 0;
    uint32_t b = hi.k ? fpiv_child(pn->piv, pn->n - 1, hi.k, hi.kl) : pn->n - 1;
    for (uint32_t j = a; j <= b && *n < cap; j++) ids[(*n)++] = pn->child[j];
}

/* Before merging basement `bid` with the path's buffers over [lo, hi]: load the
 * basement and every overlapping segment of every run at once (ft_prefetch), since
 * the merge needs all of them. The partitions of the chains are walked here (small,
 * usually cached). Best effort: errors surface in the pins that follow. */
static uint32_t prefetch_basement(scan *s, uint64_t bid, bound lo, bound hi, fnode **hold) {
    uint64_t ids[FT_PREFETCH_MAX];
    uint32_t n = 0;
    ids[n++] = bid;
    for (int d = 0; d < s->depth && n < FT_PREFETCH_MAX; d++) {
        if (s->part[d]) run_seg_ids(s->part[d], lo, hi, ids, &n, FT_PREFETCH_MAX);
        uint64_t id = s->part[d] ? s->part[d]->older : 0;
        while (id && n < FT_PREFETCH_MAX) {
            fnode *pn;
            if (get_part_id(s->e, id, &pn) < 0 || !pn) break;
            run_seg_ids(pn, lo, hi, ids, &n, FT_PREFETCH_MAX);
            id = pn->older;
            ft_unpin(s->e, pn);
        }
    }
    return ft_prefetch(s->e, ids, n, hold);
}

/* Is the key at or past the stop bound? */
static int past_stop(const scan *s, const uint8_t *k, size_t kl) {
    return s->stop.k && k && kvt_keycmp(k, kl, s->stop.k, s->stop.kl) >= 0;
}

static int scan_basement(scan *s, fnode *leaf, uint32_t bi, bound lo, bound hi) {
    bound cur = { s->cur.data, s->cur.len, s->incl };
    if (!s->has_cur) cur.k = NULL;
    if (!s->reverse && tighter_lo(lo, cur)) lo = cur;
    if (s->reverse && tighter_hi(hi, cur)) hi = cur;
    if (!s->reverse && tighter_hi(hi, s->stop)) hi = s->stop;
    if (past_stop(s, lo.k, lo.kl)) return 1;      /* nothing of this basement is wanted */
    fnode *hold[FT_PREFETCH_MAX], *b = NULL;
    uint32_t held = prefetch_basement(s, leaf->child[bi], lo, hi, hold);
    int rc = ft_get(s->e, leaf->child[bi], &b);
    if (rc == KVT_OK) rc = collect(s, lo, hi);
    for (uint32_t i = 0; i < held; i++) ft_unpin(s->e, hold[i]);   /* pinned again above */
    if (rc == KVT_OK) rc = merge_emit(s, &b->ents, range_start(&b->ents, lo), range_end(&b->ents, hi));
    unpin_segs(s);
    ft_unpin(s->e, b);
    return rc;
}

/* Basements of the leaf from the cursor on; 1 if the visitor stopped. */
static int scan_leaf(scan *s, fnode *leaf, bound lo, bound hi) {
    uint32_t nb = leaf->n, bi;
    if (!s->has_cur) bi = s->reverse ? nb - 1 : 0;
    else if (s->reverse && !s->incl) bi = fpiv_child_lt(leaf->piv, nb - 1, s->cur.data, s->cur.len);
    else bi = fpiv_child(leaf->piv, nb - 1, s->cur.data, s->cur.len);
    for (;;) {
        bound blo = bi > 0 ? (bound){ leaf->piv[bi - 1].k, leaf->piv[bi - 1].kl, 1 } : lo;
        bound bhi = bi + 1 < nb ? (bound){ leaf->piv[bi].k, leaf->piv[bi].kl, 0 } : hi;
        int rc = scan_basement(s, leaf, bi, blo, bhi);
        if (rc != 0) return rc;
        if (s->reverse ? bi == 0 : bi + 1 == nb) return 0;
        if (!s->reverse && past_stop(s, bhi.k, bhi.kl)) return 1;
        bi = s->reverse ? bi - 1 : bi + 1;
    }
}

static void unpin_path(scan *s) {
    for (int d = 0; d < s->depth; d++) {
        ft_unpin(s->e, s->part[d]);
        ft_unpin(s->e, s->path[d]);
    }
    s->depth = 0;
}

/* Descend to the leaf holding the cursor; lo and hi get the leaf's key range. */
static int descend(scan *s, fnode **leaf, bound *lo, bound *hi) {
    fnode *n;
    *lo = *hi = (bound){0};
    KVT_TRY(ft_get(s->e, s->e->root, &n));
    while (n->kind == FT_INTERNAL) {
        uint32_t i, np = n->n - 1;
        if (!s->has_cur) i = s->reverse ? np : 0;
        else if (s->reverse && !s->incl) i = fpiv_child_lt(n->piv, np, s->cur.data, s->cur.len);
        else i = fpiv_child(n->piv, np, s->cur.data, s->cur.len);
        if (i > 0) *lo = (bound){ n->piv[i - 1].k, n->piv[i - 1].kl, 1 };
        if (i < np) *hi = (bound){ n->piv[i].k, n->piv[i].kl, 0 };
        if (s->depth == 64) { ft_unpin(s->e, n); return kvt_seterr(KVT_ECORRUPT, "fractal: tree too deep"); }
        s->path[s->depth] = n;
        s->idx[s->depth] = i;
        s->part[s->depth++] = NULL;
        KVT_TRY(get_part(s->e, n, i, &s->part[s->depth - 1]));
        KVT_TRY(ft_get(s->e, n->child[i], &n));
    }
    *leaf = n;
    if (n->kind == FT_LEAF) return KVT_OK;
    ft_unpin(s->e, n);
    return kvt_seterr(KVT_ECORRUPT, "fractal: node %llu is not a leaf", (unsigned long long)n->id);
}

/* One leaf: 1 stopped by the visitor or finished, 0 go on with the next leaf. */
static int scan_step(scan *s) {
    fnode *leaf = NULL;
    bound lo, hi;
    int rc = descend(s, &leaf, &lo, &hi);
    if (rc < 0) { unpin_path(s); return rc; }
    rc = scan_leaf(s, leaf, lo, hi);
    if (rc == 0) {
        bound next = s->reverse ? lo : hi;
        if (!next.k || (!s->reverse && past_stop(s, next.k, next.kl))) rc = 1;
        else {
            int r2 = kvt_buf_set(&s->cur, next.k, next.kl);
            if (r2 < 0) rc = r2;
            s->has_cur = 1;
            s->incl = !s->reverse;
        }
    }
    ft_unpin(s->e, leaf);
    unpin_path(s);
    return rc;
}

static int scan_run(kvt_engine *e, const uint8_t *from, size_t fl, int inclusive, int reverse,
                    bound stop, kvt_scan_fn fn, void *ctx) {
    scan s = { .e = e, .fn = fn, .ctx = ctx, .reverse = reverse, .incl = inclusive,
               .stop = stop };
    int rc = KVT_OK;
    if (from && fl == 0) {                    /* keys are never empty */
        if (reverse) return KVT_OK;
        from = NULL;
    }
    if (from) {
        rc = kvt_buf_set(&s.cur, from, fl);
        s.has_cur = 1;
    }
    while (rc == 0) rc = scan_step(&s);
    kvt_buf_free(&s.cur);
    kvt_buf_free(&s.blob);
    free(s.m);
    free(s.syn);
    free(s.segs);
    return rc < 0 ? rc : KVT_OK;
}

int ft_scan(kvt_engine *e, const uint8_t *from, size_t fl, int inclusive, int reverse,
            kvt_scan_fn fn, void *ctx) {
    return scan_run(e, from, fl, inclusive, reverse, (bound){0}, fn, ctx);
}

int ft_scan_until(kvt_engine *e, const uint8_t *from, size_t fl, const uint8_t *to, size_t tl,
                  kvt_scan_fn fn, void *ctx) {
    if (to && from && kvt_keycmp(from, fl, to, tl) >= 0) return KVT_OK;
    return scan_run(e, from, fl, 1, 0, (bound){ to, tl, 0 }, fn, ctx);
}
