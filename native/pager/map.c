/* map.c - the read map: pool misses served from a read-only shared mapping of the data
 * file, with no copy, no frame and no eviction, and a checksum only on the first read
 * of a page since this process last wrote it (verb).
 *
 * Why it is safe: a page is served from the map only on a pool miss, so it is clean
 * (dirty pages always live in the pool) and no reader can change its file content:
 * the file is written only for a page that is dirty in the pool (write-back, checkpoint)
 * or newly allocated (blobs, free map), and kvt_pager_write() first copies a mapped page
 * into a frame. Every such write goes through pager_write_pages(), which clears the
 * pages' verified bits. Accesses are bounded by file_pages (the file size as the pager
 * knows it), so a damaged page number never touches the mapping past the end of the
 * file (SIGBUS); it takes the pread path and fails there as before. The mapping is made
 * large (at least map_min, twice the file) so that it rarely has to be replaced, and it
 * is replaced only by the writer between operations while no handle is pinned; a page
 * beyond it meanwhile takes the pread path. Not used with direct_io (cache_size must
 * stay the only cache) nor by a VFS without map (the fault VFS: crash tests keep pread).
 */
#include <stdlib.h>
#include <inttypes.h>
#include "pager_int.h"

#define MAP_MIN_DEFAULT (1ull << 30)

/* The guard goes first: once unregistered, a fault in the range is not ours. */
static void unmap_current(kvt_pager *p) {
    if (!p->map) return;
    mapguard_remove(p->map_guard);
    p->map_guard = -1;
    (void)kvt_file_unmap(p->file, p->map, p->map_len);   /* address space only */
    p->map = NULL;
}

/* Replace the mapping by one of at least twice the file (and map_min). Failure is not
 * an error of the caller: the pager keeps the old mapping or reads with pread. */
static void remap(kvt_pager *p) {
    uint64_t want = 2 * p->file_pages * p->page_size;
    if (want < p->map_min) want = p->map_min;
    want = (want + p->page_size - 1) / p->page_size * p->page_size;
    void *m = NULL;
    int rc = kvt_file_map(p->file, want, &m);
    if (rc == KVT_OK && bm_ensure(&p->verb, want / p->page_size) < 0) {
        (void)kvt_file_unmap(p->file, m, want);     /* the old mapping stays */
        return;
    }
    if (rc < 0) return;                             /* the old mapping (or none) stays */
    int slot;
    if (mapguard_add(m, want, &slot) < 0) {          /* unguarded: never read through it */
        (void)kvt_file_unmap(p->file, m, want);
        return;
    }
    unmap_current(p);
    p->map = m;
    p->map_len = want;
    p->map_guard = slot;
}

int map_open(kvt_pager *p, const kvt_pager_config *cfg) {
    KVT_TRY(kvt_file_size(p->file, &p->file_pages));
    p->file_pages /= p->page_size;
    p->map_min = cfg->map_bytes ? cfg->map_bytes : MAP_MIN_DEFAULT;
    p->map_guard = -1;
    if (cfg->no_map || p->direct_io || !kvt_file_can_map(p->file)) return KVT_OK;
    remap(p);
    return KVT_OK;
}

void map_close(kvt_pager *p) {
    if (p->file) unmap_current(p);
    p->map = NULL;
    for (size_t i = 0; i < p->nmh; i++) free(p->mh_all[i]);
    free(p->mh_all);
    p->mh_all = NULL;
    p->mh_free = NULL;
    p->nmh = p->cap_mh = 0;
    bm_free(&p->verb);
}

/* Grow the mapping when the file has outgrown three quarters of it. */
void map_refresh(kvt_pager *p) {
    if (!p->map || p->nmapped || map_faulted(p)) return;
    if (p->file_pages * p->page_size > p->map_len / 4 * 3) remap(p);
}

static int new_handle(kvt_pager *p, maph **out) {
    if (p->mh_free) {
        *out = p->mh_free;
        p->mh_free = (*out)->next;
        return KVT_OK;
    }
    if (p->nmh == p->cap_mh) {
        size_t cap = p->cap_mh ? 2 * p->cap_mh : 16;
        maph **v = realloc(p->mh_all, cap * sizeof *v);
        if (!v) return kvt_seterr(KVT_ENOMEM, "pager: map handle table of %zu", cap);
        p->mh_all = v;
        p->cap_mh = cap;
    }
    maph *h = calloc(1, sizeof *h);
    if (!h) return kvt_seterr(KVT_ENOMEM, "pager: map handle");
    p->mh_all[p->nmh++] = h;
    *out = h;
    return KVT_OK;
}

void map_release(kvt_pager *p, kvt_page *pg) {
    maph *h = (maph *)pg;
    h->next = p->mh_free;
    p->mh_free = h;
    p->nmapped--;
}

/* Verify outside mu (the page cannot change while this reader holds it: see above). */
static int verify_mapped(kvt_pager *p, maph *h) {
    pthread_mutex_unlock(&p->mu);
    int rc = page_verify(p, h->page.data, h->page.pgno);
    pthread_mutex_lock(&p->mu);
    if (rc < 0) return rc;
    bm_set(&p->verb, h->page.pgno);
    p->st.map_verifies++;
    return KVT_OK;
}

/* A miss on pgno (in range, not free): served from the map when it covers the page. */
int map_get_locked(kvt_pager *p, kvt_pgno pgno, kvt_page **out) {
    *out = NULL;
    if (!p->map || pgno >= p->file_pages || pgno >= p->map_len / p->page_size ||
        map_faulted(p))
        return KVT_OK;
    maph *h = NULL;
    KVT_TRY(new_handle(p, &h));
    h->page.pgno = pgno;
    h->page.data = p->map + pgno * p->page_size;
    p->nmapped++;
    p->st.cache_misses++;
    p->st.map_reads++;
    if (!bm_get(&p->verb, pgno)) {
        int rc = verify_mapped(p, h);
        if (rc < 0) {
            map_release(p, &h->page);
            return rc;
        }
    }
    *out = &h->page;
    return KVT_OK;
}

/* Pages [first, first+n) in the mapping, the file and not free, map not faulted: their
 * address, else NULL (the caller reads them with pread). */
const uint8_t *map_span_locked(const kvt_pager *p, kvt_pgno first, uint64_t n) {
    if (!p->map || map_faulted(p) || first < 2 || n > p->file_pages ||
        first > p->file_pages - n || first + n > p->map_len / p->page_size)
        return NULL;
    return p->map + first * p->page_size;
}

void kvt_pager_prefetch(kvt_pager *p, kvt_pgno pgno) {
    /* A hint, unlocked: the mapping only changes under the writer, and a prefetch of an
     * address that is no longer (or not yet) mapped does not fault. */
    const uint8_t *m = __atomic_load_n(&p->map, __ATOMIC_RELAXED);
    uint64_t pages = __atomic_load_n(&p->file_pages, __ATOMIC_RELAXED);
    if (!m || pgno < 2 || pgno >= pages || pgno >= p->map_len / p->page_size) return;
    const uint8_t *d = m + pgno * p->page_size;
    uint32_t n = p->page_size < 4096 ? p->page_size : 4096;
    for (uint32_t off = 0; off < n; off += 64) __builtin_prefetch(d + off, 0, 3);
}

void map_truncated(kvt_pager *p, uint64_t npages) {
    if (npages < p->file_pages) p->file_pages = npages;
}

/* Bits are cleared first: a failed write may still have changed part of the pages. */
int pager_write_pages(kvt_pager *p, const void *buf, uint64_t n, kvt_pgno first) {
    for (uint64_t i = 0; i < n; i++)
        if (bm_get(&p->verb, first + i)) bm_clr(&p->verb, first + i);
    KVT_TRY(kvt_file_write(p->file, buf, n * p->page_size, first * p->page_size));
    if (first + n > p->file_pages) p->file_pages = first + n;
    return KVT_OK;
}

/* ---- guarded access (mapguard.c) ------------------------------------------------ */

uint64_t kvt_pager_map_faults(const kvt_pager *p) {
    return p->map ? mapguard_faults(p->map_guard) : 0;
}

int kvt_pager_map_guard(kvt_pager *p, uint64_t before, int rc) {
    if (kvt_pager_map_faults(p) == before) return rc;
    return kvt_seterr(KVT_EIO, "%s: read error under the read map (file truncated or "
                      "unreadable); the map is no longer used", p->path);
}

int kvt_pager_map_inject_fault(kvt_pager *p, kvt_pgno pgno) {
    pthread_mutex_lock(&p->mu);
    int rc = KVT_OK;
    if (!p->map || map_faulted(p) || pgno >= p->map_len / p->page_size)
        rc = kvt_seterr(KVT_EINVAL, "%s: page %" PRIu64 " is not in the read map", p->path, pgno);
    else
        rc = mapguard_inject(p->map + pgno * p->page_size, p->page_size);
    pthread_mutex_unlock(&p->mu);
    return rc;
}
