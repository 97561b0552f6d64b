/* bt_page.c - slotted-page primitives: header, bounds-checked cell decoding, insertion,
 * removal, compaction and rebuilding from a cell list. Every length read from a page is
 * checked against the page before use, so a damaged page yields KVT_ECORRUPT. */
#include <stdlib.h>
#include "bt_int.h"

void bt_page_init(const bt_tree *t, uint8_t *d, int leaf) {
    memset(d + KVT_PAGE_HDR, 0, BT_HDR - KVT_PAGE_HDR);
    d[4] = leaf ? BT_LEAF : BT_BRANCH;
    kvt_put32(d + BT_OFF_LO, t->ps);
}

static int corrupt(const kvt_page *pg, const char *what, uint64_t a, uint64_t b) {
    return kvt_seterr(KVT_ECORRUPT, "btree: page %llu: %s (%llu, %llu)",
                      (unsigned long long)pg->pgno, what, (unsigned long long)a,
                      (unsigned long long)b);
}

int bt_page_verify(const bt_tree *t, const kvt_page *pg, int leaf) {
    const uint8_t *d = pg->data;
    uint8_t type = d[4];
    if (type != BT_LEAF && type != BT_BRANCH)
        return corrupt(pg, "not a btree page: type", type, 0);
    if (leaf >= 0 && (type == BT_LEAF) != (leaf != 0))
        return corrupt(pg, "wrong page type for its depth: type, expected leaf", type, leaf);
    uint32_t n = bt_count(d), lo = bt_lo(d);
    if ((uint64_t)BT_HDR + 2u * n > lo || lo > t->ps)
        return corrupt(pg, "slot array overlaps cells: count, content_lo", n, lo);
    if (bt_garbage(d) > t->ps - lo)
        return corrupt(pg, "garbage larger than cell area", bt_garbage(d), t->ps - lo);
    if (type == BT_BRANCH && bt_leftmost(d) == KVT_PGNO_NONE)
        return corrupt(pg, "branch without leftmost child", 0, 0);
    return KVT_OK;
}

/* Decode the cell at offset off of page image d (pg->data, or a scratch copy of it; pg
 * names the page in errors); everything checked against ps. */
static int decode_in(const bt_tree *t, const kvt_page *pg, const uint8_t *d, uint32_t off,
                     bt_cell *c) {
    int leaf = bt_is_leaf(d);
    uint32_t fixed = leaf ? BT_LEAF_FIXED : BT_BRANCH_FIXED;
    if ((uint64_t)off + fixed > t->ps) return corrupt(pg, "cell header past page end", off, fixed);
    const uint8_t *p = d + off;
    uint32_t klen = kvt_get16(p);
    if (klen == 0 || klen > KVT_MAX_KEY) return corrupt(pg, "bad key length at offset", off, klen);
    c->p = p;
    c->klen = klen;
    c->kloc = klen <= t->kmax ? klen : t->kpre;
    c->key = p + fixed;
    uint64_t size = fixed + bt_key_local(t, klen);
    int spilled = klen > t->kmax;
    c->kblob = 0;
    c->child = 0; c->val = NULL; c->vblob = 0; c->vlen = 0;
    if (leaf) {
        uint32_t vraw = kvt_get32(p + 2);
        c->vlen = vraw & ~BT_VOVF;
        if (c->vlen > KVT_MAX_VALUE) return corrupt(pg, "bad value length at offset", off, c->vlen);
        size += (vraw & BT_VOVF) ? 8 : c->vlen;
        if (off + size > t->ps) return corrupt(pg, "cell past page end: offset, size", off, size);
        if (vraw & BT_VOVF) {
            c->vblob = kvt_get64(p + size - 8);
            if (!c->vblob) return corrupt(pg, "null overflow page in cell at", off, 0);
        } else {
            c->val = p + size - c->vlen;
        }
    } else {
        if (off + size > t->ps) return corrupt(pg, "cell past page end: offset, size", off, size);
        c->child = kvt_get64(p + 2);
        if (!c->child) return corrupt(pg, "null child pointer in cell at", off, 0);
    }
    if (spilled) {
        c->kblob = kvt_get64(c->key + t->kpre);
        if (!c->kblob) return corrupt(pg, "null key overflow page in cell at", off, 0);
    }
    c->size = (uint32_t)size;
    return KVT_OK;
}

static int decode(const bt_tree *t, const kvt_page *pg, uint32_t off, bt_cell *c) {
    return decode_in(t, pg, pg->data, off, c);
}

int bt_cell_at(const bt_tree *t, const kvt_page *pg, uint32_t i, bt_cell *c) {
    const uint8_t *d = pg->data;
    if (i >= bt_count(d)) return corrupt(pg, "slot index out of range", i, bt_count(d));
    uint32_t off = kvt_get16(d + BT_HDR + 2u * i);
    if (off < bt_lo(d)) return corrupt(pg, "slot points below the cell area: slot, offset", i, off);
    return decode(t, pg, off, c);
}

uint32_t bt_used(const bt_tree *t, const uint8_t *d) {
    return 2u * bt_count(d) + (t->ps - bt_lo(d) - bt_garbage(d));
}

uint32_t bt_free_contig(const uint8_t *d) {
    return bt_lo(d) - (BT_HDR + 2u * bt_count(d));
}

int bt_fits(const bt_tree *t, const uint8_t *d, uint32_t n) {
    return n + 2u <= bt_free_contig(d) + bt_garbage(d);
}

kvt_pgno bt_child(const bt_tree *t, const kvt_page *pg, uint32_t j, int *rc) {
    *rc = KVT_OK;
    if (j == 0) return bt_leftmost(pg->data);
    bt_cell c;
    *rc = bt_cell_at(t, pg, j - 1, &c);
    return *rc < 0 ? 0 : c.child;
}

void bt_set_child(uint8_t *d, uint32_t j, kvt_pgno child) {
    if (j == 0) { kvt_put64(d + BT_OFF_LEFTMOST, child); return; }
    uint32_t off = kvt_get16(d + BT_HDR + 2u * (j - 1));
    kvt_put64(d + off + 2, child);
}

/* Slide live cells to the end of the page, dropping garbage. Every slot and cell length
 * is checked (decode_in) and the cells must fit above the slot array, so a page with a
 * valid checksum but forged cells yields KVT_ECORRUPT and d stays untouched. The new
 * image is built in the tree's writer scratch page (only writers modify pages). */
int bt_compact(const bt_tree *t, kvt_page *pg) {
    uint8_t *d = pg->data, *tmp = t->tmp;
    uint32_t n = bt_count(d), old_lo = bt_lo(d), lo = t->ps;
    uint32_t slots_end = BT_HDR + 2u * n;
    if (slots_end > old_lo || old_lo > t->ps)
        return corrupt(pg, "compact: slot array overlaps cells: count, content_lo", n, old_lo);
    memcpy(tmp, d, slots_end);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t off = kvt_get16(d + BT_HDR + 2u * i);
        bt_cell c;
        if (off < old_lo) return corrupt(pg, "compact: slot below the cell area: slot, offset", i, off);
        KVT_TRY(decode_in(t, pg, d, off, &c));
        if (c.size > lo - slots_end)     /* overlapping or duplicated cells */
            return corrupt(pg, "compact: live cells exceed the page: slot, size", i, c.size);
        lo -= c.size;
        memcpy(tmp + lo, c.p, c.size);
        kvt_put16(tmp + BT_HDR + 2u * i, (uint16_t)lo);
    }
    memcpy(d + BT_HDR, tmp + BT_HDR, 2u * n);
    memcpy(d + lo, tmp + lo, t->ps - lo);
    kvt_put32(d + BT_OFF_LO, lo);
    kvt_put32(d + BT_OFF_GARBAGE, 0);
    return KVT_OK;
}

/* The header fields the insert arithmetic relies on (pages are verified when pinned, but
 * a forged page can make later removals miscount content_lo or garbage). */
static int check_room(const bt_tree *t, const kvt_page *pg, uint32_t i) {
    const uint8_t *d = pg->data;
    uint32_t cnt = bt_count(d), lo = bt_lo(d);
    if (i > cnt) return corrupt(pg, "insert slot out of range", i, cnt);
    if ((uint64_t)BT_HDR + 2u * cnt > lo || lo > t->ps || bt_garbage(d) > t->ps - lo)
        return corrupt(pg, "bad header at insert: count, content_lo", cnt, lo);
    return KVT_OK;
}

int bt_insert_raw(const bt_tree *t, kvt_page *pg, uint32_t i, const uint8_t *cell, uint32_t n) {
    uint8_t *d = pg->data;
    KVT_TRY(check_room(t, pg, i));
    if (bt_free_contig(d) < n + 2u) KVT_TRY(bt_compact(t, pg));
    if (bt_free_contig(d) < n + 2u)    /* garbage overstated the dead bytes */
        return corrupt(pg, "no room after compaction: free, needed", bt_free_contig(d), n + 2u);
    uint32_t cnt = bt_count(d), lo = bt_lo(d) - n;
    memcpy(d + lo, cell, n);
    uint8_t *slots = d + BT_HDR;
    memmove(slots + 2u * (i + 1), slots + 2u * i, 2u * (cnt - i));
    kvt_put16(slots + 2u * i, (uint16_t)lo);
    kvt_put16(d + BT_OFF_COUNT, (uint16_t)(cnt + 1));
    kvt_put32(d + BT_OFF_LO, lo);
    return KVT_OK;
}

void bt_remove_slot(uint8_t *d, uint32_t i, uint32_t cell_size) {
    uint32_t cnt = bt_count(d);
    uint8_t *slots = d + BT_HDR;
    uint32_t off = kvt_get16(slots + 2u * i);
    memmove(slots + 2u * i, slots + 2u * (i + 1), 2u * (cnt - i - 1));
    kvt_put16(d + BT_OFF_COUNT, (uint16_t)(cnt - 1));
    if (off == bt_lo(d)) {      /* the lowest cell: just raise content_lo */
        kvt_put32(d + BT_OFF_LO, off + cell_size);
    } else {
        kvt_put32(d + BT_OFF_GARBAGE, bt_garbage(d) + cell_size);
    }
    if (cnt == 1) {             /* empty page: everything is free again */
        kvt_put32(d + BT_OFF_LO, kvt_get32(d + BT_OFF_LO) + bt_garbage(d));
        kvt_put32(d + BT_OFF_GARBAGE, 0);
    }
}

/* ---- cell lists ---- */

int bt_list_init(bt_list *l, uint32_t cells, uint32_t bytes) {
    memset(l, 0, sizeof *l);
    l->buf = malloc(bytes);
    l->off = malloc(sizeof(uint32_t) * cells);
    l->len = malloc(sizeof(uint32_t) * cells);
    if (!l->buf || !l->off || !l->len) {
        bt_list_free(l);
        return kvt_seterr(KVT_ENOMEM, "btree: cannot allocate cell list (%u cells)", cells);
    }
    l->cap_cells = cells;
    l->cap_bytes = bytes;
    return KVT_OK;
}

void bt_list_free(bt_list *l) {
    free(l->buf); free(l->off); free(l->len);
    memset(l, 0, sizeof *l);
}

int bt_list_push(bt_list *l, const uint8_t *cell, uint32_t n) {
    if (l->n >= l->cap_cells || l->used + n > l->cap_bytes)
        return kvt_seterr(KVT_ECORRUPT, "btree: cell list overflow (%u cells, %u bytes)", l->n, l->used);
    memcpy(l->buf + l->used, cell, n);
    l->off[l->n] = l->used;
    l->len[l->n] = n;
    l->used += n;
    l->n++;
    return KVT_OK;
}

int bt_list_add_page(const bt_tree *t, bt_list *l, const kvt_page *pg) {
    uint32_t n = bt_count(pg->data);
    for (uint32_t i = 0; i < n; i++) {
        bt_cell c;
        KVT_TRY(bt_cell_at(t, pg, i, &c));
        KVT_TRY(bt_list_push(l, c.p, c.size));
    }
    return KVT_OK;
}

/* Bytes (cells + slots) of list cells [a, b). */
static uint64_t span(const bt_list *l, uint32_t a, uint32_t b) {
    uint64_t n = 0;
    for (uint32_t i = a; i < b; i++) n += l->len[i] + 2u;
    return n;
}

int bt_list_check(const bt_tree *t, const kvt_page *pg, const bt_list *l, uint32_t from,
                  uint32_t to) {
    uint64_t need = span(l, from, to);
    if (need > t->usable)          /* cell sizes disagree with the pages' accounting */
        return corrupt(pg, "rebuilt page would overflow: bytes, usable", need, t->usable);
    return KVT_OK;
}

int bt_list_fill(const bt_tree *t, kvt_page *pg, const bt_list *l, uint32_t from, uint32_t to) {
    KVT_TRY(bt_list_check(t, pg, l, from, to));
    uint8_t *d = pg->data;
    kvt_pgno leftmost = bt_leftmost(d);
    bt_page_init(t, d, bt_is_leaf(d));
    kvt_put64(d + BT_OFF_LEFTMOST, leftmost);
    uint32_t lo = t->ps;
    for (uint32_t i = from; i < to; i++) {
        lo -= l->len[i];
        memcpy(d + lo, l->buf + l->off[i], l->len[i]);
        kvt_put16(d + BT_HDR + 2u * (i - from), (uint16_t)lo);
    }
    kvt_put16(d + BT_OFF_COUNT, (uint16_t)(to - from));
    kvt_put32(d + BT_OFF_LO, lo);
    return KVT_OK;
}

uint32_t bt_list_mid(const bt_list *l, int leaf) {
    /* Maximise the smaller half. In a branch cell m moves up to the parent, so it
     * counts on neither side. With cells <= a quarter page and more than a page of
     * cells, this leaves both halves at least a quarter full. */
    uint64_t total = span(l, 0, l->n), left = 0, best = 0;
    uint32_t m = 1, last = leaf ? l->n - 1 : l->n - 2;
    for (uint32_t i = 1; i <= last; i++) {
        left += l->len[i - 1] + 2u;
        uint64_t right = total - left - (leaf ? 0 : l->len[i] + 2u);
        uint64_t small = left < right ? left : right;
        if (small > best) { best = small; m = i; }
    }
    return m;
}
