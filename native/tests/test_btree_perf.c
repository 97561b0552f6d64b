/* test_btree_perf.c - the B+tree's read/write fast paths, through the public API:
 *  - leaf fill: random inserts shift cells to a sibling before splitting, so leaves end
 *    up well above the ~69% of plain half splits (and every key is still found);
 *  - the root digest: keys that tie with separators on their first 8 bytes, short keys,
 *    keys with zero bytes, and reads right after each write (a stale digest would route
 *    to the wrong leaf and miss keys);
 *  - the checkpoint trigger: random updates of a tree larger than the cache checkpoint
 *    when the log is full, not each time they have copied wal_limit bytes of pages;
 *  - sequential loads: every full leaf is retired during the load and logged by
 *    reference (sync "none"), not repeated in the log.
 * Build: make -C native build/test_btree_perf */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "kvtrees.h"
#include "kvt_util.h"

static int failures;
#define CHECK(c, ...) do { if (!(c)) { failures++; printf("FAIL %s:%d: ", __FILE__, __LINE__); \
    printf(__VA_ARGS__); printf(" [%s]\n", kvt_errmsg()); return -1; } } while (0)
#define OK(e) do { int rc_ = (e); CHECK(rc_ == KVT_OK, "%s -> %d", #e, rc_); } while (0)

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }

static char base_dir[256];
static const char *fresh_dir(void) {
    static int n;
    static char path[300];
    snprintf(path, sizeof path, "%s/d%d", base_dir, n++);
    return path;
}

static kvt_db *open_db(uint64_t cache, uint64_t wal_limit) {
    kvt_options o;
    kvt_options_init(&o);
    o.engine = "btree";
    o.sync_mode = 2;
    o.cache_size = cache;
    if (wal_limit) o.wal_limit = wal_limit;
    kvt_db *db = NULL;
    if (kvt_open(fresh_dir(), &o, &db) != KVT_OK) printf("open: %s\n", kvt_errmsg());
    return db;
}

static int expect(kvt_db *db, const uint8_t *k, size_t kl, int present, uint8_t tag) {
    uint8_t out[256];
    size_t vl = 0;
    int rc = kvt_get(db, k, kl, out, sizeof out, &vl);
    if (!present) {
        CHECK(rc == KVT_NOTFOUND, "key of %zu bytes should be absent, rc %d", kl, rc);
        return 0;
    }
    CHECK(rc == KVT_OK && vl == 100 && out[0] == tag && out[99] == tag,
          "key of %zu bytes: rc %d vlen %zu tag %u", kl, rc, vl, out[0]);
    return 0;
}

/* Random 16-byte keys, 100-byte values, batches of 500: fill and contents. */
static int test_fill(void) {
    enum { N = 20000 };
    kvt_db *db = open_db(256 << 10, 0);
    CHECK(db, "open");
    static uint8_t keys[N][16];
    uint8_t v[100];
    memset(v, 7, sizeof v);
    kvt_batch *b;
    OK(kvt_batch_new(db, &b));
    for (int i = 0; i < N; i++) {
        uint64_t a = rnd(), c = (uint64_t)i;
        memcpy(keys[i], &a, 8);
        memcpy(keys[i] + 8, &c, 8);
        OK(kvt_batch_put(b, keys[i], 16, v, sizeof v));
        if (i % 500 == 499) OK(kvt_batch_commit(b));
    }
    OK(kvt_batch_commit(b));
    kvt_batch_free(b);
    for (int i = 0; i < N; i++)
        if (expect(db, keys[i], 16, 1, 7)) return -1;
    kvt_stats st;
    OK(kvt_get_stats(db, &st));
    /* cell + slot = 124 bytes, 4040 usable bytes per page: plain half splits leave ~69% */
    double fill = (double)N * 124 / ((double)st.nodes * 4040);
    printf("  %d random inserts: %llu pages, leaf fill ~%.0f%%\n", N,
           (unsigned long long)st.nodes, fill * 100);
    CHECK(fill > 0.75, "fill %.2f: shifting to siblings did not raise it", fill);
    OK(kvt_check(db));
    OK(kvt_close(db));
    return 0;
}

/* Keys built to tie on their first 8 bytes with each other and with separators. */
static size_t tie_key(uint8_t *k, int i) {
    static const char *heads[] = {"prefix__", "prefix_", "a", "ab", "pre", "prefix__\xff"};
    const char *h = heads[i % 6];
    size_t n = strlen(h);
    memcpy(k, h, n);
    size_t extra = (size_t)(i / 6) % 5;          /* 0..4 more bytes, zeros included */
    for (size_t j = 0; j < extra; j++) k[n + j] = (uint8_t)((i * 31 + (int)j * 7) % 3);
    n += extra;
    uint32_t id = (uint32_t)i;
    memcpy(k + n, &id, 4);                      /* unique */
    return n + 4;
}

/* Reads right after writes, deletes, and ties: the digest must never answer stale. */
static int test_digest(void) {
    enum { N = 6000 };
    kvt_db *db = open_db(256 << 10, 0);
    CHECK(db, "open");
    static uint8_t keys[N][32];
    static size_t kls[N];
    static uint8_t present[N];
    uint8_t v[100];
    for (int i = 0; i < N; i++) kls[i] = tie_key(keys[i], i);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++) {
            int j = (int)(rnd() % N);
            uint8_t tag = (uint8_t)(round * 50 + 1 + j % 40);
            if (round == 2 && j % 3 == 0) {
                int ex = 0;
                OK(kvt_delete(db, keys[j], kls[j], &ex));
                CHECK(ex == (present[j] != 0), "delete of key %d: existed %d, expected %d", j,
                      ex, present[j] != 0);
                present[j] = 0;
            } else {
                memset(v, tag, sizeof v);
                OK(kvt_put(db, keys[j], kls[j], v, sizeof v));
                present[j] = tag;
            }
            if (expect(db, keys[j], kls[j], present[j] != 0, present[j])) return -1;
            int r = (int)(rnd() % N);       /* and some other key, through the digest */
            if (expect(db, keys[r], kls[r], present[r] != 0, present[r])) return -1;
        }
        for (int i = 0; i < N; i++)
            if (expect(db, keys[i], kls[i], present[i] != 0, present[i])) return -1;
    }
    uint8_t low[1] = {0};                       /* a new smallest key after a read phase */
    memset(v, 99, sizeof v);
    OK(kvt_put(db, low, 1, v, sizeof v));
    if (expect(db, low, 1, 1, 99)) return -1;
    kvt_stats st;
    OK(kvt_get_stats(db, &st));
    CHECK(st.height >= 2, "height %llu: the digest was never used", (unsigned long long)st.height);
    OK(kvt_check(db));
    OK(kvt_close(db));
    return 0;
}

/* A tree several times the cache, updated at random: checkpoints come from the log
 * limit, not from every page the updates copy. */
static int test_checkpoint_trigger(void) {
    enum { N = 30000 };
    kvt_db *db = open_db(512 << 10, 1 << 20);
    CHECK(db, "open");
    uint8_t k[16], v[100];
    memset(v, 3, sizeof v);
    kvt_batch *b;
    OK(kvt_batch_new(db, &b));
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < N; i++) {
            uint64_t a = (uint64_t)i * 0x9E3779B97F4A7C15ull;
            memcpy(k, &a, 8);
            memset(k + 8, 0, 8);
            OK(kvt_batch_put(b, k, 16, v, sizeof v));
            if (i % 1000 == 999) OK(kvt_batch_commit(b));
        }
    OK(kvt_batch_commit(b));
    kvt_batch_free(b);
    kvt_stats st;
    OK(kvt_get_stats(db, &st));
    printf("  %d random updates over a %llu-page tree (cache 128 pages): %llu checkpoints\n",
           2 * N, (unsigned long long)st.nodes, (unsigned long long)st.checkpoints);
    CHECK(st.checkpoints <= 12, "%llu checkpoints for ~8 MiB of log (limit 1 MiB)",
          (unsigned long long)st.checkpoints);
    CHECK(st.pages_total < 4 * st.nodes, "file of %llu pages for %llu tree pages",
          (unsigned long long)st.pages_total, (unsigned long long)st.nodes);
    OK(kvt_check(db));
    OK(kvt_close(db));
    return 0;
}

/* A sequential put_many load under sync "none": the append cursor retires (writes)
 * every full leaf during the load, not only until a parent lacks a quarter page of
 * room (that sent ~15% of the leaves down the normal path, written at the checkpoint
 * instead), and the log names those leaves instead of holding their entries. */
static int test_sequential_load(void) {
    enum { N = 60000, BATCH = 1000, OP = 9 + 16 + 100 };
    kvt_db *db = open_db(1 << 20, 64 << 20);
    CHECK(db, "open");
    uint8_t *buf = malloc(4 + (size_t)BATCH * OP);
    CHECK(buf, "malloc");
    kvt_stats st0, st;
    OK(kvt_get_stats(db, &st0));
    for (int b = 0; b < N / BATCH; b++) {
        uint8_t *p = buf;
        kvt_put32(p, BATCH);
        p += 4;
        for (int i = 0; i < BATCH; i++, p += OP) {
            uint64_t id = (uint64_t)b * BATCH + (uint64_t)i;
            p[0] = 1;
            kvt_put32(p + 1, 16);
            kvt_put32(p + 5, 100);
            memset(p + 9, 0, 16);
            for (int j = 0; j < 8; j++) p[9 + j] = (uint8_t)(id >> (56 - 8 * j));
            memset(p + 25, (int)(id & 0xff), 100);
        }
        OK(kvt_put_many(db, buf, (size_t)(p - buf)));
    }
    free(buf);
    OK(kvt_get_stats(db, &st));
    uint64_t written = (st.data_bytes_written - st0.data_bytes_written) / st.page_size;
    uint64_t logged = st.wal_bytes_written - st0.wal_bytes_written;
    printf("  %d ascending puts: %llu of %llu tree pages written during the load, "
           "%llu log bytes per put\n", N, (unsigned long long)written,
           (unsigned long long)st.nodes, (unsigned long long)(logged / N));
    CHECK(st.checkpoints == st0.checkpoints, "a checkpoint ran: the counts mean nothing");
    CHECK(written + 40 >= st.nodes, "only %llu of %llu pages retired by the load",
          (unsigned long long)written, (unsigned long long)st.nodes);
    CHECK(logged < (uint64_t)N * 20, "%llu log bytes for %d puts: entries were logged",
          (unsigned long long)logged, N);
    OK(kvt_check(db));
    OK(kvt_close(db));
    return 0;
}

int main(void) {
    snprintf(base_dir, sizeof base_dir, "/tmp/test_btree_perf_XXXXXX");
    if (!mkdtemp(base_dir)) { printf("mkdtemp failed\n"); return 1; }
    struct { const char *name; int (*fn)(void); } tests[] = {
        {"leaf fill", test_fill},
        {"root digest", test_digest},
        {"checkpoint trigger", test_checkpoint_trigger},
        {"sequential load", test_sequential_load},
    };
    for (size_t i = 0; i < sizeof tests / sizeof *tests; i++) {
        int r = tests[i].fn();
        printf("%-20s %s\n", tests[i].name, r ? "FAILED" : "ok");
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", base_dir);
    if (system(cmd) != 0) printf("(could not remove %s)\n", base_dir);
    printf("%s\n", failures ? "test_btree_perf: FAILED" : "test_btree_perf: ok");
    return failures != 0;
}
