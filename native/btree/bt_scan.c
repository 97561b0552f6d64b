/* bt_scan.c - ordered iteration, forward or reverse, from a start key.
 *
 * There are no sibling pointers (copy-on-write would force repointing neighbours), so
 * the scan keeps the root-to-leaf path pinned with the child index taken at each branch
 * and moves to the next/previous leaf by climbing to the first ancestor that has a
 * further child and descending along its leftmost/rightmost edge. Read-only: it may
 * run concurrently with get/check (never with a writer, see kvt_engine.h).
 * Resuming (kvt_scan_pos): where the visitor stops, the path's page numbers and
 * indexes are saved with the tree version; a later scan of an unmodified tree pins that
 * leaf directly and continues at the refused entry, so a chunked iterator descends once
 * per write, not once per chunk.
 */
#include "bt_int.h"

typedef struct bt_cursor {
    bt_tree *t;
    kvt_page *pg[BT_MAX_HEIGHT];   /* pinned path; NULL above a resumed leaf until needed */
    kvt_pgno no[BT_MAX_HEIGHT];    /* page number at each level of the path */
    uint32_t idx[BT_MAX_HEIGHT];
    int reverse;
    bt_scratch s;
} bt_cursor;

/* A saved position (kvt_scan_pos): w[0] tree version, w[1] the tree's address, w[2]
 * height | reverse << 8, then the path's page numbers and child/slot indexes. */
#define POS_HDR 3
_Static_assert(POS_HDR + 2 * BT_MAX_HEIGHT <= KVT_SCAN_POS_WORDS, "kvt_scan_pos too small");

static void cursor_release(bt_cursor *c) {
    for (uint32_t i = 0; i < c->t->height; i++)
        if (c->pg[i]) kvt_pager_unpin(c->t->pager, c->pg[i]);
    bt_scratch_free(&c->s);
}

static int pin_at(bt_cursor *c, kvt_pgno pgno, uint32_t lv) {
    c->no[lv] = pgno;
    KVT_TRY(kvt_pager_get(c->t->pager, pgno, &c->pg[lv]));
    int rc = bt_page_verify(c->t, c->pg[lv], lv + 1 == c->t->height);
    if (rc < 0) { kvt_pager_unpin(c->t->pager, c->pg[lv]); c->pg[lv] = NULL; }
    return rc;
}

/* Pin the children below level lv along idx, starting each new page at its edge. */
static int descend_edge(bt_cursor *c, uint32_t lv) {
    for (; lv + 1 < c->t->height; lv++) {
        int rc;
        kvt_pgno child = bt_child(c->t, c->pg[lv], c->idx[lv], &rc);
        KVT_TRY(rc);
        KVT_TRY(pin_at(c, child, lv + 1));
        c->idx[lv + 1] = c->reverse ? bt_count(c->pg[lv + 1]->data) : 0;
    }
    return KVT_OK;
}

/* Position at from: route through branches, leave the leaf slot in idx[height-1]
 * (for reverse, one past the slot to visit first). */
static int seek(bt_cursor *c, const uint8_t *from, size_t fl, int inclusive) {
    bt_tree *t = c->t;
    uint32_t leaf = t->height - 1, i;
    int eq;
    KVT_TRY(pin_at(c, t->root, 0));
    for (uint32_t lv = 0; lv < leaf; lv++) {
        KVT_TRY(bt_route(t, c->pg[lv], from, fl, &c->s, &c->idx[lv]));
        int rc;
        kvt_pgno child = bt_child(t, c->pg[lv], c->idx[lv], &rc);
        KVT_TRY(rc);
        KVT_TRY(pin_at(c, child, lv + 1));
    }
    KVT_TRY(bt_search(t, c->pg[leaf], from, fl, &c->s, &i, &eq));
    if (!c->reverse) c->idx[leaf] = i + (eq && !inclusive);
    else c->idx[leaf] = i + (eq && inclusive);
    return KVT_OK;
}

/* Move to the next (previous) leaf; KVT_NOTFOUND at the end of the tree. */
static int next_leaf(bt_cursor *c) {
    uint32_t lv = c->t->height - 1;
    while (lv > 0) {
        kvt_pager_unpin(c->t->pager, c->pg[lv]);
        c->pg[lv] = NULL;
        lv--;
        if (!c->pg[lv]) KVT_TRY(pin_at(c, c->no[lv], lv));   /* above a resumed leaf */
        if (!c->reverse && c->idx[lv] < bt_count(c->pg[lv]->data)) { c->idx[lv]++; break; }
        if (c->reverse && c->idx[lv] > 0) { c->idx[lv]--; break; }
        if (lv == 0) return KVT_NOTFOUND;
    }
    if (c->t->height == 1) return KVT_NOTFOUND;
    return descend_edge(c, lv);
}

/* Start loading the leaf the scan moves to after this one (its parent is pinned unless
 * the scan resumed at a leaf): on a cold page the checksum of its first read and the
 * visits then find it in the CPU cache instead of waiting on memory. */
static void prefetch_next_leaf(bt_cursor *c) {
    uint32_t h = c->t->height;
    if (h < 2 || !c->pg[h - 2]) return;
    const uint8_t *d = c->pg[h - 2]->data;
    uint32_t i = c->idx[h - 2];
    if (!c->reverse ? i >= bt_count(d) : i == 0) return;
    int rc;
    kvt_pgno next = bt_child(c->t, c->pg[h - 2], c->reverse ? i - 1 : i + 1, &rc);
    if (rc == KVT_OK) kvt_pager_prefetch(c->t->pager, next);
}

static int visit(bt_cursor *c, uint32_t i, kvt_scan_fn fn, void *ctx) {
    const uint8_t *k, *v;
    uint32_t kl, vl;
    if (bt_inline_cell(c->t, c->pg[c->t->height - 1]->data, i, &k, &kl, &v, &vl))
        return fn(ctx, k, kl, v, vl);
    bt_cell cell;                      /* spilled key, overflow value, or damage */
    bt_tree *t = c->t;
    KVT_TRY(bt_cell_at(t, c->pg[t->height - 1], i, &cell));
    KVT_TRY(bt_full_key(t, &cell, &c->s.a, &k));
    if (cell.vblob) {
        KVT_TRY(bt_read_value(t, &cell, &c->s.b));
        v = c->s.b.data;
    } else {
        v = cell.val;
    }
    return fn(ctx, k, cell.klen, v, cell.vlen);
}

/* Visit the current leaf from its cursor slot; 1 when the visitor stopped, with the
 * slot of the entry it refused left in idx (resuming there visits that entry first). */
static int scan_leaf(bt_cursor *c, kvt_scan_fn fn, void *ctx) {
    uint32_t leaf = c->t->height - 1, n = bt_count(c->pg[leaf]->data);
    if (!c->reverse) {
        for (uint32_t i = c->idx[leaf]; i < n; i++) {
            int r = visit(c, i, fn, ctx);
            if (r) { c->idx[leaf] = i; return r; }
        }
    } else {
        for (uint32_t i = c->idx[leaf] < n ? c->idx[leaf] : n; i > 0; i--) {
            int r = visit(c, i - 1, fn, ctx);
            if (r) { c->idx[leaf] = i; return r; }
        }
    }
    return KVT_OK;
}

static void save_pos(const bt_cursor *c, kvt_scan_pos *pos) {
    uint32_t h = c->t->height;
    pos->w[0] = c->t->version;
    pos->w[1] = (uint64_t)(uintptr_t)c->t;
    pos->w[2] = h | (uint64_t)c->reverse << 8;
    for (uint32_t lv = 0; lv < h; lv++) {
        pos->w[POS_HDR + lv] = c->no[lv];
        pos->w[POS_HDR + BT_MAX_HEIGHT + lv] = c->idx[lv];
    }
}

/* Back at a saved position if the tree is still the one it was saved in: only the leaf
 * is pinned (its ancestors are pinned again only if the scan climbs). 0: not usable. */
static int resume(bt_cursor *c, const kvt_scan_pos *pos, int *rc) {
    bt_tree *t = c->t;
    uint32_t h = t->height, leaf = h - 1;
    *rc = KVT_OK;
    if (pos->w[0] != t->version || pos->w[1] != (uint64_t)(uintptr_t)t ||
        pos->w[2] != (h | (uint64_t)c->reverse << 8))
        return 0;
    for (uint32_t lv = 0; lv < h; lv++) {
        c->no[lv] = pos->w[POS_HDR + lv];
        c->idx[lv] = (uint32_t)pos->w[POS_HDR + BT_MAX_HEIGHT + lv];
    }
    *rc = pin_at(c, c->no[leaf], leaf);
    return 1;
}

int bt_scan(bt_tree *t, const uint8_t *from, size_t fl, int inclusive, int reverse,
            kvt_scan_pos *pos, kvt_scan_fn fn, void *ctx) {
    if (!t->root) { if (pos) pos->w[0] = 0; return KVT_OK; }
    bt_cursor c;                       /* only the path's levels are ever read */
    c.t = t;
    c.reverse = reverse;
    c.s = (bt_scratch){0};
    memset(c.pg, 0, t->height * sizeof c.pg[0]);
    int rc, stopped = 0;
    if (pos && pos->w[0] && resume(&c, pos, &rc)) {
        /* rc: the leaf's pin */
    } else if (from) {
        rc = seek(&c, from, fl, inclusive);
    } else {
        rc = pin_at(&c, t->root, 0);
        if (rc == KVT_OK) {
            c.idx[0] = reverse ? bt_count(c.pg[0]->data) : 0;
            rc = descend_edge(&c, 0);
        }
    }
    while (rc == KVT_OK) {
        prefetch_next_leaf(&c);
        rc = scan_leaf(&c, fn, ctx);
        stopped = rc == 1;                /* the visitor's 1, not next_leaf's NOTFOUND */
        if (rc == KVT_OK) rc = next_leaf(&c);
    }
    if (pos && stopped) save_pos(&c, pos);
    else if (pos) pos->w[0] = 0;
    cursor_release(&c);
    if (rc == 1 || rc == KVT_NOTFOUND) rc = KVT_OK;
    return rc;
}
