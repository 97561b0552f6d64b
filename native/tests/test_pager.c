/* test_pager.c - unit tests of the pager (native/pager/): create/reopen, COW and
 * deferred frees, crash (close without checkpoint), eviction, corruption, churn, blobs,
 * the check walk, the fatal latch, concurrent readers and the read map. Returns
 * non-zero on failure. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include "kvt_error.h"
#include "kvt_pager.h"

static int failures;
static kvt_pager_stats stats_of(kvt_pager *p);
static char dir[256], path[300];

#define CHECK(cond) do { if (!(cond)) { \
    fprintf(stderr, "%s:%d: CHECK(%s) failed [%s]\n", __FILE__, __LINE__, #cond, \
            kvt_errmsg()); failures++; return; } } while (0)
#define OK(expr) do { int rc_ = (expr); if (rc_ != KVT_OK) { \
    fprintf(stderr, "%s:%d: %s -> %d %s [%s]\n", __FILE__, __LINE__, #expr, rc_, \
            kvt_strerror(rc_), kvt_errmsg()); failures++; return; } } while (0)

static kvt_pager_config cfg_of(uint32_t ps, uint64_t cache) {
    kvt_pager_config c = {0};
    c.page_size = ps;
    c.engine_id = 7;
    c.cache_bytes = cache;
    return c;
}

static int open_p(kvt_pager_config c, kvt_pager **p) {
    return kvt_pager_open(kvt_vfs_posix(), path, &c, p);
}

static void fresh(const char *name) {
    snprintf(path, sizeof path, "%s/%s.kvt", dir, name);
    unlink(path);
}

static uint64_t file_size(void) {
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* Engine bytes of page content: a pattern derived from (key, version). */
static void fill(uint8_t *d, uint32_t ps, uint64_t key, uint64_t ver) {
    for (uint32_t i = KVT_PAGE_HDR; i + 8 <= ps; i += 8) {
        uint64_t v = key * 0x9E3779B97F4A7C15ull ^ ver * 31 ^ i;
        memcpy(d + i, &v, 8);
    }
}

static int matches(const uint8_t *d, uint32_t ps, uint64_t key, uint64_t ver) {
    for (uint32_t i = KVT_PAGE_HDR; i + 8 <= ps; i += 8) {
        uint64_t v = key * 0x9E3779B97F4A7C15ull ^ ver * 31 ^ i, got;
        memcpy(&got, d + i, 8);
        if (got != v) return 0;
    }
    return 1;
}

static void test_create_reopen(void) {
    fresh("create");
    kvt_pager *p;
    OK(open_p(cfg_of(8192, 1 << 20), &p));
    CHECK(kvt_pager_page_size(p) == 8192 && kvt_pager_ckpt_gen(p) == 0);
    CHECK(kvt_pager_engine_id(p) == 7);
    size_t len = 99;
    kvt_pager_engine_meta(p, &len);
    CHECK(len == 0);
    OK(kvt_pager_close(p));
    CHECK(file_size() == 2 * 8192);
    OK(open_p(cfg_of(4096, 1 << 20), &p));          /* page size comes from the file */
    CHECK(kvt_pager_page_size(p) == 8192);
    OK(kvt_pager_close(p));
    kvt_pager_config c = cfg_of(4096, 1 << 20);
    c.engine_id = 8;
    CHECK(open_p(c, &p) == KVT_EENGINE);
    c.engine_id = 0;                                 /* 0: accept any engine */
    OK(open_p(c, &p));
    OK(kvt_pager_close(p));
    fresh("badsize");
    CHECK(open_p(cfg_of(5000, 1 << 20), &p) == KVT_EINVAL);
}

/* Allocate n pages with content (key i, ver), return their numbers. */
static int make_pages(kvt_pager *p, kvt_pgno *v, int n, uint64_t ver) {
    uint32_t ps = kvt_pager_page_size(p);
    for (int i = 0; i < n; i++) {
        kvt_page *pg;
        int rc = kvt_pager_alloc(p, 16, &pg);
        if (rc) return rc;
        fill(pg->data, ps, (uint64_t)i, ver);
        v[i] = pg->pgno;
        kvt_pager_unpin(p, pg);
    }
    return KVT_OK;
}

static int verify_pages(kvt_pager *p, const kvt_pgno *v, int n, uint64_t ver) {
    uint32_t ps = kvt_pager_page_size(p);
    for (int i = 0; i < n; i++) {
        kvt_page *pg;
        int rc = kvt_pager_get(p, v[i], &pg);
        if (rc) return rc;
        int ok = matches(pg->data, ps, (uint64_t)i, ver) && kvt_page_type(pg) == 16;
        kvt_pager_unpin(p, pg);
        if (!ok) return kvt_seterr(-100, "page %" PRIu64 " (key %d) content wrong", v[i], i);
    }
    return KVT_OK;
}

static int check_refs(kvt_pager *p, const kvt_pgno *v, int n) {
    KVT_TRY(kvt_pager_check_begin(p));
    for (int i = 0; i < n; i++) KVT_TRY(kvt_pager_check_ref(p, v[i]));
    return kvt_pager_check_end(p);
}

static void test_write_checkpoint_reopen(void) {
    fresh("ckpt");
    kvt_pager *p;
    kvt_pgno v[50];
    OK(open_p(cfg_of(4096, 1 << 20), &p));
    OK(make_pages(p, v, 50, 1));
    OK(verify_pages(p, v, 50, 1));
    OK(kvt_pager_checkpoint(p, "root=42", 7));
    CHECK(kvt_pager_ckpt_gen(p) == 1);
    OK(check_refs(p, v, 50));
    OK(kvt_pager_close(p));
    OK(open_p(cfg_of(4096, 1 << 20), &p));
    size_t len;
    const uint8_t *m = kvt_pager_engine_meta(p, &len);
    CHECK(len == 7 && memcmp(m, "root=42", 7) == 0);
    CHECK(kvt_pager_ckpt_gen(p) == 1);
    OK(verify_pages(p, v, 50, 1));
    OK(check_refs(p, v, 50));
    OK(kvt_pager_close(p));
}

static void test_cow(void) {
    fresh("cow");
    kvt_pager *p;
    kvt_pgno v[10];
    OK(open_p(cfg_of(4096, 1 << 20), &p));
    OK(make_pages(p, v, 10, 1));
    /* Same gen: written in place. */
    kvt_page *pg;
    OK(kvt_pager_get(p, v[3], &pg));
    OK(kvt_pager_write(p, &pg));
    CHECK(pg->pgno == v[3]);
    kvt_pager_unpin(p, pg);
    OK(kvt_pager_checkpoint(p, NULL, 0));
    /* Older gen: copied to a new page, old one deferred until the next checkpoint. */
    OK(kvt_pager_get(p, v[3], &pg));
    OK(kvt_pager_write(p, &pg));
    CHECK(pg->pgno != v[3]);
    fill(pg->data, 4096, 3, 2);
    kvt_pgno old = v[3];
    v[3] = pg->pgno;
    OK(kvt_pager_write(p, &pg));             /* now current gen: stays put */
    CHECK(pg->pgno == v[3]);
    kvt_pager_unpin(p, pg);
    kvt_pager_stats st;
    kvt_pager_get_stats(p, &st);
    CHECK(st.pages_pending_free == 1);
    CHECK(kvt_pager_pending_free(p) >= 4096);
    CHECK(kvt_pager_check_ref(p, 2) == KVT_EINVAL);   /* outside a walk */
    OK(kvt_pager_check_begin(p));
    for (int i = 0; i < 10; i++) OK(kvt_pager_check_ref(p, v[i]));
    CHECK(kvt_pager_check_ref(p, old) == KVT_ECORRUPT);   /* deferred, not referenced */
    OK(kvt_pager_check_end(p));
    CHECK(kvt_pager_free(p, old) == KVT_ECORRUPT);        /* double free detected */
    OK(kvt_pager_checkpoint(p, NULL, 0));
    kvt_pager_get_stats(p, &st);
    CHECK(st.pages_pending_free == 0 && st.pages_free >= 1);
    /* The released page is reused first (lowest number). */
    OK(kvt_pager_alloc(p, 16, &pg));
    CHECK(pg->pgno <= old);
    kvt_pgno extra = pg->pgno;
    kvt_pager_unpin(p, pg);
    OK(kvt_pager_free(p, extra));             /* current gen: free at once */
    kvt_pager_get_stats(p, &st);
    CHECK(st.pages_pending_free == 0);
    OK(kvt_pager_checkpoint(p, NULL, 0));
    OK(check_refs(p, v, 10));
    kvt_pgno ver1[10];
    memcpy(ver1, v, sizeof v);
    OK(kvt_pager_close(p));
    OK(open_p(cfg_of(4096, 1 << 20), &p));
    for (int i = 0; i < 10; i++) {
        OK(kvt_pager_get(p, v[i], &pg));
        CHECK(matches(pg->data, 4096, (uint64_t)i, i == 3 ? 2 : 1));
        kvt_pager_unpin(p, pg);
    }
    OK(check_refs(p, ver1, 10));
    OK(kvt_pager_close(p));
}

/* Modify after a checkpoint with a tiny cache (evictions write new-gen pages to the
 * file), close without checkpoint: reopening sees the checkpointed state. */
static void test_crash_without_checkpoint(void) {
    fresh("crash");
    kvt_pager *p;
    enum { N = 200 };
    kvt_pgno v[N], w[N];
    OK(open_p(cfg_of(4096, 8 * 4096), &p));
    OK(make_pages(p, v, N, 1));
    OK(kvt_pager_checkpoint(p, "A", 1));
    memcpy(w, v, sizeof v);
    for (int i = 0; i < N; i++) {
        kvt_page *pg;
        OK(kvt_pager_get(p, w[i], &pg));
        OK(kvt_pager_write(p, &pg));
        fill(pg->data, 4096, (uint64_t)i, 2);
        w[i] = pg->pgno;
        kvt_pager_unpin(p, pg);
    }
    kvt_pgno extra[N];
    OK(make_pages(p, extra, N, 9));
    for (int i = 0; i < N; i += 2) OK(kvt_pager_free(p, extra[i]));
    kvt_pager_stats st;
    kvt_pager_get_stats(p, &st);
    CHECK(st.writebacks > 0);
    OK(verify_pages(p, w, N, 2));
    OK(kvt_pager_close(p));                       /* no checkpoint: "crash" */
    CHECK(file_size() > (uint64_t)(N + 2) * 4096);   /* new-gen pages did reach the file */
    OK(open_p(cfg_of(4096, 8 * 4096), &p));
    size_t len;
    const uint8_t *m = kvt_pager_engine_meta(p, &len);
    CHECK(len == 1 && m[0] == 'A');
    OK(verify_pages(p, v, N, 1));
    OK(check_refs(p, v, N));
    OK(kvt_pager_close(p));
}

static void test_eviction(void) {
    fresh("evict");
    kvt_pager *p;
    enum { N = 1000 };
    static kvt_pgno v[N];
    OK(open_p(cfg_of(4096, 16 * 4096), &p));
    OK(make_pages(p, v, N, 5));
    OK(verify_pages(p, v, N, 5));
    kvt_pager_stats st;
    kvt_pager_get_stats(p, &st);
    CHECK(st.evictions > 0 && st.pages_cached <= 16);
    /* Pinning more than the cache holds grows the pool rather than failing. */
    kvt_page *pins[40];
    for (int i = 0; i < 40; i++) OK(kvt_pager_get(p, v[i], &pins[i]));
    for (int i = 0; i < 40; i++) CHECK(matches(pins[i]->data, 4096, (uint64_t)i, 5));
    for (int i = 0; i < 40; i++) kvt_pager_unpin(p, pins[i]);
    OK(kvt_pager_checkpoint(p, NULL, 0));
    OK(verify_pages(p, v, N, 5));
    OK(check_refs(p, v, N));
    kvt_pager_get_stats(p, &st);
    CHECK(st.cache_misses > 0 && st.cache_hits > 0);
    OK(kvt_pager_close(p));
}

static void flip_byte(uint64_t off) {
    int fd = open(path, O_RDWR);
    uint8_t b;
    if (fd < 0 || pread(fd, &b, 1, (off_t)off) != 1) { failures++; return; }
    b ^= 0x40;
    if (pwrite(fd, &b, 1, (off_t)off) != 1) failures++;
    close(fd);
}

static void test_corruption(void) {
    fresh("corrupt");
    kvt_pager *p;
    kvt_pgno v[5];
    OK(open_p(cfg_of(4096, 1 << 20), &p));
    OK(make_pages(p, v, 5, 1));
    OK(kvt_pager_checkpoint(p, "g1", 2));
    OK(kvt_pager_checkpoint(p, "g2", 2));        /* gen 2 in slot 0, gen 1 in slot 1 */
    OK(kvt_pager_close(p));
    flip_byte(v[2] * 4096 + 1000);
    OK(open_p(cfg_of(4096, 1 << 20), &p));
    kvt_page *pg;
    CHECK(kvt_pager_get(p, v[2], &pg) == KVT_ECORRUPT);
    CHECK(strstr(kvt_errmsg(), "checksum mismatch") && strstr(kvt_errmsg(), "corrupt.kvt"));
    CHECK(kvt_pager_check_begin(p) == KVT_OK);
    for (int i = 0; i < 5; i++) OK(kvt_pager_check_ref(p, v[i]));
    CHECK(kvt_pager_check_end(p) == KVT_ECORRUPT);
    OK(verify_pages(p, v, 2, 1));                 /* other pages still fine */
    CHECK(kvt_pager_get(p, 1, &pg) == KVT_ECORRUPT);        /* meta page */
    CHECK(kvt_pager_get(p, 1000, &pg) == KVT_ECORRUPT);     /* beyond the file */
    OK(kvt_pager_close(p));
    /* Damaged newest meta: the older one is used. */
    flip_byte(100);
    OK(open_p(cfg_of(4096, 1 << 20), &p));
    size_t len;
    const uint8_t *m = kvt_pager_engine_meta(p, &len);
    CHECK(kvt_pager_ckpt_gen(p) == 1 && len == 2 && memcmp(m, "g1", 2) == 0);
    OK(kvt_pager_close(p));
    flip_byte(4096 + 100);
    CHECK(open_p(cfg_of(4096, 1 << 20), &p) == KVT_ECORRUPT);
}

static void test_churn(void) {
    fresh("churn");
    kvt_pager *p;
    enum { N = 300 };
    kvt_pgno v[N];
    OK(open_p(cfg_of(4096, 32 * 4096), &p));
    OK(make_pages(p, v, N, 0));
    uint64_t size_after_first = 0;
    for (int round = 1; round <= 40; round++) {
        /* Rewrite half of the pages (COW), replace the other half by new ones. */
        for (int i = 0; i < N; i++) {
            kvt_page *pg;
            if (i % 2) {
                OK(kvt_pager_free(p, v[i]));
                OK(kvt_pager_alloc(p, 16, &pg));
            } else {
                OK(kvt_pager_get(p, v[i], &pg));
                OK(kvt_pager_write(p, &pg));
            }
            fill(pg->data, 4096, (uint64_t)i, (uint64_t)round);
            v[i] = pg->pgno;
            kvt_pager_unpin(p, pg);
        }
        OK(kvt_pager_checkpoint(p, NULL, 0));
        OK(check_refs(p, v, N));
        /* Every page is rewritten per round, so both copies exist at a checkpoint: the
         * file alternates below 2N pages and must not creep upward. */
        if (round <= 5 && file_size() > size_after_first) size_after_first = file_size();
        if (round > 5 && file_size() > size_after_first + 4 * 4096) {
            CHECK(!"file grew under churn");
        }
    }
    OK(verify_pages(p, v, N, 40));
    CHECK(file_size() <= (uint64_t)(2 * N + 16) * 4096);
    OK(kvt_pager_close(p));
    OK(open_p(cfg_of(4096, 32 * 4096), &p));
    OK(verify_pages(p, v, N, 40));
    OK(check_refs(p, v, N));
    OK(kvt_pager_close(p));
}

static uint8_t *pattern(size_t n, uint32_t seed) {
    uint8_t *d = malloc(n ? n : 1);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13; x ^= x >> 17; x ^= x << 5;
        d[i] = (uint8_t)x;
    }
    return d;
}

/* With the read map (neither direct_io nor no_map), a run of up to 64 pages is copied
 * from the mapping (no I/O, counted in map_reads); otherwise one I/O per blob. */
static void blob_roundtrip(int direct_io, uint32_t ps, int no_map) {
    fresh(direct_io ? "blob_direct" : "blob");
    kvt_pager *p;
    kvt_pager_config c = cfg_of(ps, 64 * 4096);
    c.direct_io = direct_io;
    c.no_map = no_map;
    kvt_io_stats io = {0};
    c.stats = &io;
    OK(open_p(c, &p));
    size_t sizes[] = {0, 1, 100, ps - 56, ps - 55, 3 * ps, 16u << 20};
    enum { NB = sizeof sizes / sizeof sizes[0] };
    kvt_pgno first[NB];
    uint8_t *data[NB];
    for (int i = 0; i < NB; i++) {
        data[i] = pattern(sizes[i], (uint32_t)i + 1);
        OK(kvt_blob_write(p, data[i], sizes[i], &first[i]));
    }
    kvt_buf out = {0};
    for (int i = 0; i < NB; i++) {
        uint64_t reads = io.reads, mapped = stats_of(p).map_reads;
        OK(kvt_blob_read(p, first[i], sizes[i], &out));
        CHECK(out.len == sizes[i] && (!sizes[i] || memcmp(out.data, data[i], sizes[i]) == 0));
        uint64_t pages = sizes[i] ? (sizes[i] + ps - 57) / (ps - 56) : 1;
        int via_map = !direct_io && !no_map && sizes[i] && pages <= 64;
        CHECK(io.reads == reads + (via_map ? 0 : 1));          /* one I/O per blob */
        CHECK(stats_of(p).map_reads == mapped + (via_map ? pages : 0));
    }
    CHECK(kvt_blob_read(p, first[2], 99, &out) == KVT_ECORRUPT);   /* wrong length */
    uint8_t small[10];
    kvt_buf fixed = {small, 0, sizeof small, 1};
    CHECK(kvt_blob_read(p, first[2], 100, &fixed) == KVT_EBUFSMALL && fixed.len == 100);
    OK(kvt_pager_checkpoint(p, NULL, 0));
    OK(kvt_pager_close(p));
    OK(open_p(c, &p));
    for (int i = 0; i < NB; i++) {
        OK(kvt_blob_read(p, first[i], sizes[i], &out));
        CHECK(out.len == sizes[i] && (!sizes[i] || memcmp(out.data, data[i], sizes[i]) == 0));
    }
    OK(kvt_pager_check_begin(p));
    for (int i = 0; i < NB; i++) OK(kvt_blob_check(p, first[i], sizes[i]));
    OK(kvt_pager_check_end(p));
    /* Free the big one; its pages are reused by the next blob of that size. */
    OK(kvt_blob_free(p, first[NB - 1]));
    OK(kvt_pager_checkpoint(p, NULL, 0));
    uint64_t before = file_size();
    kvt_pgno again;
    OK(kvt_blob_write(p, data[NB - 1], sizes[NB - 1], &again));
    OK(kvt_pager_checkpoint(p, NULL, 0));
    CHECK(file_size() <= before + 8 * (uint64_t)ps);
    OK(kvt_blob_read(p, again, sizes[NB - 1], &out));
    CHECK(memcmp(out.data, data[NB - 1], sizes[NB - 1]) == 0);
    first[NB - 1] = again;
    OK(kvt_pager_check_begin(p));
    for (int i = 0; i < NB - 1; i++) OK(kvt_blob_check(p, first[i], sizes[i]));
    CHECK(kvt_pager_check_end(p) == KVT_ECORRUPT);     /* the re-written blob leaked */
    OK(kvt_pager_check_begin(p));
    for (int i = 0; i < NB; i++) OK(kvt_blob_check(p, first[i], sizes[i]));
    OK(kvt_pager_check_end(p));
    for (int i = 0; i < NB; i++) OK(kvt_blob_free(p, first[i]));
    OK(kvt_pager_checkpoint(p, NULL, 0));
    OK(check_refs(p, NULL, 0));
    /* The new free map may sit at the end until the next checkpoint moves it down. */
    OK(kvt_pager_checkpoint(p, NULL, 0));
    OK(check_refs(p, NULL, 0));
    CHECK(file_size() <= 8 * (uint64_t)ps);               /* all trimmed away */
    OK(kvt_pager_close(p));
    kvt_buf_free(&out);
    for (int i = 0; i < NB; i++) free(data[i]);
}

static void test_blobs(void) {
    blob_roundtrip(0, 4096, 0);
    blob_roundtrip(0, 4096, 1);
    blob_roundtrip(1, 65536, 0);
}

/* Read-only: writes stay in memory (chains of pool pages), nothing reaches the file. */
static void test_read_only(void) {
    fresh("ro");
    kvt_pager *p;
    kvt_pgno v[20];
    OK(open_p(cfg_of(4096, 1 << 20), &p));
    OK(make_pages(p, v, 20, 1));
    OK(kvt_pager_checkpoint(p, "x", 1));
    OK(kvt_pager_close(p));
    uint64_t size = file_size();
    kvt_pager_config c = cfg_of(4096, 8 * 4096);
    c.read_only = 1;
    OK(open_p(c, &p));
    OK(verify_pages(p, v, 20, 1));
    kvt_pgno w[20];
    memcpy(w, v, sizeof v);
    for (int i = 0; i < 20; i++) {            /* more dirty pages than the cache holds */
        kvt_page *pg;
        OK(kvt_pager_get(p, w[i], &pg));
        OK(kvt_pager_write(p, &pg));
        fill(pg->data, 4096, (uint64_t)i, 3);
        w[i] = pg->pgno;
        kvt_pager_unpin(p, pg);
    }
    uint8_t *d = pattern(20000, 9);
    kvt_pgno b;
    OK(kvt_blob_write(p, d, 20000, &b));
    OK(verify_pages(p, w, 20, 3));
    kvt_buf out = {0};
    OK(kvt_blob_read(p, b, 20000, &out));
    CHECK(out.len == 20000 && memcmp(out.data, d, 20000) == 0);
    CHECK(kvt_pager_checkpoint(p, NULL, 0) == KVT_EREADONLY);
    OK(kvt_blob_free(p, b));
    OK(kvt_pager_close(p));
    CHECK(file_size() == size);
    OK(open_p(c, &p));
    OK(verify_pages(p, v, 20, 1));
    OK(kvt_pager_close(p));
    kvt_buf_free(&out);
    free(d);
}

static void test_check_walk(void) {
    fresh("check");
    kvt_pager *p;
    kvt_pgno v[10];
    OK(open_p(cfg_of(4096, 1 << 20), &p));
    OK(make_pages(p, v, 10, 1));
    OK(check_refs(p, v, 10));
    CHECK(check_refs(p, v, 9) == KVT_ECORRUPT);          /* v[9] leaked */
    CHECK(strstr(kvt_errmsg(), "leaked"));
    OK(kvt_pager_check_begin(p));
    OK(kvt_pager_check_ref(p, v[0]));
    CHECK(kvt_pager_check_ref(p, v[0]) == KVT_ECORRUPT);   /* twice */
    CHECK(kvt_pager_check_ref(p, 0) == KVT_ECORRUPT);      /* meta */
    CHECK(kvt_pager_check_ref(p, 500) == KVT_ECORRUPT);    /* beyond the end */
    OK(kvt_pager_free(p, v[5]));
    CHECK(kvt_pager_check_ref(p, v[5]) == KVT_ECORRUPT);   /* free */
    CHECK(kvt_pager_check_end(p) == KVT_ECORRUPT);
    OK(kvt_pager_checkpoint(p, NULL, 0));
    v[5] = v[9];
    OK(check_refs(p, v, 9));
    OK(kvt_pager_close(p));
}

/* A VFS that forwards to POSIX and fails every write once armed. */
static int fail_writes;
static kvt_io_methods fwd_io;
static const kvt_io_methods *posix_io;
static int fwd_write(kvt_file *f, const void *b, size_t n, uint64_t off) {
    if (fail_writes) return kvt_seterr(KVT_EIO, "injected write failure");
    return posix_io->write(f, b, n, off);
}
static int fwd_open(kvt_vfs *vfs, const char *pth, int flags, kvt_file **out) {
    KVT_TRY(kvt_vfs_posix()->open(kvt_vfs_posix(), pth, flags, out));
    posix_io = (*out)->io;
    fwd_io = *posix_io;
    fwd_io.write = fwd_write;
    (*out)->io = &fwd_io;
    return KVT_OK;
}

static void test_fatal_latch(void) {
    fresh("fatal");
    kvt_vfs vfs = *kvt_vfs_posix();
    vfs.open = fwd_open;
    kvt_pager_config c = cfg_of(4096, 1 << 20);
    kvt_pager *p;
    kvt_pgno v[5];
    OK(kvt_pager_open(&vfs, path, &c, &p));
    OK(make_pages(p, v, 5, 1));
    OK(kvt_pager_checkpoint(p, "ok", 2));
    OK(make_pages(p, v, 5, 2));
    fail_writes = 1;
    CHECK(kvt_pager_checkpoint(p, "bad", 3) == KVT_EIO);
    fail_writes = 0;
    kvt_page *pg;
    CHECK(kvt_pager_get(p, v[0], &pg) == KVT_EFATAL);
    CHECK(kvt_pager_alloc(p, 16, &pg) == KVT_EFATAL);
    CHECK(kvt_pager_checkpoint(p, "x", 1) == KVT_EFATAL);
    OK(kvt_pager_close(p));
    OK(kvt_pager_open(&vfs, path, &c, &p));
    size_t len;
    const uint8_t *m = kvt_pager_engine_meta(p, &len);
    CHECK(len == 2 && memcmp(m, "ok", 2) == 0);
    OK(kvt_pager_close(p));
}

/* ---- crash consistency through the fault VFS ---- */

typedef struct pstate {
    kvt_pgno pg[80];
    uint64_t key[80], ver[80];
    int n;
    kvt_pgno blob;
    size_t blob_len;
    uint32_t blob_seed;
} pstate;

static int verify_state(kvt_pager *p, const pstate *s) {
    for (int i = 0; i < s->n; i++) {
        kvt_page *pg;
        KVT_TRY(kvt_pager_get(p, s->pg[i], &pg));
        int ok = matches(pg->data, 4096, s->key[i], s->ver[i]);
        kvt_pager_unpin(p, pg);
        if (!ok) return kvt_seterr(-100, "page %" PRIu64 " wrong", s->pg[i]);
    }
    kvt_buf out = {0};
    uint8_t *want = pattern(s->blob_len, s->blob_seed);
    int rc = kvt_blob_read(p, s->blob, s->blob_len, &out);
    if (rc == KVT_OK && (out.len != s->blob_len || memcmp(out.data, want, s->blob_len)))
        rc = kvt_seterr(-100, "blob wrong");
    kvt_buf_free(&out);
    free(want);
    KVT_TRY(rc);
    KVT_TRY(kvt_pager_check_begin(p));
    for (int i = 0; i < s->n; i++) KVT_TRY(kvt_pager_check_ref(p, s->pg[i]));
    KVT_TRY(kvt_blob_check(p, s->blob, s->blob_len));
    return kvt_pager_check_end(p);
}

static uint64_t ckpt_writes_before;

/* State A (checkpointed), then B built on it; returns the checkpoint's result. */
static int build_and_checkpoint(kvt_pager *p, pstate *a, pstate *b, kvt_vfs *fv, int op,
                                uint64_t nth) {
    memset(a, 0, sizeof *a);
    a->n = 60;
    for (int i = 0; i < a->n; i++) { a->key[i] = (uint64_t)i; a->ver[i] = 1; }
    KVT_TRY(make_pages(p, a->pg, a->n, 1));
    a->blob_len = 70000;
    a->blob_seed = 11;
    uint8_t *d = pattern(a->blob_len, a->blob_seed);
    int rc = kvt_blob_write(p, d, a->blob_len, &a->blob);
    free(d);
    KVT_TRY(rc);
    KVT_TRY(kvt_pager_checkpoint(p, "A", 1));
    *b = *a;
    for (int i = 0; i < 30; i++) {                  /* COW half of them */
        kvt_page *pg;
        KVT_TRY(kvt_pager_get(p, b->pg[i], &pg));
        KVT_TRY(kvt_pager_write(p, &pg));
        fill(pg->data, 4096, b->key[i], 2);
        b->pg[i] = pg->pgno;
        b->ver[i] = 2;
        kvt_pager_unpin(p, pg);
    }
    for (int i = 50; i < 60; i++) KVT_TRY(kvt_pager_free(p, b->pg[i]));
    b->n = 50;
    kvt_pgno extra[20];
    KVT_TRY(make_pages(p, extra, 20, 3));
    for (int i = 0; i < 20; i++) {
        b->pg[b->n] = extra[i];
        b->key[b->n] = (uint64_t)i;
        b->ver[b->n++] = 3;
    }
    KVT_TRY(kvt_blob_free(p, b->blob));
    b->blob_len = 150000;
    b->blob_seed = 12;
    d = pattern(b->blob_len, b->blob_seed);
    rc = kvt_blob_write(p, d, b->blob_len, &b->blob);
    free(d);
    KVT_TRY(rc);
    if (nth) kvt_fault_set(fv, op, nth, 1, KVT_EIO);
    ckpt_writes_before = kvt_fault_count(fv, KVT_FAULT_WRITE);
    return kvt_pager_checkpoint(p, "B", 1);
}

/* Fail the nth write/sync of the second checkpoint, lose or tear unsynced writes:
 * reopening must find exactly A or (if the checkpoint returned OK) B. */
static int crash_case(int op, uint64_t nth, int mode, uint64_t seed, uint64_t *writes) {
    fresh("faultcrash");
    kvt_vfs *fv;
    KVT_TRY(kvt_fault_vfs_new(&fv));
    kvt_pager_config c = cfg_of(4096, 8 * 4096);
    kvt_pager *p;
    pstate a, b;
    int rc = kvt_pager_open(fv, path, &c, &p);
    if (rc) { kvt_fault_vfs_free(fv); return rc; }
    int ck = build_and_checkpoint(p, &a, &b, fv, op, nth);
    if (writes) *writes = kvt_fault_count(fv, KVT_FAULT_WRITE) - ckpt_writes_before;
    kvt_fault_crash(fv, mode, seed);
    kvt_pager_close(p);
    kvt_fault_vfs_free(fv);
    if (ck != KVT_OK && ck != KVT_EIO) return ck;
    KVT_TRY(open_p(c, &p));
    size_t len;
    const uint8_t *m = kvt_pager_engine_meta(p, &len);
    int got_b = len == 1 && m[0] == 'B';
    if (ck == KVT_OK && !got_b) rc = kvt_seterr(-100, "checkpoint B returned OK but lost");
    else rc = verify_state(p, got_b ? &b : &a);
    kvt_pager_close(p);
    return rc;
}

static void test_fault_crashes(void) {
    uint64_t writes = 0;
    OK(crash_case(0, 0, KVT_CRASH_TEAR, 1, &writes));    /* no fault: B survives */
    CHECK(writes >= 3);
    for (uint64_t nth = 1; nth <= 3; nth++)
        for (int mode = 0; mode < 2; mode++) OK(crash_case(KVT_FAULT_SYNC, nth, mode, nth, NULL));
    for (uint64_t nth = 1; nth <= writes; nth++)
        for (int mode = 0; mode < 2; mode++)
            OK(crash_case(KVT_FAULT_WRITE, nth, mode, nth * 7 + (uint64_t)mode, NULL));
}

/* A meta page with a valid checksum but an absurd page count (or free-map length) is
 * damage: KVT_ECORRUPT naming the file, not a bitmap sized from it (it used to try a
 * 1 TiB allocation: ENOMEM, or an abort under ASan). */
static void forge_meta_field(kvt_pgno slot, size_t off, uint64_t v) {
    uint8_t b[4096];
    int fd = open(path, O_RDWR);
    if (fd < 0 || pread(fd, b, sizeof b, (off_t)(slot * 4096)) != (ssize_t)sizeof b) {
        if (fd >= 0) close(fd);
        return;
    }
    memcpy(b + off, &v, 8);
    uint32_t crc = kvt_crc32c(0, b + 4, sizeof b - 4);
    memcpy(b, &crc, 4);
    if (pwrite(fd, b, sizeof b, (off_t)(slot * 4096)) != (ssize_t)sizeof b) perror("pwrite");
    close(fd);
}

static void test_forged_meta_sizes(void) {
    static const size_t fields[] = {56, 72};      /* page count, free map page count */
    static const uint64_t values[] = {1ull << 46, 1ull << 30};
    for (int f = 0; f < 2; f++) {
        for (int vi = 0; vi < 2; vi++) {
            fresh("forged");
            kvt_pager *p;
            kvt_pgno v[5];
            OK(open_p(cfg_of(4096, 1 << 20), &p));
            OK(make_pages(p, v, 5, 1));
            OK(kvt_pager_checkpoint(p, "g1", 2));   /* gen 1: slot 1 */
            OK(kvt_pager_close(p));
            forge_meta_field(1, fields[f], values[vi]);
            CHECK(open_p(cfg_of(4096, 1 << 20), &p) == KVT_ECORRUPT);
            CHECK(strstr(kvt_errmsg(), "forged.kvt"));
        }
    }
    /* The checks must not reject a file whose free tail was trimmed after its meta. */
    fresh("forged");
    kvt_pager *p;
    kvt_pgno v[40];
    OK(open_p(cfg_of(4096, 1 << 20), &p));
    OK(make_pages(p, v, 40, 1));
    OK(kvt_pager_checkpoint(p, "a", 1));
    for (int i = 2; i < 40; i++) OK(kvt_pager_free(p, v[i]));
    OK(kvt_pager_checkpoint(p, "b", 1));
    OK(kvt_pager_checkpoint(p, "c", 1));
    OK(kvt_pager_close(p));
    OK(open_p(cfg_of(4096, 1 << 20), &p));
    OK(verify_pages(p, v, 2, 1));
    OK(kvt_pager_close(p));
}

typedef struct reader_arg { kvt_pager *p; kvt_pgno *v; int n, bad; } reader_arg;

static void *reader(void *a) {
    reader_arg *r = a;
    for (int round = 0; round < 20; round++)
        if (verify_pages(r->p, r->v, r->n, 1) != KVT_OK) r->bad++;
    return NULL;
}

static void test_concurrent_readers(void) {
    fresh("threads");
    kvt_pager *p;
    enum { N = 200 };
    kvt_pgno v[N];
    OK(open_p(cfg_of(4096, 16 * 4096), &p));
    OK(make_pages(p, v, N, 1));
    OK(kvt_pager_checkpoint(p, NULL, 0));
    pthread_t t[4];
    reader_arg r[4];
    for (int i = 0; i < 4; i++) {
        r[i] = (reader_arg){p, v, N, 0};
        pthread_create(&t[i], NULL, reader, &r[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECK(r[i].bad == 0);
    }
    OK(kvt_pager_close(p));
}

/* ---- read map (map.c) ---- */

/* Pages v[from..to) hold keys from..to at version ver. */
static int verify_range(kvt_pager *p, const kvt_pgno *v, int from, int to, uint64_t ver) {
    for (int i = from; i < to; i++) {
        kvt_page *pg;
        KVT_TRY(kvt_pager_get(p, v[i], &pg));
        int ok = matches(pg->data, kvt_pager_page_size(p), (uint64_t)i, ver);
        kvt_pager_unpin(p, pg);
        if (!ok) return kvt_seterr(-100, "page %" PRIu64 " (key %d) content wrong", v[i], i);
    }
    return KVT_OK;
}

static kvt_pager_stats stats_of(kvt_pager *p) {
    kvt_pager_stats st;
    kvt_pager_get_stats(p, &st);
    return st;
}

/* Clean pages are read through the map, checksummed once; no_map reads them with pread. */
static void test_map_read(void) {
    fresh("map_read");
    kvt_pager *p;
    enum { N = 100 };
    kvt_pgno v[N];
    OK(open_p(cfg_of(4096, 8 * 4096), &p));
    OK(make_pages(p, v, N, 3));
    OK(kvt_pager_checkpoint(p, NULL, 0));
    OK(kvt_pager_close(p));
    OK(open_p(cfg_of(4096, 8 * 4096), &p));
    OK(verify_pages(p, v, N, 3));
    kvt_pager_stats a = stats_of(p);
    CHECK(a.map_reads == N && a.map_verifies == N && a.cache_misses == N);
    CHECK(a.pages_cached == 0 && a.evictions == 0);
    OK(verify_pages(p, v, N, 3));
    kvt_pager_stats b = stats_of(p);
    CHECK(b.map_reads == 2 * N && b.map_verifies == N);      /* verified once */
    OK(check_refs(p, v, N));
    OK(kvt_pager_close(p));
    kvt_pager_config c = cfg_of(4096, 8 * 4096);
    c.no_map = 1;
    OK(open_p(c, &p));
    OK(verify_pages(p, v, N, 3));
    a = stats_of(p);
    CHECK(a.map_reads == 0 && a.cache_misses == N && a.evictions > 0);
    OK(kvt_pager_close(p));
}

/* Damage read through the map names file and page; damage made after a page was
 * verified is not seen by get (verify-once) but check_end re-reads it from disk. */
static void test_map_corruption(void) {
    fresh("map_corrupt");
    kvt_pager *p;
    kvt_pgno v[5];
    kvt_page *pg;
    char want[64];
    OK(open_p(cfg_of(4096, 1 << 20), &p));
    OK(make_pages(p, v, 5, 1));
    OK(kvt_pager_checkpoint(p, NULL, 0));
    OK(kvt_pager_close(p));
    flip_byte(v[2] * 4096 + 1000);
    OK(open_p(cfg_of(4096, 1 << 20), &p));
    CHECK(kvt_pager_get(p, v[2], &pg) == KVT_ECORRUPT && pg == NULL);
    snprintf(want, sizeof want, "page %" PRIu64 ": checksum mismatch", v[2]);
    CHECK(strstr(kvt_errmsg(), want) && strstr(kvt_errmsg(), "map_corrupt.kvt"));
    CHECK(stats_of(p).map_reads == 1);                        /* it was the map path */
    CHECK(kvt_pager_get(p, v[2], &pg) == KVT_ECORRUPT);      /* not marked verified */
    OK(verify_pages(p, v, 2, 1));
    flip_byte(v[0] * 4096 + 2000);                            /* after its verification */
    OK(kvt_pager_get(p, v[0], &pg));
    kvt_pager_unpin(p, pg);
    CHECK(v[0] < v[2]);                                       /* found first */
    CHECK(check_refs(p, v, 5) == KVT_ECORRUPT);
    snprintf(want, sizeof want, "page %" PRIu64 ": checksum mismatch", v[0]);
    CHECK(strstr(kvt_errmsg(), want) != NULL);
    OK(kvt_pager_close(p));
}

/* A write clears the verified bit: a page verified through the map, then modified and
 * written back (eviction), is checksummed again on its next map read. */
static void test_map_reverify_after_write(void) {
    fresh("map_rewrite");
    kvt_pager *p;
    enum { N = 40 };
    kvt_pgno v[N];
    kvt_page *pg;
    OK(open_p(cfg_of(4096, 8 * 4096), &p));
    OK(make_pages(p, v, N, 1));              /* gen 1, evicted: on disk, not in the pool */
    OK(verify_pages(p, v, N, 1));            /* 32+ of them verified through the map */
    OK(kvt_pager_get(p, v[0], &pg));
    CHECK(pg->pgno == v[0]);
    const uint8_t *mapped = pg->data;
    OK(kvt_pager_write(p, &pg));             /* new this gen: in place, in a frame */
    CHECK(pg->pgno == v[0] && pg->data != mapped && matches(pg->data, 4096, 0, 1));
    fill(pg->data, 4096, 0, 2);
    kvt_pager_unpin(p, pg);
    OK(kvt_pager_get(p, v[0], &pg));         /* a pool hit sees the change */
    CHECK(matches(pg->data, 4096, 0, 2));
    kvt_pager_unpin(p, pg);
    kvt_pgno extra[16];
    uint64_t wb = stats_of(p).writebacks;
    OK(make_pages(p, extra, 16, 9));         /* evicts v[0]: written back */
    CHECK(stats_of(p).writebacks >= wb + 9);
    uint64_t before = stats_of(p).map_verifies;
    OK(kvt_pager_get(p, v[0], &pg));
    CHECK(matches(pg->data, 4096, 0, 2));
    kvt_pager_unpin(p, pg);
    CHECK(stats_of(p).map_verifies == before + 1);
    OK(kvt_pager_checkpoint(p, NULL, 0));
    OK(kvt_pager_close(p));
    OK(open_p(cfg_of(4096, 8 * 4096), &p));
    OK(kvt_pager_get(p, v[0], &pg));
    CHECK(matches(pg->data, 4096, 0, 2));
    kvt_pager_unpin(p, pg);
    OK(verify_range(p, v, 1, N, 1));
    OK(kvt_pager_close(p));
}

/* A page of the last checkpoint read through the map and then written is copied on
 * write from the mapping; the checkpointed copy stays intact on disk. */
static void test_map_cow(void) {
    fresh("map_cow");
    kvt_pager *p;
    kvt_pgno v[10];
    kvt_page *pg;
    OK(open_p(cfg_of(4096, 8 * 4096), &p));
    OK(make_pages(p, v, 10, 1));
    OK(kvt_pager_checkpoint(p, NULL, 0));
    OK(kvt_pager_close(p));
    OK(open_p(cfg_of(4096, 8 * 4096), &p));
    kvt_pgno extra[8];
    OK(make_pages(p, extra, 8, 5));          /* the pool is full */
    uint64_t ev = stats_of(p).evictions;
    OK(kvt_pager_get(p, v[3], &pg));
    CHECK(stats_of(p).map_reads == 1);
    OK(kvt_pager_write(p, &pg));
    CHECK(pg->pgno != v[3] && matches(pg->data, 4096, 3, 1));
    /* copied straight from the map: one frame taken (the new page), one eviction */
    CHECK(stats_of(p).evictions == ev + 1);
    kvt_pgno moved = pg->pgno;
    fill(pg->data, 4096, 3, 2);
    kvt_pager_unpin(p, pg);
    CHECK(stats_of(p).pages_pending_free == 1);
    OK(kvt_pager_close(p));                  /* no checkpoint: the old state stays */
    OK(open_p(cfg_of(4096, 8 * 4096), &p));
    OK(verify_pages(p, v, 10, 1));
    CHECK(kvt_pager_get(p, moved, &pg) == KVT_ECORRUPT);     /* beyond the checkpoint */
    OK(kvt_pager_close(p));
}

/* The file outgrows a small mapping: pages past it are read with pread until the
 * writer's next checkpoint grows the mapping. */
static void test_map_growth(void) {
    fresh("map_grow");
    kvt_pager *p;
    enum { N = 200 };
    static kvt_pgno v[N];
    kvt_pager_config c = cfg_of(4096, 8 * 4096);
    c.map_bytes = 16 * 4096;
    OK(open_p(c, &p));
    OK(make_pages(p, v, N, 1));
    OK(verify_pages(p, v, N, 1));
    kvt_pager_stats a = stats_of(p);
    CHECK(a.map_reads > 0 && a.map_reads <= 16 && a.cache_misses > 150);
    OK(kvt_pager_checkpoint(p, NULL, 0));    /* grows the mapping to twice the file */
    a = stats_of(p);
    OK(verify_pages(p, v, N, 1));
    kvt_pager_stats b = stats_of(p);
    CHECK(b.map_reads - a.map_reads >= N - 8);
    OK(check_refs(p, v, N));
    OK(kvt_pager_close(p));
}

/* Checkpoints truncate free tail pages; pages past the new end are out of range, the
 * file regrows through write-back and new pages are read through the map again. */
static void test_map_truncate(void) {
    fresh("map_trunc");
    kvt_pager *p;
    enum { N = 300, KEEP = 50 };
    static kvt_pgno v[N];
    kvt_page *pg;
    OK(open_p(cfg_of(4096, 8 * 4096), &p));
    OK(make_pages(p, v, N, 1));
    OK(kvt_pager_checkpoint(p, NULL, 0));
    OK(verify_pages(p, v, N, 1));            /* all verified through the map */
    uint64_t big = file_size();
    for (int i = KEEP; i < N; i++) OK(kvt_pager_free(p, v[i]));
    OK(kvt_pager_checkpoint(p, NULL, 0));
    OK(kvt_pager_checkpoint(p, NULL, 0));    /* deferred frees released, tail trimmed */
    CHECK(file_size() < big / 2);
    CHECK(kvt_pager_get(p, v[N - 1], &pg) == KVT_ECORRUPT && pg == NULL);
    OK(verify_pages(p, v, KEEP, 1));
    OK(make_pages(p, v + KEEP, N - KEEP, 2)); /* regrow: evictions write past the end */
    uint64_t before = stats_of(p).map_verifies;
    for (int i = KEEP; i < N; i++) {
        OK(kvt_pager_get(p, v[i], &pg));
        CHECK(matches(pg->data, 4096, (uint64_t)(i - KEEP), 2));
        kvt_pager_unpin(p, pg);
    }
    CHECK(stats_of(p).map_verifies - before >= N - KEEP - 16);   /* re-verified */
    OK(check_refs(p, v, N));
    OK(kvt_pager_close(p));
}

/* ---- guarded map access (mapguard.c) ---- */

/* A disk error under a mapped page (injected: a real SIGBUS on touch) is caught: the op
 * sees zeros and its guard turns the result into KVT_EIO; later misses take pread and
 * give the right content; a write copying from the faulted map fails and latches. */
static void test_map_injected_fault(void) {
    fresh("map_fault");
    kvt_pager *p;
    enum { N = 40 };
    kvt_pgno v[N];
    kvt_page *pg;
    OK(open_p(cfg_of(4096, 8 * 4096), &p));
    OK(make_pages(p, v, N, 1));
    OK(kvt_pager_checkpoint(p, NULL, 0));
    OK(kvt_pager_close(p));
    OK(open_p(cfg_of(4096, 8 * 4096), &p));
    OK(verify_pages(p, v, N, 1));                 /* every page verified through the map */
    CHECK(kvt_pager_map_faults(p) == 0);
    CHECK(kvt_pager_map_inject_fault(p, 1u << 30) == KVT_EINVAL);
    uint64_t before = kvt_pager_map_faults(p);
    OK(kvt_pager_get(p, v[7], &pg));              /* verified: no checksum on this pin */
    CHECK(stats_of(p).map_reads == N + 1);
    OK(kvt_pager_map_inject_fault(p, v[7]));
    volatile uint8_t b = pg->data[100];            /* SIGBUS, patched with zeros */
    CHECK(b == 0 && !matches(pg->data, 4096, 7, 1));
    kvt_pager_unpin(p, pg);
    CHECK(kvt_pager_map_faults(p) == before + 1);
    CHECK(kvt_pager_map_guard(p, before, KVT_OK) == KVT_EIO);
    CHECK(strstr(kvt_errmsg(), "read error under the read map") != NULL);
    CHECK(kvt_pager_map_guard(p, kvt_pager_map_faults(p), KVT_NOTFOUND) == KVT_NOTFOUND);
    uint64_t reads = stats_of(p).map_reads;
    OK(verify_pages(p, v, N, 1));                 /* now every miss is a pread */
    CHECK(stats_of(p).map_reads == reads);
    OK(check_refs(p, v, N));
    OK(kvt_pager_close(p));
}

/* A fault on a page not yet verified hits the checksum itself: KVT_ECORRUPT. */
static void test_map_fault_on_first_read(void) {
    fresh("map_fault1");
    kvt_pager *p;
    enum { N = 10 };
    kvt_pgno v[N];
    kvt_page *pg;
    OK(open_p(cfg_of(4096, 8 * 4096), &p));
    OK(make_pages(p, v, N, 1));
    OK(kvt_pager_checkpoint(p, NULL, 0));
    OK(kvt_pager_close(p));
    OK(open_p(cfg_of(4096, 8 * 4096), &p));
    uint64_t before = kvt_pager_map_faults(p);
    OK(kvt_pager_map_inject_fault(p, v[3]));
    CHECK(kvt_pager_get(p, v[3], &pg) == KVT_ECORRUPT && pg == NULL);
    CHECK(kvt_pager_map_faults(p) == before + 1);
    OK(kvt_pager_get(p, v[3], &pg));              /* pread: the disk copy is fine */
    CHECK(matches(pg->data, 4096, 3, 1));
    kvt_pager_unpin(p, pg);
    OK(kvt_pager_close(p));
}

/* A page pinned from the map, then the map faults: writing it must not copy the zeros. */
static void test_map_fault_then_write(void) {
    fresh("map_fault_w");
    kvt_pager *p;
    enum { N = 10 };
    kvt_pgno v[N];
    kvt_page *pg;
    OK(open_p(cfg_of(4096, 8 * 4096), &p));
    OK(make_pages(p, v, N, 1));
    OK(kvt_pager_checkpoint(p, NULL, 0));
    OK(kvt_pager_close(p));
    OK(open_p(cfg_of(4096, 8 * 4096), &p));
    OK(kvt_pager_get(p, v[5], &pg));
    OK(kvt_pager_map_inject_fault(p, v[5]));
    CHECK(kvt_pager_write(p, &pg) == KVT_EIO);
    kvt_pager_unpin(p, pg);
    CHECK(kvt_pager_checkpoint(p, NULL, 0) == KVT_EFATAL);   /* latched: nothing written */
    OK(kvt_pager_close(p));
    OK(open_p(cfg_of(4096, 8 * 4096), &p));
    OK(verify_pages(p, v, N, 1));                 /* the checkpoint on disk is intact */
    OK(kvt_pager_close(p));
}

/* The data file truncated behind the pager's back, under a reader holding a page. */
static void test_map_file_truncated(void) {
    fresh("map_cut");
    kvt_pager *p;
    enum { N = 64 };
    kvt_pgno v[N];
    kvt_page *pg;
    OK(open_p(cfg_of(4096, 8 * 4096), &p));
    OK(make_pages(p, v, N, 1));
    OK(kvt_pager_checkpoint(p, NULL, 0));
    OK(kvt_pager_close(p));
    OK(open_p(cfg_of(4096, 8 * 4096), &p));
    OK(verify_pages(p, v, N, 1));
    kvt_pgno last = 0;
    for (int i = 0; i < N; i++) if (v[i] > last) last = v[i];
    uint64_t before = kvt_pager_map_faults(p);
    OK(kvt_pager_get(p, last, &pg));
    CHECK(truncate(path, 2 * 4096) == 0);
    volatile uint8_t b = pg->data[200];
    CHECK(b == 0);
    kvt_pager_unpin(p, pg);
    CHECK(kvt_pager_map_guard(p, before, KVT_OK) == KVT_EIO);
    int errors = 0;
    for (int i = 0; i < N; i++) {                 /* pread past the end: short read */
        int rc = kvt_pager_get(p, v[i], &pg);
        if (rc == KVT_OK) kvt_pager_unpin(p, pg);
        else errors += rc == KVT_ECORRUPT || rc == KVT_EIO;
    }
    CHECK(errors > 0);
    OK(kvt_pager_close(p));
}

/* A SIGBUS outside every read map is not ours: with the guard installed, a bad access
 * elsewhere (and a SIGBUS sent by kill) still ends the process as before. */
static void test_map_foreign_sigbus(void) {
    fresh("map_foreign");
    for (int how = 0; how < 2; how++) {
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            kvt_pager *p;
            if (open_p(cfg_of(4096, 1 << 20), &p) != KVT_OK) _exit(3);
            if (how == 0) (void)raise(SIGBUS);
            int fd = memfd_create("empty", 0);
            volatile uint8_t *m = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
            if (m == MAP_FAILED) _exit(4);
            uint8_t b = m[0];                         /* past the end of an empty file */
            _exit(b == 0 ? 5 : 6);
        }
        int st = 0;
        CHECK(waitpid(pid, &st, 0) == pid);
        /* killed by SIGBUS, or (SAN=1) the sanitizer's own handler reported and exited 1 */
        CHECK((WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS) ||
              (WIFEXITED(st) && WEXITSTATUS(st) == 1));
    }
}

/* Blobs copied from the map: damage is found (checksum on first read), verified pages
 * are not checksummed again, and a fault under the map fails that read with KVT_EIO
 * while the next read takes pread and succeeds. */
static void test_map_blob_reads(void) {
    fresh("map_blob");
    kvt_pager *p;
    kvt_pgno a, b;
    kvt_buf out = {0};
    uint8_t *da = pattern(3 * 4096, 7), *db = pattern(5000, 8);
    OK(open_p(cfg_of(4096, 1 << 20), &p));
    OK(kvt_blob_write(p, da, 3 * 4096, &a));
    OK(kvt_blob_write(p, db, 5000, &b));
    OK(kvt_pager_checkpoint(p, NULL, 0));
    OK(kvt_pager_close(p));
    flip_byte((a + 2) * 4096 + 900);
    OK(open_p(cfg_of(4096, 1 << 20), &p));
    CHECK(kvt_blob_read(p, a, 3 * 4096, &out) == KVT_ECORRUPT);
    CHECK(strstr(kvt_errmsg(), "checksum mismatch") != NULL);
    OK(kvt_blob_read(p, b, 5000, &out));
    CHECK(out.len == 5000 && memcmp(out.data, db, 5000) == 0);
    kvt_pager_stats s1 = stats_of(p);
    OK(kvt_blob_read(p, b, 5000, &out));                  /* verified once */
    kvt_pager_stats s2 = stats_of(p);
    CHECK(s2.map_reads == s1.map_reads + 2 && s2.map_verifies == s1.map_verifies);
    uint64_t before = kvt_pager_map_faults(p);
    OK(kvt_pager_map_inject_fault(p, b + 1));
    CHECK(kvt_blob_read(p, b, 5000, &out) == KVT_EIO);
    CHECK(kvt_pager_map_faults(p) == before + 1);
    kvt_pager_stats s3 = stats_of(p);
    OK(kvt_blob_read(p, b, 5000, &out));                  /* pread of the intact file */
    CHECK(out.len == 5000 && memcmp(out.data, db, 5000) == 0);
    CHECK(stats_of(p).map_reads == s3.map_reads);
    OK(kvt_pager_close(p));
    kvt_buf_free(&out);
    free(da);
    free(db);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/test_pager.%d", (int)getpid());
    mkdir(dir, 0755);
    test_create_reopen();
    test_write_checkpoint_reopen();
    test_cow();
    test_crash_without_checkpoint();
    test_eviction();
    test_corruption();
    test_churn();
    test_blobs();
    test_read_only();
    test_check_walk();
    test_fatal_latch();
    test_concurrent_readers();
    test_fault_crashes();
    test_forged_meta_sizes();
    test_map_read();
    test_map_corruption();
    test_map_reverify_after_write();
    test_map_cow();
    test_map_growth();
    test_map_truncate();
    test_map_injected_fault();
    test_map_fault_on_first_read();
    test_map_fault_then_write();
    test_map_file_truncated();
    test_map_foreign_sigbus();
    test_map_blob_reads();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    if (failures) fprintf(stderr, "test_pager: %d FAILED\n", failures);
    else printf("test_pager: all passed\n");
    return failures != 0;
}
