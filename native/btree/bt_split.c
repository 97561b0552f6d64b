/* bt_split.c - insertion into a page of the write path, splitting pages upward.
 *
 * The write path (bt_path) holds every page from the root to the leaf pinned and
 * already made writable top-down (so copy-on-write moves were repointed in the
 * parents). A split keeps the left half in the path page, moves the right half to a new
 * page and inserts a separator into the parent, recursively; a root split grows the tree.
 * Ascending inserts (past the last key of the rightmost leaf) split so that the left
 * page stays full and the new right page starts nearly empty, like bbolt and InnoDB.
 */
#include <stdlib.h>
#include "bt_int.h"

void bt_path_release(bt_tree *t, bt_path *path) {
    for (uint32_t i = 0; i < path->depth; i++)
        if (path->pg[i]) kvt_pager_unpin(t->pager, path->pg[i]);
    path->depth = 0;
}

/* Key fields of a trusted cell copy (from a bt_list). */
static void raw_key(const bt_tree *t, int leaf, const uint8_t *p, bt_cell *c) {
    memset(c, 0, sizeof *c);
    c->p = p;
    c->klen = kvt_get16(p);
    c->key = p + (leaf ? BT_LEAF_FIXED : BT_BRANCH_FIXED);
    c->kloc = c->klen <= t->kmax ? c->klen : t->kpre;
    if (c->klen > t->kmax) c->kblob = kvt_get64(c->key + t->kpre);
    if (!leaf) c->child = kvt_get64(p + 2);
}

/* Build the branch cell separating leaf cells a < b: the shortest prefix of b's key
 * that is still greater than a's key (suffix truncation keeps branches wide). */
int bt_leaf_separator(bt_tree *t, const uint8_t *a, const uint8_t *b, kvt_pgno child,
                      uint8_t *dst, uint32_t *n) {
    bt_cell ca, cb;
    bt_scratch s = {0};
    const uint8_t *ka, *kb;
    raw_key(t, 1, a, &ca);
    raw_key(t, 1, b, &cb);
    int rc = bt_full_key(t, &ca, &s.a, &ka);
    if (rc == KVT_OK) rc = bt_full_key(t, &cb, &s.b, &kb);
    if (rc == KVT_OK) {
        size_t cp = 0, lim = ca.klen < cb.klen ? ca.klen : cb.klen;
        while (cp < lim && ka[cp] == kb[cp]) cp++;
        if (cp >= cb.klen) {
            rc = kvt_seterr(KVT_ECORRUPT, "btree: leaf keys out of order during split");
        } else {
            rc = bt_build_branch(t, kb, cp + 1, child, dst, n);
        }
    }
    bt_scratch_free(&s);
    return rc;
}

/* Grow the tree: a new root over the old root (left) and its new right sibling. */
static int new_root(bt_tree *t, kvt_pgno left, const uint8_t *sep, uint32_t n) {
    kvt_page *r;
    KVT_TRY(kvt_pager_alloc(t->pager, BT_BRANCH, &r));
    bt_page_init(t, r->data, 0);
    kvt_put64(r->data + BT_OFF_LEFTMOST, left);
    int rc = bt_insert_raw(t, r, 0, sep, n);
    if (rc < 0) {
        kvt_pager_unpin(t->pager, r);
        return rc;
    }
    t->root = r->pgno;
    t->height++;
    t->pages++;
    kvt_pager_unpin(t->pager, r);
    return KVT_OK;
}

/* Where to split the list of a full page: index of the right half's first cell (leaf)
 * or of the promoted cell (branch). */
static uint32_t split_point(const bt_list *l, int leaf, int append) {
    if (append) return leaf ? l->n - 1 : l->n - 2;
    return bt_list_mid(l, leaf);
}

/* Split d (whose cells plus the new one are in l) into d and the new page r; build the
 * separator for the parent into sep. */
static int split_fill(bt_tree *t, kvt_page *pg, kvt_page *r, const bt_list *l, uint32_t m,
                      uint8_t *sep, uint32_t *sepn) {
    if (bt_is_leaf(pg->data)) {
        KVT_TRY(bt_leaf_separator(t, l->buf + l->off[m - 1], l->buf + l->off[m], r->pgno,
                                  sep, sepn));
        KVT_TRY(bt_list_fill(t, pg, l, 0, m));
        return bt_list_fill(t, r, l, m, l->n);
    }
    const uint8_t *mc = l->buf + l->off[m];
    memcpy(sep, mc, l->len[m]);               /* promoted: its key blob moves up */
    *sepn = l->len[m];
    kvt_put64(sep + 2, r->pgno);
    kvt_put64(r->data + BT_OFF_LEFTMOST, kvt_get64(mc + 2));
    KVT_TRY(bt_list_fill(t, pg, l, 0, m));
    return bt_list_fill(t, r, l, m + 1, l->n);
}

static int split(bt_tree *t, bt_path *path, uint32_t lv, uint32_t i,
                 const uint8_t *cell, uint32_t n, int append) {
    kvt_page *pg = path->pg[lv];
    uint8_t *d = pg->data;
    uint32_t cnt = bt_count(d);
    int leaf = bt_is_leaf(d);
    bt_list l;
    KVT_TRY(bt_list_init(&l, cnt + 1, t->ps + n));
    uint8_t *sep = malloc(t->max_local);
    kvt_page *r = NULL;
    int rc = sep ? KVT_OK : kvt_seterr(KVT_ENOMEM, "btree: split buffer");
    for (uint32_t k = 0; rc == KVT_OK && k <= cnt; k++) {
        bt_cell c;
        if (k == i) rc = bt_list_push(&l, cell, n);
        if (rc == KVT_OK && k < cnt) rc = bt_cell_at(t, pg, k, &c);
        if (rc == KVT_OK && k < cnt) rc = bt_list_push(&l, c.p, c.size);
    }
    /* both halves must fit before a page is allocated (forged cells can make the list
     * larger than the page's header admits) */
    uint32_t m = rc == KVT_OK ? split_point(&l, leaf, append && i == cnt) : 0;
    if (rc == KVT_OK) rc = bt_list_check(t, pg, &l, 0, m);
    if (rc == KVT_OK) rc = bt_list_check(t, pg, &l, leaf ? m : m + 1, l.n);
    if (rc == KVT_OK) rc = kvt_pager_alloc(t->pager, leaf ? BT_LEAF : BT_BRANCH, &r);
    uint32_t sepn = 0;
    if (rc == KVT_OK) {
        bt_page_init(t, r->data, leaf);
        t->pages++;
        rc = split_fill(t, pg, r, &l, m, sep, &sepn);
        kvt_pager_unpin(t->pager, r);
    }
    bt_list_free(&l);
    if (rc == KVT_OK) {
        if (lv == 0) rc = new_root(t, pg->pgno, sep, sepn);
        else rc = bt_insert_at(t, path, lv - 1, path->idx[lv - 1], sep, sepn, append);
    }
    free(sep);
    return rc;
}

/* ---- shifting cells to a sibling instead of splitting (leaves) ---- */

/* Gather a leaf pair's cells in key order with the new cell at slot i of the path leaf. */
static int gather_shift(bt_tree *t, kvt_page *left, kvt_page *right, kvt_page *leaf,
                        uint32_t i, const uint8_t *cell, uint32_t n, bt_list *l) {
    uint32_t cells = bt_count(left->data) + bt_count(right->data) + 1;
    KVT_TRY(bt_list_init(l, cells, 2 * t->ps + n));
    int rc = KVT_OK;
    kvt_page *side[2] = {left, right};
    for (int s = 0; s < 2 && rc == KVT_OK; s++) {
        uint32_t cnt = bt_count(side[s]->data);
        for (uint32_t k = 0; rc == KVT_OK && k <= cnt; k++) {
            bt_cell c;
            if (side[s] == leaf && k == i) rc = bt_list_push(l, cell, n);
            if (rc == KVT_OK && k < cnt) rc = bt_cell_at(t, side[s], k, &c);
            if (rc == KVT_OK && k < cnt) rc = bt_list_push(l, c.p, c.size);
        }
    }
    if (rc < 0) bt_list_free(l);
    return rc;
}

/* Bytes (cells + slots) of list cells [a, b). */
static uint64_t list_span(const bt_list *l, uint32_t a, uint32_t b) {
    uint64_t sum = 0;
    for (uint32_t k = a; k < b; k++) sum += l->len[k] + 2u;
    return sum;
}

/* Rebuild the pair around the new cell, evenly by bytes, and replace the parent's
 * separator between them (which may split the parent). *done 0 if the halves would not
 * fit (cells too large to even out): nothing but the sibling's copy-on-write happened. */
static int shift_fill(bt_tree *t, bt_path *path, uint32_t lv, kvt_page *left, kvt_page *right,
                      uint32_t jl, const bt_list *l, int *done) {
    uint32_t m = bt_list_mid(l, 1);
    if (list_span(l, 0, m) > t->usable || list_span(l, m, l->n) > t->usable) return KVT_OK;
    kvt_page *parent = path->pg[lv - 1];
    bt_cell old;
    KVT_TRY(bt_cell_at(t, parent, jl, &old));
    uint8_t sep[BT_MAX_PAGE / 4];           /* >= max_local */
    uint32_t sepn;
    KVT_TRY(bt_leaf_separator(t, l->buf + l->off[m - 1], l->buf + l->off[m], right->pgno,
                              sep, &sepn));
    KVT_TRY(bt_free_cell_blobs(t, &old));   /* a leaf separator owns its key blob */
    KVT_TRY(bt_list_fill(t, left, l, 0, m));
    KVT_TRY(bt_list_fill(t, right, l, m, l->n));
    bt_remove_slot(parent->data, jl, old.size);
    *done = 1;
    return bt_insert_at(t, path, lv - 1, jl, sep, sepn, 0);
}

/* Try to make room by evening out the path leaf at lv with its sibling at child index js
 * of the parent, when that sibling has an eighth of a page free besides the cell. */
static int shift_with(bt_tree *t, bt_path *path, uint32_t lv, uint32_t js, uint32_t i,
                      const uint8_t *cell, uint32_t n, int *done) {
    kvt_page *parent = path->pg[lv - 1], *leaf = path->pg[lv], *sib;
    uint32_t j = path->idx[lv - 1];
    int rc;
    kvt_pgno sp = bt_child(t, parent, js, &rc);
    KVT_TRY(rc);
    KVT_TRY(kvt_pager_get(t->pager, sp, &sib));
    rc = bt_page_verify(t, sib, 1);
    if (rc == KVT_OK && t->usable - bt_used(t, sib->data) < n + 2u + t->usable / 8) {
        kvt_pager_unpin(t->pager, sib);   /* not worth it: split instead */
        return KVT_OK;
    }
    if (rc == KVT_OK) rc = kvt_pager_write(t->pager, &sib);
    if (rc < 0) { kvt_pager_unpin(t->pager, sib); return rc; }
    if (sib->pgno != sp) bt_set_child(parent->data, js, sib->pgno);
    kvt_page *left = js < j ? sib : leaf, *right = js < j ? leaf : sib;
    bt_list l;
    rc = gather_shift(t, left, right, leaf, i, cell, n, &l);
    if (rc == KVT_OK) {
        rc = shift_fill(t, path, lv, left, right, js < j ? js : j, &l, done);
        bt_list_free(&l);
    }
    kvt_pager_unpin(t->pager, sib);
    return rc;
}

int bt_shift_insert(bt_tree *t, bt_path *path, uint32_t lv, uint32_t i,
                    const uint8_t *cell, uint32_t n, int *done) {
    *done = 0;
    if (lv == 0 || !bt_is_leaf(path->pg[lv]->data)) return KVT_OK;
    uint32_t j = path->idx[lv - 1], cnt = bt_count(path->pg[lv - 1]->data);
    if (j < cnt) KVT_TRY(shift_with(t, path, lv, j + 1, i, cell, n, done));
    if (!*done && j > 0) KVT_TRY(shift_with(t, path, lv, j - 1, i, cell, n, done));
    return KVT_OK;
}

int bt_insert_at(bt_tree *t, bt_path *path, uint32_t lv, uint32_t i,
                 const uint8_t *cell, uint32_t n, int append) {
    uint8_t *d = path->pg[lv]->data;
    if (bt_fits(t, d, n)) return bt_insert_raw(t, path->pg[lv], i, cell, n);
    return split(t, path, lv, i, cell, n, append);
}
