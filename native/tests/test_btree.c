/* test_btree.c - B+tree engine tests: random operations against a sorted-array
 * reference with small caches, checkpoint + reopen, check() after every phase,
 * ascending inserts, huge values, 4096-byte keys, reverse scans, deletes to empty,
 * and a get benchmark (BT_BENCH=1 env: 1M keys, 16-byte keys, 100-byte values).
 * Build: make -C native build/test_btree   (or with -DBT_FAKE_PAGER against the
 * in-memory pager at the end of this file, linking only btree + util sources). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include "kvt_engine.h"
#include "kvt_error.h"

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; fprintf(stderr, "FAIL %s:%d: ", \
    __FILE__, __LINE__); fprintf(stderr, __VA_ARGS__); fprintf(stderr, " [%s]\n", kvt_errmsg()); \
    return -1; } } while (0)
#define RC(expr) do { int rc_ = (expr); CHECK(rc_ >= 0, "%s -> %d %s", #expr, rc_, \
    kvt_strerror(rc_)); } while (0)

/* ---------- harness: one engine over a pager, reopenable ---------- */
typedef struct harness {
    char path[256];
    uint32_t ps;
    uint64_t cache;
    kvt_pager *p;
    kvt_engine *e;
} harness;

#ifdef BT_FAKE_PAGER
kvt_pager *fake_open(uint32_t ps);
void fake_close(kvt_pager *p);
uint64_t fake_pins(kvt_pager *p);
#define PINS(h) fake_pins((h)->p)
#else
#define PINS(h) 0
#endif

static const kvt_engine_ops *E = &kvt_btree_ops;

static int h_open(harness *h) {
    size_t ml = 0;
#ifdef BT_FAKE_PAGER
    if (!h->p) h->p = fake_open(h->ps);
#else
    kvt_pager_config cfg = {.page_size = h->ps, .engine_id = 1, .cache_bytes = h->cache};
    RC(kvt_pager_open(kvt_vfs_posix(), h->path, &cfg, &h->p));
#endif
    const uint8_t *m = kvt_pager_engine_meta(h->p, &ml);
    kvt_engine_config ec = {.page_size = h->ps, .cache_bytes = h->cache};
    RC(E->open(h->p, &ec, m, ml, &h->e));
    return 0;
}

static int h_checkpoint(harness *h) {
    uint8_t meta[KVT_ENGINE_META_MAX];
    size_t ml = 0;
    RC(E->flush(h->e, meta, &ml));
    RC(kvt_pager_checkpoint(h->p, meta, ml));
    return 0;
}

static int h_reopen(harness *h) {
    if (h_checkpoint(h)) return -1;
    E->close(h->e);
#ifndef BT_FAKE_PAGER
    RC(kvt_pager_close(h->p));
    h->p = NULL;
#endif
    return h_open(h);
}

static void h_close(harness *h) {
    E->close(h->e);
#ifdef BT_FAKE_PAGER
    fake_close(h->p);
#else
    kvt_pager_close(h->p);
    unlink(h->path);
#endif
    h->p = NULL;
}

static int h_init(harness *h, const char *name, uint32_t ps, uint64_t cache) {
    memset(h, 0, sizeof *h);
    snprintf(h->path, sizeof h->path, "/tmp/test_btree_%d_%s.kvt", (int)getpid(), name);
    unlink(h->path);
    h->ps = ps;
    h->cache = cache;
    return h_open(h);
}

/* ---------- reference model: sorted array ---------- */
typedef struct ent { uint8_t *k, *v; size_t kl, vl; } ent;
typedef struct model { ent *a; size_t n, cap; } model;

static size_t m_find(model *m, const uint8_t *k, size_t kl, int *eq) {
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = kvt_keycmp(m->a[mid].k, m->a[mid].kl, k, kl);
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    *eq = lo < m->n && kvt_keycmp(m->a[lo].k, m->a[lo].kl, k, kl) == 0;
    return lo;
}

static void m_put(model *m, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    int eq;
    size_t i = m_find(m, k, kl, &eq);
    uint8_t *vc = malloc(vl + 1);
    memcpy(vc, v, vl);
    if (eq) { free(m->a[i].v); m->a[i].v = vc; m->a[i].vl = vl; return; }
    if (m->n == m->cap) { m->cap = m->cap ? 2 * m->cap : 1024; m->a = realloc(m->a, m->cap * sizeof(ent)); }
    memmove(m->a + i + 1, m->a + i, (m->n - i) * sizeof(ent));
    m->a[i] = (ent){malloc(kl), vc, kl, vl};
    memcpy(m->a[i].k, k, kl);
    m->n++;
}

static int m_del(model *m, const uint8_t *k, size_t kl) {
    int eq;
    size_t i = m_find(m, k, kl, &eq);
    if (!eq) return 0;
    free(m->a[i].k); free(m->a[i].v);
    memmove(m->a + i, m->a + i + 1, (m->n - i - 1) * sizeof(ent));
    m->n--;
    return 1;
}

static void m_free(model *m) {
    for (size_t i = 0; i < m->n; i++) { free(m->a[i].k); free(m->a[i].v); }
    free(m->a);
    memset(m, 0, sizeof *m);
}

/* ---------- helpers ---------- */
static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return rng_state;
}

static void fill(uint8_t *b, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) { seed = seed * 6364136223846793005ull + 1442695040888963407ull; b[i] = (uint8_t)(seed >> 56); }
}

typedef struct scan_ctx { model *m; long pos; int step; long count; int bad; long limit; } scan_ctx;

static int scan_fn(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    scan_ctx *s = ctx;
    if (s->pos < 0 || s->pos >= (long)s->m->n) { s->bad = 1; return 1; }
    ent *x = &s->m->a[s->pos];
    if (kvt_keycmp(k, kl, x->k, x->kl) || vl != x->vl || (vl && memcmp(v, x->v, vl))) {
        s->bad = 2; return 1;
    }
    s->pos += s->step;
    s->count++;
    return s->limit && s->count >= s->limit ? 1 : 0;
}

/* Scan from key (or NULL) and compare with the model. */
static int verify_scan(harness *h, model *m, const uint8_t *from, size_t fl, int incl, int rev, long limit) {
    scan_ctx s = {.m = m, .step = rev ? -1 : 1, .limit = limit};
    long expect;
    if (!from) {
        s.pos = rev ? (long)m->n - 1 : 0;
    } else {
        int eq;
        size_t i = m_find(m, from, fl, &eq);
        if (!rev) s.pos = (long)i + (eq && !incl);
        else s.pos = (long)i - 1 + (eq && incl);
    }
    expect = rev ? s.pos + 1 : (long)m->n - s.pos;
    if (limit && expect > limit) expect = limit;
    RC(E->scan(h->e, from, fl, incl, rev, scan_fn, &s));
    CHECK(!s.bad && s.count == expect, "scan rev=%d incl=%d: bad=%d count %ld expected %ld",
          rev, incl, s.bad, s.count, expect);
    return 0;
}

/* The walk as the db layer runs it: pager bracket around the engine's check. */
static int full_check(kvt_pager *p, kvt_engine *e) {
    KVT_TRY(kvt_pager_check_begin(p));
    int rc = E->check(e);
    int end = kvt_pager_check_end(p);
    return rc < 0 ? rc : end;
}

static int verify_all(harness *h, model *m) {
    kvt_buf b = {0};
    for (size_t i = 0; i < m->n; i++) {
        int rc = E->get(h->e, m->a[i].k, m->a[i].kl, &b);
        CHECK(rc == KVT_OK && b.len == m->a[i].vl && (!b.len || !memcmp(b.data, m->a[i].v, b.len)),
              "get #%zu rc %d len %zu want %zu", i, rc, b.len, m->a[i].vl);
    }
    kvt_buf_free(&b);
    kvt_engine_stats st;
    E->stats(h->e, &st);
    CHECK(st.entries == m->n, "entries %llu, model %zu", (unsigned long long)st.entries, m->n);
    RC(full_check(h->p, h->e));
    if (verify_scan(h, m, NULL, 0, 1, 0, 0) || verify_scan(h, m, NULL, 0, 1, 1, 0)) return -1;
    CHECK(PINS(h) == 0, "pages left pinned: %llu", (unsigned long long)PINS(h));
    return 0;
}

/* Keys: mostly short, some long (spilled with 4 KiB pages), from a key space. */
static size_t make_key(uint8_t *k, uint64_t id, int long_keys) {
    size_t kl = 4 + id % 23;
    if (long_keys && id % 17 == 0) kl = 900 + (id * 37) % 3197;   /* up to 4096 */
    memset(k, 'k', kl);
    snprintf((char *)k, 12, "%010llu", (unsigned long long)(id * 2654435761u % 1000000007u));
    k[10] = (uint8_t)(id & 0xff);
    if (kl < 11) kl = 11;
    return kl;
}

static size_t make_val(uint8_t *v, uint64_t id, uint64_t r) {
    size_t vl = r % 10 == 0 ? 0 : r % 7 == 0 ? 1000 + r % 30000 : r % 200;
    fill(v, vl, id ^ r);
    return vl;
}

/* ---------- tests ---------- */
static int test_random(uint32_t ps, uint64_t cache, int long_keys, long ops, uint64_t keyspace) {
    harness h;
    model m = {0};
    if (h_init(&h, "random", ps, cache)) return -1;
    uint8_t *k = malloc(KVT_MAX_KEY), *v = malloc(64 * 1024);
    kvt_buf b = {0};
    for (long i = 0; i < ops; i++) {
        uint64_t r = rnd(), id = r % keyspace;
        size_t kl = make_key(k, id, long_keys);
        int op = (int)((r >> 40) % 10);
        if (op < 6) {
            size_t vl = make_val(v, id, r >> 20);
            RC(E->put(h.e, k, kl, v, vl));
            m_put(&m, k, kl, v, vl);
        } else if (op < 9) {
            int ex = -1;
            RC(E->del(h.e, k, kl, &ex));
            CHECK(ex == m_del(&m, k, kl), "delete existed=%d", ex);
        } else {
            int eq, rc = E->get(h.e, k, kl, &b);
            size_t j = m_find(&m, k, kl, &eq);
            CHECK(eq ? rc == KVT_OK && b.len == m.a[j].vl && (!b.len || !memcmp(b.data, m.a[j].v, b.len))
                     : rc == KVT_NOTFOUND, "get rc %d eq %d", rc, eq);
        }
        if (i % (ops / 8) == ops / 8 - 1) {
            if (verify_all(&h, &m)) return -1;
            for (int s = 0; s < 20; s++) {
                size_t fl = make_key(k, rnd() % keyspace, long_keys);
                if (s % 3 == 0) fl = 1 + rnd() % 12;
                if (verify_scan(&h, &m, k, fl, s & 1, (s >> 1) & 1, s % 4 == 0 ? 0 : 50)) return -1;
            }
            if (h_reopen(&h) || verify_all(&h, &m)) return -1;
        }
    }
    /* delete everything down to an empty tree */
    while (m.n) {
        size_t i = rnd() % m.n;
        int ex = 0;
        ent x = m.a[i];
        RC(E->del(h.e, x.k, x.kl, &ex));
        CHECK(ex, "delete of present key");
        m_del(&m, x.k, x.kl);
        if (m.n % 997 == 0 && verify_all(&h, &m)) return -1;
    }
    kvt_engine_stats st;
    E->stats(h.e, &st);
    CHECK(st.height == 0 && st.nodes == 0, "empty tree: height %llu nodes %llu",
          (unsigned long long)st.height, (unsigned long long)st.nodes);
    if (verify_all(&h, &m) || h_reopen(&h) || verify_all(&h, &m)) return -1;
    kvt_buf_free(&b);
    free(k); free(v);
    m_free(&m);
    h_close(&h);
    return 0;
}

static int test_ascending(uint32_t ps, long n) {
    harness h;
    model m = {0};
    if (h_init(&h, "asc", ps, 1 << 20)) return -1;
    uint8_t k[32], v[64];
    for (long i = 0; i < n; i++) {
        size_t kl = (size_t)snprintf((char *)k, sizeof k, "key%012ld", i);
        fill(v, 40, (uint64_t)i);
        RC(E->put(h.e, k, kl, v, 40));
        m_put(&m, k, kl, v, 40);
    }
    if (verify_all(&h, &m)) return -1;
    kvt_engine_stats st;
    E->stats(h.e, &st);
    /* 15+40+6+2 = 63 bytes per entry: full leaves hold usable/63 entries */
    double per_leaf = (double)n / (double)st.nodes;
    CHECK(per_leaf > 0.85 * (ps - 56) / 63.0, "ascending fill: %.1f entries per page", per_leaf);
    /* reverse scan over everything and ranged reverse scans */
    for (int s = 0; s < 10; s++) {
        long id = (long)(rnd() % (uint64_t)n);
        size_t kl = (size_t)snprintf((char *)k, sizeof k, "key%012ld", id);
        if (verify_scan(&h, &m, k, kl, s & 1, 1, 0) || verify_scan(&h, &m, k, kl, s & 1, 0, 100))
            return -1;
    }
    /* descending deletes down to empty */
    for (long i = n - 1; i >= 0; i--) {
        size_t kl = (size_t)snprintf((char *)k, sizeof k, "key%012ld", i);
        int ex = 0;
        RC(E->del(h.e, k, kl, &ex));
        CHECK(ex, "del %ld", i);
        m_del(&m, k, kl);
        if (i % 5000 == 0 && verify_all(&h, &m)) return -1;
    }
    m_free(&m);
    h_close(&h);
    return 0;
}

/* 4096-byte keys that differ only at the end, with 4 KiB pages (spilled keys). */
static int test_long_keys(void) {
    harness h;
    model m = {0};
    if (h_init(&h, "longkeys", 4096, 256 << 10)) return -1;
    uint8_t *k = malloc(KVT_MAX_KEY);
    uint8_t v[300];
    memset(k, 'x', KVT_MAX_KEY);
    for (int i = 0; i < 600; i++) {
        uint64_t id = rnd() % 400;
        size_t kl = KVT_MAX_KEY - (id % 3) * 1000;
        char tag[16];
        snprintf(tag, sizeof tag, "%08llu", (unsigned long long)id);
        memcpy(k + kl - 8, tag, 8);
        fill(v, sizeof v, id);
        if (i % 5 == 4) { E->del(h.e, k, kl, NULL); m_del(&m, k, kl); continue; }
        RC(E->put(h.e, k, kl, v, id % 2 ? sizeof v : 10));
        m_put(&m, k, kl, v, id % 2 ? sizeof v : 10);
    }
    if (verify_all(&h, &m) || h_reopen(&h) || verify_all(&h, &m)) return -1;
    uint8_t probe[KVT_MAX_KEY];
    memset(probe, 'x', sizeof probe);
    if (verify_scan(&h, &m, probe, 2000, 1, 0, 0) || verify_scan(&h, &m, probe, 3500, 0, 1, 0))
        return -1;
    free(k);
    m_free(&m);
    h_close(&h);
    return 0;
}

static int test_huge_values(void) {
    harness h;
    if (h_init(&h, "huge", 4096, 1 << 20)) return -1;
    size_t big = KVT_MAX_VALUE;
    uint8_t *v = malloc(big);
    fill(v, big, 7);
    kvt_buf b = {0};
    RC(E->put(h.e, (const uint8_t *)"big", 3, v, big));
    RC(E->put(h.e, (const uint8_t *)"mid", 3, v, 5000));
    RC(E->put(h.e, (const uint8_t *)"big", 3, v + 1, big - 1));       /* frees the old chain */
    RC(full_check(h.p, h.e));
    if (h_reopen(&h)) return -1;
    RC(E->get(h.e, (const uint8_t *)"big", 3, &b));
    CHECK(b.len == big - 1 && !memcmp(b.data, v + 1, big - 1), "huge value round trip");
    RC(E->get(h.e, (const uint8_t *)"mid", 3, &b));
    CHECK(b.len == 5000 && !memcmp(b.data, v, 5000), "mid value");
    int ex;
    RC(E->del(h.e, (const uint8_t *)"big", 3, &ex));
    RC(full_check(h.p, h.e));
    kvt_buf_free(&b);
    free(v);
    h_close(&h);
    return 0;
}

/* Damage: a page with garbage slot offsets must give KVT_ECORRUPT, never a crash. */
static int test_damage(void) {
    harness h;
    if (h_init(&h, "damage", 4096, 1 << 20)) return -1;
    uint8_t k[16], v[100] = {0};
    for (int i = 0; i < 2000; i++) {
        size_t kl = (size_t)snprintf((char *)k, sizeof k, "d%08d", i * 7919 % 2000);
        RC(E->put(h.e, k, kl, v, sizeof v));
    }
    /* stomp on the slot array and header of the root's first child in memory */
    kvt_engine_stats st;
    E->stats(h.e, &st);
    kvt_buf b = {0};
    for (uint64_t pg = 2; pg < 40; pg++) {
        kvt_page *p;
        if (kvt_pager_get(h.p, pg, &p) < 0) continue;
        if (kvt_page_type(p) == 16) {
            kvt_pager_write(h.p, &p);
            for (int i = 0; i < 64; i++) p->data[56 + i] = (uint8_t)rnd();
        }
        kvt_pager_unpin(h.p, p);
    }
    int bad = 0;
    for (int i = 0; i < 2000; i++) {
        size_t kl = (size_t)snprintf((char *)k, sizeof k, "d%08d", i);
        int rc = E->get(h.e, k, kl, &b);
        if (rc == KVT_ECORRUPT) bad++;
        CHECK(rc == KVT_OK || rc == KVT_NOTFOUND || rc == KVT_ECORRUPT, "rc %d", rc);
    }
    CHECK(full_check(h.p, h.e) == KVT_ECORRUPT, "check of damaged tree");
    printf("  damage: %d gets reported corruption: %s\n", bad, kvt_errmsg());
    kvt_buf_free(&b);
    h_close(&h);
    return 0;
}

/* Forge one cell of page pgno with a valid checksum (what a bug or an attacker could write):
 * edit the page image on disk and recompute its CRC over [4, page_size) like the pager.
 * The pager must be closed (file mode). */
static int forge_cell_vlen(harness *h, kvt_pgno pgno, uint32_t slot, uint32_t vraw) {
#ifdef BT_FAKE_PAGER
    kvt_page *p;
    RC(kvt_pager_get(h->p, pgno, &p));
    uint32_t off = kvt_get16(p->data + 56 + 2 * slot);
    kvt_put32(p->data + off + 2, vraw);
    kvt_pager_unpin(h->p, p);
#else
    uint8_t *pg = malloc(h->ps);
    FILE *f = fopen(h->path, "r+b");
    CHECK(pg && f, "open %s", h->path);
    int ok = fseek(f, (long)(pgno * h->ps), SEEK_SET) == 0 && fread(pg, 1, h->ps, f) == h->ps;
    CHECK(ok && pg[4] == 16, "read leaf page %llu", (unsigned long long)pgno);
    uint32_t off = kvt_get16(pg + 56 + 2 * slot);
    kvt_put32(pg + off + 2, vraw);
    kvt_put32(pg, kvt_crc32c(0, pg + 4, h->ps - 4));
    ok = fseek(f, (long)(pgno * h->ps), SEEK_SET) == 0 && fwrite(pg, 1, h->ps, f) == h->ps;
    ok = fclose(f) == 0 && ok;
    free(pg);
    CHECK(ok, "write forged page");
#endif
    return 0;
}

/* Regression (review of bt_compact): a leaf with a valid checksum but a cell whose value
 * length runs past the page. An insert that needs compaction and a delete of the forged
 * cell must report KVT_ECORRUPT, not read or write past the page (run under ASan). */
static int test_forged_cell(void) {
    harness h;
    if (h_init(&h, "forged", 4096, 1 << 20)) return -1;
    uint8_t k[16], v[200] = {7};
    for (int i = 0; i < 35; i++) {       /* one nearly full root leaf: 35 * (111 + 2) bytes */
        size_t kl = (size_t)snprintf((char *)k, sizeof k, "f%04d", i);
        RC(E->put(h.e, k, kl, v, 100));
    }
    for (int i = 10; i < 20; i++) {      /* leave garbage inside the cell area */
        size_t kl = (size_t)snprintf((char *)k, sizeof k, "f%04d", i);
        RC(E->del(h.e, k, kl, NULL));
    }
    kvt_engine_stats st;
    E->stats(h.e, &st);
    CHECK(st.height == 1, "expected a single leaf, height %llu", (unsigned long long)st.height);
    uint8_t meta[KVT_ENGINE_META_MAX];
    size_t ml = 0;
    RC(E->flush(h.e, meta, &ml));
    kvt_pgno root = kvt_get64(meta + 8);
    RC(h_checkpoint(&h));
    E->close(h.e);
#ifndef BT_FAKE_PAGER
    RC(kvt_pager_close(h.p));
    h.p = NULL;
#endif
    /* slot 3 = key f0003: its value now claims 60000 inline bytes */
    if (forge_cell_vlen(&h, root, 3, 60000)) return -1;
    if (h_open(&h)) return -1;
    size_t kl = (size_t)snprintf((char *)k, sizeof k, "f%04d", 50);
    int rc = E->put(h.e, k, kl, v, sizeof v);       /* 213 bytes > contiguous free: compacts */
    CHECK(rc == KVT_ECORRUPT, "insert into forged page -> %d, expected KVT_ECORRUPT", rc);
    CHECK(strstr(kvt_errmsg(), "page") != NULL, "error names the page");
    printf("  forged insert: %s\n", kvt_errmsg());
    kl = (size_t)snprintf((char *)k, sizeof k, "f%04d", 3);
    rc = E->del(h.e, k, kl, NULL);
    CHECK(rc == KVT_ECORRUPT, "delete of forged cell -> %d, expected KVT_ECORRUPT", rc);
    kvt_buf b = {0};
    rc = E->get(h.e, k, kl, &b);
    CHECK(rc == KVT_ECORRUPT, "get of forged cell -> %d", rc);
    kl = (size_t)snprintf((char *)k, sizeof k, "f%04d", 30);
    rc = E->get(h.e, k, kl, &b);                   /* an intact cell still reads */
    CHECK(rc == KVT_OK && b.len == 100, "get of intact cell -> %d", rc);
    kvt_buf_free(&b);
    h_close(&h);
    return 0;
}

/* ---------- scan_at: chunked scans that resume where the last chunk stopped ---------- */
typedef struct chunk_ctx {
    model *m;
    long pos, step, taken, limit;   /* model index expected next; entries this chunk */
    uint8_t last[KVT_MAX_KEY];
    size_t last_len;
    int bad;
} chunk_ctx;

/* Takes up to limit entries, then refuses the next (returns 1 without taking it), as
 * the db layer's chunk collector does. */
static int chunk_fn(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    chunk_ctx *c = ctx;
    if (c->taken == c->limit) return 1;
    if (c->pos < 0 || c->pos >= (long)c->m->n) { c->bad = 1; return 1; }
    ent *x = &c->m->a[c->pos];
    if (kvt_keycmp(k, kl, x->k, x->kl) || vl != x->vl || (vl && memcmp(v, x->v, vl))) {
        c->bad = 2; return 1;
    }
    memcpy(c->last, k, kl);
    c->last_len = kl;
    c->pos += c->step;
    c->taken++;
    return 0;
}

/* Whole-tree chunked walks both ways, with chunk sizes 1..40, writes between some chunks
 * (which must invalidate the saved position: the walk then continues after the last key
 * taken), against the model. */
static int test_scan_resume(void) {
    harness h;
    model m = {0};
    if (h_init(&h, "resume", 4096, 256 << 10)) return -1;
    static uint8_t k[64], v[32 * 1024];
    for (long i = 0; i < 6000; i++) {
        uint64_t id = rnd() % 20000;
        size_t kl = make_key(k, id, 0), vl = make_val(v, id, rnd());
        RC(E->put(h.e, k, kl, v, vl));
        m_put(&m, k, kl, v, vl);
    }
    CHECK(E->scan_at != NULL, "btree has scan_at");
    for (int rev = 0; rev < 2; rev++) {
        for (int writes = 0; writes < 2; writes++) {
            kvt_scan_pos pos;
            memset(&pos, 0, sizeof pos);
            chunk_ctx c = {.m = &m, .step = rev ? -1 : 1};
            c.pos = rev ? (long)m.n - 1 : 0;
            long total = 0, chunks = 0;
            for (;;) {
                c.taken = 0;
                c.limit = 1 + (long)(rnd() % 40);
                const uint8_t *from = total ? c.last : NULL;
                RC(E->scan_at(h.e, from, c.last_len, 0, rev, &pos, chunk_fn, &c));
                CHECK(!c.bad, "rev %d writes %d: chunk %ld bad %d", rev, writes, chunks, c.bad);
                total += c.taken;
                chunks++;
                if (c.taken < c.limit) break;             /* the tree's end */
                /* stopped by the visitor (not at the tree's end): position saved */
                CHECK(total == (long)m.n || pos.w[0] != 0, "a stopped scan saves its position");
                if (writes && chunks % 7 == 0) {          /* a write behind the cursor */
                    long j = rev ? c.pos + 2 : c.pos - 2; /* an entry already taken */
                    if (j >= 0 && j < (long)m.n) {
                        ent x = m.a[j];
                        RC(E->put(h.e, x.k, x.kl, (const uint8_t *)"w", 1));
                        m_put(&m, x.k, x.kl, (const uint8_t *)"w", 1);
                    }
                }
            }
            CHECK(total == (long)m.n, "rev %d: walked %ld of %zu", rev, total, m.n);
            CHECK(pos.w[0] == 0, "a scan that ran out clears the position (rev %d writes %d taken %ld limit %ld total %ld)", rev, writes, c.taken, c.limit, total);
        }
    }
#ifndef BT_FAKE_PAGER
    /* Resuming pins the leaf only: 300 one-entry chunks cost ~1 page get each, where
     * seeking again from the last key costs one per level. */
    kvt_engine_stats es;
    E->stats(h.e, &es);
    uint64_t gets[2];
    for (int resume = 0; resume < 2; resume++) {
        kvt_scan_pos rp;
        memset(&rp, 0, sizeof rp);
        chunk_ctx cc = {.m = &m, .step = 1};
        kvt_pager_stats a, b;
        kvt_pager_get_stats(h.p, &a);
        for (int i = 0; i < 300; i++) {
            cc.taken = 0;
            cc.limit = 1;
            RC(E->scan_at(h.e, i ? cc.last : NULL, cc.last_len, 0, 0, &rp, chunk_fn, &cc));
            CHECK(!cc.bad && cc.taken == 1, "one-entry chunk %d", i);
            if (!resume) rp.w[0] = 0;
        }
        kvt_pager_get_stats(h.p, &b);
        gets[resume] = b.cache_hits + b.cache_misses - a.cache_hits - a.cache_misses;
    }
    CHECK(es.height >= 2 && gets[0] >= 300 * es.height && gets[1] <= 300 + 300 / 4,
          "page gets: %llu seeking, %llu resuming (height %llu)", (unsigned long long)gets[0],
          (unsigned long long)gets[1], (unsigned long long)es.height);
#endif
    /* A saved position used after the tree changed shape is ignored, not followed. */
    kvt_scan_pos pos;
    memset(&pos, 0, sizeof pos);
    chunk_ctx c = {.m = &m, .step = 1, .limit = 10};
    RC(E->scan_at(h.e, NULL, 0, 1, 0, &pos, chunk_fn, &c));
    for (size_t i = 0; i < m.n; i += 2) {     /* every third key, from both */
        ent x = m.a[i];
        int ex;
        RC(E->del(h.e, x.k, x.kl, &ex));
        CHECK(ex, "delete of a present key");
        m_del(&m, x.k, x.kl);
    }
    c = (chunk_ctx){.m = &m, .step = 1, .limit = 5};
    int eq;
    c.pos = (long)m_find(&m, c.last, c.last_len, &eq) + eq;
    RC(E->scan_at(h.e, c.last, c.last_len, 0, 0, &pos, chunk_fn, &c));
    CHECK(!c.bad && c.taken == 5, "after deletes: bad %d taken %ld", c.bad, c.taken);
    if (verify_all(&h, &m)) return -1;
    m_free(&m);
    h_close(&h);
    return 0;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int bench(long n) {
    harness h;
    uint32_t ps = getenv("BT_BENCH_PS") ? (uint32_t)atol(getenv("BT_BENCH_PS")) : 4096;
    if (h_init(&h, "bench", ps, 512ull << 20)) return -1;
    uint8_t k[17], v[100] = {1};
    double t0 = now();
    for (long i = 0; i < n; i++) {
        snprintf((char *)k, sizeof k, "%016llx", (unsigned long long)((uint64_t)i * 0x9E3779B97F4A7C15ull));
        RC(E->put(h.e, k, 16, v, sizeof v));
    }
    double t1 = now();
    kvt_buf b = {0};
    RC(kvt_buf_reserve(&b, 128));
    long gets = 2 * n;
    for (long i = 0; i < gets; i++) {
        uint64_t id = rnd() % (uint64_t)n;
        snprintf((char *)k, sizeof k, "%016llx", (unsigned long long)(id * 0x9E3779B97F4A7C15ull));
        int rc = E->get(h.e, k, 16, &b);
        CHECK(rc == KVT_OK, "bench get");
    }
    double t2 = now();
    kvt_engine_stats st;
    E->stats(h.e, &st);
    printf("  bench (%u-byte pages): %ld random puts %.0f ns/put; %ld random gets %.0f ns/get (height %llu, pages %llu)\n",
           ps, n, (t1 - t0) * 1e9 / n, gets, (t2 - t1) * 1e9 / gets,
           (unsigned long long)st.height, (unsigned long long)st.nodes);
    kvt_buf_free(&b);
    h_close(&h);
    return 0;
}

int main(void) {
    int small = getenv("BT_SMALL") != NULL;
    long ops = small ? 8000 : 40000;
    struct { const char *name; int r; } res[12];
    int n = 0;
#define RUN(label, call) do { printf("%s\n", label); fflush(stdout); res[n].name = label; res[n++].r = (call); } while (0)
    RUN("random 4K pages, long keys, 64K cache", test_random(4096, 64 << 10, 1, ops, 3000));
    RUN("random 16K pages, 256K cache", test_random(16384, 256 << 10, 0, ops, 20000));
    RUN("random 4K pages, dense keyspace", test_random(4096, 1 << 20, 0, ops, 500));
    RUN("ascending inserts + reverse scans", test_ascending(4096, small ? 20000 : 100000));
    RUN("4096-byte keys", test_long_keys());
    RUN("huge values", test_huge_values());
    RUN("damaged page", test_damage());
    RUN("forged cell length (valid checksum)", test_forged_cell());
    RUN("chunked scans resume (scan_at)", test_scan_resume());
    if (getenv("BT_BENCH")) RUN("bench", bench(atol(getenv("BT_BENCH")) > 1 ? atol(getenv("BT_BENCH")) : 1000000));
    for (int i = 0; i < n; i++) printf("%-40s %s\n", res[i].name, res[i].r ? "FAIL" : "ok");
    return failures ? 1 : 0;
}

#ifdef BT_FAKE_PAGER
/* ---------- in-memory fake pager: COW moves, deferred frees, pin and ref accounting ---------- */
struct kvt_pager {
    uint32_t ps;
    uint8_t **pg;          /* page images */
    uint64_t *gen;
    uint8_t *state;        /* 0 free, 1 live, 2 freed (deferred until checkpoint) */
    uint32_t *refs;
    uint64_t n, cap, cur_gen, pins;
    uint8_t meta[KVT_ENGINE_META_MAX];
    size_t meta_len;
};

kvt_pager *fake_open(uint32_t ps) {
    kvt_pager *p = calloc(1, sizeof *p);
    p->ps = ps;
    p->cap = 64;
    p->pg = calloc(p->cap, sizeof *p->pg);
    p->gen = calloc(p->cap, sizeof *p->gen);
    p->state = calloc(p->cap, 1);
    p->refs = calloc(p->cap, sizeof *p->refs);
    p->n = 2;
    p->cur_gen = 1;
    return p;
}

void fake_close(kvt_pager *p) {
    for (uint64_t i = 0; i < p->n; i++) free(p->pg ? p->pg[i] : NULL);
    free(p->pg); free(p->gen); free(p->state); free(p->refs); free(p);
}

uint64_t fake_pins(kvt_pager *p) { return p->pins; }
uint32_t kvt_pager_page_size(const kvt_pager *p) { return p->ps; }
const uint8_t *kvt_pager_engine_meta(const kvt_pager *p, size_t *len) { *len = p->meta_len; return p->meta; }

int kvt_pager_get(kvt_pager *p, kvt_pgno pgno, kvt_page **out) {
    if (pgno < 2 || pgno >= p->n || p->state[pgno] != 1)
        return kvt_seterr(KVT_ECORRUPT, "fake: get of page %llu (not live)", (unsigned long long)pgno);
    kvt_page *pg = malloc(sizeof *pg);
    pg->pgno = pgno;
    pg->data = p->pg[pgno];
    p->pins++;
    *out = pg;
    return KVT_OK;
}

void kvt_pager_unpin(kvt_pager *p, kvt_page *pg) { p->pins--; free(pg); }

static kvt_pgno fake_new(kvt_pager *p, uint8_t type) {
    kvt_pgno n = 0;
    for (kvt_pgno i = 2; i < p->n && !n; i++) if (p->state[i] == 0) n = i;
    if (!n) {
        if (p->n == p->cap) {
            p->cap = p->cap ? 2 * p->cap : 64;
            p->pg = realloc(p->pg, p->cap * sizeof *p->pg);
            p->gen = realloc(p->gen, p->cap * sizeof *p->gen);
            p->state = realloc(p->state, p->cap);
            p->refs = realloc(p->refs, p->cap * sizeof *p->refs);
            for (uint64_t i = p->n; i < p->cap; i++) { p->pg[i] = NULL; p->state[i] = 0; }
        }
        n = p->n++;
    }
    free(p->pg[n]);
    p->pg[n] = calloc(1, p->ps);
    p->pg[n][4] = type;
    p->gen[n] = p->cur_gen;
    p->state[n] = 1;
    return n;
}

int kvt_pager_alloc(kvt_pager *p, uint8_t type, kvt_page **out) {
    return kvt_pager_get(p, fake_new(p, type), out);
}

int kvt_pager_write(kvt_pager *p, kvt_page **pg) {
    kvt_pgno old = (*pg)->pgno;
    if (p->gen[old] == p->cur_gen) return KVT_OK;
    kvt_pgno n = fake_new(p, p->pg[old][4]);
    memcpy(p->pg[n] + KVT_PAGE_HDR, p->pg[old] + KVT_PAGE_HDR, p->ps - KVT_PAGE_HDR);
    memset(p->pg[old], 0xEE, p->ps);      /* stale readers see garbage */
    p->state[old] = 2;
    kvt_pager_unpin(p, *pg);
    return kvt_pager_get(p, n, pg);
}

int kvt_pager_free(kvt_pager *p, kvt_pgno pgno) {
    if (pgno < 2 || pgno >= p->n || p->state[pgno] != 1)
        return kvt_seterr(KVT_ECORRUPT, "fake: free of page %llu (not live)", (unsigned long long)pgno);
    p->state[pgno] = p->gen[pgno] == p->cur_gen ? 0 : 2;
    memset(p->pg[pgno], 0xDD, p->ps);
    return KVT_OK;
}

int kvt_pager_checkpoint(kvt_pager *p, const void *m, size_t len) {
    memcpy(p->meta, m, len);
    p->meta_len = len;
    for (uint64_t i = 2; i < p->n; i++) if (p->state[i] == 2) p->state[i] = 0;
    p->cur_gen++;
    return KVT_OK;
}

/* blob page: [hdr][u64 next][u32 n][data] */
int kvt_blob_write(kvt_pager *p, const void *data, size_t len, kvt_pgno *first) {
    size_t cap = p->ps - KVT_PAGE_HDR - 12, off = 0;
    kvt_pgno prev = 0;
    *first = 0;
    do {
        kvt_pgno n = fake_new(p, KVT_PT_OVERFLOW);
        size_t c = len - off < cap ? len - off : cap;
        memcpy(p->pg[n] + KVT_PAGE_HDR + 12, (const uint8_t *)data + off, c);
        kvt_put32(p->pg[n] + KVT_PAGE_HDR + 8, (uint32_t)c);
        if (prev) kvt_put64(p->pg[prev] + KVT_PAGE_HDR, n); else *first = n;
        prev = n;
        off += c;
    } while (off < len);
    return KVT_OK;
}

static int blob_walk(kvt_pager *p, kvt_pgno pg, size_t len, kvt_buf *out, int mode) {
    size_t got = 0;
    if (out) out->len = 0;
    while (pg) {
        if (pg < 2 || pg >= p->n || p->state[pg] != 1 || p->pg[pg][4] != KVT_PT_OVERFLOW)
            return kvt_seterr(KVT_ECORRUPT, "fake: bad blob page %llu", (unsigned long long)pg);
        uint8_t *d = p->pg[pg];
        uint32_t c = kvt_get32(d + KVT_PAGE_HDR + 8);
        if (out) KVT_TRY(kvt_buf_append(out, d + KVT_PAGE_HDR + 12, c));
        got += c;
        kvt_pgno next = kvt_get64(d + KVT_PAGE_HDR);
        if (mode == 1) KVT_TRY(kvt_pager_free(p, pg));
        if (mode == 2) KVT_TRY(kvt_pager_check_ref(p, pg));
        pg = next;
    }
    if (mode != 1 && got != len) return kvt_seterr(KVT_ECORRUPT, "fake: blob length %zu != %zu", got, len);
    return KVT_OK;
}

int kvt_blob_read(kvt_pager *p, kvt_pgno first, size_t len, kvt_buf *out) { return blob_walk(p, first, len, out, 0); }
int kvt_blob_free(kvt_pager *p, kvt_pgno first) { return blob_walk(p, first, 0, NULL, 1); }
int kvt_blob_check(kvt_pager *p, kvt_pgno first, size_t len) { return blob_walk(p, first, len, NULL, 2); }

int kvt_pager_check_begin(kvt_pager *p) {
    for (uint64_t i = 0; i < p->n; i++) p->refs[i] = 0;
    return KVT_OK;
}

int kvt_pager_check_ref(kvt_pager *p, kvt_pgno pgno) {
    if (pgno < 2 || pgno >= p->n || p->state[pgno] != 1)
        return kvt_seterr(KVT_ECORRUPT, "fake: ref of page %llu (not live)", (unsigned long long)pgno);
    if (p->refs[pgno]++)
        return kvt_seterr(KVT_ECORRUPT, "fake: page %llu referenced twice", (unsigned long long)pgno);
    return KVT_OK;
}

int kvt_pager_check_end(kvt_pager *p) {
    for (uint64_t i = 2; i < p->n; i++)
        if (p->state[i] == 1 && !p->refs[i])
            return kvt_seterr(KVT_ECORRUPT, "fake: page %llu live but unreferenced (leak)", (unsigned long long)i);
    return KVT_OK;
}
/* No read map in the fake pager: never a fault. */
uint64_t kvt_pager_map_faults(const kvt_pager *p) { (void)p; return 0; }
int kvt_pager_map_guard(kvt_pager *p, uint64_t before, int rc) { (void)p; (void)before; return rc; }
#endif
