/* bt_check.c - full invariant walk of the tree.
 *
 * For every page: referenced exactly once (kvt_pager_check_ref), type matches depth
 * (so all leaves are at the same depth), header and every cell within the page, cells
 * do not overlap (live bytes + garbage == cell area), keys strictly increasing and
 * inside the bounds given by the parent's separators, non-root pages non-empty and at
 * least min_fill full (except the last page of a level, which ascending inserts leave
 * partly empty on purpose), overflow chains intact (kvt_blob_check). Totals of entries
 * and pages must equal the engine's counters.
 */
#include <stdio.h>
#include "bt_int.h"

typedef struct bt_bound { const uint8_t *k; size_t len; } bt_bound;   /* k NULL: none */

typedef struct bt_walk {
    bt_tree *t;
    uint64_t entries, pages;
} bt_walk;

static int bad(const kvt_page *pg, const char *what, uint32_t i) {
    return kvt_seterr(KVT_ECORRUPT, "btree: page %llu: %s (cell %u)",
                      (unsigned long long)pg->pgno, what, i);
}

/* Check cell i's blobs and order against prev and the bounds; its full key in *k. */
static int check_cell(bt_walk *w, const kvt_page *pg, uint32_t i, bt_bound lo, bt_bound hi,
                      bt_bound *prev, kvt_buf *kb, uint32_t *live) {
    bt_tree *t = w->t;
    bt_cell c;
    const uint8_t *k;
    KVT_TRY(bt_cell_at(t, pg, i, &c));
    *live += c.size;
    if (c.kblob) KVT_TRY(kvt_blob_check(t->pager, c.kblob, c.klen));
    if (c.vblob) KVT_TRY(kvt_blob_check(t->pager, c.vblob, c.vlen));
    KVT_TRY(bt_full_key(t, &c, kb, &k));
    if (prev->k && kvt_keycmp(prev->k, prev->len, k, c.klen) >= 0)
        return bad(pg, "keys not strictly increasing", i);
    if (lo.k && kvt_keycmp(k, c.klen, lo.k, lo.len) < 0)
        return bad(pg, "key below the parent's separator", i);
    if (hi.k && kvt_keycmp(k, c.klen, hi.k, hi.len) >= 0)
        return bad(pg, "key not below the parent's next separator", i);
    prev->k = k;
    prev->len = c.klen;
    return KVT_OK;
}

/* Cells of one page: order, bounds, no overlap. Two key buffers alternate so that the
 * previous key stays valid while the next is loaded. */
static int check_cells(bt_walk *w, const kvt_page *pg, bt_bound lo, bt_bound hi) {
    bt_tree *t = w->t;
    const uint8_t *d = pg->data;
    uint32_t n = bt_count(d), live = 0;
    kvt_buf kb[2] = {{0}, {0}};
    bt_bound prev = {0};
    int rc = KVT_OK;
    for (uint32_t i = 0; i < n && rc == KVT_OK; i++)
        rc = check_cell(w, pg, i, lo, hi, &prev, &kb[i & 1], &live);
    kvt_buf_free(&kb[0]);
    kvt_buf_free(&kb[1]);
    KVT_TRY(rc);
    if (live + bt_garbage(d) != t->ps - bt_lo(d))
        return bad(pg, "cells overlap or leak space: live + garbage != cell area", n);
    return KVT_OK;
}

static int check_fill(bt_walk *w, const kvt_page *pg, uint32_t lv, int last) {
    const uint8_t *d = pg->data;
    if (lv == 0) return KVT_OK;
    if (bt_count(d) == 0) return bad(pg, "empty non-root page", 0);
    if (!last && bt_used(w->t, d) < w->t->min_fill)
        return bad(pg, "non-root page under minimum fill", bt_used(w->t, d));
    return KVT_OK;
}

static int check_page(bt_walk *w, kvt_pgno pgno, uint32_t lv, bt_bound lo, bt_bound hi, int last);

/* Separator key j of a branch (full key, maybe read into buf). */
static int sep_key(bt_tree *t, const kvt_page *pg, uint32_t j, kvt_buf *buf, bt_bound *b) {
    bt_cell c;
    KVT_TRY(bt_cell_at(t, pg, j, &c));
    KVT_TRY(bt_full_key(t, &c, buf, &b->k));
    b->len = c.klen;
    return KVT_OK;
}

static int check_children(bt_walk *w, const kvt_page *pg, uint32_t lv, bt_bound lo,
                          bt_bound hi, int last) {
    bt_tree *t = w->t;
    uint32_t n = bt_count(pg->data);
    kvt_buf kb[2] = {{0}, {0}};
    int rc = KVT_OK;
    bt_bound clo = lo, chi = hi;
    for (uint32_t j = 0; j <= n && rc == KVT_OK; j++) {
        chi = hi;
        if (j < n) rc = sep_key(t, pg, j, &kb[j & 1], &chi);
        kvt_pgno child = rc < 0 ? 0 : bt_child(t, pg, j, &rc);
        if (rc == KVT_OK) rc = check_page(w, child, lv + 1, clo, chi, last && j == n);
        clo = chi;
    }
    kvt_buf_free(&kb[0]);
    kvt_buf_free(&kb[1]);
    return rc;
}

static int check_page(bt_walk *w, kvt_pgno pgno, uint32_t lv, bt_bound lo, bt_bound hi, int last) {
    bt_tree *t = w->t;
    kvt_page *pg;
    if (lv >= t->height)
        return kvt_seterr(KVT_ECORRUPT, "btree: page %llu: deeper than height %u",
                          (unsigned long long)pgno, t->height);
    KVT_TRY(kvt_pager_check_ref(t->pager, pgno));
    KVT_TRY(kvt_pager_get(t->pager, pgno, &pg));
    w->pages++;
    int rc = bt_page_verify(t, pg, lv + 1 == t->height);
    if (rc == KVT_OK) rc = check_cells(w, pg, lo, hi);
    if (rc == KVT_OK) rc = check_fill(w, pg, lv, last);
    if (rc == KVT_OK && bt_is_leaf(pg->data)) w->entries += bt_count(pg->data);
    if (rc == KVT_OK && !bt_is_leaf(pg->data)) rc = check_children(w, pg, lv, lo, hi, last);
    kvt_pager_unpin(t->pager, pg);
    return rc;
}

static int check_tree(bt_tree *t) {
    bt_walk w = {.t = t};
    bt_bound none = {0};
    if (!t->root) {
        if (t->entries || t->height)
            return kvt_seterr(KVT_ECORRUPT, "btree: empty tree with %llu entries, height %u",
                              (unsigned long long)t->entries, t->height);
        return KVT_OK;
    }
    KVT_TRY(check_page(&w, t->root, 0, none, none, 1));
    if (w.entries != t->entries)
        return kvt_seterr(KVT_ECORRUPT, "btree: %llu entries in leaves, meta says %llu",
                          (unsigned long long)w.entries, (unsigned long long)t->entries);
    if (w.pages != t->pages)
        return kvt_seterr(KVT_ECORRUPT, "btree: %llu pages in the tree, meta says %llu",
                          (unsigned long long)w.pages, (unsigned long long)t->pages);
    return KVT_OK;
}

/* The db layer brackets this walk with kvt_pager_check_begin/end (kvt_engine.h). */
int bt_check(bt_tree *t) {
    return check_tree(t);
}
