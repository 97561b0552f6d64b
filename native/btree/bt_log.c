/* bt_log.c - full leaves logged by reference (native/db/paged.c).
 *
 * While the db layer applies a strictly ascending record (log_begin .. log_end), each
 * leaf the append cursor fills and retires is sealed and collected with its first and
 * last key. Such a leaf is final: later puts of the record sort after it. log_end has
 * the pager write the pending run and keep the pages the file holds exactly as sealed;
 * the db layer then logs those page numbers instead of the entries in their key
 * ranges, so the entries are written once (in the page), not twice (log, then page).
 * Only leaves whose cells are all inline qualify: recovery reads the page alone
 * (put_page), never a blob it names.
 */
#include <stdlib.h>
#include "bt_int.h"

static int grow(bt_log *l) {
    if (l->n < l->cap) return KVT_OK;
    size_t cap = l->cap ? 2 * l->cap : 64;
    bt_log_entry *e = realloc(l->e, cap * sizeof *e);
    if (e) l->e = e;
    kvt_pgno *pg = e ? realloc(l->pg, cap * sizeof *pg) : NULL;
    if (pg) l->pg = pg;
    uint32_t *crc = pg ? realloc(l->crc, cap * sizeof *crc) : NULL;
    if (crc) l->crc = crc;
    uint8_t *ok = crc ? realloc(l->ok, cap) : NULL;
    if (ok) l->ok = ok;
    kvt_logged_page *out = ok ? realloc(l->out, cap * sizeof *out) : NULL;
    if (out) l->out = out;
    if (!out) return KVT_ENOMEM;
    l->cap = cap;
    return KVT_OK;
}

int bt_log_retire(bt_tree *t, kvt_page *leaf) {
    bt_log *l = &t->log;
    const uint8_t *d = leaf->data, *k0, *k1, *v;
    uint32_t n = bt_count(d), kl0, kl1, vl;
    if (!l->on || n == 0 || grow(l) != KVT_OK) return kvt_pager_retire(t->pager, leaf);
    for (uint32_t i = 1; i + 1 < n; i++)
        if (!bt_inline_cell(t, d, i, &k0, &kl0, &v, &vl)) return kvt_pager_retire(t->pager, leaf);
    if (!bt_inline_cell(t, d, 0, &k0, &kl0, &v, &vl) ||
        !bt_inline_cell(t, d, n - 1, &k1, &kl1, &v, &vl))
        return kvt_pager_retire(t->pager, leaf);
    bt_log_entry *e = &l->e[l->n];
    e->pgno = leaf->pgno;
    e->foff = (uint32_t)l->keys.len;
    e->flen = kl0;
    e->loff = e->foff + kl0;
    e->llen = kl1;
    /* No memory for the keys: retired unlogged (its entries stay in the record). */
    if (kvt_buf_append(&l->keys, k0, kl0) < 0 || kvt_buf_append(&l->keys, k1, kl1) < 0) {
        l->keys.len = e->foff;
        return kvt_pager_retire(t->pager, leaf);
    }
    l->n++;
    return kvt_pager_retire_sealed(t->pager, leaf, &e->crc);
}

void bt_log_free(bt_tree *t) {
    bt_log *l = &t->log;
    free(l->e);
    free(l->pg);
    free(l->crc);
    free(l->ok);
    free(l->out);
    kvt_buf_free(&l->keys);
    *l = (bt_log){0};
}

/* ---- engine ops ---------------------------------------------------------------- */

void bt_log_begin(bt_tree *t) {
    t->log.on = 1;
    t->log.n = 0;
    t->log.keys.len = 0;
}

int bt_log_end(bt_tree *t, int ok, const kvt_logged_page **out, size_t *n) {
    bt_log *l = &t->log;
    *out = l->out;
    *n = 0;
    size_t m = l->n;
    l->on = 0;
    l->n = 0;
    if (!ok || m == 0) return KVT_OK;
    for (size_t i = 0; i < m; i++) {
        l->pg[i] = l->e[i].pgno;
        l->crc[i] = l->e[i].crc;
    }
    KVT_TRY(kvt_pager_log_pages(t->pager, l->pg, l->crc, m, l->ok));
    size_t j = 0;
    for (size_t i = 0; i < m; i++) {
        if (!l->ok[i]) continue;
        const bt_log_entry *e = &l->e[i];
        l->out[j++] = (kvt_logged_page){
            .pgno = e->pgno, .crc = e->crc, .first_len = e->flen, .last_len = e->llen,
            .first = l->keys.data + e->foff, .last = l->keys.data + e->loff};
    }
    *n = j;
    return KVT_OK;
}

int bt_log_put_page(bt_tree *t, kvt_pgno pgno, const uint8_t *page,
                    int (*put)(bt_tree *, const uint8_t *, size_t, const uint8_t *, size_t)) {
    kvt_page pg = {pgno, (uint8_t *)page};
    KVT_TRY(bt_page_verify(t, &pg, 1));
    uint32_t n = bt_count(page), kl, vl;
    const uint8_t *k, *v;
    for (uint32_t i = 0; i < n; i++) {
        if (!bt_inline_cell(t, page, i, &k, &kl, &v, &vl))
            return kvt_seterr(KVT_ECORRUPT, "btree: logged page %llu: cell %u is not inline",
                              (unsigned long long)pgno, i);
        KVT_TRY(put(t, k, kl, v, vl));
    }
    return KVT_OK;
}
