/* btree.c - the B+tree engine (kvt_btree_ops): open/close, get, put, delete, flush.
 *
 * State lives entirely in pager pages; the engine keeps only root pgno, height, entry
 * and page counts, which flush() writes into the checkpoint's engine meta bytes.
 * Readers (get/scan/check) pin one page at a time on the way down and never modify
 * anything, so they may run concurrently. Writers hold the whole root-to-leaf path
 * pinned and writable (bt_path) while they split or rebalance.
 * Layout and cell formats: bt_int.h.
 */
#include <stdlib.h>
#include "bt_int.h"

struct kvt_engine { bt_tree t; };

#define META_LEN 40

static uint32_t bt_page_size(const kvt_engine_config *cfg) {
    uint32_t want = cfg && cfg->page_size ? cfg->page_size : BT_MIN_PAGE;
    uint32_t ps = BT_MIN_PAGE;
    while (ps < want && ps < BT_MAX_PAGE) ps *= 2;     /* next power of two, clamped */
    return ps;
}

static int geometry(bt_tree *t, uint32_t ps) {
    if (ps < BT_MIN_PAGE || ps > BT_MAX_PAGE || (ps & (ps - 1)))
        return kvt_seterr(KVT_EINVAL, "btree: page size %u not a power of two in 4096..65536", ps);
    t->ps = ps;
    t->usable = ps - BT_HDR;
    t->max_local = t->usable / 4 - 2;
    t->min_fill = t->usable / 4;
    t->kmax = t->max_local - BT_LEAF_FIXED - 8;
    if (t->kmax > KVT_MAX_KEY) t->kmax = KVT_MAX_KEY;
    t->kpre = t->kmax - 8;
    return KVT_OK;
}

static int load_meta(bt_tree *t, const uint8_t *m, size_t len) {
    if (len == 0) return KVT_OK;
    if (len < META_LEN || kvt_get32(m) != BT_META_MAGIC)
        return kvt_seterr(KVT_ECORRUPT, "btree: engine meta: bad length %zu or magic", len);
    if (kvt_get32(m + 4) != BT_META_VERSION)
        return kvt_seterr(KVT_EVERSION, "btree: engine meta version %u", kvt_get32(m + 4));
    t->root = kvt_get64(m + 8);
    t->height = kvt_get32(m + 16);
    t->entries = kvt_get64(m + 24);
    t->pages = kvt_get64(m + 32);
    if (kvt_get32(m + 20) != t->ps)
        return kvt_seterr(KVT_ECORRUPT, "btree: meta page size %u, file has %u",
                          kvt_get32(m + 20), t->ps);
    if (t->height > BT_MAX_HEIGHT || (t->root == 0) != (t->height == 0))
        return kvt_seterr(KVT_ECORRUPT, "btree: meta: root %llu with height %u",
                          (unsigned long long)t->root, t->height);
    return KVT_OK;
}

static int bt_open(kvt_pager *p, const kvt_engine_config *cfg, const uint8_t *meta,
                   size_t meta_len, kvt_engine **out) {
    kvt_engine *e = calloc(1, sizeof *e);
    if (!e) return kvt_seterr(KVT_ENOMEM, "btree: cannot allocate engine");
    bt_tree *t = &e->t;
    t->pager = p;
    int rc = geometry(t, kvt_pager_page_size(p));
    if (rc == KVT_OK) rc = load_meta(t, meta, meta_len);
    if (rc == KVT_OK && !(t->tmp = malloc(t->ps)))
        rc = kvt_seterr(KVT_ENOMEM, "btree: cannot allocate scratch page");
    if (rc < 0) { free(t->tmp); free(e); return rc; }
    t->version = 1;
    bt_rootidx_init(t);
    *out = e;
    return KVT_OK;
}

static void bt_close(kvt_engine *e) {
    if (!e) return;
    bt_append_drop(&e->t);
    bt_log_free(&e->t);
    bt_rootidx_free(&e->t);
    free(e->t.tmp);
    free(e);
}

/* Start loading every line a search of this (verified) page may touch: its slots and its
 * cells. A page found in the pool is usually cold in the CPU cache (the pool is larger
 * than it), and a binary search otherwise waits for one miss per probe, in sequence;
 * issued together, the misses overlap. Cheap for a page that is already cached. */
static void prefetch_page(const bt_tree *t, const uint8_t *d) {
    uint32_t slots_end = BT_HDR + 2u * bt_count(d);
    for (uint32_t b = 64; b < slots_end; b += 64) __builtin_prefetch(d + b);
    for (uint32_t b = bt_lo(d) & ~63u; b < t->ps; b += 64) __builtin_prefetch(d + b);
}

/* Pin the page at level lv of a descent (verifying its type against the depth). */
static int pin_level(bt_tree *t, kvt_pgno pgno, uint32_t lv, kvt_page **pg) {
    KVT_TRY(kvt_pager_get(t->pager, pgno, pg));
    int rc = bt_page_verify(t, *pg, lv + 1 == t->height);
    if (rc < 0) kvt_pager_unpin(t->pager, *pg);
    else prefetch_page(t, (*pg)->data);
    return rc;
}

/* Descend to the leaf for k pinning one page at a time; the leaf stays pinned. Readers
 * (digest 1) may skip the root page through the root digest. */
static int find_leaf(bt_tree *t, const uint8_t *k, size_t kl, bt_scratch *s, int digest,
                     kvt_page **leaf) {
    kvt_page *pg;
    kvt_pgno below_root;
    uint32_t lv = 0;
    if (digest && bt_rootidx_route(t, k, kl, &below_root)) {
        KVT_TRY(pin_level(t, below_root, 1, &pg));
        lv = 1;
    } else {
        KVT_TRY(pin_level(t, t->root, 0, &pg));
    }
    for (; lv + 1 < t->height; lv++) {
        uint32_t j;
        int rc = bt_route(t, pg, k, kl, s, &j);
        kvt_pgno child = rc < 0 ? 0 : bt_child(t, pg, j, &rc);
        kvt_page *next = NULL;
        if (rc == KVT_OK) rc = pin_level(t, child, lv + 1, &next);
        kvt_pager_unpin(t->pager, pg);
        KVT_TRY(rc);
        pg = next;
    }
    *leaf = pg;
    return KVT_OK;
}

static int bt_get(kvt_engine *e, const uint8_t *k, size_t kl, kvt_buf *out) {
    bt_tree *t = &e->t;
    if (!t->root) return KVT_NOTFOUND;
    bt_scratch s = {0};
    kvt_page *leaf;
    int rc = find_leaf(t, k, kl, &s, 1, &leaf);
    if (rc == KVT_OK) {
        uint32_t i;
        int eq;
        bt_cell c;
        rc = bt_search(t, leaf, k, kl, &s, &i, &eq);
        if (rc == KVT_OK && !eq) rc = KVT_NOTFOUND;
        if (rc == KVT_OK) rc = bt_cell_at(t, leaf, i, &c);
        if (rc == KVT_OK) rc = bt_read_value(t, &c, out);
        kvt_pager_unpin(t->pager, leaf);
    }
    bt_scratch_free(&s);
    return rc;
}

/* Pin a page for writing at level lv and repoint its parent (or the root) if the
 * pager moved it (copy-on-write). */
static int pin_write(bt_tree *t, bt_path *path, kvt_pgno pgno, uint32_t lv) {
    kvt_page *pg;
    KVT_TRY(pin_level(t, pgno, lv, &pg));
    int rc = kvt_pager_write(t->pager, &pg);
    if (rc < 0) { kvt_pager_unpin(t->pager, pg); return rc; }
    if (lv == 0) t->root = pg->pgno;
    else if (pg->pgno != pgno) bt_set_child(path->pg[lv - 1]->data, path->idx[lv - 1], pg->pgno);
    path->pg[lv] = pg;
    path->depth = lv + 1;
    return KVT_OK;
}

static int new_root_leaf(bt_tree *t, bt_path *path) {
    kvt_page *pg;
    KVT_TRY(kvt_pager_alloc(t->pager, BT_LEAF, &pg));
    bt_page_init(t, pg->data, 1);
    t->root = pg->pgno;
    t->height = 1;
    t->pages++;
    path->pg[0] = pg;
    path->depth = 1;
    return KVT_OK;
}

/* Pin and make writable the whole path from the root to k's leaf. */
static int descend_write(bt_tree *t, const uint8_t *k, size_t kl, bt_scratch *s, bt_path *path) {
    path->depth = 0;
    if (!t->root) return new_root_leaf(t, path);
    kvt_pgno pgno = t->root;
    for (uint32_t lv = 0; lv < t->height; lv++) {
        KVT_TRY(pin_write(t, path, pgno, lv));
        if (lv + 1 == t->height) break;
        int rc;
        KVT_TRY(bt_route(t, path->pg[lv], k, kl, s, &path->idx[lv]));
        pgno = bt_child(t, path->pg[lv], path->idx[lv], &rc);
        KVT_TRY(rc);
    }
    return KVT_OK;
}

static int rightmost_path(const bt_path *path) {
    for (uint32_t lv = 0; lv + 1 < path->depth; lv++)
        if (path->idx[lv] != bt_count(path->pg[lv]->data)) return 0;
    return 1;
}

/* Remove leaf cell i (freeing its blobs). */
static int remove_cell(bt_tree *t, kvt_page *leaf, uint32_t i) {
    bt_cell c;
    KVT_TRY(bt_cell_at(t, leaf, i, &c));
    KVT_TRY(bt_free_cell_blobs(t, &c));
    bt_remove_slot(leaf->data, i, c.size);
    return KVT_OK;
}

/* *keep: the put went to the end of the rightmost leaf without a split, so the path
 * can serve as the append cursor. */
static int put_path(bt_tree *t, bt_path *path, bt_scratch *s, const uint8_t *k, size_t kl,
                    const uint8_t *v, size_t vl, int *keep) {
    uint32_t lv = path->depth - 1, i, n;
    kvt_page *leaf = path->pg[lv];
    int eq;
    KVT_TRY(bt_search(t, leaf, k, kl, s, &i, &eq));
    if (eq) KVT_TRY(remove_cell(t, leaf, i));
    int append = !eq && i == bt_count(leaf->data) && rightmost_path(path);
    uint8_t buf[BT_MAX_PAGE / 4];  /* >= max_local; t->tmp is taken by compaction */
    KVT_TRY(bt_build_leaf(t, k, kl, v, vl, buf, &n));
    int done = 0;
    *keep = append && bt_fits(t, leaf->data, n);
    if (!eq && !append && !bt_fits(t, leaf->data, n))
        KVT_TRY(bt_shift_insert(t, path, lv, i, buf, n, &done));
    if (!done) KVT_TRY(bt_insert_at(t, path, lv, i, buf, n, append));
    if (!eq) t->entries++;
    if (eq && lv > 0) KVT_TRY(bt_rebalance(t, path, lv));
    return KVT_OK;
}

static int bt_put(kvt_engine *e, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    bt_tree *t = &e->t;
    if (kl == 0 || kl > KVT_MAX_KEY) return kvt_seterr(KVT_EINVAL, "btree: key length %zu", kl);
    if (vl > KVT_MAX_VALUE) return kvt_seterr(KVT_ETOOLARGE, "btree: value length %zu", vl);
    bt_scratch s = {0};
    bt_path path = {0};
    t->version++;                       /* the root digest may be stale from here on */
    int done, keep = 0;
    KVT_TRY(bt_append_put(t, k, kl, v, vl, &done));
    if (done) return KVT_OK;
    int rc = descend_write(t, k, kl, &s, &path);
    if (rc == KVT_OK) rc = put_path(t, &path, &s, k, kl, v, vl, &keep);
    if (rc == KVT_OK && keep) bt_append_keep(t, &path);
    bt_path_release(t, &path);
    bt_scratch_free(&s);
    return rc;
}

/* Read-only probe, so that deleting a missing key dirties nothing. */
static int contains(bt_tree *t, const uint8_t *k, size_t kl, bt_scratch *s, int *found) {
    *found = 0;
    if (!t->root) return KVT_OK;
    kvt_page *leaf;
    uint32_t i;
    KVT_TRY(find_leaf(t, k, kl, s, 0, &leaf));
    int rc = bt_search(t, leaf, k, kl, s, &i, found);
    kvt_pager_unpin(t->pager, leaf);
    return rc;
}

static int del_path(bt_tree *t, bt_path *path, bt_scratch *s, const uint8_t *k, size_t kl) {
    uint32_t lv = path->depth - 1, i;
    int eq;
    KVT_TRY(bt_search(t, path->pg[lv], k, kl, s, &i, &eq));
    if (!eq) return kvt_seterr(KVT_ECORRUPT, "btree: page %llu: key found by probe vanished",
                               (unsigned long long)path->pg[lv]->pgno);
    KVT_TRY(remove_cell(t, path->pg[lv], i));
    t->entries--;
    return bt_rebalance(t, path, lv);
}

static int bt_del(kvt_engine *e, const uint8_t *k, size_t kl, int *existed) {
    bt_tree *t = &e->t;
    bt_scratch s = {0};
    bt_path path = {0};
    int found;
    bt_append_drop(t);
    int rc = contains(t, k, kl, &s, &found);
    if (rc == KVT_OK && found) {
        t->version++;                   /* the root digest may be stale from here on */
        rc = descend_write(t, k, kl, &s, &path);
        if (rc == KVT_OK) rc = del_path(t, &path, &s, k, kl);
        bt_path_release(t, &path);
    }
    bt_scratch_free(&s);
    if (existed) *existed = rc == KVT_OK && found;
    return rc;
}

static int bt_flush(kvt_engine *e, uint8_t *meta, size_t *meta_len) {
    bt_tree *t = &e->t;
    bt_append_drop(t);                  /* its pages must not outlive this generation */
    memset(meta, 0, META_LEN);
    kvt_put32(meta, BT_META_MAGIC);
    kvt_put32(meta + 4, BT_META_VERSION);
    kvt_put64(meta + 8, t->root);
    kvt_put32(meta + 16, t->height);
    kvt_put32(meta + 20, t->ps);
    kvt_put64(meta + 24, t->entries);
    kvt_put64(meta + 32, t->pages);
    *meta_len = META_LEN;
    return KVT_OK;
}

static int bt_scan_op(kvt_engine *e, const uint8_t *from, size_t fl, int inclusive, int reverse,
                      kvt_scan_fn fn, void *ctx) {
    return bt_scan(&e->t, from, fl, inclusive, reverse, NULL, fn, ctx);
}

static int bt_check_op(kvt_engine *e) { return bt_check(&e->t); }

/* ---- guarded entry points: a fault under the read map fails the op (kvt_pager.h) */

static int guarded_get(kvt_engine *e, const uint8_t *k, size_t kl, kvt_buf *out) {
    uint64_t faults = kvt_pager_map_faults(e->t.pager);
    int rc = bt_get(e, k, kl, out);
    return kvt_pager_map_guard(e->t.pager, faults, rc);
}

static int guarded_put(kvt_engine *e, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    uint64_t faults = kvt_pager_map_faults(e->t.pager);
    int rc = bt_put(e, k, kl, v, vl);
    return kvt_pager_map_guard(e->t.pager, faults, rc);
}

static int guarded_del(kvt_engine *e, const uint8_t *k, size_t kl, int *existed) {
    uint64_t faults = kvt_pager_map_faults(e->t.pager);
    int rc = bt_del(e, k, kl, existed);
    return kvt_pager_map_guard(e->t.pager, faults, rc);
}

static int guarded_scan(kvt_engine *e, const uint8_t *from, size_t fl, int inclusive,
                        int reverse, kvt_scan_fn fn, void *ctx) {
    uint64_t faults = kvt_pager_map_faults(e->t.pager);
    int rc = bt_scan_op(e, from, fl, inclusive, reverse, fn, ctx);
    return kvt_pager_map_guard(e->t.pager, faults, rc);
}

static int guarded_scan_at(kvt_engine *e, const uint8_t *from, size_t fl, int inclusive,
                           int reverse, kvt_scan_pos *pos, kvt_scan_fn fn, void *ctx) {
    uint64_t faults = kvt_pager_map_faults(e->t.pager);
    int rc = bt_scan(&e->t, from, fl, inclusive, reverse, pos, fn, ctx);
    if (rc < 0) pos->w[0] = 0;
    return kvt_pager_map_guard(e->t.pager, faults, rc);
}

static int guarded_check(kvt_engine *e) {
    uint64_t faults = kvt_pager_map_faults(e->t.pager);
    int rc = bt_check_op(e);
    return kvt_pager_map_guard(e->t.pager, faults, rc);
}

/* The end of a record: drop the append cursor, write the leaves it retired. */
static int bt_apply_end(kvt_engine *e) {
    bt_append_drop(&e->t);
    return kvt_pager_retire_flush(e->t.pager);
}

static void bt_log_begin_op(kvt_engine *e) { bt_log_begin(&e->t); }

static int bt_log_end_op(kvt_engine *e, int ok, const kvt_logged_page **out, size_t *n) {
    return bt_log_end(&e->t, ok, out, n);
}

static int put_tree(bt_tree *t, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    return guarded_put((kvt_engine *)t, k, kl, v, vl);   /* t is the engine's first member */
}

static int bt_put_page_op(kvt_engine *e, kvt_pgno pgno, const uint8_t *page) {
    return bt_log_put_page(&e->t, pgno, page, put_tree);
}

static void bt_stats(kvt_engine *e, kvt_engine_stats *out) {
    out->height = e->t.height;
    out->entries = e->t.entries;
    out->nodes = e->t.pages;
    out->flushes = 0;
}

const kvt_engine_ops kvt_btree_ops = {
    .abi = KVT_ENGINE_ABI,
    .name = "btree",
    .engine_id = 1,
    .page_size = bt_page_size,
    .open = bt_open,
    .close = bt_close,
    .get = guarded_get,
    .put = guarded_put,
    .del = guarded_del,
    .scan = guarded_scan,
    .flush = bt_flush,
    .check = guarded_check,
    .scan_at = guarded_scan_at,
    .stats = bt_stats,
    .apply_end = bt_apply_end,
    .log_begin = bt_log_begin_op,
    .log_end = bt_log_end_op,
    .put_page = bt_put_page_op,
};
