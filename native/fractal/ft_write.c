/* ft_write.c - the write path: messages into the root buffer, buffer flushes, leaf
 * application, splits and merges.
 *
 * Ownership rules: a node-lookup result is pinned and the caller unpins it, except that
 * fix_child() and fix_root() consume the pin of the child/root they are given.
 * A record that moves to another node is first detached (copied out of the arena of the
 * node it came from), because that node may be evicted and its arena freed.
 */
#include "ft_int.h"

static int vec_detach_all(fvec *v) {
    for (uint32_t i = 0; i < v->n; i++) KVT_TRY(frec_detach(&v->r[i]));
    return KVT_OK;
}

static void vec_recount(fvec *v) {
    v->bytes = 0;
    for (uint32_t i = 0; i < v->n; i++) v->bytes += frec_size(&v->r[i]);
}

/* One message into a basement, in place (the ascending and single-put case). */
static int basement_apply1(kvt_engine *e, fnode *b, frec *m, int64_t *dcount) {
    fvec *v = &b->ents;
    uint32_t pos = fvec_lower(v, m->k, m->kl);
    int found = pos < v->n && kvt_keycmp(v->r[pos].k, v->r[pos].kl, m->k, m->kl) == 0;
    int rc = ft_fold(e, found ? &v->r[pos] : NULL, m);   /* an upsert becomes a put */
    if (rc < 0) { frec_free(m); return rc; }
    if (found) {
        frec old = v->r[pos];
        b->owned -= frec_mem(&old);
        v->bytes -= frec_size(&old);
        memmove(v->r + pos, v->r + pos + 1, (v->n - pos - 1) * sizeof *v->r);
        v->n--;
        (*dcount)--;
        KVT_TRY(ft_rec_release(e, &old));
    }
    if (m->type == FT_DEL) { frec_free(m); return KVT_OK; }
    KVT_TRY(fvec_insert(v, pos, m));
    b->owned += frec_mem(m);
    (*dcount)++;
    return KVT_OK;
}

/* Apply sorted messages to basement entries; *dcount gets the change in live entries. */
static int basement_apply(kvt_engine *e, fnode *b, frec *m, uint32_t nm, int64_t *dcount) {
    if (nm == 1) return basement_apply1(e, b, m, dcount);
    fvec *v = &b->ents, out = {0};
    KVT_TRY(fvec_reserve(&out, v->n + nm));
    uint32_t i = 0, j = 0;
    int rc = KVT_OK;
    while (i < v->n || j < nm) {
        int c = i == v->n ? 1 : j == nm ? -1 : kvt_keycmp(v->r[i].k, v->r[i].kl, m[j].k, m[j].kl);
        if (c < 0) { out.r[out.n++] = v->r[i++]; continue; }
        int r1 = ft_fold(e, c == 0 ? &v->r[i] : NULL, &m[j]);   /* upsert: a put now */
        if (r1 < 0) {                             /* keep the entry, drop the message */
            rc = r1;
            frec_free(&m[j++]);
            continue;
        }
        if (c == 0) {
            b->owned -= frec_mem(&v->r[i]);
            int r2 = ft_rec_release(e, &v->r[i++]);
            if (r2 < 0) rc = r2;
            (*dcount)--;
        }
        if (m[j].type == FT_DEL) { frec_free(&m[j++]); continue; }
        b->owned += frec_mem(&m[j]);
        out.r[out.n++] = m[j++];
        (*dcount)++;
    }
    free(v->r);
    *v = out;
    vec_recount(v);
    return rc;
}

/* ---- child lists (leaf basements or internal children) ---- */

/* Open a gap at index at for one child, with pivot index at-1 left for the caller. */
static int child_insert(fnode *p, uint32_t at, uint64_t id, const uint8_t *pk, size_t pkl) {
    KVT_TRY(ft_node_grow(p, p->n + 1));
    fkey piv;
    KVT_TRY(fkey_set(&piv, pk, pkl));
    memmove(p->child + at + 1, p->child + at, (p->n - at) * sizeof *p->child);
    memmove(p->piv + at, p->piv + at - 1, (p->n - at) * sizeof *p->piv);
    p->child[at] = id;
    p->piv[at - 1] = piv;
    memmove(p->bcount + at + 1, p->bcount + at, (p->n - at) * sizeof *p->bcount);
    memmove(p->bbytes + at + 1, p->bbytes + at, (p->n - at) * sizeof *p->bbytes);
    p->bcount[at] = 0;
    p->bbytes[at] = 0;
    if (p->kind == FT_PARTITION) {            /* the caller builds the new filter */
        memmove(p->bloom + (size_t)(at + 1) * FT_SEG_BLOOM, p->bloom + (size_t)at * FT_SEG_BLOOM,
                (size_t)(p->n - at) * FT_SEG_BLOOM);
        memset(p->bloom + (size_t)at * FT_SEG_BLOOM, 0, FT_SEG_BLOOM);
    }
    if (p->kind == FT_INTERNAL) {
        memmove(p->part + at + 1, p->part + at, (p->n - at) * sizeof *p->part);
        p->part[at] = 0;
    }
    p->n++;
    return KVT_OK;
}

static void child_remove(fnode *p, uint32_t at) {
    uint32_t pv = at > 0 ? at - 1 : 0;       /* the neighbour takes over the range */
    free(p->piv[pv].k);
    memmove(p->piv + pv, p->piv + pv + 1, (p->n - 2 - pv) * sizeof *p->piv);
    memmove(p->child + at, p->child + at + 1, (p->n - 1 - at) * sizeof *p->child);
    memmove(p->bcount + at, p->bcount + at + 1, (p->n - 1 - at) * sizeof *p->bcount);
    memmove(p->bbytes + at, p->bbytes + at + 1, (p->n - 1 - at) * sizeof *p->bbytes);
    if (p->kind == FT_INTERNAL)               /* callers remove only empty buffers */
        memmove(p->part + at, p->part + at + 1, (p->n - 1 - at) * sizeof *p->part);
    p->n--;
}

/* ---- basements ---- */

/* Move entries [start, end) of basement b into a new basement inserted at bi+1. */
static int basement_peel(kvt_engine *e, fnode *l, uint32_t bi, fnode *b, uint32_t start,
                         uint32_t end) {
    fvec *v = &b->ents;
    fnode *d;
    KVT_TRY(ft_new(e, b->kind, 0, &d));       /* a basement or a buffer segment */
    int rc = fvec_reserve(&d->ents, end - start);
    if (rc == KVT_OK) rc = child_insert(l, bi + 1, d->id, v->r[start].k, v->r[start].kl);
    if (rc < 0) { ft_unpin(e, d); return rc; }   /* d stays an empty orphan: fatal anyway */
    memcpy(d->ents.r, v->r + start, (end - start) * sizeof *v->r);
    d->ents.n = end - start;
    for (uint32_t i = start; i < end; i++) b->owned -= frec_mem(&v->r[i]);
    v->n = start;                                 /* the records belong to d now */
    rc = ft_compact(d);                           /* copies them out of b's arena */
    if (rc < 0) { ft_unpin(e, d); return rc; }
    vec_recount(&d->ents);
    l->bcount[bi + 1] = d->ents.n;
    l->bbytes[bi + 1] = d->ents.bytes;
    if (l->kind == FT_PARTITION) ft_bloom_build(l, bi + 1, &d->ents);
    v->n = start;
    ft_dirty(e, d);
    ft_unpin(e, d);
    return KVT_OK;
}

/* Cut basement b of leaf l into pieces of about `target` bytes, left to right; the
 * first piece stays in b, the others become new basements after it. */
static int basement_cut(kvt_engine *e, fnode *l, uint32_t bi, fnode *b, uint64_t target) {
    fvec *v = &b->ents;
    uint32_t *cut = malloc((v->n + 1) * sizeof *cut), nc = 0;
    if (!cut) return kvt_seterr(KVT_ENOMEM, "fractal: no memory to split a basement");
    uint64_t acc = 0;
    for (uint32_t i = 0; i < v->n; i++) {
        uint64_t sz = frec_size(&v->r[i]);
        if (acc > 0 && acc + sz > target) { cut[nc++] = i; acc = 0; }
        acc += sz;
    }
    int rc = KVT_OK;
    uint32_t end = v->n;
    while (nc > 0 && rc == KVT_OK) {            /* rightmost piece first */
        uint32_t start = cut[--nc];
        rc = basement_peel(e, l, bi, b, start, end);
        end = start;
    }
    free(cut);
    vec_recount(v);
    l->bcount[bi] = v->n;
    l->bbytes[bi] = v->bytes;
    return rc;
}

static uint64_t cut_target(const kvt_engine *e, uint64_t total, int asc) {
    if (asc) return e->basement_size - e->basement_size / 16;
    uint64_t k = (total * 4 + 3 * e->basement_size - 1) / (3 * e->basement_size);
    if (k < 2) k = 2;
    return total / k;
}

/* Apply the messages of one basement; split, drop or keep it. Consumes b's pin. */
static int basement_step(kvt_engine *e, fnode *l, uint32_t bi, fnode *b, frec *m, uint32_t nm,
                         int asc) {
    int64_t d = 0;
    uint64_t before = b->ents.bytes;
    int rc = basement_apply(e, b, m, nm, &d);
    e->entries += d;
    e->data_bytes += b->ents.bytes - before;
    l->bcount[bi] = b->ents.n;
    l->bbytes[bi] = b->ents.bytes;
    if (rc == KVT_OK && b->ents.bytes > e->basement_size && b->ents.n > 1) {
        int tail = asc && bi == l->n - 1;
        rc = basement_cut(e, l, bi, b, cut_target(e, b->ents.bytes, tail));
    }
    if (rc == KVT_OK && b->owned > b->arena_len / 2 + 4096) rc = ft_compact(b);
    ft_dirty(e, b);
    if (rc < 0) {
        ft_unpin(e, b);
        return rc;
    } else if (rc == KVT_OK && b->ents.n == 0 && l->n > 1) {
        child_remove(l, bi);
        return ft_drop(e, b);
    }
    ft_unpin(e, b);
    return rc;
}

/* Apply sorted messages (owned, detached) to leaf l. The messages are consumed. */
static int leaf_apply(kvt_engine *e, fnode *l, frec *m, uint32_t nm, int asc) {
    uint32_t nb = l->n, *start = malloc((nb + 1) * sizeof *start);
    if (!start) return kvt_seterr(KVT_ENOMEM, "fractal: no memory for a leaf flush");
    uint32_t j = 0;
    for (uint32_t b = 0; b < nb; b++) {
        start[b] = j;
        while (j < nm && (b + 1 == nb || kvt_keycmp(m[j].k, m[j].kl, l->piv[b].k, l->piv[b].kl) < 0)) j++;
    }
    start[nb] = nm;
    int rc = KVT_OK;
    for (uint32_t b = nb; b-- > 0 && rc == KVT_OK;) {     /* right to left: indexes stay */
        if (start[b] == start[b + 1]) continue;
        fnode *bn;
        rc = ft_get(e, l->child[b], &bn);
        if (rc == KVT_OK) rc = basement_step(e, l, b, bn, m + start[b], start[b + 1] - start[b], asc);
        if (rc < 0) nm = start[b + 1];                    /* messages left to free */
        else nm = start[b];
    }
    for (uint32_t i = 0; i < nm; i++) frec_free(&m[i]);   /* unapplied after an error */
    free(start);
    ft_dirty(e, l);
    return rc;
}

/* ---- partitions: an internal node's buffer for one child, a list of segments ---- */

/* A new empty run for x's buffer i, in front of the chain of `below` runs (pinned,
 * dirty). */
static int part_new_run(kvt_engine *e, fnode *x, uint32_t i, uint32_t below, fnode **out) {
    KVT_TRY(ft_new(e, FT_PARTITION, 0, out));
    (*out)->older = x->part[i];
    (*out)->runs = below + 1;
    x->part[i] = (*out)->id;
    return KVT_OK;
}

/* Messages and bytes of one run (its own segments, not the older runs). */
static void part_own(const fnode *pn, uint64_t *cnt, uint64_t *bytes) {
    *cnt = *bytes = 0;
    for (uint32_t j = 0; j < pn->n; j++) { *cnt += pn->bcount[j]; *bytes += pn->bbytes[j]; }
}

/* After the newest run pn of x's buffer i changed from (cnt0, bytes0) of its own:
 * the header's buffer totals (all runs) and dirty marks. Consumes the pin. */
static void part_done(kvt_engine *e, fnode *x, uint32_t i, fnode *pn, uint64_t cnt0, uint64_t bytes0) {
    uint64_t cnt, bytes;
    part_own(pn, &cnt, &bytes);
    x->bcount[i] = (uint32_t)(x->bcount[i] - cnt0 + cnt);
    x->bbytes[i] = x->bbytes[i] - bytes0 + bytes;
    ft_dirty(e, x);
    ft_dirty(e, pn);
    ft_unpin(e, pn);
}

/* Merge a sorted run of newer messages (owned) into the sorted records dst; an older
 * record of the same key goes (a newer upsert absorbs it). *owned tracks the bytes of
 * owned records in dst (may be NULL). The messages are consumed. */
static int vec_merge1(kvt_engine *e, fvec *dst, frec *m, uint64_t *owned);

static int vec_merge(kvt_engine *e, fvec *dst, frec *in, uint32_t nin, uint64_t *owned) {
    if (nin == 1) return vec_merge1(e, dst, in, owned);
    fvec out = {0};
    int rc = fvec_reserve(&out, dst->n + nin);
    if (rc < 0) {
        for (uint32_t j = 0; j < nin; j++) frec_free(&in[j]);
        return rc;
    }
    uint64_t own = owned ? *owned : 0;
    uint32_t i = 0, j = 0;
    while (i < dst->n || j < nin) {
        int c = i == dst->n ? 1 : j == nin ? -1
              : kvt_keycmp(dst->r[i].k, dst->r[i].kl, in[j].k, in[j].kl);
        if (c < 0) { out.r[out.n++] = dst->r[i++]; continue; }
        if (c == 0) {
            int r1 = ft_fold(e, &dst->r[i], &in[j]);
            if (r1 < 0) {                         /* keep the older, drop the message */
                rc = r1;
                frec_free(&in[j++]);
                continue;
            }
            own -= frec_mem(&dst->r[i]);
            int r2 = ft_rec_release(e, &dst->r[i++]);
            if (r2 < 0) rc = r2;
        }
        own += frec_mem(&in[j]);
        out.r[out.n++] = in[j++];
    }
    free(dst->r);
    *dst = out;
    vec_recount(dst);
    if (owned) *owned = own;
    return rc;
}

/* vec_merge of one message, in place (a put into the root's buffer): a binary search
 * and one move instead of copying the whole vector. */
static int vec_merge1(kvt_engine *e, fvec *dst, frec *m, uint64_t *owned) {
    uint32_t pos = fvec_lower(dst, m->k, m->kl);
    int rc;
    if (pos < dst->n && kvt_keycmp(dst->r[pos].k, dst->r[pos].kl, m->k, m->kl) == 0) {
        frec old = dst->r[pos];
        if ((rc = ft_fold(e, &old, m)) < 0) { frec_free(m); return rc; }
        dst->r[pos] = *m;
        dst->bytes += frec_size(m) - frec_size(&old);
        if (owned) *owned += frec_mem(m) - frec_mem(&old);
        return ft_rec_release(e, &old);
    }
    if ((rc = fvec_insert(dst, pos, m)) < 0) { frec_free(m); return rc; }
    if (owned) *owned += frec_mem(m);
    return KVT_OK;
}

static int seg_merge(kvt_engine *e, fnode *sg, frec *in, uint32_t nin) {
    return vec_merge(e, &sg->ents, in, nin, &sg->owned);
}

/* Merge messages into segment j of partition pn, then cut it if too big. Consumes the pin. */
static int seg_step(kvt_engine *e, fnode *pn, uint32_t j, fnode *sg, frec *m, uint32_t nm) {
    /* A merge only adds keys, so their bits are added to the filter (before the merge
     * consumes m); only a cut needs a rebuild. A failed merge leaves extra bits: a
     * filter may pass keys it does not hold, never miss one. */
    for (uint32_t k = 0; k < nm; k++) ft_bloom_add(pn, j, m[k].k, m[k].kl);
    int rc = seg_merge(e, sg, m, nm);
    pn->bcount[j] = sg->ents.n;
    pn->bbytes[j] = sg->ents.bytes;
    if (rc == KVT_OK && sg->ents.bytes > e->basement_size && sg->ents.n > 1) {
        rc = basement_cut(e, pn, j, sg, cut_target(e, sg->ents.bytes, 0));
        ft_bloom_build(pn, j, &sg->ents);     /* after the cut: only what stayed */
    }
    if (rc == KVT_OK && sg->owned > sg->arena_len / 2 + 4096) rc = ft_compact(sg);
    ft_dirty(e, sg);
    ft_unpin(e, sg);
    return rc;
}

/* Give an empty partition its first (empty) segment. */
static int part_first_segment(kvt_engine *e, fnode *pn) {
    fnode *sg;
    KVT_TRY(ft_node_grow(pn, 1));
    KVT_TRY(ft_new(e, FT_SEGMENT, 0, &sg));
    pn->child[0] = sg->id;
    memset(pn->bloom, 0, FT_SEG_BLOOM);
    pn->bcount[0] = 0;
    pn->bbytes[0] = 0;
    pn->n = 1;
    ft_unpin(e, sg);
    return KVT_OK;
}

/* Merge sorted newer messages (owned, detached) into partition pn: only the segments
 * they fall in are read and rewritten. The messages are consumed. */
static int part_merge(kvt_engine *e, fnode *pn, frec *m, uint32_t nm) {
    int rc = pn->n ? KVT_OK : part_first_segment(e, pn);
    uint32_t ns = pn->n, *start = rc == KVT_OK ? malloc((ns + 1) * sizeof *start) : NULL;
    if (rc == KVT_OK && !start) rc = kvt_seterr(KVT_ENOMEM, "fractal: no memory for a buffer merge");
    if (rc < 0) {
        for (uint32_t i = 0; i < nm; i++) frec_free(&m[i]);
        return rc;
    }
    uint32_t j = 0;
    for (uint32_t g = 0; g < ns; g++) {
        start[g] = j;
        while (j < nm && (g + 1 == ns || kvt_keycmp(m[j].k, m[j].kl, pn->piv[g].k, pn->piv[g].kl) < 0)) j++;
    }
    start[ns] = nm;
    for (uint32_t g = ns; g-- > 0 && rc == KVT_OK;) {     /* right to left: indexes stay */
        if (start[g] == start[g + 1]) continue;
        fnode *sg;
        rc = ft_get_kind(e, pn->child[g], FT_SEGMENT, &sg);
        if (rc == KVT_OK) rc = seg_step(e, pn, g, sg, m + start[g], start[g + 1] - start[g]);
        nm = rc < 0 ? start[g + 1] : start[g];
    }
    for (uint32_t i = 0; i < nm; i++) frec_free(&m[i]);   /* unapplied after an error */
    free(start);
    return rc;
}

/* Whether a batch of nm messages may merge into run pn rather than start a new run:
 * yes when the chain is full, when pn is small next to the batch (rewriting it costs
 * less than the batch), or when every segment the batch falls in is dirty in the cache
 * (it will be written anyway). A new run costs one write of the batch and, for queries,
 * one more partition and filter to probe on this level. */
static int merge_into_run(kvt_engine *e, const fnode *pn, const frec *m, uint32_t nm) {
    uint64_t cnt, bytes, in = 0;
    part_own(pn, &cnt, &bytes);
    for (uint32_t k = 0; k < nm; k++) in += frec_size(&m[k]);
    uint32_t limit = e->max_runs ? e->max_runs : FT_DEF_RUNS;
    if (pn->runs >= limit || pn->n == 0 || 2 * bytes <= in) return 1;
    for (uint32_t k = 0; k < nm;) {
        uint32_t g = fpiv_child(pn->piv, pn->n - 1, m[k].k, m[k].kl);
        if (!ft_cached_dirty(e, pn->child[g])) return 0;
        if (g + 1 == pn->n) break;
        while (k < nm && kvt_keycmp(m[k].k, m[k].kl, pn->piv[g].k, pn->piv[g].kl) < 0) k++;
    }
    return 1;
}

/* Messages (owned, sorted, newer than x's buffer i) into x's buffer i: merged into its
 * newest run, or as a new run (merge_into_run). Consumed. */
static int buffer_add(kvt_engine *e, fnode *x, uint32_t i, frec *m, uint32_t nm) {
    fnode *pn = NULL;
    uint32_t below = 0;
    int rc = x->part[i] ? ft_get_kind(e, x->part[i], FT_PARTITION, &pn) : KVT_OK;
    if (rc == KVT_OK && pn && !merge_into_run(e, pn, m, nm)) {
        below = pn->runs;
        ft_unpin(e, pn);
        pn = NULL;
        e->runs_started++;
    }
    if (rc == KVT_OK && !pn) rc = part_new_run(e, x, i, below, &pn);
    if (rc < 0) {
        for (uint32_t k = 0; k < nm; k++) frec_free(&m[k]);
        return rc;
    }
    uint64_t cnt0, bytes0;
    part_own(pn, &cnt0, &bytes0);
    rc = part_merge(e, pn, m, nm);
    part_done(e, x, i, pn, cnt0, bytes0);
    return rc;
}

/* Take all messages of run pn (detached, sorted) and drop it (consumes the pin). The
 * segments go last first, each into its place in `in` (known from the counts), so that
 * after an error `in` holds exactly the messages taken. */
static int run_take(kvt_engine *e, fnode *pn, fvec *in) {
    uint64_t total = 0, bytes;
    *in = (fvec){0};
    part_own(pn, &total, &bytes);
    int rc = total > UINT32_MAX ? kvt_seterr(KVT_ECORRUPT, "fractal: partition %llu too big",
                                             (unsigned long long)pn->id)
                                : fvec_reserve(in, (uint32_t)total);
    uint32_t end = (uint32_t)total;                       /* in->r[end, total) taken */
    while (rc == KVT_OK && pn->n > 0) {
        fnode *sg;
        uint32_t j = pn->n - 1;
        rc = ft_get_kind(e, pn->child[j], FT_SEGMENT, &sg);
        if (rc < 0) break;
        if (sg->ents.n != pn->bcount[j])
            rc = kvt_seterr(KVT_ECORRUPT, "fractal: partition %llu: segment %llu count differs",
                            (unsigned long long)pn->id, (unsigned long long)sg->id);
        if (rc == KVT_OK) rc = vec_detach_all(&sg->ents);
        if (rc < 0) { ft_unpin(e, sg); break; }
        end -= sg->ents.n;
        memcpy(in->r + end, sg->ents.r, sg->ents.n * sizeof *in->r);
        sg->ents.n = 0;                                   /* the records are in `in` now */
        sg->owned = 0;
        if (j > 0) free(pn->piv[j - 1].k);
        pn->n--;
        rc = ft_drop(e, sg);
    }
    if (end > 0) memmove(in->r, in->r + end, (total - end) * sizeof *in->r);
    in->n = (uint32_t)total - end;
    vec_recount(in);
    if (rc < 0) { ft_unpin(e, pn); return rc; }
    return ft_drop(e, pn);
}

/* Take all messages of x's buffer i (detached, sorted, one per key: the runs merged,
 * newer over older), emptying the buffer. */
static int buffer_take(kvt_engine *e, fnode *x, uint32_t i, fvec *in) {
    uint64_t id = x->part[i];
    *in = (fvec){0};
    x->part[i] = 0;
    x->bcount[i] = 0;
    x->bbytes[i] = 0;
    ft_dirty(e, x);
    int rc = KVT_OK;
    while (id && rc == KVT_OK) {                          /* newest run first */
        fnode *pn;
        fvec older;
        rc = ft_get_kind(e, id, FT_PARTITION, &pn);
        if (rc < 0) break;
        id = pn->older;
        rc = run_take(e, pn, &older);
        int r2 = in->n ? vec_merge(e, &older, in->r, in->n, NULL) : KVT_OK;  /* consumes in */
        free(in->r);
        *in = older;
        if (rc == KVT_OK) rc = r2;
    }
    return rc;
}

/* Split p's buffer i at pivot i: messages >= the pivot go to buffer i+1 (empty). */
static int buffer_split(kvt_engine *e, fnode *p, uint32_t i) {
    if (!p->part[i]) return KVT_OK;
    fvec in;
    int rc = buffer_take(e, p, i, &in);
    if (rc < 0) { fvec_free(&in); return rc; }
    uint32_t at = fvec_lower(&in, p->piv[i].k, p->piv[i].kl);
    rc = at ? buffer_add(e, p, i, in.r, at) : KVT_OK;
    if (rc == KVT_OK && at < in.n) rc = buffer_add(e, p, i + 1, in.r + at, in.n - at);
    else if (rc < 0) for (uint32_t k = at; k < in.n; k++) frec_free(&in.r[k]);
    free(in.r);
    return rc;
}

/* ---- splits and merges ---- */

/* Basements per leaf: FT_LEAF_FACTOR x node_size of them (tests may fix another). A
 * bigger leaf means fewer internal nodes (less buffer space to rewrite) but a flush
 * batch touches more basements per message. Measured trade-off: README.md. */
static uint32_t leaf_max(const kvt_engine *e) {
    return e->max_basements ? e->max_basements : e->min_basements * FT_LEAF_FACTOR;
}

static int needs_split(const kvt_engine *e, const fnode *c) {
    return c->kind == FT_LEAF ? c->n > leaf_max(e) : c->n > FT_FANOUT;
}

static int is_empty_leaf(const fnode *c) {
    return c->kind == FT_LEAF && c->n == 1 && c->bcount[0] == 0;
}

/* Move children [m, n) of c into the new node d. */
static int move_children(fnode *c, fnode *d, uint32_t m) {
    uint32_t k = c->n - m;
    KVT_TRY(ft_node_grow(d, k));
    memcpy(d->child, c->child + m, k * sizeof *d->child);
    memcpy(d->piv, c->piv + m, (k - 1) * sizeof *d->piv);
    memcpy(d->bcount, c->bcount + m, k * sizeof *d->bcount);
    memcpy(d->bbytes, c->bbytes + m, k * sizeof *d->bbytes);
    if (c->kind == FT_INTERNAL)               /* partitions move by id */
        memcpy(d->part, c->part + m, k * sizeof *d->part);
    d->n = k;
    c->n = m;
    return KVT_OK;
}

static int split_child(kvt_engine *e, fnode *p, uint32_t i, fnode *c, int asc, fnode **out) {
    uint32_t m = asc ? c->n - 1 : c->n / 2;
    fnode *d;
    KVT_TRY(ft_node_grow(p, p->n + 1));
    KVT_TRY(ft_new(e, c->kind, c->height, &d));
    fkey sep = c->piv[m - 1];
    int rc = move_children(c, d, m);
    if (rc == KVT_OK) rc = child_insert(p, i + 1, d->id, sep.k, sep.kl);
    free(sep.k);
    if (rc < 0) { ft_unpin(e, d); return rc; }
    if (p->kind == FT_INTERNAL) rc = buffer_split(e, p, i);
    if (rc < 0) { ft_unpin(e, d); return rc; }
    ft_dirty(e, c);
    ft_dirty(e, d);
    ft_dirty(e, p);
    *out = d;
    return KVT_OK;
}

/* Drop an empty leaf and its one basement. Consumes c's pin. */
static int remove_leaf(kvt_engine *e, fnode *p, uint32_t i, fnode *c) {
    fnode *b;
    int rc = ft_get(e, c->child[0], &b);
    if (rc < 0) { ft_unpin(e, c); return rc; }
    child_remove(p, i);
    ft_dirty(e, p);
    rc = ft_drop(e, b);
    int r2 = ft_drop(e, c);
    return rc < 0 ? rc : r2;
}

/* After child c (at index i of p) changed: split or remove it. Consumes c's pin. */
static int fix_child(kvt_engine *e, fnode *p, uint32_t i, fnode *c, int asc) {
    if (needs_split(e, c)) {
        fnode *d;
        int rc = split_child(e, p, i, c, asc, &d);
        if (rc < 0) { ft_unpin(e, c); return rc; }
        rc = fix_child(e, p, i + 1, d, asc);
        int r2 = fix_child(e, p, i, c, asc);
        return rc < 0 ? rc : r2;
    }
    if (is_empty_leaf(c) && p->n > 1 && p->bcount[i] == 0) return remove_leaf(e, p, i, c);
    ft_unpin(e, c);
    return KVT_OK;
}

/* Grow a new root while the root must split; shrink while it has one idle child.
 * Consumes r's pin. */
static int fix_root(kvt_engine *e, fnode *r, int asc) {
    while (needs_split(e, r)) {
        fnode *nr;
        int rc = ft_new(e, FT_INTERNAL, r->height + 1, &nr);
        if (rc == KVT_OK) rc = ft_node_grow(nr, 2);
        if (rc < 0) { ft_unpin(e, r); return rc; }
        nr->child[0] = r->id;
        nr->part[0] = 0;
        nr->bcount[0] = 0;
        nr->bbytes[0] = 0;
        nr->n = 1;
        e->root = nr->id;
        rc = fix_child(e, nr, 0, r, asc);
        r = nr;
        if (rc < 0) { ft_unpin(e, r); return rc; }
    }
    while (r->kind == FT_INTERNAL && r->n == 1 && r->bcount[0] == 0) {
        fnode *c;
        int rc = ft_get(e, r->child[0], &c);
        if (rc < 0) { ft_unpin(e, r); return rc; }
        e->root = c->id;
        rc = ft_drop(e, r);
        r = c;
        if (rc < 0) { ft_unpin(e, r); return rc; }
    }
    ft_unpin(e, r);
    return KVT_OK;
}

/* ---- flushing ---- */

static uint32_t heaviest(const fnode *x) {
    uint32_t best = 0;
    for (uint32_t i = 1; i < x->n; i++)
        if (x->bbytes[i] > x->bbytes[best]) best = i;
    return best;
}

static int flush_node(kvt_engine *e, fnode *x);

/* Route sorted messages into internal node c's buffers, run by run. */
static int route_into(kvt_engine *e, fnode *c, fvec *in) {
    uint32_t j = 0;
    while (j < in->n) {
        uint32_t g = fpiv_child(c->piv, c->n - 1, in->r[j].k, in->r[j].kl), k = j + 1;
        if (g + 1 < c->n)
            while (k < in->n && kvt_keycmp(in->r[k].k, in->r[k].kl, c->piv[g].k, c->piv[g].kl) < 0) k++;
        else
            k = in->n;
        int rc = buffer_add(e, c, g, in->r + j, k - j);
        if (rc < 0) {                             /* the rest is still ours */
            for (uint32_t x = k; x < in->n; x++) frec_free(&in->r[x]);
            return rc;
        }
        j = k;
    }
    return KVT_OK;
}

static int flush_into(kvt_engine *e, fnode *c, fvec *in) {
    if (c->kind == FT_LEAF) {
        int rc = leaf_apply(e, c, in->r, in->n, 0);
        in->n = 0;
        return rc;
    }
    int rc = route_into(e, c, in);
    in->n = 0;
    ft_dirty(e, c);
    while (rc == KVT_OK && ft_node_buffered(c) > e->node_size) rc = flush_node(e, c);
    return rc;
}

/* Move x's heaviest child buffer down in one batch. */
static int flush_node(kvt_engine *e, fnode *x) {
    uint32_t i = heaviest(x);
    if (x->bcount[i] == 0) return KVT_OK;
    fnode *c;
    KVT_TRY(ft_get(e, x->child[i], &c));
    fvec in;
    int rc = buffer_take(e, x, i, &in);
    if (rc < 0) { fvec_free(&in); ft_unpin(e, c); return rc; }
    e->flushes++;
    rc = flush_into(e, c, &in);
    fvec_free(&in);                           /* frees only what was not consumed */
    int r2 = fix_child(e, x, i, c, 0);
    ft_dirty(e, x);
    return rc < 0 ? rc : r2;
}

/* ---- entry points ---- */

/* Ascending fast path: a key above every key ever put has no older message anywhere,
 * so it can go straight into the rightmost leaf. */
static int put_rightmost(kvt_engine *e, frec *m) {
    fnode *path[64];
    int depth = 0, rc = ft_get(e, e->root, &path[0]);
    if (rc < 0) { frec_free(m); return rc; }
    while (rc == KVT_OK && path[depth]->kind == FT_INTERNAL && depth < 63) {
        fnode *x = path[depth];
        rc = ft_get(e, x->child[x->n - 1], &path[depth + 1]);
        if (rc == KVT_OK) depth++;
    }
    if (rc == KVT_OK && path[depth]->kind != FT_LEAF)
        rc = kvt_seterr(KVT_ECORRUPT, "fractal: tree deeper than 64 levels");
    if (rc == KVT_OK) rc = leaf_apply(e, path[depth], m, 1, 1);
    else frec_free(m);
    for (int d = depth; d > 0; d--) {
        fnode *p = path[d - 1];
        int r2 = rc == KVT_OK ? fix_child(e, p, p->n - 1, path[d], 1) : (ft_unpin(e, path[d]), 0);
        if (r2 < 0) rc = r2;
    }
    int r3 = fix_root(e, path[0], 1);
    return rc < 0 ? rc : r3;
}

static int put_root(kvt_engine *e, frec *m) {
    fnode *r;
    int rc = ft_get(e, e->root, &r);
    if (rc < 0) { frec_free(m); return rc; }
    if (r->kind == FT_LEAF) {
        rc = leaf_apply(e, r, m, 1, 0);
    } else {
        rc = buffer_add(e, r, fpiv_child(r->piv, r->n - 1, m->k, m->kl), m, 1);
        while (rc == KVT_OK && ft_node_buffered(r) > e->node_size) rc = flush_node(e, r);
    }
    int r2 = fix_root(e, r, 0);
    return rc < 0 ? rc : r2;
}

static int above_max(const kvt_engine *e, const frec *m) {
    return !e->have_max || kvt_keycmp(m->k, m->kl, e->maxkey, e->maxkl) > 0;
}

static int set_max(kvt_engine *e, const frec *m) {
    uint8_t *k = realloc(e->maxkey, m->kl);
    if (!k) return kvt_seterr(KVT_ENOMEM, "fractal: no memory for the max key");
    memcpy(k, m->k, m->kl);
    e->maxkey = k;
    e->maxkl = m->kl;
    e->have_max = 1;
    return KVT_OK;
}

int ft_put_msg(kvt_engine *e, frec *m) {
    int rc;
    e->writer = 1;
    if (above_max(e, m)) {
        if (m->type == FT_DEL) {                  /* nothing that high was ever put */
            frec_free(m);
            e->writer = 0;
            return KVT_OK;
        }
        rc = set_max(e, m);
        rc = rc < 0 ? (ft_rec_release(e, m), rc) : put_rightmost(e, m);
    } else {
        rc = put_root(e, m);
    }
    int r2 = ft_evict(e);
    e->writer = 0;
    return rc < 0 ? rc : r2;
}
