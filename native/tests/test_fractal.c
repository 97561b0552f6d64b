/* test_fractal.c - the fractal tree engine against a reference map.
 *
 * By default it runs on the real pager (native/pager) in a temporary file; a crash is
 * "close the pager without a checkpoint". Built with -DFT_FAKE_PAGER it runs on a fake
 * pager defined here instead (blobs in memory, with checkpoint generations: a blob freed
 * after a checkpoint survives a simulated crash, a blob written after it does not;
 * check_end reports leaked blobs), which isolates the engine from the pager.
 *
 * Small node/basement/cache sizes make flushes, splits, merges and evictions happen
 * all the time. Every phase ends with check() (+ the pager's check_begin/end).
 *   make -C native build/test_fractal && native/build/test_fractal [seed]
 *   fake pager: gcc -std=gnu11 -Inative/include -pthread -DFT_FAKE_PAGER \
 *       native/tests/test_fractal.c native/fractal/(all .c) native/util/(all .c)
 * Benchmark (C level, real pager; FT_DIRECT=1 for O_DIRECT, FT_BTREE=1 for the B+tree,
 * FT_LEAF=n for leaves of n basements instead of the default):
 *   native/build/test_fractal SEED bench NKEYS NODE_SIZE BASEMENT_SIZE CACHE_BYTES
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include "kvt_engine.h"
#include "kvt_error.h"
#include "../fractal/ft_int.h"      /* white box: small leaves for deep trees */

static int failures;
#define CHECK(c, ...) do { if (!(c)) { failures++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
    fprintf(stderr, __VA_ARGS__); fprintf(stderr, " [%s]\n", kvt_errmsg()); return 1; } } while (0)
#define OK(expr) do { int rc_ = (expr); CHECK(rc_ == KVT_OK, "%s -> %d (%s)", #expr, rc_, kvt_strerror(rc_)); } while (0)

typedef struct H {
    kvt_pager *p;
    kvt_engine *e;
    kvt_engine_config cfg;
    uint8_t meta[KVT_ENGINE_META_MAX];
    size_t meta_len;
    char path[64];
    kvt_io_stats io;
} H;
static const kvt_engine_ops *ops = &kvt_fractal_ops;

/* ------------------------------------------------------------------ pager ---- */
#ifdef FT_FAKE_PAGER
typedef struct fblob { uint8_t *data; size_t len; uint64_t gen; int live, pending, ref; } fblob;
struct kvt_pager {
    fblob *b;
    uint64_t n, cap, gen;
    uint8_t meta[KVT_ENGINE_META_MAX];
    size_t meta_len;
    uint64_t bytes_written, bytes_read;
};

static kvt_pager *fp_new(void) { kvt_pager *p = calloc(1, sizeof *p); p->n = 1; p->gen = 1; return p; }
static void fp_free(kvt_pager *p) {
    for (uint64_t i = 1; i < p->n; i++) free(p->b[i].data);
    free(p->b); free(p);
}
const char *kvt_pager_path(const kvt_pager *p) { (void)p; return "fake.kvt"; }

int kvt_blob_write(kvt_pager *p, const void *data, size_t len, kvt_pgno *first) {
    if (p->n >= p->cap) { p->cap = p->cap ? p->cap * 2 : 1024; p->b = realloc(p->b, p->cap * sizeof *p->b); }
    fblob *b = &p->b[p->n];
    *b = (fblob){ .data = malloc(len ? len : 1), .len = len, .gen = p->gen, .live = 1 };
    memcpy(b->data, data, len);
    p->bytes_written += len;
    *first = p->n++;
    return KVT_OK;
}
static fblob *fp_blob(kvt_pager *p, kvt_pgno pg, const char *op) {
    if (pg == 0 || pg >= p->n || !p->b[pg].live) {
        kvt_seterr(KVT_ECORRUPT, "fake pager: %s of dead blob %llu", op, (unsigned long long)pg);
        return NULL;
    }
    return &p->b[pg];
}
int kvt_blob_read(kvt_pager *p, kvt_pgno first, size_t len, kvt_buf *out) {
    fblob *b = fp_blob(p, first, "read");
    if (!b) return KVT_ECORRUPT;
    if (b->len != len) return kvt_seterr(KVT_ECORRUPT, "fake pager: blob %llu length", (unsigned long long)first);
    p->bytes_read += len;
    return kvt_buf_set(out, b->data, len);
}
int kvt_blob_free(kvt_pager *p, kvt_pgno first) {
    fblob *b = fp_blob(p, first, "free");
    if (!b) return KVT_ECORRUPT;
    b->live = 0;
    if (b->gen < p->gen) b->pending = 1;        /* part of the last checkpoint */
    else { free(b->data); b->data = NULL; }
    return KVT_OK;
}
int kvt_blob_check(kvt_pager *p, kvt_pgno first, size_t len) {
    fblob *b = fp_blob(p, first, "check");
    if (!b) return KVT_ECORRUPT;
    if (b->ref) return kvt_seterr(KVT_ECORRUPT, "fake pager: blob %llu referenced twice", (unsigned long long)first);
    if (b->len != len) return kvt_seterr(KVT_ECORRUPT, "fake pager: blob %llu length", (unsigned long long)first);
    b->ref = 1;
    return KVT_OK;
}
int kvt_pager_check_begin(kvt_pager *p) { for (uint64_t i = 1; i < p->n; i++) p->b[i].ref = 0; return KVT_OK; }
int kvt_pager_check_end(kvt_pager *p) {
    for (uint64_t i = 1; i < p->n; i++)
        if (p->b[i].live && !p->b[i].ref)
            return kvt_seterr(KVT_ECORRUPT, "fake pager: blob %llu leaked", (unsigned long long)i);
    return KVT_OK;
}
int kvt_pager_direct_io(const kvt_pager *p) { (void)p; return 0; }
/* No read map in the fake pager: point reads load and cache nodes. */
int kvt_blob_view_open(kvt_pager *p, kvt_pgno first, size_t len, kvt_blob_view *v) {
    (void)p; (void)first; (void)len;
    memset(v, 0, sizeof *v);
    return KVT_NOTFOUND;
}
int kvt_blob_view_read(kvt_blob_view *v, size_t off, size_t n, uint8_t *tmp, const uint8_t **out) {
    (void)v; (void)off; (void)n; (void)tmp; (void)out;
    return kvt_seterr(KVT_EINVAL, "fake pager: no views");
}
int kvt_blob_view_close(kvt_blob_view *v, int rc) { (void)v; return rc; }
int kvt_blob_view_ptr(kvt_blob_view *v, size_t off, size_t n, const uint8_t **out) {
    (void)v; (void)off; (void)n; (void)out;
    return kvt_seterr(KVT_EINVAL, "fake pager: no views");
}
void kvt_blob_prefetch(kvt_pager *p, kvt_pgno first, size_t len, const size_t *off, unsigned n) {
    (void)p; (void)first; (void)len; (void)off; (void)n;
}
void kvt_blob_view_prefetch(const kvt_blob_view *v, size_t off, size_t n) { (void)v; (void)off; (void)n; }
static int fp_checkpoint(kvt_pager *p, const uint8_t *meta, size_t len) {
    for (uint64_t i = 1; i < p->n; i++)
        if (p->b[i].pending) { p->b[i].pending = 0; free(p->b[i].data); p->b[i].data = NULL; }
    memcpy(p->meta, meta, len);
    p->meta_len = len;
    p->gen++;
    return KVT_OK;
}
/* Power loss: everything since the last checkpoint is gone. */
static void fp_crash(kvt_pager *p) {
    for (uint64_t i = 1; i < p->n; i++) {
        fblob *b = &p->b[i];
        if (b->gen == p->gen && b->data) { free(b->data); b->data = NULL; b->live = 0; }
        if (b->pending) { b->pending = 0; b->live = 1; }
    }
}
static int hp_open(H *h) { h->p = fp_new(); return KVT_OK; }
static int hp_checkpoint(H *h) { return fp_checkpoint(h->p, h->meta, h->meta_len); }
static int hp_crash(H *h) { fp_crash(h->p); return KVT_OK; }
static void hp_free(H *h) { fp_free(h->p); }
static uint64_t hp_written(H *h) { return h->p->bytes_written; }
static uint64_t hp_read(H *h) { return h->p->bytes_read; }
static int hp_corrupt(H *h) {                      /* flip bytes in every live blob */
    kvt_pager *p = h->p;
    for (uint64_t i = 1; i < p->n; i++)
        if (p->b[i].live && p->b[i].len > 30) p->b[i].data[p->b[i].len / 2 + 3] ^= 0x5a, p->b[i].data[0] ^= 1;
    return KVT_OK;
}
#define FILE_NAME "fake.kvt"
#else
static kvt_vfs *test_vfs;                          /* NULL: POSIX */
static int hp_reopen(H *h) {
    /* the fractal engine caches nodes itself; blob I/O bypasses the pager's pool */
    kvt_pager_config pc = { .page_size = ops->page_size(&h->cfg), .engine_id = ops->engine_id,
                            .cache_bytes = ops == &kvt_fractal_ops ? 1 << 20 : h->cfg.cache_bytes,
                            .direct_io = getenv("FT_DIRECT") != NULL, .stats = &h->io };
    return kvt_pager_open(test_vfs ? test_vfs : kvt_vfs_posix(), h->path, &pc, &h->p);
}
static int hp_open(H *h) {
    snprintf(h->path, sizeof h->path, "/tmp/test_fractal_%d.kvt", (int)getpid());
    unlink(h->path);
    return hp_reopen(h);
}
static int hp_checkpoint(H *h) { return kvt_pager_checkpoint(h->p, h->meta, h->meta_len); }
static int hp_crash(H *h) {                        /* dirty pages are discarded */
    kvt_pager_close(h->p);
    h->p = NULL;
    KVT_TRY(hp_reopen(h));
    const uint8_t *m = kvt_pager_engine_meta(h->p, &h->meta_len);
    memcpy(h->meta, m, h->meta_len);
    return KVT_OK;
}
static void hp_free(H *h) { kvt_pager_close(h->p); unlink(h->path); }
static uint64_t hp_written(H *h) { return h->io.bytes_written; }
static uint64_t hp_read(H *h) { return h->io.bytes_read; }
static int hp_corrupt(H *h) {                      /* flip a byte in every 3rd blob page */
    kvt_pager_close(h->p);
    h->p = NULL;
    FILE *f = fopen(h->path, "r+b");
    if (!f) return KVT_EIO;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    for (long off = 2 * 4096 + 100; off < size; off += 3 * 4096) {
        fseek(f, off - 100 + 4, SEEK_SET);
        if (fgetc(f) != KVT_PT_OVERFLOW) continue;
        fseek(f, off, SEEK_SET);
        int c = fgetc(f);
        fseek(f, off, SEEK_SET);
        fputc(c ^ 0x5a, f);
    }
    fclose(f);
    return hp_reopen(h);
}
#define FILE_NAME "test_fractal_"
#endif

/* -------------------------------------------------------------- reference ---- */
#define MAXK 4000
static char *ref[MAXK];          /* value per key id, NULL: absent */
static size_t reflen[MAXK];
static char *snap[MAXK];         /* reference at the last checkpoint */
static size_t snaplen[MAXK];

static size_t key_of(unsigned i, uint8_t *k) {
    int n = sprintf((char *)k, "%08u", i);
    for (unsigned j = 0; j < i % 7; j++) k[n++] = 'x';
    return (size_t)n;
}

static size_t make_value(unsigned i, unsigned ver, size_t len, char *v) {
    for (size_t j = 0; j < len; j++) v[j] = (char)('a' + (i * 7 + ver * 13 + j) % 26);
    return len;
}

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void) { rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17; return rng_state; }


static void ref_clear(void) {
    for (int i = 0; i < MAXK; i++) { free(ref[i]); ref[i] = NULL; free(snap[i]); snap[i] = NULL; }
}

static void ref_snapshot(void) {
    for (int i = 0; i < MAXK; i++) {
        free(snap[i]);
        snap[i] = ref[i] ? malloc(reflen[i] + 1) : NULL;
        if (ref[i]) memcpy(snap[i], ref[i], reflen[i]);
        snaplen[i] = reflen[i];
    }
}

static void ref_restore(void) {
    for (int i = 0; i < MAXK; i++) {
        free(ref[i]);
        ref[i] = snap[i] ? malloc(snaplen[i] + 1) : NULL;
        if (snap[i]) memcpy(ref[i], snap[i], snaplen[i]);
        reflen[i] = snaplen[i];
    }
}

/* Tests: leaves of node_size bytes (whatever FT_LEAF_FACTOR is), so small trees get
 * deep and leaf splits and merges happen all the time. */
static void small_leaves(H *h) {
    if (ops == &kvt_fractal_ops && h->cfg.node_size && h->cfg.node_size < 65536)
        h->e->max_basements = h->cfg.node_size / h->cfg.basement_size;
}

static int h_open(H *h, uint32_t node, uint32_t base, uint64_t cache) {
    memset(h, 0, sizeof *h);
    h->cfg = (kvt_engine_config){ .node_size = node, .basement_size = base, .cache_bytes = cache };
    OK(hp_open(h));
    OK(ops->open(h->p, &h->cfg, NULL, 0, &h->e));
    small_leaves(h);
    return 0;
}

static int h_check(H *h) {
    OK(kvt_pager_check_begin(h->p));
    OK(ops->check(h->e));
    OK(kvt_pager_check_end(h->p));
    return 0;
}

static int h_checkpoint(H *h) {
    size_t ml = 0;
    OK(ops->flush(h->e, h->meta, &ml));
    CHECK(ml > 0 && ml <= KVT_ENGINE_META_MAX, "meta length %zu", ml);
    h->meta_len = ml;
    OK(hp_checkpoint(h));
    ref_snapshot();
    return 0;
}

/* Close without flushing and lose everything since the checkpoint, then reopen. */
static int h_crash_reopen(H *h) {
    ops->close(h->e);
    h->e = NULL;
    OK(hp_crash(h));
    ref_restore();
    OK(ops->open(h->p, &h->cfg, h->meta, h->meta_len, &h->e));
    small_leaves(h);
    return 0;
}

static int h_clean_reopen(H *h) {
    if (h_checkpoint(h)) return 1;
    return h_crash_reopen(h);
}

static void h_close(H *h) { ops->close(h->e); hp_free(h); }

/* ------------------------------------------------------------ operations ---- */

static int do_put(H *h, unsigned i, size_t len) {
    static char v[300000];
    uint8_t k[32];
    size_t kl = key_of(i, k);
    unsigned ver = (unsigned)rnd();
    make_value(i, ver, len, v);
    OK(ops->put(h->e, k, kl, (uint8_t *)v, len));
    free(ref[i]);
    ref[i] = malloc(len + 1);
    memcpy(ref[i], v, len);
    reflen[i] = len;
    return 0;
}

/* Append len bytes (the blind upsert) to key i, mirrored in ref. */
static int do_upsert(H *h, unsigned i, size_t len) {
    static char v[300000];
    uint8_t k[32];
    size_t kl = key_of(i, k);
    make_value(i, (unsigned)rnd(), len, v);
    OK(ops->upsert(h->e, k, kl, (uint8_t *)v, len));
    size_t old = ref[i] ? reflen[i] : 0;
    char *n = malloc(old + len + 1);
    if (old) memcpy(n, ref[i], old);
    memcpy(n + old, v, len);
    free(ref[i]);
    ref[i] = n;
    reflen[i] = old + len;
    return 0;
}

static int do_del(H *h, unsigned i, int blind) {
    uint8_t k[32];
    size_t kl = key_of(i, k);
    int existed = -1;
    OK(ops->del(h->e, k, kl, blind ? NULL : &existed));
    if (!blind) CHECK(existed == (ref[i] != NULL), "del %u existed %d", i, existed);
    free(ref[i]);
    ref[i] = NULL;
    return 0;
}

static int do_get(H *h, unsigned i) {
    uint8_t k[32];
    size_t kl = key_of(i, k);
    kvt_buf out = {0};
    int rc = ops->get(h->e, k, kl, &out);
    if (ref[i]) {
        CHECK(rc == KVT_OK, "get %u -> %d, want a value", i, rc);
        CHECK(out.len == reflen[i] && (out.len == 0 || !memcmp(out.data, ref[i], out.len)),
              "get %u: wrong value (%zu bytes, want %zu)", i, out.len, reflen[i]);
    } else {
        CHECK(rc == KVT_NOTFOUND, "get %u -> %d, want not found", i, rc);
    }
    kvt_buf_free(&out);
    return 0;
}

/* Scan visitor: compares against the reference in order. */
typedef struct sv { int next, step, stop_after, seen, bad; unsigned lim; } sv;
static unsigned key_id(const uint8_t *k) { unsigned i = 0; for (int j = 0; j < 8; j++) i = i * 10 + (k[j] - '0'); return i; }

static int visit(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    sv *s = ctx;
    while (s->next >= 0 && s->next < MAXK && !ref[s->next]) s->next += s->step;
    unsigned id = key_id(k);
    uint8_t want[32];
    size_t wl = (s->next >= 0 && s->next < MAXK) ? key_of((unsigned)s->next, want) : 0;
    if (wl != kl || memcmp(want, k, kl) || vl != reflen[id] || (vl && memcmp(v, ref[id], vl))) {
        fprintf(stderr, "scan: got key %.*s, want %.*s\n", (int)kl, k, (int)wl, want);
        s->bad = 1;
        return 1;
    }
    s->next += s->step;
    s->seen++;
    return s->stop_after && s->seen >= s->stop_after;
}

static int scan_cmp(H *h, int from, int incl, int reverse, int stop_after) {
    sv s = { .step = reverse ? -1 : 1, .stop_after = stop_after };
    uint8_t k[32];
    size_t kl = 0;
    if (from < 0) s.next = reverse ? MAXK - 1 : 0;
    else {
        kl = key_of((unsigned)from, k);
        s.next = from + (incl ? 0 : s.step);
    }
    OK(ops->scan(h->e, from < 0 ? NULL : k, kl, incl, reverse, visit, &s));
    CHECK(!s.bad, "scan from %d incl %d reverse %d", from, incl, reverse);
    if (!stop_after || s.seen < stop_after) {   /* the scan must have reached the end */
        while (s.next >= 0 && s.next < MAXK && !ref[s.next]) s.next += s.step;
        CHECK(s.next < 0 || s.next >= MAXK, "scan from %d stopped early at %d", from, s.next);
    }
    return 0;
}

static int verify_all(H *h) {
    for (unsigned i = 0; i < MAXK; i++) if (do_get(h, i)) return 1;
    if (scan_cmp(h, -1, 1, 0, 0) || scan_cmp(h, -1, 1, 1, 0)) return 1;
    for (int t = 0; t < 20; t++) {
        int from = (int)(rnd() % MAXK);
        if (scan_cmp(h, from, (int)(rnd() & 1), (int)(rnd() & 1), (int)(rnd() % 50))) return 1;
    }
    return h_check(h);
}

static size_t rand_len(void) {
    uint64_t r = rnd() % 100;
    if (r < 3) return 2000 + rnd() % 20000;       /* out of line */
    if (r < 6) return 0;
    return rnd() % 200;
}

static int random_ops(H *h, int n, int keyspace) {
    for (int i = 0; i < n; i++) {
        unsigned k = (unsigned)(rnd() % (uint64_t)keyspace);
        uint64_t r = rnd() % 100;
        if (r < 55) { if (do_put(h, k, rand_len())) return 1; }
        else if (r < 80) { if (do_del(h, k, (int)(r & 1))) return 1; }
        else if (do_get(h, k)) return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ tests ---- */

/* White box: buffer partitions in the cache, how many have several segments (the
 * tests' small sizes must exercise segment cuts and multi-segment reads), and how often
 * a segment filter lets a key through that no message has (check() verifies that it
 * never misses one that does). */
static void cached_partitions(kvt_engine *e, uint32_t *parts, uint32_t *multi, uint32_t *chained,
                              uint32_t *probes, uint32_t *passed) {
    for (uint64_t b = 0; b < e->nbuckets; b++)
        for (fnode *n = e->hash[b]; n; n = n->hnext) {
            if (n->kind != FT_PARTITION) continue;
            ++*parts;
            *multi += n->n > 1;
            *chained += n->runs > 1;
            for (uint32_t j = 0; j < n->n; j++)
                for (int i = 0; i < 20; i++) {
                    char k[32];
                    int kl = snprintf(k, sizeof k, "absent-%u-%d", j, i);   /* never put */
                    ++*probes;
                    *passed += ft_bloom_maybe(n, j, (const uint8_t *)k, (size_t)kl);
                }
        }
}

static int test_random(void) {
    H h;
    if (h_open(&h, 8192, 1024, 96 << 10)) return 1;
    uint32_t parts = 0, multi = 0, chained = 0, probes = 0, passed = 0;
    for (int phase = 0; phase < 6; phase++) {
        if (random_ops(&h, 6000, MAXK)) return 1;
        if (verify_all(&h)) return 1;
        cached_partitions(h.e, &parts, &multi, &chained, &probes, &passed);
    }
    kvt_engine_stats st;
    ops->stats(h.e, &st);
    CHECK(st.height >= 3 && st.flushes > 10, "tree too small: height %llu flushes %llu",
          (unsigned long long)st.height, (unsigned long long)st.flushes);
    CHECK(multi > 0, "no cached buffer partition has several segments (%u partitions)", parts);
    CHECK(chained > 0 && h.e->runs_started > 0, "no buffer with several runs (%llu started)",
          (unsigned long long)h.e->runs_started);
    CHECK(probes > 0 && passed * 10 < probes, "segment filters pass %u of %u absent keys", passed, probes);
    printf("  random: partitions cached %u (%u with several segments, %u chained runs, %llu runs "
           "started), filters pass %u of %u absent keys\n", parts, multi, chained,
           (unsigned long long)h.e->runs_started, passed, probes);
    printf("  random: height %llu entries %llu nodes %llu flushes %llu\n", (unsigned long long)st.height,
           (unsigned long long)st.entries, (unsigned long long)st.nodes, (unsigned long long)st.flushes);
    h_close(&h);
    ref_clear();
    return 0;
}

static int test_reopen_crash(void) {
    H h;
    if (h_open(&h, 8192, 1024, 64 << 10)) return 1;
    for (int cycle = 0; cycle < 8; cycle++) {
        if (random_ops(&h, 3000, MAXK)) return 1;
        if (cycle % 2 == 0) { if (h_clean_reopen(&h)) return 1; }
        else {
            if (h_checkpoint(&h) || random_ops(&h, 2000, MAXK)) return 1;
            if (h_crash_reopen(&h)) return 1;           /* back to the checkpoint */
        }
        if (verify_all(&h)) return 1;
    }
    h_close(&h);
    ref_clear();
    return 0;
}

static int test_tombstones(void) {
    H h;
    if (h_open(&h, 8192, 1024, 64 << 10)) return 1;
    for (unsigned i = 0; i < MAXK; i++) if (do_put(&h, i, 50)) return 1;
    if (h_clean_reopen(&h)) return 1;
    for (unsigned i = 0; i < MAXK; i += 2) if (do_del(&h, i, 1)) return 1;
    if (verify_all(&h)) return 1;
    /* push the tombstones down through flushes, splits and a reopen */
    for (int r = 0; r < 3; r++) {
        for (unsigned i = 1; i < MAXK; i += 2) if (do_put(&h, i, 60 + r)) return 1;
        if (verify_all(&h) || h_clean_reopen(&h) || verify_all(&h)) return 1;
    }
    for (unsigned i = 0; i < MAXK; i++) if (do_del(&h, i, 0)) return 1;
    if (verify_all(&h) || h_clean_reopen(&h) || verify_all(&h)) return 1;
    h_close(&h);
    ref_clear();
    return 0;
}

/* Blobs written before the record index, or with it after the records (test hooks),
 * still answer gets, read in place (walked, or searched through the tail index),
 * beside new blobs that have the index in front. */
static int legacy_blobs(int *hook) {
    H h;
    if (h_open(&h, 8192, 1024, 64 << 10)) return 1;
    *hook = 1;
    int rc = h_clean_reopen(&h);                  /* an empty basement (28 bytes unindexed) */
    if (rc == 0) rc = do_get(&h, 1);
    if (rc == 0) rc = random_ops(&h, 4000, MAXK);
    if (rc == 0) rc = h_clean_reopen(&h);         /* nothing cached: gets read the blobs */
    *hook = 0;
    if (rc || verify_all(&h)) return 1;
    if (random_ops(&h, 1500, MAXK) || verify_all(&h)) return 1;
    if (h_clean_reopen(&h) || verify_all(&h)) return 1;
    h_close(&h);
    ref_clear();
    return 0;
}

static int test_legacy_blobs(void) {
    return legacy_blobs(&ft_test_no_index) || legacy_blobs(&ft_test_tail_index);
}

static int test_ascending(void) {
    H h;
    if (h_open(&h, 16384, 2048, 256 << 10)) return 1;
    for (unsigned i = 0; i < MAXK; i++) if (do_put(&h, i, 40)) return 1;
    if (verify_all(&h)) return 1;
    kvt_engine_stats st;
    ops->stats(h.e, &st);
    CHECK(st.entries == MAXK, "entries %llu", (unsigned long long)st.entries);
    CHECK(st.flushes == 0, "ascending inserts should bypass the buffers (%llu flushes)",
          (unsigned long long)st.flushes);
    /* fill factor: the fast path should leave basements nearly full */
    printf("  ascending: height %llu nodes %llu\n", (unsigned long long)st.height, (unsigned long long)st.nodes);
    CHECK(st.nodes < (MAXK * 66ull) / 2048 * 3 / 2 + 8, "too many nodes (%llu): half-empty splits?",
          (unsigned long long)st.nodes);
    /* descending, then interleaved updates */
    for (unsigned i = MAXK; i-- > 0;) if (do_put(&h, i, 30)) return 1;
    if (verify_all(&h) || h_clean_reopen(&h) || verify_all(&h)) return 1;
    h_close(&h);
    ref_clear();
    return 0;
}

static int test_big_values(void) {
    H h;
    if (h_open(&h, 8192, 1024, 64 << 10)) return 1;
    for (int r = 0; r < 3; r++) {
        for (unsigned i = 0; i < 200; i++) {
            unsigned k = (unsigned)(rnd() % 300);
            if (rnd() % 4 == 0) { if (do_del(&h, k, 0)) return 1; }
            else if (do_put(&h, k, rnd() % 2 ? 100 + rnd() % 250000 : rnd() % 100)) return 1;
        }
        if (verify_all(&h) || h_clean_reopen(&h) || verify_all(&h)) return 1;
    }
    h_close(&h);
    ref_clear();
    return 0;
}

/* White box: UPSERT messages waiting in cached buffer segments. */
static uint32_t cached_upserts(kvt_engine *e) {
    uint32_t n = 0;
    for (uint64_t b = 0; b < e->nbuckets; b++)
        for (fnode *x = e->hash[b]; x; x = x->hnext)
            if (x->kind == FT_SEGMENT)
                for (uint32_t i = 0; i < x->ents.n; i++) n += x->ents.r[i].type == FT_UPSERT;
    return n;
}

/* Upserts mixed with puts (some out of line), deletes and gets: folding in buffers, at
 * basements, in get and scan, across flushes, reopens and crashes. */
static int test_upsert(void) {
    H h;
    if (h_open(&h, 8192, 1024, 96 << 10)) return 1;
    uint32_t pending = 0;
    for (int phase = 0; phase < 6; phase++) {
        for (int i = 0; i < 5000; i++) {
            unsigned k = (unsigned)(rnd() % 1500);
            uint64_t r = rnd() % 100;
            int rc = r < 15 ? do_put(&h, k, rand_len()) : r < 25 ? do_del(&h, k, (int)(r & 1))
                   : r < 90 ? do_upsert(&h, k, r < 30 ? 0 : rnd() % 40) : do_get(&h, k);
            if (rc) return 1;
        }
        uint32_t u = cached_upserts(h.e);
        if (u > pending) pending = u;
        if (verify_all(&h)) return 1;
        if (phase == 2 && h_clean_reopen(&h)) return 1;
        if (phase == 3 && (h_checkpoint(&h) || do_upsert(&h, 7, 10) || h_crash_reopen(&h))) return 1;
        if (phase >= 2 && verify_all(&h)) return 1;
    }
    CHECK(pending > 0, "no upsert message was ever buffered");
    kvt_engine_stats st;
    ops->stats(h.e, &st);
    CHECK(st.flushes > 10, "too few flushes: %llu", (unsigned long long)st.flushes);
    h_close(&h);
    ref_clear();
    return 0;
}

static int test_damage(void) {
    H h;
    if (h_open(&h, 8192, 1024, 32 << 10)) return 1;
    for (unsigned i = 0; i < MAXK; i++) if (do_put(&h, (unsigned)(rnd() % MAXK), 80)) return 1;
    if (h_clean_reopen(&h)) return 1;
    ops->close(h.e);
    h.e = NULL;
    OK(hp_corrupt(&h));
    int rc = ops->open(h.p, &h.cfg, h.meta, h.meta_len, &h.e);
    CHECK(rc == KVT_OK || rc == KVT_ECORRUPT, "open on damage -> %d", rc);
    int errs = rc == KVT_ECORRUPT;
    if (errs) CHECK(strstr(kvt_errmsg(), FILE_NAME) != NULL, "error does not name the file: %s", kvt_errmsg());
    for (unsigned i = 0; rc == KVT_OK && i < MAXK; i++) {
        uint8_t k[32];
        kvt_buf out = {0};
        int r2 = ops->get(h.e, k, key_of(i, k), &out);
        kvt_buf_free(&out);
        CHECK(r2 == KVT_OK || r2 == KVT_NOTFOUND || r2 == KVT_ECORRUPT, "get on damage -> %d", r2);
        if (r2 == KVT_ECORRUPT && !errs++)
            CHECK(strstr(kvt_errmsg(), FILE_NAME) != NULL, "error does not name the file: %s", kvt_errmsg());
    }
    CHECK(errs > 0, "damage not detected");
    if (rc == KVT_OK) {
        OK(kvt_pager_check_begin(h.p));
        CHECK(ops->check(h.e) == KVT_ECORRUPT, "check did not report damage");
        h_close(&h);
    } else {
        hp_free(&h);
    }
    ref_clear();
    /* a damaged meta */
    H g;
    if (h_open(&g, 8192, 1024, 32 << 10) || h_checkpoint(&g)) return 1;
    ops->close(g.e);
    g.meta[0] ^= 0xff;
    CHECK(ops->open(g.p, &g.cfg, g.meta, g.meta_len, &g.e) == KVT_ECORRUPT, "damaged meta accepted");
    hp_free(&g);
    ref_clear();
    return 0;
}

#ifndef FT_FAKE_PAGER
/* I/O failures in the middle of flushes, write-backs and checkpoints: errors come back
 * as return codes, nothing crashes or leaks (run under ASan), and the file still opens
 * at its last checkpoint. */
static int test_io_faults(void) {
    OK(kvt_fault_vfs_new(&test_vfs));
    for (int round = 0; round < 6; round++) {
        H h;
        if (h_open(&h, 8192, 1024, 32 << 10)) return 1;
        for (unsigned i = 0; i < 1500; i++) if (do_put(&h, (unsigned)(rnd() % MAXK), rand_len())) return 1;
        if (h_checkpoint(&h)) return 1;
        OK(kvt_fault_set(test_vfs, round % 2 ? KVT_FAULT_SYNC : KVT_FAULT_WRITE, 1 + rnd() % 40, 1, KVT_EIO));
        int rc = KVT_OK;
        for (unsigned i = 0; i < 20000 && rc == KVT_OK; i++) {
            uint8_t k[32];
            static char v[3000];
            rc = ops->put(h.e, k, key_of((unsigned)(rnd() % MAXK), k), (uint8_t *)v, rnd() % sizeof v);
            if (rc == KVT_OK && i % 500 == 499) {
                size_t ml;
                rc = ops->flush(h.e, h.meta + 0, &ml);
                if (rc == KVT_OK) rc = kvt_pager_checkpoint(h.p, h.meta, ml);
            }
        }
        CHECK(rc < 0, "no error surfaced in round %d", round);
        ops->close(h.e);
        h.e = NULL;
        kvt_fault_reset(test_vfs);
        kvt_pager_close(h.p);                     /* back to the last good checkpoint */
        h.p = NULL;
        OK(hp_reopen(&h));
        size_t ml;
        const uint8_t *m = kvt_pager_engine_meta(h.p, &ml);
        OK(ops->open(h.p, &h.cfg, m, ml, &h.e));
        small_leaves(&h);
        if (h_check(&h)) return 1;
        h_close(&h);
        ref_clear();
    }
    kvt_fault_vfs_free(test_vfs);
    test_vfs = NULL;
    return 0;
}
#endif

/* The production shape (default sizes, leaves of FT_LEAF_FACTOR nodes), small cache. */
static int test_default_sizes(void) {
    H h;
    if (h_open(&h, 0, 0, 1 << 20)) return 1;
    for (int r = 0; r < 3; r++)
        if (random_ops(&h, 8000, MAXK) || verify_all(&h) || h_clean_reopen(&h) || verify_all(&h)) return 1;
    h_close(&h);
    ref_clear();
    return 0;
}

typedef struct rt { H *h; int bad; unsigned seed; } rt;
static void *reader(void *arg) {
    rt *t = arg;
    unsigned s = t->seed;
    for (int n = 0; n < 3000 && !t->bad; n++) {
        s = s * 1103515245u + 12345u;
        unsigned i = (s >> 8) % MAXK;
        uint8_t k[32];
        kvt_buf out = {0};
        int rc = ops->get(t->h->e, k, key_of(i, k), &out);
        if ((ref[i] != NULL) != (rc == KVT_OK) || (rc == KVT_OK && (out.len != reflen[i] || (out.len && memcmp(out.data, ref[i], out.len)))))
            t->bad = 1;
        kvt_buf_free(&out);
        if (n % 100 == 0) {
            sv v = { .step = 1, .next = (int)i, .stop_after = 30 };
            if (ops->scan(t->h->e, k, key_of(i, k), 1, 0, visit, &v) != KVT_OK || v.bad) t->bad = 1;
        }
    }
    return NULL;
}

static int test_concurrent_readers(void) {
    H h;
    if (h_open(&h, 8192, 1024, 48 << 10)) return 1;
    if (random_ops(&h, 8000, MAXK)) return 1;     /* dirty nodes stay: readers must skip them */
    pthread_t th[4];
    rt t[4];
    for (int i = 0; i < 4; i++) { t[i] = (rt){ &h, 0, (unsigned)i * 7919u + 1 }; pthread_create(&th[i], NULL, reader, &t[i]); }
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++) CHECK(!t[i].bad, "reader %d saw a wrong answer", i);
    if (h_checkpoint(&h)) return 1;
    for (int i = 0; i < 4; i++) { t[i] = (rt){ &h, 0, (unsigned)i * 31u + 5 }; pthread_create(&th[i], NULL, reader, &t[i]); }
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++) CHECK(!t[i].bad, "reader %d saw a wrong answer (clean cache)", i);
    if (verify_all(&h)) return 1;
    h_close(&h);
    ref_clear();
    return 0;
}

static int is_cached(kvt_engine *e, uint64_t id) {
    for (uint64_t b = 0; b < e->nbuckets; b++)
        for (fnode *n = e->hash[b]; n; n = n->hnext)
            if (n->id == id) return 1;
    return 0;
}

/* ft_prefetch (O_DIRECT reads only): uncached nodes end up cached and held pinned (read
 * by several threads at once), cached and unknown ids are skipped, answers stay right;
 * with buffered reads it does nothing. */
static int test_prefetch(void) {
    H h;
    int had_direct = getenv("FT_DIRECT") != NULL;
    setenv("FT_DIRECT", "1", 1);                  /* the harness's pager: O_DIRECT */
    int rc = h_open(&h, 8192, 1024, 8 << 20);     /* the whole tree fits */
    if (!had_direct) unsetenv("FT_DIRECT");
    if (rc) return 1;
    if (random_ops(&h, 8000, MAXK)) return 1;
    if (h_clean_reopen(&h)) return 1;             /* a cold cache (reopened buffered) */
    uint64_t ids[FT_PREFETCH_MAX + 2];
    uint32_t n = 0;
    for (uint64_t id = 1; id < h.e->ntab && n < FT_PREFETCH_MAX - 1; id++)
        if (h.e->live[id] && h.e->tab[id].pgno && !is_cached(h.e, id)) ids[n++] = id;
    CHECK(n >= 4, "only %u uncached nodes to prefetch", n);
    ids[n++] = 0;                                 /* no node */
    ids[n++] = h.e->ntab + 5;                     /* past the table */
    fnode *hold[FT_PREFETCH_MAX];
    uint32_t held = had_direct ? 0 : ft_prefetch(h.e, ids, n, hold);
    CHECK(held == 0, "buffered reads prefetched %u nodes", held);
    setenv("FT_DIRECT", "1", 1);
    rc = h_clean_reopen(&h);                      /* cold again, O_DIRECT */
    if (!had_direct) unsetenv("FT_DIRECT");
    if (rc) return 1;
    uint64_t misses = h.e->misses;
    held = ft_prefetch(h.e, ids, n, hold);
    CHECK(held == n - 2, "prefetch holds %u of %u nodes", held, n - 2);
    for (uint32_t i = 0; i < held; i++) CHECK(hold[i]->pins > 0, "prefetched node not pinned");
    for (uint32_t i = 0; i < held; i++) ft_unpin(h.e, hold[i]);
    for (uint32_t i = 0; i + 2 < n; i++) CHECK(is_cached(h.e, ids[i]), "node %llu not prefetched", (unsigned long long)ids[i]);
    CHECK(h.e->misses == misses + n - 2, "prefetch counted %llu misses for %u nodes",
          (unsigned long long)(h.e->misses - misses), n - 2);
    if (verify_all(&h)) return 1;
    h_close(&h);
    ref_clear();
    return 0;
}

/* ------------------------------------------------------------------ bench ---- */

static double now(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return ts.tv_sec + ts.tv_nsec / 1e9; }

static int count_visit(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    unsigned long *c = ctx;
    return ++*c >= 101;
}

static int bench(unsigned long n, uint32_t node, uint32_t base, uint64_t cache) {
    H h;
    if (h_open(&h, node, base, cache)) return 1;
    if (ops == &kvt_fractal_ops && getenv("FT_LEAF"))   /* basements per leaf */
        h.e->max_basements = (uint32_t)atoi(getenv("FT_LEAF"));
    if (ops == &kvt_fractal_ops && getenv("FT_RUNS"))    /* runs per buffer */
        h.e->max_runs = (uint32_t)atoi(getenv("FT_RUNS"));
    uint64_t seed = rng_state;
    uint8_t k[16], v[100];
    memset(v, 'v', sizeof v);
    double t0 = now();
    for (unsigned long i = 0; i < n; i++) {
        uint64_t x = rnd();
        memcpy(k, &x, 8); memcpy(k + 8, &x, 8);
        OK(ops->put(h.e, k, 16, v, 100));
        if (i % 500000 == 499999) if (h_checkpoint(&h)) return 1;
    }
    double t1 = now();
    if (h_checkpoint(&h)) return 1;
    kvt_engine_stats st;
    ops->stats(h.e, &st);
    printf("fillrandom %lu: %.0f puts/s, %.1f bytes written/key (node %u basement %u cache %llu) height %llu flushes %llu\n",
           n, n / (t1 - t0), (double)hp_written(&h) / n, node, base, (unsigned long long)cache,
           (unsigned long long)st.height, (unsigned long long)st.flushes);
    rng_state = seed;
    for (int j = 0; j < 7; j++) rnd();
    t0 = now();
    unsigned long found = 0, nr = n < 20000 ? n : 20000;
    kvt_buf out = {0};
    uint64_t r0 = hp_read(&h);
    for (unsigned long i = 0; i < nr; i++) {
        uint64_t x = rnd();
        memcpy(k, &x, 8); memcpy(k + 8, &x, 8);
        found += ops->get(h.e, k, 16, &out) == KVT_OK;
    }
    t1 = now();
    if (ops == &kvt_fractal_ops)
        printf("  written per key by kind: internal %.0f leaf %.0f basement %.0f partition %.0f segment %.0f\n",
               (double)h.e->wb_bytes[FT_INTERNAL] / n, (double)h.e->wb_bytes[FT_LEAF] / n,
               (double)h.e->wb_bytes[FT_BASEMENT] / n, (double)h.e->wb_bytes[FT_PARTITION] / n,
               (double)h.e->wb_bytes[FT_SEGMENT] / n);
    printf("readrandom: %.0f gets/s (%lu found, %.0f bytes read/get)\n", nr / (t1 - t0), found,
           (double)(hp_read(&h) - r0) / nr);
    kvt_buf_free(&out);
    unsigned long ns = nr / 4, seen = 0;
    t0 = now();
    for (unsigned long i = 0; i < ns; i++) {
        uint64_t x = rnd();
        memcpy(k, &x, 8); memcpy(k + 8, &x, 8);
        unsigned long cnt = 0;
        OK(ops->scan(h.e, k, 16, 1, 0, count_visit, &cnt));
        seen += cnt;
    }
    t1 = now();
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("seek+100 next: %.0f seeks/s (%.1f entries each); max RSS %ld MiB\n", ns / (t1 - t0),
           (double)seen / ns, ru.ru_maxrss / 1024);
    h_close(&h);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1) rng_state ^= strtoull(argv[1], NULL, 10) * 0x9E3779B97F4A7C15ull;
#ifndef FT_FAKE_PAGER
    if (getenv("FT_BTREE")) ops = &kvt_btree_ops;      /* bench the B+tree the same way */
#endif
    if (argc > 3 && !strcmp(argv[2], "bench"))
        return bench(strtoul(argv[3], NULL, 10), argc > 4 ? (uint32_t)atoi(argv[4]) : 0,
                     argc > 5 ? (uint32_t)atoi(argv[5]) : 0, argc > 6 ? strtoull(argv[6], NULL, 10) : 64ull << 20);
    struct { const char *name; int (*fn)(void); } t[] = {
        { "random", test_random }, { "reopen_crash", test_reopen_crash },
        { "tombstones", test_tombstones }, { "ascending", test_ascending },
        { "legacy_blobs", test_legacy_blobs },
        { "big_values", test_big_values }, { "upsert", test_upsert }, { "damage", test_damage },
        { "concurrent_readers", test_concurrent_readers }, { "default_sizes", test_default_sizes },
        { "prefetch", test_prefetch },
#ifndef FT_FAKE_PAGER
        { "io_faults", test_io_faults },
#endif
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        int rc = t[i].fn();
        printf("%s %s\n", rc ? "FAIL" : "ok  ", t[i].name);
        if (rc) { ref_clear(); }
    }
    printf(failures ? "FAILED (%d)\n" : "all passed\n", failures);
    return failures != 0;
}
