/* bt_merge.c - rebalancing after a delete.
 *
 * A non-root page whose used bytes fall under min_fill (a quarter of the usable space)
 * is combined with a sibling: merged into one page when everything fits (the right page
 * is freed and the separator leaves the parent, which may then be rebalanced in turn),
 * otherwise the cells of both are redistributed evenly by bytes and the separator is
 * replaced (which may split the parent). A root branch left with one child is collapsed.
 * In a branch the parent's separator moves down between the two halves (it owns its key
 * blob, which moves with it); between leaves a new, shortest separator is built.
 */
#include <stdlib.h>
#include "bt_int.h"

typedef struct bt_pair {
    kvt_page *left, *right;   /* adjacent children of the parent */
    kvt_page *sib;            /* the one of them not in the path */
    uint32_t jl;              /* child index of left in the parent = separator cell index */
    bt_cell sep;              /* the parent's separator cell between them */
} bt_pair;

static int collapse_root(bt_tree *t, bt_path *path) {
    kvt_page *r = path->pg[0];
    uint8_t *d = r->data;
    if (bt_count(d) > 0) return KVT_OK;
    kvt_pgno old = r->pgno;
    t->root = bt_is_leaf(d) ? KVT_PGNO_NONE : bt_leftmost(d);
    t->height = t->root ? t->height - 1 : 0;
    t->pages--;
    kvt_pager_unpin(t->pager, r);
    path->pg[0] = NULL;
    return kvt_pager_free(t->pager, old);
}

/* Pin and make writable the sibling of path page lv, repointing the parent. */
static int load_pair(bt_tree *t, bt_path *path, uint32_t lv, bt_pair *pr) {
    kvt_page *parent = path->pg[lv - 1];
    uint32_t j = path->idx[lv - 1], cnt = bt_count(parent->data);
    uint32_t js = j < cnt ? j + 1 : j - 1;
    int rc;
    kvt_pgno sp = bt_child(t, parent, js, &rc);
    KVT_TRY(rc);
    KVT_TRY(kvt_pager_get(t->pager, sp, &pr->sib));
    rc = bt_page_verify(t, pr->sib, bt_is_leaf(path->pg[lv]->data));
    if (rc == KVT_OK) rc = kvt_pager_write(t->pager, &pr->sib);
    if (rc < 0) { kvt_pager_unpin(t->pager, pr->sib); return rc; }
    if (pr->sib->pgno != sp) bt_set_child(parent->data, js, pr->sib->pgno);
    pr->left = js > j ? path->pg[lv] : pr->sib;
    pr->right = js > j ? pr->sib : path->pg[lv];
    pr->jl = js > j ? j : js;
    rc = bt_cell_at(t, parent, pr->jl, &pr->sep);
    if (rc < 0) kvt_pager_unpin(t->pager, pr->sib);
    return rc;
}

/* All cells of the pair in order (for branches with the separator moved down). */
static int gather(bt_tree *t, const bt_pair *pr, bt_list *l) {
    int leaf = bt_is_leaf(pr->left->data);
    uint32_t n = bt_count(pr->left->data) + bt_count(pr->right->data) + 1;
    KVT_TRY(bt_list_init(l, n, 2 * t->ps + t->max_local));
    int rc = bt_list_add_page(t, l, pr->left);
    if (rc == KVT_OK && !leaf) {
        rc = bt_list_push(l, pr->sep.p, pr->sep.size);
        if (rc == KVT_OK)
            kvt_put64(l->buf + l->off[l->n - 1] + 2, bt_leftmost(pr->right->data));
    }
    if (rc == KVT_OK) rc = bt_list_add_page(t, l, pr->right);
    if (rc < 0) bt_list_free(l);
    return rc;
}

static int merge(bt_tree *t, bt_path *path, uint32_t lv, bt_pair *pr, const bt_list *l) {
    uint8_t *pd = path->pg[lv - 1]->data;
    KVT_TRY(bt_list_fill(t, pr->left, l, 0, l->n));     /* first: fails on forged cells */
    int rc = KVT_OK;
    if (bt_is_leaf(pr->left->data)) rc = bt_free_cell_blobs(t, &pr->sep);  /* branch: moved down */
    bt_remove_slot(pd, pr->jl, pr->sep.size);
    kvt_pgno gone = pr->right->pgno;
    kvt_pager_unpin(t->pager, pr->sib);
    if (pr->right == path->pg[lv]) {      /* the path page itself goes away */
        kvt_pager_unpin(t->pager, path->pg[lv]);
        path->pg[lv] = NULL;
    }
    t->pages--;
    KVT_TRY(rc);
    return kvt_pager_free(t->pager, gone);
}

static int redistribute(bt_tree *t, bt_path *path, uint32_t lv, bt_pair *pr, const bt_list *l) {
    uint8_t *pd = path->pg[lv - 1]->data;
    int leaf = bt_is_leaf(pr->left->data);
    uint8_t *sep = malloc(t->max_local);
    if (!sep) return kvt_seterr(KVT_ENOMEM, "btree: rebalance buffer");
    uint32_t m = bt_list_mid(l, leaf), sepn;
    int rc = bt_list_check(t, pr->left, l, 0, m);
    if (rc == KVT_OK) rc = bt_list_check(t, pr->right, l, leaf ? m : m + 1, l->n);
    if (rc < 0) {
        free(sep);
        return rc;
    }
    if (leaf) {
        rc = bt_leaf_separator(t, l->buf + l->off[m - 1], l->buf + l->off[m], pr->right->pgno,
                               sep, &sepn);
        if (rc == KVT_OK) rc = bt_free_cell_blobs(t, &pr->sep);
        if (rc == KVT_OK) rc = bt_list_fill(t, pr->left, l, 0, m);
        if (rc == KVT_OK) rc = bt_list_fill(t, pr->right, l, m, l->n);
    } else {
        sepn = l->len[m];
        memcpy(sep, l->buf + l->off[m], sepn);
        kvt_put64(sep + 2, pr->right->pgno);
        kvt_put64(pr->right->data + BT_OFF_LEFTMOST, kvt_get64(l->buf + l->off[m] + 2));
        rc = bt_list_fill(t, pr->left, l, 0, m);
        if (rc == KVT_OK) rc = bt_list_fill(t, pr->right, l, m + 1, l->n);
    }
    if (rc == KVT_OK) {
        bt_remove_slot(pd, pr->jl, pr->sep.size);
        kvt_pager_unpin(t->pager, pr->sib);
        pr->sib = NULL;
        rc = bt_insert_at(t, path, lv - 1, pr->jl, sep, sepn, 0);
    }
    free(sep);
    return rc;
}

/* Fix the underfull page at path level lv >= 1 with one of its siblings. */
static int rebalance_one(bt_tree *t, bt_path *path, uint32_t lv) {
    bt_pair pr;
    KVT_TRY(load_pair(t, path, lv, &pr));
    int leaf = bt_is_leaf(pr.left->data);
    uint32_t total = bt_used(t, pr.left->data) + bt_used(t, pr.right->data);
    if (!leaf) total += pr.sep.size + 2;
    bt_list l;
    int rc = gather(t, &pr, &l);
    if (rc < 0) { kvt_pager_unpin(t->pager, pr.sib); return rc; }
    if (total <= t->usable) {
        rc = merge(t, path, lv, &pr, &l);
    } else {
        rc = redistribute(t, path, lv, &pr, &l);
        if (pr.sib) kvt_pager_unpin(t->pager, pr.sib);
    }
    bt_list_free(&l);
    return rc;
}

int bt_rebalance(bt_tree *t, bt_path *path, uint32_t lv) {
    for (; lv > 0; lv--) {
        if (!path->pg[lv] || bt_used(t, path->pg[lv]->data) >= t->min_fill) return KVT_OK;
        KVT_TRY(rebalance_one(t, path, lv));
    }
    return collapse_root(t, path);
}
