/* freemap.c - free-space map: an in-memory bitmap of free pages (plus deferred frees
 * and pages new in this gen), persisted at each checkpoint as a chain of
 * KVT_PT_FREELIST pages whose first page number the meta page records.
 *
 * Allocation scans from `hint` (no free bit below that word), so it prefers low page
 * numbers and costs O(1) amortized. Freelist page layout after the page header:
 *   32 u64 next pgno (0 ends the chain), 40 u64 first bit, 48 u64 bit count, 56 bits.
 * A persisted map says which pages are free once its checkpoint is durable: the free
 * bits, the deferred frees and the pages of the previous map.
 */
#include <stdlib.h>
#include <inttypes.h>
#include "pager_int.h"

#define FL_NEXT  32
#define FL_FIRST 40
#define FL_NBITS 48
#define FL_BITS  56

int bm_ensure(bitmap *b, uint64_t nbits) {
    size_t need = (size_t)((nbits + 63) / 64);
    if (need <= b->nwords) return KVT_OK;
    size_t n = b->nwords ? b->nwords : 64;
    while (n < need) n *= 2;
    uint64_t *w = realloc(b->w, n * sizeof *w);
    if (!w) return kvt_seterr(KVT_ENOMEM, "pager: cannot grow bitmap to %zu words", n);
    memset(w + b->nwords, 0, (n - b->nwords) * sizeof *w);
    b->w = w;
    b->nwords = n;
    return KVT_OK;
}

void bm_free(bitmap *b) {
    free(b->w);
    b->w = NULL;
    b->nwords = 0;
}

size_t fm_bits_per_page(const kvt_pager *p) {
    return (size_t)(p->page_size - FL_BITS) / 8 * 64;   /* whole words only */
}

int fm_init(kvt_pager *p) { return fm_grow(p, p->npages); }

/* Make every bitmap cover npages and adopt it as the logical size. */
int fm_grow(kvt_pager *p, uint64_t npages) {
    KVT_TRY(bm_ensure(&p->freeb, npages));
    KVT_TRY(bm_ensure(&p->deferb, npages));
    KVT_TRY(bm_ensure(&p->newb, npages));
    if (p->checking) KVT_TRY(bm_ensure(&p->checkb, npages));
    if (npages > p->npages) p->npages = npages;
    return KVT_OK;
}

int fm_alloc(kvt_pager *p, kvt_pgno *out) {
    uint64_t nw = (p->npages + 63) / 64;
    if (p->nfree) {
        for (uint64_t w = p->hint; w < nw; w++) {
            uint64_t x = p->freeb.w[w];
            if (!x) continue;
            kvt_pgno pg = w * 64 + (uint64_t)__builtin_ctzll(x);
            bm_clr(&p->freeb, pg);
            p->nfree--;
            p->hint = w;
            bm_set(&p->newb, pg);
            *out = pg;
            return KVT_OK;
        }
    }
    p->hint = nw;
    kvt_pgno pg = p->npages;
    KVT_TRY(fm_grow(p, pg + 1));
    bm_set(&p->newb, pg);
    *out = pg;
    return KVT_OK;
}

/* Find the lowest run of n free pages; *len_out < n means a free run that ends the
 * file (the caller extends it), 0 means none. */
static uint64_t find_run(kvt_pager *p, uint64_t n, uint64_t *len_out) {
    uint64_t nw = (p->npages + 63) / 64, start = 0, len = 0;
    for (uint64_t w = p->hint; w < nw && len < n; w++) {
        uint64_t x = p->freeb.w[w];
        if (x == 0) { len = 0; continue; }
        if (x == ~0ull) {
            if (!len) start = w * 64;
            len += 64;
            continue;
        }
        for (unsigned b = 0; b < 64 && len < n; b++) {
            if ((x >> b) & 1) {
                if (!len) start = w * 64 + b;
                len++;
            } else {
                len = 0;
            }
        }
    }
    if (len >= n) { *len_out = n; return start; }
    if (len && start + len == p->npages) { *len_out = len; return start; }
    *len_out = 0;
    return 0;
}

/* n consecutive pages: a free run, else the free tail of the file extended, else new
 * pages at the end of the file. */
int fm_alloc_run(kvt_pager *p, uint64_t n, kvt_pgno *out) {
    uint64_t have = 0, start = 0;
    if (p->nfree) start = find_run(p, n, &have);
    if (!have) start = p->npages;
    for (uint64_t i = 0; i < have; i++) bm_clr(&p->freeb, start + i);
    p->nfree -= have;
    KVT_TRY(fm_grow(p, start + n));
    for (uint64_t i = 0; i < n; i++) bm_set(&p->newb, start + i);
    *out = start;
    return KVT_OK;
}

int fm_free(kvt_pager *p, kvt_pgno pgno) {
    bm_set(&p->freeb, pgno);
    bm_clr(&p->newb, pgno);
    p->nfree++;
    if ((pgno >> 6) < p->hint) p->hint = pgno >> 6;
    return KVT_OK;
}

void fm_release_deferred(kvt_pager *p) {
    uint64_t nw = (p->npages + 63) / 64, lowest = UINT64_MAX;
    for (uint64_t w = 0; w < nw; w++) {
        uint64_t d = p->deferb.w[w];
        if (!d) continue;
        p->freeb.w[w] |= d;
        p->nfree += (uint64_t)__builtin_popcountll(d);
        p->deferb.w[w] = 0;
        if (lowest == UINT64_MAX) lowest = w;
    }
    p->ndefer = 0;
    if (lowest < p->hint) p->hint = lowest;
}

/* Forget free pages at the end of the file so it can be truncated. */
void fm_trim_tail(kvt_pager *p) {
    while (p->npages > 2 && bm_get(&p->freeb, p->npages - 1)) {
        bm_clr(&p->freeb, p->npages - 1);
        p->nfree--;
        p->npages--;
    }
    uint64_t nw = (p->npages + 63) / 64;
    if (p->hint > nw) p->hint = nw;
}

void fm_destroy(kvt_pager *p) {
    bm_free(&p->freeb);
    bm_free(&p->deferb);
    bm_free(&p->newb);
    bm_free(&p->checkb);
    free(p->fm_pages);
    free(p->fm_prev);
    p->fm_pages = p->fm_prev = NULL;
    p->fm_count = p->fm_prev_count = 0;
}

/* Set the free bits one freelist page carries; damage -> KVT_ECORRUPT. */
static int load_bits(kvt_pager *p, const uint8_t *pg, kvt_pgno pgno) {
    uint64_t first = kvt_get64(pg + FL_FIRST), nbits = kvt_get64(pg + FL_NBITS);
    if (nbits > fm_bits_per_page(p) || first % 64 || first > p->npages ||
        nbits > p->npages - first)
        return kvt_seterr(KVT_ECORRUPT, "%s: page %" PRIu64 ": free map range %" PRIu64
                          "+%" PRIu64 " outside the file (%" PRIu64 " pages)",
                          p->path, pgno, first, nbits, p->npages);
    for (uint64_t i = 0; i < nbits; i += 64) {
        uint64_t x = kvt_get64(pg + FL_BITS + i / 8);
        if (nbits - i < 64) x &= (1ull << (nbits - i)) - 1;
        p->freeb.w[(first + i) / 64] |= x;
    }
    return KVT_OK;
}

/* Read the durable free map (count pages from first) into freeb. */
int fm_load(kvt_pager *p, kvt_pgno first, uint64_t count) {
    if (count > p->npages)
        return kvt_seterr(KVT_ECORRUPT, "%s: free map of %" PRIu64 " pages in a file of %"
                          PRIu64, p->path, count, p->npages);
    p->fm_pages = calloc(count ? count : 1, sizeof *p->fm_pages);
    uint8_t *buf = aligned_alloc_pages(p, p->page_size);
    int rc = (p->fm_pages && buf) ? KVT_OK : kvt_seterr(KVT_ENOMEM, "pager: free map");
    kvt_pgno pg = first;
    for (uint64_t i = 0; rc == KVT_OK && i < count; i++) {
        if (pg < 2 || pg >= p->npages) {
            rc = kvt_seterr(KVT_ECORRUPT, "%s: free map page %" PRIu64 " out of range",
                            p->path, pg);
            break;
        }
        rc = kvt_file_read_full(p->file, buf, p->page_size, pg * p->page_size);
        if (rc == KVT_OK) rc = page_verify(p, buf, pg);
        if (rc == KVT_OK && buf[HDR_TYPE] != KVT_PT_FREELIST)
            rc = kvt_seterr(KVT_ECORRUPT, "%s: page %" PRIu64 ": not a free map page",
                            p->path, pg);
        if (rc == KVT_OK) rc = load_bits(p, buf, pg);
        p->fm_pages[i] = pg;
        p->fm_count = i + 1;
        pg = kvt_get64(buf + FL_NEXT);
    }
    free(buf);
    KVT_TRY(rc);
    /* Pages 0 and 1 and the map's own pages are never free. */
    for (int m = 0; m < 2; m++) bm_clr(&p->freeb, (uint64_t)m);
    for (size_t i = 0; i < p->fm_count; i++) {
        if (bm_get(&p->freeb, p->fm_pages[i]))
            return kvt_seterr(KVT_ECORRUPT, "%s: free map page %" PRIu64 " marked free",
                              p->path, p->fm_pages[i]);
    }
    p->nfree = 0;
    for (uint64_t w = 0; w < (p->npages + 63) / 64; w++)
        p->nfree += (uint64_t)__builtin_popcountll(p->freeb.w[w]);
    return KVT_OK;
}

/* Allocate the pages of a new map: enough to cover npages bits, which may grow while
 * allocating (the chicken and the egg): loop until the count covers it. */
static int alloc_map_pages(kvt_pager *p, kvt_pgno **pages, size_t *count) {
    size_t bpp = fm_bits_per_page(p), n = 0, cap = 4;
    kvt_pgno *v = malloc(cap * sizeof *v);
    if (!v) return kvt_seterr(KVT_ENOMEM, "pager: free map pages");
    while (n * bpp < p->npages) {
        if (n == cap) {
            kvt_pgno *nv = realloc(v, 2 * cap * sizeof *v);
            if (!nv) {
                for (size_t i = 0; i < n; i++) fm_free(p, v[i]);
                free(v);
                return kvt_seterr(KVT_ENOMEM, "pager: free map pages");
            }
            v = nv;
            cap *= 2;
        }
        int rc = fm_alloc(p, &v[n]);
        if (rc < 0) {
            for (size_t i = 0; i < n; i++) fm_free(p, v[i]);
            free(v);
            return rc;
        }
        n++;
    }
    *pages = v;
    *count = n;
    return KVT_OK;
}

static void fill_map_page(kvt_pager *p, uint8_t *buf, const kvt_pgno *pages, size_t n,
                          size_t i) {
    uint64_t bpp = fm_bits_per_page(p), first = i * bpp;
    uint64_t nbits = first >= p->npages ? 0 : p->npages - first;
    if (nbits > bpp) nbits = bpp;
    memset(buf, 0, p->page_size);
    page_hdr_init(buf, KVT_PT_FREELIST, pages[i], p->ckpt_gen + 1);
    kvt_put64(buf + FL_NEXT, i + 1 < n ? pages[i + 1] : 0);
    kvt_put64(buf + FL_FIRST, first);
    kvt_put64(buf + FL_NBITS, nbits);
    for (uint64_t b = 0; b < nbits; b += 64) {
        uint64_t w = (first + b) / 64;
        kvt_put64(buf + FL_BITS + b / 8, p->freeb.w[w] | p->deferb.w[w]);
    }
    page_seal(p, buf);
}

/* Write a new map for the checkpoint being made; the old map's pages become deferred
 * frees (the old checkpoint still needs them until the new meta is durable), so the new
 * map already shows them free. The old page list is kept for fm_undo until fm_commit.
 * ENOSPC is undone here and returned unlatched (the old checkpoint is untouched). */
int fm_write(kvt_pager *p, kvt_pgno *first, uint64_t *count) {
    for (size_t i = 0; i < p->fm_count; i++) {
        bm_set(&p->deferb, p->fm_pages[i]);
        p->ndefer++;
    }
    p->fm_prev = p->fm_pages;
    p->fm_prev_count = p->fm_count;
    p->fm_pages = NULL;
    p->fm_count = 0;
    int rc = alloc_map_pages(p, &p->fm_pages, &p->fm_count);
    uint8_t *buf = rc == KVT_OK ? aligned_alloc_pages(p, p->page_size) : NULL;
    if (rc == KVT_OK && !buf) rc = kvt_seterr(KVT_ENOMEM, "pager: free map buffer");
    for (size_t i = 0; i < p->fm_count && rc == KVT_OK; i++) {
        fill_map_page(p, buf, p->fm_pages, p->fm_count, i);
        rc = pager_write_pages(p, buf, 1, p->fm_pages[i]);
    }
    free(buf);
    if (rc == KVT_ENOSPC || rc == KVT_ENOMEM) {
        fm_undo(p);
        return rc;
    }
    if (rc < 0) return pager_fail(p, rc);
    *first = p->fm_count ? p->fm_pages[0] : 0;
    *count = p->fm_count;
    return KVT_OK;
}

void fm_commit(kvt_pager *p) {
    free(p->fm_prev);
    p->fm_prev = NULL;
    p->fm_prev_count = 0;
}

void fm_undo(kvt_pager *p) {
    for (size_t i = 0; i < p->fm_count; i++) fm_free(p, p->fm_pages[i]);   /* never durable */
    free(p->fm_pages);
    p->fm_pages = p->fm_prev;
    p->fm_count = p->fm_prev_count;
    for (size_t i = 0; i < p->fm_count; i++) {
        bm_clr(&p->deferb, p->fm_pages[i]);
        p->ndefer--;
    }
    p->fm_prev = NULL;
    p->fm_prev_count = 0;
}
