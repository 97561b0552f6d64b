/* bt_append.c - ascending puts past the tree's largest key (sequential loads, the MVCC
 * store's revision log, Kubernetes-style creates).
 *
 * A put that lands at the end of the rightmost leaf, without a split, leaves its write
 * path pinned and writable as the append cursor (bt_int.h). The next put of the same
 * record compares its key with the leaf's last key only: larger, and the cell goes
 * straight to the end of that leaf, with no descent, no page lookups and no binary
 * search. When the leaf is full, split_append_leaf starts a new rightmost leaf holding
 * just the new cell and leaves the old one as full as it is (bbolt, LMDB's MDB_APPEND),
 * and the cursor moves to the new leaf as long as the parent takes the separator without
 * splitting. Anything else (an equal or smaller key, a parent split, a root leaf, any
 * other write, the end of the record) drops the cursor, and the normal path descends.
 * The cursor never outlives a record: the db layer calls apply_end after each one, and
 * flush (before every checkpoint) drops it too, so its pages are never carried into a
 * new checkpoint generation (copy-on-write stays exact).
 */
#include "bt_int.h"

void bt_append_drop(bt_tree *t) {
    if (!t->app.live) return;
    bt_path_release(t, &t->app.path);
    t->app.live = 0;
}

void bt_append_keep(bt_tree *t, bt_path *path) {
    bt_append_drop(t);
    t->app.path = *path;
    t->app.version = t->version;
    t->app.live = 1;
    path->depth = 0;                    /* the pins belong to the cursor now */
}

/* 1 when k sorts after the last key of leaf pg (which is not empty). */
static int after_last(bt_tree *t, const kvt_page *pg, const uint8_t *k, size_t kl, int *rc) {
    bt_cell c;
    bt_scratch s = {0};
    *rc = bt_cell_at(t, pg, bt_count(pg->data) - 1, &c);
    int r = *rc < 0 ? 0 : bt_cmp(t, k, kl, &c, &s, rc);
    bt_scratch_free(&s);
    return *rc == KVT_OK && r > 0;
}

/* Bytes of the leaf cell bt_build_leaf makes for an inline key of kl bytes. */
static uint32_t cell_size(const bt_tree *t, size_t kl, size_t vl) {
    uint64_t in = BT_LEAF_FIXED + kl + vl;
    return in <= t->max_local ? (uint32_t)in : BT_LEAF_FIXED + (uint32_t)kl + 8u;
}

/* The cursor's leaf is full: a new rightmost leaf holding just the new cell, its
 * separator appended to the parent, and the cursor moved to the new leaf; *done 0 (and
 * nothing changed) when the parent has no room for the separator. The room is checked
 * for this separator, not for the largest cell: suffix truncation makes separators a
 * few bytes, and a parent short of a quarter page holds dozens more of them. (Errors
 * here are damage or no memory; the db layer then latches the handle, so a page or
 * blob built for the cell is never referenced and vanishes with the uncheckpointed
 * state.) */
static int split_append_leaf(bt_tree *t, const uint8_t *k, size_t kl, const uint8_t *v,
                             size_t vl, int *done) {
    bt_path *path = &t->app.path;
    uint32_t lv = path->depth - 1;
    kvt_page *leaf = path->pg[lv], *parent = path->pg[lv - 1], *r;
    bt_cell last;
    uint8_t cell[BT_MAX_PAGE / 4], sep[BT_MAX_PAGE / 4];       /* >= max_local */
    uint32_t n, sepn;
    *done = 0;
    KVT_TRY(bt_cell_at(t, leaf, bt_count(leaf->data) - 1, &last));
    KVT_TRY(bt_build_leaf(t, k, kl, v, vl, cell, &n));
    KVT_TRY(bt_leaf_separator(t, last.p, cell, KVT_PGNO_NONE, sep, &sepn));
    if (!bt_fits(t, parent->data, sepn)) return KVT_OK;      /* the parent splits */
    KVT_TRY(kvt_pager_alloc(t->pager, BT_LEAF, &r));
    bt_page_init(t, r->data, 1);
    t->pages++;
    int rc = bt_insert_raw(t, r, 0, cell, n);
    if (rc == KVT_OK) rc = bt_leaf_separator(t, last.p, cell, r->pgno, sep, &sepn);
    if (rc == KVT_OK) rc = bt_insert_raw(t, parent, bt_count(parent->data), sep, sepn);
    if (rc < 0) {
        kvt_pager_unpin(t->pager, r);
        return rc;
    }
    path->pg[lv] = r;
    path->idx[lv - 1] = bt_count(parent->data);
    *done = 1;
    return bt_log_retire(t, leaf);      /* full for good: written once, now */
}

int bt_append_put(bt_tree *t, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl,
                  int *done) {
    *done = 0;
    if (!t->app.live) return KVT_OK;
    bt_path *path = &t->app.path;
    /* the caller bumped the version for this put: exactly one bump since the cursor
     * was kept, or some other write ran in between; spilled keys take the normal path */
    if (t->app.version + 1 != t->version || path->depth < 2 || kl > t->kmax) {
        bt_append_drop(t);
        return KVT_OK;
    }
    kvt_page *leaf = path->pg[path->depth - 1];
    int rc = KVT_OK;
    if (bt_count(leaf->data) == 0 || !after_last(t, leaf, k, kl, &rc)) {
        bt_append_drop(t);
        return rc;
    }
    uint32_t n = cell_size(t, kl, vl);
    if (bt_fits(t, leaf->data, n)) {
        uint8_t cell[BT_MAX_PAGE / 4];  /* >= max_local */
        KVT_TRY(bt_build_leaf(t, k, kl, v, vl, cell, &n));
        KVT_TRY(bt_insert_raw(t, leaf, bt_count(leaf->data), cell, n));
    } else {
        int split;
        KVT_TRY(split_append_leaf(t, k, kl, v, vl, &split));
        if (!split) {
            bt_append_drop(t);          /* the parent splits too: the normal path */
            return KVT_OK;
        }
    }
    t->entries++;
    t->app.version = t->version;
    *done = 1;
    return KVT_OK;
}
