/* bt_root.c - the root digest (bt_rootidx, see bt_int.h): readers route through the
 * root branch with two dense arrays instead of a binary search over its scattered cells
 * (every lookup passes the root, and on a busy machine its lines rarely stay in the
 * CPU's private caches: this saves a pin/unpin and ~8 cache misses per lookup).
 * Built lazily by the first reader after a write; any doubt (no digest, build failure,
 * a key whose first 8 bytes tie with a separator's) falls back to the page itself. */
#include <stdlib.h>
#include "bt_int.h"

void bt_rootidx_init(bt_tree *t) {
    pthread_mutex_init(&t->ridx.mu, NULL);
    t->ridx.built_for = 0;
    t->ridx.n = 0;
    t->ridx.prefix = NULL;
    t->ridx.child = NULL;
}

void bt_rootidx_free(bt_tree *t) {
    free(t->ridx.prefix);
    free(t->ridx.child);
    t->ridx.prefix = NULL;
    t->ridx.child = NULL;
    pthread_mutex_destroy(&t->ridx.mu);
}

/* Fill the digest from the root page (caller holds ridx.mu). */
static int build_from(bt_tree *t, const kvt_page *pg) {
    bt_rootidx *x = &t->ridx;
    uint32_t n = bt_count(pg->data);
    uint64_t *prefix = malloc((n ? n : 1) * sizeof *prefix);
    kvt_pgno *child = malloc((n + 1) * sizeof *child);
    int rc = prefix && child ? KVT_OK : kvt_seterr(KVT_ENOMEM, "btree: root digest");
    if (rc == KVT_OK) child[0] = bt_leftmost(pg->data);
    for (uint32_t i = 0; i < n && rc == KVT_OK; i++) {
        bt_cell c;
        rc = bt_cell_at(t, pg, i, &c);
        if (rc == KVT_OK) {
            prefix[i] = bt_be_prefix(c.key, c.kloc);
            child[i + 1] = c.child;
        }
    }
    if (rc < 0) {
        free(prefix);
        free(child);
        return rc;
    }
    free(x->prefix);
    free(x->child);
    x->prefix = prefix;
    x->child = child;
    x->n = n;
    return KVT_OK;
}

static int build(bt_tree *t) {
    kvt_page *pg;
    KVT_TRY(kvt_pager_get(t->pager, t->root, &pg));
    int rc = bt_page_verify(t, pg, 0);
    if (rc == KVT_OK) rc = build_from(t, pg);
    kvt_pager_unpin(t->pager, pg);
    return rc;
}

/* A digest for the current version, building it if needed; 0 if none can be had. */
static int ready(bt_tree *t) {
    if (__atomic_load_n(&t->ridx.built_for, __ATOMIC_ACQUIRE) == t->version) return 1;
    pthread_mutex_lock(&t->ridx.mu);
    int ok = __atomic_load_n(&t->ridx.built_for, __ATOMIC_RELAXED) == t->version;
    if (!ok && build(t) == KVT_OK) {
        __atomic_store_n(&t->ridx.built_for, t->version, __ATOMIC_RELEASE);
        ok = 1;
    }
    pthread_mutex_unlock(&t->ridx.mu);
    return ok;
}

int bt_rootidx_route(bt_tree *t, const uint8_t *k, size_t kl, kvt_pgno *child) {
    if (t->height < 2 || !ready(t)) return 0;
    const bt_rootidx *x = &t->ridx;
    uint64_t kp = bt_be_prefix(k, kl);
    uint32_t lo = 0, hi = x->n;           /* first cell whose prefix >= kp */
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (x->prefix[mid] < kp) lo = mid + 1; else hi = mid;
    }
    if (lo < x->n && x->prefix[lo] == kp) return 0;   /* a tie: compare whole keys */
    *child = x->child[lo];     /* cells [0, lo) are < k, the rest > k: child index lo */
    return 1;
}
