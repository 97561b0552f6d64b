/* ft_check.c - full invariant walk of the fractal tree.
 *
 * Verifies: every node id reached once and every live id reached (no orphan), node
 * kind/height, pivots strictly increasing inside the parent's range, buffers sorted by
 * key with keys inside the child's range, MSNs in (0, current MSN] and, down every path,
 * older than the nearest message for the same key above them (the MSN invariant),
 * basement entries sorted, inside their range, matching the leaf's count and byte
 * accounting, the entry total, and kvt_blob_check for every blob referenced (nodes,
 * out-of-line values, the translation table): the pager verifies its free-space
 * accounting from those references.
 */
#include "ft_int.h"

typedef struct ck {
    kvt_engine *e;
    uint8_t *seen;
    uint64_t entries, bytes;
} ck;

typedef struct kr { const fkey *lo, *hi; } kr;        /* [lo, hi), NULL: unbounded */

static int bad(const ck *c, uint64_t id, const char *what) {
    return kvt_seterr(KVT_ECORRUPT, "fractal check: %s: node %llu (blob at page %llu): %s",
                      kvt_pager_path(c->e->p), (unsigned long long)id,
                      (unsigned long long)(id < c->e->ntab ? c->e->tab[id].pgno : 0), what);
}

static int in_range(kr r, const uint8_t *k, size_t kl) {
    if (r.lo && kvt_keycmp(k, kl, r.lo->k, r.lo->kl) < 0) return 0;
    if (r.hi && kvt_keycmp(k, kl, r.hi->k, r.hi->kl) >= 0) return 0;
    return 1;
}

/* The nearest ancestor message for k (cons is sorted by key, unique). */
static const frec *cons_find(const fvec *cons, const uint8_t *k, size_t kl) {
    uint32_t pos = fvec_lower(cons, k, kl);
    if (pos < cons->n && kvt_keycmp(cons->r[pos].k, cons->r[pos].kl, k, kl) == 0) return &cons->r[pos];
    return NULL;
}

static int check_rec(ck *c, uint64_t id, const frec *r, const frec *prev, kr range,
                     const fvec *cons, int entry) {
    if (prev && kvt_keycmp(prev->k, prev->kl, r->k, r->kl) >= 0) return bad(c, id, "records out of order");
    if (!in_range(range, r->k, r->kl)) return bad(c, id, "record outside the node's key range");
    if (r->msn == 0 || r->msn > c->e->msn) return bad(c, id, "record MSN beyond the tree's MSN");
    if (entry && r->type == FT_DEL) return bad(c, id, "tombstone stored in a basement");
    if (entry && r->type == FT_UPSERT) return bad(c, id, "upsert message stored in a basement");
    const frec *a = cons_find(cons, r->k, r->kl);
    if (a && a->msn <= r->msn) return bad(c, id, "message not older than the one above it");
    uint64_t pg, len;
    if (ft_blob_of(r, &pg, &len)) KVT_TRY(kvt_blob_check(c->e->p, pg, len));
    return KVT_OK;
}

static int check_vec(ck *c, uint64_t id, const fvec *v, kr range, const fvec *cons, int entry) {
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < v->n; i++) {
        KVT_TRY(check_rec(c, id, &v->r[i], i ? &v->r[i - 1] : NULL, range, cons, entry));
        bytes += frec_size(&v->r[i]);
    }
    return bytes == v->bytes ? KVT_OK : bad(c, id, "buffer byte count wrong");
}

/* Constraints for a child: the ancestors' within its range, overridden by its buffer. */
static int cons_child(const fvec *cons, const fvec *buf, kr range, fvec *out) {
    *out = (fvec){0};
    KVT_TRY(fvec_reserve(out, cons->n + buf->n + 1));
    uint32_t i = range.lo ? fvec_lower(cons, range.lo->k, range.lo->kl) : 0;
    uint32_t end = range.hi ? fvec_lower(cons, range.hi->k, range.hi->kl) : cons->n, j = 0;
    while (i < end || j < buf->n) {
        int cmp = i == end ? 1 : j == buf->n ? -1
                : kvt_keycmp(cons->r[i].k, cons->r[i].kl, buf->r[j].k, buf->r[j].kl);
        if (cmp < 0) { out->r[out->n++] = cons->r[i++]; continue; }
        if (cmp == 0) i++;
        out->r[out->n++] = buf->r[j++];
    }
    for (uint32_t k = 0; k < out->n; k++) out->r[k].owned = 0;   /* borrowed */
    return KVT_OK;
}

static int check_node(ck *c, uint64_t id, kr range, int64_t height, uint8_t kind,
                      const fvec *cons, uint64_t *count, uint64_t *bytes);

static int visit(ck *c, uint64_t id) {
    kvt_engine *e = c->e;
    if (id == 0 || id >= e->ntab || !e->live[id]) return bad(c, id, "reference to a free node id");
    if (c->seen[id]) return bad(c, id, "node referenced twice");
    c->seen[id] = 1;
    if (e->tab[id].pgno) KVT_TRY(kvt_blob_check(e->p, e->tab[id].pgno, e->tab[id].len));
    return KVT_OK;
}

static int check_pivots(ck *c, const fnode *n, kr range) {
    for (uint32_t i = 0; i + 1 < n->n; i++) {
        const fkey *p = &n->piv[i];
        if (i > 0 && kvt_keycmp(n->piv[i - 1].k, n->piv[i - 1].kl, p->k, p->kl) >= 0)
            return bad(c, n->id, "pivots out of order");
        if (!in_range(range, p->k, p->kl) || (range.lo && kvt_keycmp(p->k, p->kl, range.lo->k, range.lo->kl) == 0))
            return bad(c, n->id, "pivot outside the node's key range");
    }
    return KVT_OK;
}

static kr child_range(const fnode *n, uint32_t i, kr range) {
    return (kr){ i > 0 ? &n->piv[i - 1] : range.lo, i + 1 < n->n ? &n->piv[i] : range.hi };
}

/* A child's buffer under check: its partition and segments stay pinned while `all`
 * (their records, borrowed, in key order) is in use. */
typedef struct pbuf {
    fnode *pn, **segs;
    uint32_t nsegs;
    fvec all;
} pbuf;

static void pbuf_release(ck *c, pbuf *b) {
    for (uint32_t j = 0; j < b->nsegs; j++) ft_unpin(c->e, b->segs[j]);
    ft_unpin(c->e, b->pn);
    free(b->segs);
    free(b->all.r);
    *b = (pbuf){0};
}

/* One segment of partition pn: kind, records in range and sorted, accounting. */
static int check_seg(ck *c, pbuf *b, uint32_t j, kr range, const fvec *cons) {
    fnode *pn = b->pn, *sg;
    KVT_TRY(visit(c, pn->child[j]));
    KVT_TRY(ft_get(c->e, pn->child[j], &sg));
    b->segs[b->nsegs++] = sg;
    if (sg->kind != FT_SEGMENT) return bad(c, sg->id, "not a buffer segment");
    KVT_TRY(check_vec(c, sg->id, &sg->ents, child_range(pn, j, range), cons, 0));
    if (sg->ents.n == 0 || sg->ents.n != pn->bcount[j] || sg->ents.bytes != pn->bbytes[j])
        return bad(c, pn->id, "segment accounting wrong");
    for (uint32_t k = 0; k < sg->ents.n; k++)
        if (!ft_bloom_maybe(pn, j, sg->ents.r[k].k, sg->ents.r[k].kl))
            return bad(c, pn->id, "segment filter misses a key");
    KVT_TRY(fvec_reserve(&b->all, b->all.n + sg->ents.n));
    for (uint32_t k = 0; k < sg->ents.n; k++) {
        b->all.r[b->all.n] = sg->ents.r[k];
        b->all.r[b->all.n++].owned = 0;         /* borrowed */
    }
    b->all.bytes += sg->ents.bytes;
    return KVT_OK;
}

/* Load and check one run (partition id) of a buffer against cons: the messages above
 * it (ancestors and newer runs of the same buffer). */
static int load_run(ck *c, uint64_t id, kr range, const fvec *cons, pbuf *b) {
    KVT_TRY(visit(c, id));
    KVT_TRY(ft_get(c->e, id, &b->pn));
    fnode *pn = b->pn;
    if (pn->kind != FT_PARTITION || pn->n == 0) return bad(c, pn->id, "not a partition, or empty");
    KVT_TRY(check_pivots(c, pn, range));
    b->segs = calloc(pn->n, sizeof *b->segs);
    if (!b->segs) return kvt_seterr(KVT_ENOMEM, "fractal check: no memory");
    for (uint32_t j = 0; j < pn->n; j++) KVT_TRY(check_seg(c, b, j, range, cons));
    return KVT_OK;
}

/* A child's buffer under check: its runs, newest first, and the constraints for the
 * child below (ancestors overridden by every run, the oldest run last). */
typedef struct runs {
    pbuf run[FT_MAX_RUNS];
    uint32_t n;
    fvec cons;                       /* borrowed records; cons.r owned */
    int have_cons;
} runs;

static void runs_release(ck *c, runs *r) {
    for (uint32_t k = 0; k < r->n; k++) pbuf_release(c, &r->run[k]);
    free(r->cons.r);
    *r = (runs){0};
}

/* Check buffer i of n: each run against the ones above it, the chain's run counts and
 * the header's totals. Leaves in r the constraints for the child. */
static int load_runs(ck *c, const fnode *n, uint32_t i, kr range, const fvec *cons, runs *r) {
    if (!n->part[i]) return n->bcount[i] ? bad(c, n->id, "buffer without a partition") : KVT_OK;
    uint64_t id = n->part[i], cnt = 0, bytes = 0;
    uint32_t want = 0;
    while (id) {
        if (r->n == FT_MAX_RUNS) return bad(c, n->id, "too many runs in a buffer");
        pbuf *b = &r->run[r->n++];
        KVT_TRY(load_run(c, id, range, r->have_cons ? &r->cons : cons, b));
        if (want && b->pn->runs != want) return bad(c, b->pn->id, "run count of the chain wrong");
        want = b->pn->runs - 1;
        cnt += b->all.n;
        bytes += b->all.bytes;
        fvec next;
        KVT_TRY(cons_child(r->have_cons ? &r->cons : cons, &b->all, range, &next));
        free(r->cons.r);
        r->cons = next;
        r->have_cons = 1;
        id = b->pn->older;
    }
    if (want != 0) return bad(c, n->id, "run chain shorter than its count");
    if (cnt != n->bcount[i] || bytes != n->bbytes[i]) return bad(c, n->id, "partition accounting wrong");
    return KVT_OK;
}

static int check_children(ck *c, fnode *n, kr range, const fvec *cons) {
    for (uint32_t i = 0; i < n->n; i++) {
        kr cr = child_range(n, i, range);
        if (n->kind == FT_LEAF) {
            uint64_t cnt = 0, by = 0;
            KVT_TRY(check_node(c, n->child[i], cr, 0, FT_BASEMENT, cons, &cnt, &by));
            if (cnt != n->bcount[i] || by != n->bbytes[i]) return bad(c, n->id, "basement accounting wrong");
            c->entries += cnt;
            c->bytes += by;
            continue;
        }
        runs r = {0};
        int rc = load_runs(c, n, i, cr, cons, &r);
        fvec none = {0}, cc = none;
        if (rc == KVT_OK && !r.have_cons) rc = cons_child(cons, &none, cr, &cc);
        uint8_t kind = n->height == 1 ? FT_LEAF : FT_INTERNAL;
        if (rc == KVT_OK)
            rc = check_node(c, n->child[i], cr, (int64_t)n->height - 1, kind,
                            r.have_cons ? &r.cons : &cc, NULL, NULL);
        free(cc.r);
        runs_release(c, &r);                  /* the constraints borrowed until here */
        KVT_TRY(rc);
    }
    return KVT_OK;
}

static int check_node(ck *c, uint64_t id, kr range, int64_t height, uint8_t kind,
                      const fvec *cons, uint64_t *count, uint64_t *bytes) {
    KVT_TRY(visit(c, id));
    fnode *n;
    KVT_TRY(ft_get(c->e, id, &n));
    int rc = KVT_OK;
    if (n->kind != kind && !(height < 0 && (n->kind == FT_INTERNAL || n->kind == FT_LEAF))) rc = bad(c, id, "wrong node kind");
    else if (height >= 0 && n->height != (uint64_t)height) rc = bad(c, id, "wrong height");
    else if (n->kind == FT_BASEMENT) {
        rc = check_vec(c, id, &n->ents, range, cons, 1);
        *count = n->ents.n;
        *bytes = n->ents.bytes;
    } else if (n->n == 0 || (n->kind == FT_INTERNAL) != (n->height > 0)) {
        rc = bad(c, id, "node without children or with a wrong height");
    } else {
        rc = check_pivots(c, n, range);
        if (rc == KVT_OK) rc = check_children(c, n, range, cons);
    }
    ft_unpin(c->e, n);
    return rc;
}

int ft_check(kvt_engine *e) {
    ck c = { .e = e };
    c.seen = calloc(e->ntab + 1, 1);
    if (!c.seen) return kvt_seterr(KVT_ENOMEM, "fractal check: no memory");
    fvec none = {0};
    int rc = check_node(&c, e->root, (kr){0}, -1, FT_LEAF, &none, NULL, NULL);
    for (uint64_t id = 1; rc == KVT_OK && id < e->ntab; id++)
        if (e->live[id] && !c.seen[id]) rc = bad(&c, id, "node not reachable from the root (leaked)");
    if (rc == KVT_OK && c.entries != e->entries) rc = bad(&c, e->root, "entry count differs from the leaves");
    if (rc == KVT_OK && c.bytes != e->data_bytes) rc = bad(&c, e->root, "data byte count differs from the leaves");
    if (rc == KVT_OK && e->table_pgno) rc = kvt_blob_check(e->p, e->table_pgno, e->table_len);
    free(c.seen);
    return rc;
}
