/* blob.c - large values in KVT_PT_OVERFLOW pages, written once in the current gen.
 *
 * Every overflow page: [header][u64 next][u64 blob length][u64 run][data]. The first
 * page carries the blob's length and, when its pages are one contiguous run, the run
 * length (0 for a chain); next pointers are always set, so a run is also a valid chain.
 * A writable pager writes a blob straight to the file as one run (a free run or the
 * end of the file) in one I/O, bypassing the pool, and a read of a run is one I/O.
 * A read-only pager (WAL replay above it) cannot write: it builds a chain of dirty
 * pool pages instead, and reads notice that the first page is in the pool.
 * With the read map (map.c), a run is copied straight out of the mapping, each page
 * checksummed on its first read only (read_run_mapped); chains and runs outside the
 * mapping take pread.
 */
#include <stdlib.h>
#include <inttypes.h>
#include "pager_int.h"

#define OV_NEXT 32
#define OV_LEN  40
#define OV_RUN  48
#define OV_DATA 56
#define WRITE_CHUNK (8u << 20)   /* bytes per write(): bounds the staging buffer */

static size_t ov_cap(const kvt_pager *p) { return p->page_size - OV_DATA; }

static uint64_t ov_pages(const kvt_pager *p, size_t len) {
    return len ? (len + ov_cap(p) - 1) / ov_cap(p) : 1;
}

/* Fill page i of a blob (its data slice only) into buf, not yet sealed. */
static void fill_page(kvt_pager *p, uint8_t *buf, kvt_pgno pgno, kvt_pgno next,
                      const uint8_t *data, size_t len, uint64_t i, uint64_t run) {
    size_t off = (size_t)i * ov_cap(p), n = len - off < ov_cap(p) ? len - off : ov_cap(p);
    page_hdr_init(buf, KVT_PT_OVERFLOW, pgno, p->ckpt_gen + 1);
    kvt_put64(buf + OV_NEXT, next);
    kvt_put64(buf + OV_LEN, i == 0 ? len : 0);
    kvt_put64(buf + OV_RUN, i == 0 ? run : 0);
    if (n) memcpy(buf + OV_DATA, data + off, n);
    memset(buf + OV_DATA + n, 0, ov_cap(p) - n);
}

static int write_run(kvt_pager *p, const uint8_t *data, size_t len, kvt_pgno *first) {
    uint64_t n = ov_pages(p, len), start;
    KVT_TRY(fm_alloc_run(p, n, &start));
    for (uint64_t i = 0; i < n; i++) {        /* invariant says none; be safe */
        frame *f = pool_lookup(p, start + i);
        if (f) pool_drop(p, f);
    }
    uint64_t per = WRITE_CHUNK / p->page_size ? WRITE_CHUNK / p->page_size : 1;
    uint8_t *buf = aligned_alloc_pages(p, (n < per ? n : per) * p->page_size);
    if (!buf) return kvt_seterr(KVT_ENOMEM, "pager: blob buffer of %" PRIu64 " pages", n);
    int rc = KVT_OK;
    for (uint64_t i = 0; i < n && rc == KVT_OK; i += per) {
        uint64_t k = n - i < per ? n - i : per;
        for (uint64_t j = 0; j < k; j++) {
            uint8_t *pg = buf + j * p->page_size;
            uint64_t idx = i + j;
            fill_page(p, pg, start + idx, idx + 1 < n ? start + idx + 1 : 0, data, len, idx, n);
            page_seal(p, pg);
        }
        rc = pager_write_pages(p, buf, k, start + i);
    }
    free(buf);
    if (rc == KVT_ENOSPC) {             /* never referenced: give the run back */
        for (uint64_t i = 0; i < n; i++) fm_free(p, start + i);
        return rc;
    }
    if (rc < 0) return pager_fail(p, rc);
    *first = start;
    return KVT_OK;
}

/* Read-only pager or full disk: a chain of dirty pool pages, built back to front so each page knows
 * its successor. */
static int write_chain(kvt_pager *p, const uint8_t *data, size_t len, kvt_pgno *first) {
    uint64_t n = ov_pages(p, len);
    kvt_pgno next = 0;
    p->pool_blobs = 1;
    for (uint64_t i = n; i-- > 0;) {
        frame *f;
        KVT_TRY(pager_alloc_locked(p, KVT_PT_OVERFLOW, &f));
        fill_page(p, f->page.data, f->page.pgno, next, data, len, i, 0);
        f->pin--;
        next = f->page.pgno;
    }
    *first = next;
    return KVT_OK;
}

int kvt_blob_write(kvt_pager *p, const void *data, size_t len, kvt_pgno *first) {
    pthread_mutex_lock(&p->mu);
    int rc = pager_check_usable(p);
    int direct = rc == KVT_OK && !p->read_only && !p->nospace;
    if (direct) rc = write_run(p, data, len, first);
    /* A read-only pager, or a full disk, keeps the blob as dirty pool pages (written at
     * the next checkpoint): the caller never sees ENOSPC. */
    if (direct && rc == KVT_ENOSPC) p->nospace = 1;
    if (!direct ? rc == KVT_OK : rc == KVT_ENOSPC) rc = write_chain(p, data, len, first);
    pthread_mutex_unlock(&p->mu);
    return rc;
}

/* One overflow page, from the pool when cached (possibly dirty, so unsealed), else
 * from the file, verified. Caller holds mu. */
static int load_page_locked(kvt_pager *p, kvt_pgno pgno, uint8_t *buf) {
    if (pgno < 2 || pgno >= p->npages)
        return kvt_seterr(KVT_ECORRUPT, "%s: overflow page %" PRIu64 " out of range",
                          p->path, pgno);
    frame *f = pool_lookup(p, pgno);
    if (f && !f->loading) {
        memcpy(buf, f->page.data, p->page_size);
    } else {
        KVT_TRY(kvt_file_read_full(p->file, buf, p->page_size, pgno * p->page_size));
        KVT_TRY(page_verify(p, buf, pgno));
    }
    if (buf[HDR_TYPE] != KVT_PT_OVERFLOW)
        return kvt_seterr(KVT_ECORRUPT, "%s: page %" PRIu64 ": type %u, not overflow",
                          p->path, pgno, buf[HDR_TYPE]);
    return KVT_OK;
}

static int load_page(kvt_pager *p, kvt_pgno pgno, uint8_t *buf) {
    pthread_mutex_lock(&p->mu);
    int rc = pager_check_usable(p);
    if (rc == KVT_OK) rc = load_page_locked(p, pgno, buf);
    pthread_mutex_unlock(&p->mu);
    return rc;
}

static int check_first(kvt_pager *p, const uint8_t *pg, kvt_pgno first, size_t len) {
    if (kvt_get64(pg + OV_LEN) != len)
        return kvt_seterr(KVT_ECORRUPT, "%s: blob at page %" PRIu64 " holds %" PRIu64
                          " bytes, expected %zu", p->path, first, kvt_get64(pg + OV_LEN), len);
    uint64_t run = kvt_get64(pg + OV_RUN);
    if (run && (run != ov_pages(p, len) || run > p->npages - first))
        return kvt_seterr(KVT_ECORRUPT, "%s: blob at page %" PRIu64 ": bad run length %"
                          PRIu64, p->path, first, run);
    return KVT_OK;
}

static size_t slice_len(const kvt_pager *p, size_t len, uint64_t i) {
    size_t off = (size_t)i * ov_cap(p);
    return len - off < ov_cap(p) ? len - off : ov_cap(p);
}

/* Follow next pointers from page 1 on; page 0 is already in buf and copied. */
static int read_chain(kvt_pager *p, kvt_pgno first, uint8_t *buf, size_t len, uint8_t *dst) {
    uint64_t n = ov_pages(p, len);
    kvt_pgno pg = first;
    for (uint64_t i = 1; i < n; i++) {
        pg = kvt_get64(buf + OV_NEXT);
        KVT_TRY(load_page(p, pg, buf));
        memcpy(dst + i * ov_cap(p), buf + OV_DATA, slice_len(p, len, i));
    }
    if (kvt_get64(buf + OV_NEXT) != 0)
        return kvt_seterr(KVT_ECORRUPT, "%s: blob at page %" PRIu64 ": chain longer than "
                          "its length", p->path, first);
    return KVT_OK;
}

/* Verify pages 1..n of a run read in one I/O and copy their data out. */
static int copy_run(kvt_pager *p, kvt_pgno first, const uint8_t *buf, size_t len,
                    uint8_t *dst) {
    uint64_t n = ov_pages(p, len);
    for (uint64_t i = 1; i < n; i++) {
        const uint8_t *pg = buf + i * p->page_size;
        KVT_TRY(page_verify(p, pg, first + i));
        if (pg[HDR_TYPE] != KVT_PT_OVERFLOW)
            return kvt_seterr(KVT_ECORRUPT, "%s: page %" PRIu64 ": not overflow", p->path,
                              first + i);
        memcpy(dst + i * ov_cap(p), pg + OV_DATA, slice_len(p, len, i));
    }
    return KVT_OK;
}

static int prepare_out(kvt_buf *out, size_t len) {
    if (out->fixed && out->cap < len) {
        out->len = len;
        return KVT_EBUFSMALL;
    }
    KVT_TRY(kvt_buf_reserve(out, len));
    out->len = len;
    return KVT_OK;
}

/* Speculatively read the whole run in one I/O; fall back to the chain. */
static int read_blob(kvt_pager *p, kvt_pgno first, size_t len, int cached, uint8_t *dst) {
    uint64_t n = ov_pages(p, len);
    uint64_t span = cached ? 1 : n;
    if (span > p->npages - first) span = 1;
    uint8_t *buf = aligned_alloc_pages(p, span * p->page_size);
    if (!buf) return kvt_seterr(KVT_ENOMEM, "pager: blob read of %" PRIu64 " pages", n);
    int rc;
    size_t got = 0;
    if (cached || span == 1) {
        rc = load_page(p, first, buf);
        got = p->page_size;
    } else {
        rc = kvt_file_read(p->file, buf, span * p->page_size, first * p->page_size, &got);
        if (rc == KVT_OK && got < p->page_size)
            rc = kvt_seterr(KVT_ECORRUPT, "%s: blob page %" PRIu64 " beyond end of file",
                            p->path, first);
        if (rc == KVT_OK) rc = page_verify(p, buf, first);
        if (rc == KVT_OK && buf[HDR_TYPE] != KVT_PT_OVERFLOW)
            rc = kvt_seterr(KVT_ECORRUPT, "%s: page %" PRIu64 ": not overflow", p->path, first);
    }
    if (rc == KVT_OK) rc = check_first(p, buf, first, len);
    if (rc == KVT_OK) {
        memcpy(dst, buf + OV_DATA, slice_len(p, len, 0));
        if (kvt_get64(buf + OV_RUN) == n && got >= n * p->page_size)
            rc = copy_run(p, first, buf, len, dst);
        else
            rc = read_chain(p, first, buf, len, dst);
    }
    free(buf);
    return rc;
}

/* A run read through the read map (map.c): no I/O, no staging buffer, and each page
 * checksummed only on its first read since this process wrote it (the verb bits, as for
 * mapped pool misses). Blob pages are written once (write_run, straight to the file)
 * and never while readers run, so a mapped run cannot change under the copy.
 * 1: not served from the map (not mapped, in the pool, a chain, too long): pread path. */
#define MAP_RUN_MAX 64                /* pages: the verified mask is one word */
static int read_run_mapped(kvt_pager *p, kvt_pgno first, size_t len, uint8_t *dst) {
    uint64_t n = ov_pages(p, len), seen = 0;
    pthread_mutex_lock(&p->mu);
    const uint8_t *base = n <= MAP_RUN_MAX ? map_span_locked(p, first, n) : NULL;
    for (uint64_t i = 0; base && i < n; i++)
        if (bm_get(&p->verb, first + i)) seen |= 1ull << i;
    pthread_mutex_unlock(&p->mu);
    if (!base) return 1;
    const uint8_t *pg0 = base;
    if (!(seen & 1)) KVT_TRY(page_verify(p, pg0, first));
    if (pg0[HDR_TYPE] != KVT_PT_OVERFLOW)
        return kvt_seterr(KVT_ECORRUPT, "%s: page %" PRIu64 ": not overflow", p->path, first);
    KVT_TRY(check_first(p, pg0, first, len));
    if (kvt_get64(pg0 + OV_RUN) != n) return 1;           /* a chain: pread path */
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *pg = base + i * p->page_size;
        if (i && !(seen >> i & 1)) {
            KVT_TRY(page_verify(p, pg, first + i));
            if (pg[HDR_TYPE] != KVT_PT_OVERFLOW)
                return kvt_seterr(KVT_ECORRUPT, "%s: page %" PRIu64 ": not overflow",
                                  p->path, first + i);
        }
        memcpy(dst + i * ov_cap(p), pg + OV_DATA, slice_len(p, len, i));
    }
    pthread_mutex_lock(&p->mu);
    for (uint64_t i = 0; i < n; i++) if (!(seen >> i & 1)) bm_set(&p->verb, first + i);
    p->st.map_reads += n;
    p->st.map_verifies += n - (uint64_t)__builtin_popcountll(seen);
    pthread_mutex_unlock(&p->mu);
    return KVT_OK;
}

int kvt_blob_read(kvt_pager *p, kvt_pgno first, size_t len, kvt_buf *out) {
    uint64_t faults = kvt_pager_map_faults(p);
    pthread_mutex_lock(&p->mu);
    int rc = pager_check_usable(p);
    int cached = rc == KVT_OK && pool_lookup(p, first) != NULL;
    if (rc == KVT_OK && (first < 2 || first >= p->npages))
        rc = kvt_seterr(KVT_ECORRUPT, "%s: blob page %" PRIu64 " out of range (%" PRIu64
                        " pages)", p->path, first, p->npages);
    pthread_mutex_unlock(&p->mu);
    KVT_TRY(rc);
    KVT_TRY(prepare_out(out, len));
    uint8_t one;       /* the empty blob's page still gets verified */
    uint8_t *dst = len ? out->data : &one;
    rc = cached || !len ? 1 : read_run_mapped(p, first, len, dst);
    if (rc == 1) rc = read_blob(p, first, len, cached, dst);
    return kvt_pager_map_guard(p, faults, rc);       /* zeros copied from a faulted map */
}

/* ---- views: a blob read in place in the read map ----------------------------------- */

/* Page i of the view, verified on its first touch since written. */
static int view_page(kvt_blob_view *v, uint64_t i, const uint8_t **pg) {
    *pg = v->base + i * v->p->page_size;
    v->touched |= 1ull << i;
    if ((v->seen | v->verified) >> i & 1) return KVT_OK;
    KVT_TRY(page_verify(v->p, *pg, v->first + i));
    if ((*pg)[HDR_TYPE] != KVT_PT_OVERFLOW)
        return kvt_seterr(KVT_ECORRUPT, "%s: page %" PRIu64 ": not overflow", v->p->path,
                          v->first + i);
    v->verified |= 1ull << i;
    return KVT_OK;
}

int kvt_blob_view_open(kvt_pager *p, kvt_pgno first, size_t len, kvt_blob_view *v) {
    memset(v, 0, sizeof *v);
    uint64_t n = ov_pages(p, len);
    if (!len || n > MAP_RUN_MAX) return KVT_NOTFOUND;
    pthread_mutex_lock(&p->mu);
    int rc = pager_check_usable(p);
    const uint8_t *base = NULL;
    if (rc == KVT_OK && (first < 2 || first >= p->npages))
        rc = kvt_seterr(KVT_ECORRUPT, "%s: blob page %" PRIu64 " out of range (%" PRIu64
                        " pages)", p->path, first, p->npages);
    /* a blob built in the pool (read-only replay, or a full disk) is not in the file */
    if (rc == KVT_OK && !(p->pool_blobs && pool_lookup(p, first)))
        base = map_span_locked(p, first, n);
    for (uint64_t i = 0; base && i < n; i++)
        if (bm_get(&p->verb, first + i)) v->seen |= 1ull << i;
    pthread_mutex_unlock(&p->mu);
    KVT_TRY(rc);
    if (!base) return KVT_NOTFOUND;
    v->p = p;
    v->base = base;
    v->first = first;
    v->len = len;
    v->npages = n;
    v->faults = kvt_pager_map_faults(p);
    const uint8_t *pg0;
    rc = view_page(v, 0, &pg0);
    if (rc == KVT_OK) rc = check_first(p, base, first, len);
    if (rc == KVT_OK && kvt_get64(base + OV_RUN) != n) rc = KVT_NOTFOUND;  /* a chain */
    if (rc != KVT_OK) v->base = NULL;
    return rc;
}

static int view_bounds(const kvt_blob_view *v, size_t off, size_t n) {
    if (off > v->len || n > v->len - off)
        return kvt_seterr(KVT_ECORRUPT, "%s: blob at page %" PRIu64 ": read of %zu bytes at "
                          "%zu past its %zu bytes", v->p->path, v->first, n, off, v->len);
    return KVT_OK;
}

int kvt_blob_view_ptr(kvt_blob_view *v, size_t off, size_t n, const uint8_t **out) {
    KVT_TRY(view_bounds(v, off, n));
    if (n == 0) { *out = v->base; return KVT_OK; }  /* touches no page (off may be len) */
    size_t cap = ov_cap(v->p), in = off % cap;
    if (in + n > cap) return KVT_NOTFOUND;
    const uint8_t *pg;
    KVT_TRY(view_page(v, off / cap, &pg));
    *out = pg + OV_DATA + in;
    return KVT_OK;
}

int kvt_blob_view_read(kvt_blob_view *v, size_t off, size_t n, uint8_t *tmp,
                       const uint8_t **out) {
    int rc = kvt_blob_view_ptr(v, off, n, out);
    if (rc != KVT_NOTFOUND) return rc;
    size_t cap = ov_cap(v->p), in = off % cap;      /* across pages: copied */
    const uint8_t *pg;
    for (size_t done = 0, i = off / cap; done < n; i++, in = 0) {
        KVT_TRY(view_page(v, i, &pg));
        size_t k = cap - in < n - done ? cap - in : n - done;
        memcpy(tmp + done, pg + OV_DATA + in, k);
        done += k;
    }
    *out = tmp;
    return KVT_OK;
}

void kvt_blob_prefetch(kvt_pager *p, kvt_pgno first, size_t len, const size_t *off,
                       unsigned n) {
    uint64_t np = ov_pages(p, len);
    pthread_mutex_lock(&p->mu);
    const uint8_t *base = len && np <= MAP_RUN_MAX ? map_span_locked(p, first, np) : NULL;
    pthread_mutex_unlock(&p->mu);
    if (!base) return;
    __builtin_prefetch(base + OV_LEN);                /* view_open checks the first page */
    for (unsigned i = 0; i < n; i++)
        if (off[i] < len)
            __builtin_prefetch(base + off[i] / ov_cap(p) * p->page_size + OV_DATA +
                               off[i] % ov_cap(p));
}

void kvt_blob_view_prefetch(const kvt_blob_view *v, size_t off, size_t n) {
    if (!v->base || off >= v->len) return;
    if (n == 0) n = 1;
    if (n > v->len - off) n = v->len - off;
    size_t cap = ov_cap(v->p), end = off + n;
    while (off < end) {                           /* one page's slice at a time */
        const uint8_t *pg = v->base + off / cap * v->p->page_size + OV_DATA;
        size_t a = off % cap, b = end - off < cap - a ? a + (end - off) : cap;
        for (size_t o = a; o < b; o += 64) __builtin_prefetch(pg + o);
        __builtin_prefetch(pg + b - 1);
        off += b - a;
    }
}

int kvt_blob_view_close(kvt_blob_view *v, int rc) {
    if (!v->base) return rc;
    kvt_pager *p = v->p;
    uint64_t fresh = v->verified;
    pthread_mutex_lock(&p->mu);
    for (uint64_t i = 0; i < v->npages; i++)
        if (fresh >> i & 1) bm_set(&p->verb, v->first + i);
    p->st.map_reads += (uint64_t)__builtin_popcountll(v->touched);
    p->st.map_verifies += (uint64_t)__builtin_popcountll(fresh);
    pthread_mutex_unlock(&p->mu);
    v->base = NULL;
    return kvt_pager_map_guard(p, v->faults, rc);    /* zeros read from a faulted map */
}

/* Page numbers of a blob, in order, from its first page (caller holds mu). */
static int blob_pages_locked(kvt_pager *p, kvt_pgno first, kvt_pgno **out, uint64_t *count,
                             const size_t *expect_len) {
    uint8_t *buf = aligned_alloc_pages(p, p->page_size);
    if (!buf) return kvt_seterr(KVT_ENOMEM, "pager: blob page buffer");
    int rc = load_page_locked(p, first, buf);
    size_t len = rc == KVT_OK ? (size_t)kvt_get64(buf + OV_LEN) : 0;
    if (rc == KVT_OK && expect_len) rc = check_first(p, buf, first, *expect_len);
    if (rc == KVT_OK && kvt_get64(buf + OV_RUN)) rc = check_first(p, buf, first, len);
    uint64_t n = ov_pages(p, len), run = rc == KVT_OK ? kvt_get64(buf + OV_RUN) : 0;
    kvt_pgno *v = NULL;
    if (rc == KVT_OK && n > p->npages)
        rc = kvt_seterr(KVT_ECORRUPT, "%s: blob at page %" PRIu64 ": %zu bytes is longer "
                        "than the file", p->path, first, len);
    if (rc == KVT_OK && !(v = malloc(n * sizeof *v)))
        rc = kvt_seterr(KVT_ENOMEM, "pager: blob page list");
    for (uint64_t i = 0; rc == KVT_OK && i < n; i++) {
        v[i] = run ? first + i : (i ? kvt_get64(buf + OV_NEXT) : first);
        if (!run && i) rc = load_page_locked(p, v[i], buf);
    }
    free(buf);
    if (rc < 0) { free(v); return rc; }
    *out = v;
    *count = n;
    return KVT_OK;
}

int kvt_blob_free(kvt_pager *p, kvt_pgno first) {
    pthread_mutex_lock(&p->mu);
    kvt_pgno *v = NULL;
    uint64_t n = 0;
    int rc = pager_check_usable(p);
    if (rc == KVT_OK) rc = blob_pages_locked(p, first, &v, &n, NULL);
    for (uint64_t i = 0; rc == KVT_OK && i < n; i++) rc = pager_free_locked(p, v[i]);
    pthread_mutex_unlock(&p->mu);
    free(v);
    return rc;
}

int kvt_blob_check(kvt_pager *p, kvt_pgno first, size_t len) {
    pthread_mutex_lock(&p->mu);
    kvt_pgno *v = NULL;
    uint64_t n = 0;
    int rc = pager_check_usable(p);
    if (rc == KVT_OK) rc = blob_pages_locked(p, first, &v, &n, &len);
    pthread_mutex_unlock(&p->mu);
    for (uint64_t i = 0; rc == KVT_OK && i < n; i++) rc = kvt_pager_check_ref(p, v[i]);
    free(v);
    return rc;
}
