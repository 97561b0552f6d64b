/* test_db.c - the public C API (native/db) end to end, on every engine that is built.
 *
 * Each test runs once per available engine in a fresh temporary directory and ends with
 * kvt_check(). Returns non-zero on the first failure.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "kvtrees.h"
#include "kvt_engine.h"

static int failures;
static const char *engine;
#define CHECK(cond) do { if (!(cond)) { \
    fprintf(stderr, "%s:%d [%s] CHECK(%s) failed: %s\n", __FILE__, __LINE__, engine, #cond, \
            kvt_errmsg()); failures++; return 1; } } while (0)
#define OK(expr) do { int rc_ = (expr); if (rc_ != KVT_OK) { \
    fprintf(stderr, "%s:%d [%s] %s -> %d %s: %s\n", __FILE__, __LINE__, engine, #expr, rc_, \
            kvt_strerror(rc_), kvt_errmsg()); failures++; return 1; } } while (0)

static char tmpl[256];

static const char *fresh_dir(void) {
    static int n;
    static char path[300];
    snprintf(path, sizeof path, "%s/d%d", tmpl, n++);
    return path;
}

static kvt_options opts(int sync_mode) {
    kvt_options o;
    kvt_options_init(&o);
    o.engine = engine;
    o.sync_mode = sync_mode;
    o.cache_size = 1 << 20;
    return o;
}

static void key_of(char *buf, size_t cap, int i) { snprintf(buf, cap, "key%08d", i); }

static int put_str(kvt_db *db, const char *k, const char *v) {
    return kvt_put(db, (const uint8_t *)k, strlen(k), (const uint8_t *)v, strlen(v));
}

/* 1 if key has value v, 0 if absent, -1 on mismatch/error. */
static int get_is(kvt_db *db, const char *k, const char *v) {
    uint8_t buf[256];
    size_t n = 0;
    int rc = kvt_get(db, (const uint8_t *)k, strlen(k), buf, sizeof buf, &n);
    if (rc == KVT_NOTFOUND) return v ? -1 : 0;
    if (rc != KVT_OK || !v) return -1;
    return n == strlen(v) && memcmp(buf, v, n) == 0 ? 1 : -1;
}

static int test_options(void) {
    kvt_options o;
    kvt_options_init(&o);
    CHECK(o.cache_size == 64ull << 20 && o.sync_mode == 0 && o.sync_interval_ms == 100);
    CHECK(o.page_size == 4096 && o.wal_limit == 64ull << 20 && !o.engine && !o.vfs);
    kvt_db *db = NULL;
    o.sync_mode = 7;
    CHECK(kvt_open(fresh_dir(), &o, &db) == KVT_EINVAL && !db);
    kvt_options_init(&o);
    o.page_size = 5000;
    CHECK(kvt_open(fresh_dir(), &o, &db) == KVT_EINVAL);
    kvt_options_init(&o);
    o.engine = "nosuch";
    CHECK(kvt_open(fresh_dir(), &o, &db) == KVT_EINVAL);
    CHECK(strstr(kvt_errmsg(), "nosuch"));
    return 0;
}

static int test_basic(void) {
    kvt_options o = opts(0);
    kvt_db *db;
    OK(kvt_open(fresh_dir(), &o, &db));
    CHECK(strcmp(kvt_engine_name(db), engine) == 0);
    OK(put_str(db, "a", "1"));
    OK(put_str(db, "b", "22"));
    OK(put_str(db, "a", "111"));
    CHECK(get_is(db, "a", "111") == 1 && get_is(db, "b", "22") == 1 && get_is(db, "c", 0) == 0);
    uint8_t small[2];
    size_t n = 0;
    CHECK(kvt_get(db, (const uint8_t *)"a", 1, small, sizeof small, &n) == KVT_EBUFSMALL);
    CHECK(n == 3);
    CHECK(kvt_get(db, (const uint8_t *)"a", 1, NULL, 0, &n) == KVT_EBUFSMALL && n == 3);
    int existed = -1;
    OK(kvt_delete(db, (const uint8_t *)"a", 1, &existed));
    CHECK(existed == 1);
    OK(kvt_delete(db, (const uint8_t *)"a", 1, &existed));
    CHECK(existed == 0);
    CHECK(get_is(db, "a", 0) == 0);
    OK(put_str(db, "empty", ""));
    CHECK(kvt_get(db, (const uint8_t *)"empty", 5, small, sizeof small, &n) == KVT_OK && n == 0);
    uint8_t big[KVT_MAX_KEY + 1];
    memset(big, 'x', sizeof big);
    CHECK(kvt_put(db, big, sizeof big, big, 1) == KVT_ETOOLARGE);
    CHECK(kvt_put(db, big, 0, big, 1) == KVT_EINVAL);
    OK(kvt_put(db, big, KVT_MAX_KEY, big, 10));
    OK(kvt_check(db));
    kvt_stats st;
    OK(kvt_get_stats(db, &st));
    CHECK(st.commits >= 6 && st.wal_bytes_written > 0 && st.fsyncs > 0 && st.page_size >= 4096);
    OK(kvt_close(db));
    return 0;
}

static int test_batch_and_reopen(void) {
    const char *dir = fresh_dir();
    kvt_options o = opts(2);
    kvt_db *db;
    OK(kvt_open(dir, &o, &db));
    kvt_batch *b;
    OK(kvt_batch_new(db, &b));
    char k[32];
    for (int i = 0; i < 2000; i++) {
        key_of(k, sizeof k, i);
        OK(kvt_batch_put(b, (const uint8_t *)k, strlen(k), (const uint8_t *)k, strlen(k)));
    }
    key_of(k, sizeof k, 5);
    OK(kvt_batch_delete(b, (const uint8_t *)k, strlen(k)));
    CHECK(kvt_batch_count(b) == 2001);
    CHECK(kvt_batch_put(b, (const uint8_t *)k, 0, NULL, 0) == KVT_EINVAL);
    CHECK(get_is(db, "key00000001", 0) == 0);   /* nothing visible before commit */
    OK(kvt_batch_commit(b));
    CHECK(kvt_batch_count(b) == 0);
    OK(kvt_batch_put(b, (const uint8_t *)"zz", 2, (const uint8_t *)"discarded", 9));
    kvt_batch_clear(b);
    OK(kvt_batch_commit(b));   /* empty commit is a no-op */
    kvt_batch_free(b);
    CHECK(get_is(db, "key00000001", "key00000001") == 1 && get_is(db, "key00000005", 0) == 0);
    CHECK(get_is(db, "zz", 0) == 0);
    OK(kvt_close(db));
    /* reopen without naming the engine: the directory's own is used */
    o.engine = NULL;
    OK(kvt_open(dir, &o, &db));
    CHECK(strcmp(kvt_engine_name(db), engine) == 0);
    CHECK(get_is(db, "key00001999", "key00001999") == 1 && get_is(db, "key00000005", 0) == 0);
    OK(kvt_check(db));
    OK(kvt_close(db));
    return 0;
}

/* Walk [s, e) in one direction and compare with the expected key numbers. */
static int walk(kvt_db *db, const char *s, const char *e, int reverse, int first, int count,
                int step) {
    kvt_iter *it;
    OK(kvt_iter_new(db, (const uint8_t *)s, s ? strlen(s) : 0, (const uint8_t *)e,
                    e ? strlen(e) : 0, reverse, &it));
    const uint8_t *k, *v;
    size_t kl, vl;
    char want[32];
    int n = 0, rc;
    while ((rc = kvt_iter_next(it, &k, &kl, &v, &vl)) == KVT_OK) {
        key_of(want, sizeof want, first + n * step);
        if (kl != strlen(want) || memcmp(k, want, kl) || vl != kl || memcmp(v, k, kl)) {
            fprintf(stderr, "walk: entry %d is %.*s, want %s\n", n, (int)kl, k, want);
            kvt_iter_free(it);
            CHECK(0);
        }
        n++;
    }
    kvt_iter_free(it);
    CHECK(rc == KVT_NOTFOUND);
    if (n != count) fprintf(stderr, "walk: %d entries, want %d\n", n, count);
    CHECK(n == count);
    return 0;
}

static int test_iter(void) {
    kvt_options o = opts(2);
    kvt_db *db;
    OK(kvt_open(fresh_dir(), &o, &db));
    CHECK(walk(db, NULL, NULL, 0, 0, 0, 1) == 0);
    char k[32];
    kvt_batch *b;
    OK(kvt_batch_new(db, &b));
    for (int i = 0; i < 1000; i++) {   /* more than one chunk */
        key_of(k, sizeof k, i);
        OK(kvt_batch_put(b, (const uint8_t *)k, strlen(k), (const uint8_t *)k, strlen(k)));
    }
    OK(kvt_batch_commit(b));
    kvt_batch_free(b);
    CHECK(walk(db, NULL, NULL, 0, 0, 1000, 1) == 0);
    CHECK(walk(db, NULL, NULL, 1, 999, 1000, -1) == 0);
    CHECK(walk(db, "key00000100", "key00000700", 0, 100, 600, 1) == 0);
    CHECK(walk(db, "key00000100", "key00000700", 1, 699, 600, -1) == 0);
    CHECK(walk(db, "key00000100x", NULL, 0, 101, 899, 1) == 0);
    CHECK(walk(db, NULL, "key00000010x", 1, 10, 11, -1) == 0);
    CHECK(walk(db, "key00000700", "key00000100", 0, 0, 0, 1) == 0);
    CHECK(walk(db, "zzz", NULL, 0, 0, 0, 1) == 0);

    /* writes between chunks: deleted keys ahead vanish, no key twice, order kept */
    kvt_iter *it;
    OK(kvt_iter_new(db, NULL, 0, NULL, 0, 0, &it));
    const uint8_t *kp, *vp;
    size_t kl, vl;
    char prev[64] = "";
    int n = 0, rc;
    while ((rc = kvt_iter_next(it, &kp, &kl, &vp, &vl)) == KVT_OK) {
        char cur[64];
        snprintf(cur, sizeof cur, "%.*s", (int)kl, kp);
        CHECK(strcmp(prev, cur) < 0);
        snprintf(prev, sizeof prev, "%s", cur);
        if (++n == 10) {
            for (int i = 500; i < 1000; i++) {
                key_of(k, sizeof k, i);
                OK(kvt_delete(db, (const uint8_t *)k, strlen(k), NULL));
            }
        }
    }
    kvt_iter_free(it);
    CHECK(rc == KVT_NOTFOUND);
    CHECK(n == 500);
    OK(kvt_check(db));
    OK(kvt_close(db));
    return 0;
}

static int test_locking(void) {
    const char *dir = fresh_dir();
    kvt_options o = opts(0);
    kvt_db *db, *db2;
    OK(kvt_open(dir, &o, &db));
    CHECK(kvt_open(dir, &o, &db2) == KVT_ELOCKED);
    o.read_only = 1;
    CHECK(kvt_open(dir, &o, &db2) == KVT_ELOCKED);
    OK(put_str(db, "k", "v"));
    OK(kvt_close(db));
    kvt_db *r1, *r2;
    OK(kvt_open(dir, &o, &r1));
    OK(kvt_open(dir, &o, &r2));
    CHECK(get_is(r1, "k", "v") == 1 && get_is(r2, "k", "v") == 1);
    CHECK(put_str(r1, "k", "w") == KVT_EREADONLY);
    o.read_only = 0;
    CHECK(kvt_open(dir, &o, &db2) == KVT_ELOCKED);
    OK(kvt_close(r1));
    OK(kvt_close(r2));
    o.read_only = 1;
    CHECK(kvt_open(fresh_dir(), &o, &db2) < 0);   /* nothing to open read-only */
    return 0;
}

static int test_engine_mismatch(void) {
    const char *other = strcmp(engine, "btree") == 0 ? "fractal" : "btree";
    const char *dir = fresh_dir();
    kvt_options o = opts(2);
    kvt_db *db;
    OK(kvt_open(dir, &o, &db));
    OK(kvt_close(db));
    o.engine = other;
    int rc = kvt_open(dir, &o, &db);
    if (rc == KVT_EINVAL && strstr(kvt_errmsg(), "not available")) return 0;   /* not built */
    CHECK(rc == KVT_EENGINE);
    CHECK(strstr(kvt_errmsg(), engine) && strstr(kvt_errmsg(), other));
    return 0;
}

/* Commit under sync=commit, crash the fault VFS, reopen: every committed write is there. */
static int test_crash_recovery(void) {
    const char *dir = fresh_dir();
    kvt_vfs *fv;
    OK(kvt_fault_vfs_new(&fv));
    kvt_options o = opts(0);
    o.vfs = fv;
    kvt_db *db;
    OK(kvt_open(dir, &o, &db));
    char k[32];
    for (int i = 0; i < 300; i++) {
        key_of(k, sizeof k, i);
        OK(put_str(db, k, k));
        if (i == 100) OK(kvt_checkpoint(db));
    }
    key_of(k, sizeof k, 7);
    OK(kvt_delete(db, (const uint8_t *)k, strlen(k), NULL));
    OK(kvt_fault_crash(fv, KVT_CRASH_TEAR, 42));
    kvt_close(db);   /* fails (the files are dead) but must free everything */
    kvt_fault_vfs_free(fv);
    o.vfs = NULL;
    OK(kvt_open(dir, &o, &db));
    for (int i = 0; i < 300; i++) {
        key_of(k, sizeof k, i);
        CHECK(get_is(db, k, i == 7 ? NULL : k) == (i == 7 ? 0 : 1));
    }
    OK(kvt_check(db));
    OK(kvt_close(db));
    return 0;
}

/* A failed log fsync latches the handle; reopening recovers what was synced. */
static int test_fatal_latch(void) {
    const char *dir = fresh_dir();
    kvt_vfs *fv;
    OK(kvt_fault_vfs_new(&fv));
    kvt_options o = opts(0);
    o.vfs = fv;
    kvt_db *db;
    OK(kvt_open(dir, &o, &db));
    OK(put_str(db, "before", "1"));
    OK(kvt_fault_set(fv, KVT_FAULT_SYNC, 1, 1, KVT_EIO));
    int rc = put_str(db, "during", "2");
    CHECK(rc < 0);
    CHECK(put_str(db, "after", "3") == KVT_EFATAL);
    uint8_t buf[8];
    size_t n;
    CHECK(kvt_get(db, (const uint8_t *)"before", 6, buf, sizeof buf, &n) == KVT_EFATAL);
    CHECK(kvt_checkpoint(db) == KVT_EFATAL);
    kvt_close(db);
    kvt_fault_vfs_free(fv);
    o.vfs = NULL;
    OK(kvt_open(dir, &o, &db));
    CHECK(get_is(db, "before", "1") == 1 && get_is(db, "after", NULL) == 0);
    OK(kvt_check(db));
    OK(kvt_close(db));
    return 0;
}

/* Checkpoints triggered by the WAL limit, with a small cache. */
static int test_wal_limit(void) {
    const char *dir = fresh_dir();
    kvt_options o = opts(2);
    o.wal_limit = 64 * 1024;
    kvt_db *db;
    OK(kvt_open(dir, &o, &db));
    char k[32], v[200];
    memset(v, 'v', sizeof v);
    for (int i = 0; i < 3000; i++) {
        key_of(k, sizeof k, (i * 7919) % 3000);
        OK(kvt_put(db, (const uint8_t *)k, strlen(k), (const uint8_t *)v, sizeof v));
    }
    kvt_stats st;
    OK(kvt_get_stats(db, &st));
    CHECK(st.checkpoints >= 2 && st.wal_size <= 64 * 1024 + 4096);
    CHECK(st.entries == 3000 || st.entries == 0 || strcmp(engine, "fractal") == 0);
    OK(kvt_check(db));
    OK(kvt_close(db));
    OK(kvt_open(dir, &o, &db));
    CHECK(walk(db, "key00003000", NULL, 0, 0, 0, 1) == 0);
    OK(kvt_check(db));
    OK(kvt_close(db));
    return 0;
}

struct thr { kvt_db *db; int id, n, err; };

static void *writer_thread(void *arg) {
    struct thr *t = arg;
    char k[32];
    for (int i = 0; i < t->n && !t->err; i++) {
        snprintf(k, sizeof k, "t%d-%06d", t->id, i);
        if (put_str(t->db, k, k) != KVT_OK) t->err = 1;
    }
    return NULL;
}

static void *reader_thread(void *arg) {
    struct thr *t = arg;
    for (int round = 0; round < 20 && !t->err; round++) {
        kvt_iter *it;
        if (kvt_iter_new(t->db, NULL, 0, NULL, 0, round & 1, &it) != KVT_OK) { t->err = 1; break; }
        const uint8_t *k, *v;
        size_t kl, vl;
        char prev[64] = "";
        int rc;
        while ((rc = kvt_iter_next(it, &k, &kl, &v, &vl)) == KVT_OK) {
            char cur[64];
            snprintf(cur, sizeof cur, "%.*s", (int)kl, k);
            if (prev[0] && ((round & 1) ? strcmp(cur, prev) >= 0 : strcmp(cur, prev) <= 0))
                t->err = 1;
            if (vl != kl || memcmp(k, v, kl)) t->err = 1;
            snprintf(prev, sizeof prev, "%s", cur);
        }
        if (rc != KVT_NOTFOUND) t->err = 1;
        kvt_iter_free(it);
    }
    return NULL;
}

static int test_threads(void) {
    kvt_options o = opts(0);
    kvt_db *db;
    OK(kvt_open(fresh_dir(), &o, &db));
    pthread_t th[4];
    struct thr t[4];
    for (int i = 0; i < 4; i++) {
        t[i] = (struct thr){db, i, 400, 0};
        pthread_create(&th[i], NULL, i < 2 ? writer_thread : reader_thread, &t[i]);
    }
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++) CHECK(!t[i].err);
    char k[32];
    for (int w = 0; w < 2; w++)
        for (int i = 0; i < 400; i++) {
            snprintf(k, sizeof k, "t%d-%06d", w, i);
            CHECK(get_is(db, k, k) == 1);
        }
    OK(kvt_check(db));
    OK(kvt_close(db));
    return 0;
}

/* ---- review regressions ---- */

/* A batch larger than one log record may hold is the caller's error: ETOOLARGE, and
 * the handle stays usable (it used to latch KVT_EFATAL: the WAL refused the record). */
static int test_batch_too_large(void) {
    kvt_options o = opts(2);
    kvt_db *db;
    OK(kvt_open(fresh_dir(), &o, &db));
    OK(put_str(db, "a", "1"));
    kvt_batch *b;
    OK(kvt_batch_new(db, &b));
    size_t vl = 48u << 20;
    uint8_t *v = calloc(1, vl);
    CHECK(v);
    int rc = KVT_OK;
    char k[16];
    for (int i = 0; i < 4 && rc == KVT_OK; i++) {
        snprintf(k, sizeof k, "big%d", i);
        rc = kvt_batch_put(b, (const uint8_t *)k, strlen(k), v, vl);
    }
    if (rc == KVT_OK) rc = kvt_batch_commit(b);
    free(v);
    kvt_batch_free(b);
    CHECK(rc == KVT_ETOOLARGE);
    OK(put_str(db, "b", "2"));
    CHECK(get_is(db, "a", "1") == 1 && get_is(db, "b", "2") == 1);
    OK(kvt_check(db));
    OK(kvt_close(db));
    return 0;
}

/* Fail the nth write or fsync of a checkpoint (data pages, free map, meta, WAL reset),
 * then lose or tear every unsynced write: reopening must find every acknowledged commit
 * and a consistent tree. Then delete most keys (the file's tail becomes free and is
 * trimmed), crash during the following checkpoint too, and check again. */
static int ckpt_crash_case(int op, uint64_t nth, int mode, int *hit) {
    const char *dir = fresh_dir();
    kvt_vfs *fv;
    OK(kvt_fault_vfs_new(&fv));
    kvt_options o = opts(0);
    o.vfs = fv;
    kvt_db *db;
    OK(kvt_open(dir, &o, &db));
    char k[32], v[300];
    memset(v, 'v', sizeof v);
    for (int i = 0; i < 400; i++) {
        key_of(k, sizeof k, i);
        OK(kvt_put(db, (const uint8_t *)k, strlen(k), (const uint8_t *)v, sizeof v));
    }
    OK(kvt_checkpoint(db));
    for (int i = 40; i < 400; i++) {
        key_of(k, sizeof k, i);
        OK(kvt_delete(db, (const uint8_t *)k, strlen(k), NULL));
    }
    uint64_t before = kvt_fault_count(fv, op);
    OK(kvt_fault_set(fv, op, nth, 1, KVT_EIO));
    int rc = kvt_checkpoint(db);
    *hit = kvt_fault_count(fv, op) - before >= nth;
    if (rc == KVT_OK) {        /* past the checkpoint's I/O: the next commit fails */
        key_of(k, sizeof k, 1000);
        (void)kvt_put(db, (const uint8_t *)k, strlen(k), (const uint8_t *)v, 1);
    }
    OK(kvt_fault_crash(fv, mode, nth * 3 + (uint64_t)mode));
    kvt_close(db);
    kvt_fault_reset(fv);
    OK(kvt_open(dir, &o, &db));
    for (int i = 0; i < 400; i++) {
        key_of(k, sizeof k, i);
        int want = i < 40;
        uint8_t buf[512];
        size_t n = 0;
        int g = kvt_get(db, (const uint8_t *)k, strlen(k), buf, sizeof buf, &n);
        CHECK(g == (want ? KVT_OK : KVT_NOTFOUND));
        CHECK(!want || (n == sizeof v && memcmp(buf, v, n) == 0));
    }
    OK(kvt_check(db));
    OK(kvt_close(db));
    OK(kvt_open(dir, &o, &db));
    OK(kvt_check(db));
    OK(kvt_close(db));
    kvt_fault_vfs_free(fv);
    return 0;
}

static int test_checkpoint_crashes(void) {
    for (int op = KVT_FAULT_WRITE; op <= KVT_FAULT_SYNC; op++) {
        for (uint64_t nth = 1; nth < 40; nth++) {
            int hit = 0;
            for (int mode = 0; mode < 2; mode++)
                if (ckpt_crash_case(op, nth, mode, &hit)) {
                    fprintf(stderr, "  (op %d, nth %llu, mode %d)\n", op,
                            (unsigned long long)nth, mode);
                    return 1;
                }
            if (!hit) break;       /* past the last write/sync of the checkpoint */
        }
    }
    return 0;
}

/* A put-many buffer of keys key_of(first..first+n) (step: key order), value "v<i>". */
static size_t pack_puts(uint8_t *buf, int first, int n, int step) {
    uint8_t *d = buf + 4;
    kvt_put32(buf, (uint32_t)n);
    for (int j = 0; j < n; j++) {
        char k[32], v[32];
        key_of(k, sizeof k, first + j * step);
        snprintf(v, sizeof v, "v%d", first + j * step);
        size_t kl = strlen(k), vl = strlen(v);
        d[0] = 1;
        kvt_put32(d + 1, (uint32_t)kl);
        kvt_put32(d + 5, (uint32_t)vl);
        memcpy(d + 9, k, kl);
        memcpy(d + 9 + kl, v, vl);
        d += 9 + kl + vl;
    }
    return (size_t)(d - buf);
}

/* kvt_put_many / kvt_batch_put_many: ascending loads (the B+tree's append cursor), an
 * out-of-order record, malformed buffers refused with nothing written, reopen. */
static int test_put_many(void) {
    const char *dir = fresh_dir();
    kvt_options o = opts(2);
    kvt_db *db;
    OK(kvt_open(dir, &o, &db));
    size_t cap = 64 * 4000;
    uint8_t *buf = malloc(cap);
    CHECK(buf != NULL);
    for (int first = 0; first < 20000; first += 2000)      /* ascending, 10 records */
        OK(kvt_put_many(db, buf, pack_puts(buf, first, 2000, 1)));
    OK(kvt_put_many(db, buf, pack_puts(buf, 19999, 500, -7)));  /* descending, overwrites */
    OK(kvt_put_many(db, buf, pack_puts(buf, 30000, 0, 1)));     /* empty: nothing */
    size_t len = pack_puts(buf, 40000, 3, 1);
    uint8_t saved = buf[4];
    buf[4] = 2;                                                 /* not a put */
    CHECK(kvt_put_many(db, buf, len) == KVT_EINVAL);
    buf[4] = saved;
    CHECK(kvt_put_many(db, buf, len - 1) == KVT_EINVAL);        /* cut short */
    CHECK(kvt_put_many(db, buf, len + 1) == KVT_EINVAL);        /* trailing byte */
    kvt_put32(buf + 5, 0);                                      /* empty key */
    CHECK(kvt_put_many(db, buf, len) == KVT_EINVAL);
    kvt_put32(buf + 5, KVT_MAX_KEY + 1);                        /* oversized key */
    CHECK(kvt_put_many(db, buf, len) == KVT_ETOOLARGE);
    CHECK(kvt_put_many(db, NULL, 0) == KVT_EINVAL);
    CHECK(get_is(db, "key00040000", NULL) == 0);                /* none of it written */
    kvt_batch *b;
    OK(kvt_batch_new(db, &b));
    OK(kvt_batch_put_many(b, buf, pack_puts(buf, 50000, 10, 1)));
    CHECK(kvt_batch_put_many(b, buf, 3) == KVT_EINVAL);
    OK(kvt_batch_put(b, (const uint8_t *)"zz", 2, (const uint8_t *)"1", 1));
    CHECK(kvt_batch_count(b) == 11);
    OK(kvt_batch_commit(b));
    kvt_batch_free(b);
    OK(kvt_check(db));
    OK(kvt_close(db));
    OK(kvt_open(dir, &o, &db));
    for (int i = 0; i < 20000; i += 1) {
        char k[32], v[32];
        key_of(k, sizeof k, i);
        snprintf(v, sizeof v, "v%d", i);
        CHECK(get_is(db, k, v) == 1);
    }
    CHECK(get_is(db, "key00050009", "v50009") == 1 && get_is(db, "zz", "1") == 1);
    kvt_stats st;
    OK(kvt_get_stats(db, &st));
    CHECK(st.entries == 20000 + 11);
    OK(kvt_check(db));
    OK(kvt_close(db));
    free(buf);
    return 0;
}

typedef int (*test_fn)(void);
static const struct { const char *name; test_fn fn; } tests[] = {
    {"options", test_options}, {"basic", test_basic}, {"batch_and_reopen", test_batch_and_reopen},
    {"iter", test_iter}, {"locking", test_locking}, {"engine_mismatch", test_engine_mismatch},
    {"crash_recovery", test_crash_recovery}, {"fatal_latch", test_fatal_latch},
    {"wal_limit", test_wal_limit}, {"threads", test_threads},
    {"batch_too_large", test_batch_too_large}, {"checkpoint_crashes", test_checkpoint_crashes},
    {"put_many", test_put_many},
};

int main(int argc, char **argv) {
    snprintf(tmpl, sizeof tmpl, "/tmp/kvt_test_db.XXXXXX");
    if (!mkdtemp(tmpl)) { perror("mkdtemp"); return 2; }
    const char *only = argc > 1 ? argv[1] : NULL;
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *engines[2] = {kvt_btree_ops.name, kvt_fractal_ops.name};
    int ran = 0;
    for (int e = 0; e < 2; e++) {
        if (!engines[e] || (only && strcmp(only, engines[e]))) continue;
        engine = engines[e];
        for (size_t i = 0; i < sizeof tests / sizeof *tests; i++) {
            int before = failures;
            tests[i].fn();
            printf("%-8s %-18s %s\n", engine, tests[i].name, failures == before ? "ok" : "FAIL");
            ran++;
        }
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpl);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpl);
    if (!ran) { fprintf(stderr, "no engine built\n"); return 1; }
    return failures ? 1 : 0;
}
