/* check.c - the consistency walk: the engine refs every page its state uses, then
 * check_end verifies that referenced, free, deferred and free-map pages partition the
 * file and re-reads every clean referenced page from disk to verify its checksum
 * (runs of adjacent pages are read in one I/O).
 */
#include <stdlib.h>
#include <inttypes.h>
#include "pager_int.h"

#define CHECK_RUN_BYTES (1u << 20)

int kvt_pager_check_begin(kvt_pager *p) {
    pthread_mutex_lock(&p->mu);
    int rc = pager_check_usable(p);
    if (rc == KVT_OK) rc = bm_ensure(&p->checkb, p->npages);
    if (rc == KVT_OK) {
        memset(p->checkb.w, 0, p->checkb.nwords * sizeof *p->checkb.w);
        p->checking = 1;
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

static int is_fm_page(const kvt_pager *p, kvt_pgno pgno) {
    for (size_t i = 0; i < p->fm_count; i++)
        if (p->fm_pages[i] == pgno) return 1;
    return 0;
}

static int check_ref_locked(kvt_pager *p, kvt_pgno pgno) {
    if (!p->checking)
        return kvt_seterr(KVT_EINVAL, "%s: check_ref outside check_begin/end", p->path);
    if (pgno < 2 || pgno >= p->npages)
        return kvt_seterr(KVT_ECORRUPT, "%s: page %" PRIu64 " referenced but out of range "
                          "(%" PRIu64 " pages)", p->path, pgno, p->npages);
    if (bm_get(&p->freeb, pgno))
        return kvt_seterr(KVT_ECORRUPT, "%s: page %" PRIu64 " referenced but free",
                          p->path, pgno);
    if (bm_get(&p->deferb, pgno))
        return kvt_seterr(KVT_ECORRUPT, "%s: page %" PRIu64 " referenced but freed",
                          p->path, pgno);
    if (is_fm_page(p, pgno))
        return kvt_seterr(KVT_ECORRUPT, "%s: page %" PRIu64 " referenced but is a free "
                          "map page", p->path, pgno);
    if (bm_get(&p->checkb, pgno))
        return kvt_seterr(KVT_ECORRUPT, "%s: page %" PRIu64 " referenced twice",
                          p->path, pgno);
    bm_set(&p->checkb, pgno);
    return KVT_OK;
}

int kvt_pager_check_ref(kvt_pager *p, kvt_pgno pgno) {
    pthread_mutex_lock(&p->mu);
    int rc = pager_check_usable(p);
    if (rc == KVT_OK) rc = check_ref_locked(p, pgno);
    pthread_mutex_unlock(&p->mu);
    return rc;
}

/* Every page is exactly one of referenced / free / deferred / free map. */
static int check_partition(kvt_pager *p) {
    bitmap fm = {0};
    KVT_TRY(bm_ensure(&fm, p->npages));
    for (size_t i = 0; i < p->fm_count; i++)
        if (p->fm_pages[i] < p->npages) bm_set(&fm, p->fm_pages[i]);
    int rc = KVT_OK;
    for (kvt_pgno pg = 2; pg < p->npages && rc == KVT_OK; pg++) {
        int n = bm_get(&p->checkb, pg) + bm_get(&p->freeb, pg) + bm_get(&p->deferb, pg) +
                bm_get(&fm, pg);
        if (n == 0)
            rc = kvt_seterr(KVT_ECORRUPT, "%s: page %" PRIu64 " leaked (neither referenced "
                            "nor free)", p->path, pg);
        else if (n > 1)
            rc = kvt_seterr(KVT_ECORRUPT, "%s: page %" PRIu64 " is both free and in use",
                            p->path, pg);
    }
    bm_free(&fm);
    return rc;
}

/* A referenced page whose disk copy is current (not dirty in the pool). */
static int needs_disk_check(kvt_pager *p, kvt_pgno pg) {
    if (!bm_get(&p->checkb, pg)) return 0;
    frame *f = pool_lookup(p, pg);
    return !(f && f->dirty);
}

static int verify_run(kvt_pager *p, uint8_t *buf, kvt_pgno start, uint64_t n) {
    KVT_TRY(kvt_file_read_full(p->file, buf, n * p->page_size, start * p->page_size));
    for (uint64_t i = 0; i < n; i++)
        KVT_TRY(page_verify(p, buf + i * p->page_size, start + i));
    return KVT_OK;
}

static int check_disk(kvt_pager *p) {
    uint64_t max = CHECK_RUN_BYTES / p->page_size ? CHECK_RUN_BYTES / p->page_size : 1;
    uint8_t *buf = aligned_alloc_pages(p, max * p->page_size);
    if (!buf) return kvt_seterr(KVT_ENOMEM, "pager: check buffer");
    int rc = KVT_OK;
    kvt_pgno start = 0;
    uint64_t n = 0;
    for (kvt_pgno pg = 2; pg <= p->npages && rc == KVT_OK; pg++) {
        int want = pg < p->npages && needs_disk_check(p, pg);
        if (want && n < max && (n == 0 || start + n == pg)) {
            if (!n) start = pg;
            n++;
            continue;
        }
        if (n) rc = verify_run(p, buf, start, n);
        n = 0;
        if (want) { start = pg; n = 1; }
    }
    free(buf);
    return rc;
}

int kvt_pager_check_end(kvt_pager *p) {
    pthread_mutex_lock(&p->mu);
    int rc = pager_check_usable(p);
    if (rc == KVT_OK && !p->checking)
        rc = kvt_seterr(KVT_EINVAL, "%s: check_end without check_begin", p->path);
    if (rc == KVT_OK) rc = check_partition(p);
    if (rc == KVT_OK) rc = check_disk(p);
    p->checking = 0;
    pthread_mutex_unlock(&p->mu);
    return rc;
}
