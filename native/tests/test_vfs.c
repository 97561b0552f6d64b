/* test_vfs.c - POSIX VFS, kvt_file wrappers and the fault-injecting VFS. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "kvt_error.h"
#include "kvt_vfs.h"

static int failures;
#define CHECK(c) do { if (!(c)) { failures++; \
    fprintf(stderr, "%s:%d: CHECK(%s) failed [%s]\n", __FILE__, __LINE__, #c, kvt_errmsg()); } } while (0)
#define EQ(a, b) do { long long a_ = (long long)(a), b_ = (long long)(b); if (a_ != b_) { failures++; \
    fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld [%s]\n", __FILE__, __LINE__, \
            #a, a_, #b, b_, kvt_errmsg()); } } while (0)

static char dir[256];

static const char *pth(const char *name) {
    static char buf[4][512];
    static int i;
    i = (i + 1) % 4;
    snprintf(buf[i], sizeof buf[i], "%s/%s", dir, name);
    return buf[i];
}

/* Read the whole file through POSIX into buf; returns its size. */
static size_t slurp(const char *path, uint8_t *buf, size_t cap) {
    kvt_vfs *px = kvt_vfs_posix();
    kvt_file *f;
    if (px->open(px, path, KVT_O_READONLY, &f) < 0) return (size_t)-1;
    size_t got = 0;
    kvt_file_read(f, buf, cap, 0, &got);
    kvt_file_close(f);
    return got;
}

static void fill(uint8_t *b, size_t n, int seed) {
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)(seed * 31 + i * 7 + (i >> 8));
}

static void test_posix(void) {
    kvt_vfs *px = kvt_vfs_posix();
    kvt_io_stats st = {0};
    kvt_file *f = NULL, *g = NULL;
    EQ(px->open(px, pth("nope"), 0, &f), KVT_EIO);
    CHECK(f == NULL);
    CHECK(strstr(kvt_errmsg(), "nope") != NULL);
    EQ(px->open(px, pth("a"), KVT_O_CREATE, &f), KVT_OK);
    f->stats = &st;
    uint8_t w[10000], r[10000];
    fill(w, sizeof w, 1);
    EQ(kvt_file_write(f, w, sizeof w, 0), KVT_OK);
    EQ(kvt_file_write(f, w, 100, 20000), KVT_OK);
    uint64_t sz = 0;
    EQ(kvt_file_size(f, &sz), KVT_OK);
    EQ(sz, 20100);
    EQ(kvt_file_read_full(f, r, sizeof r, 0), KVT_OK);
    CHECK(memcmp(w, r, sizeof r) == 0);
    size_t got = 0;
    EQ(kvt_file_read(f, r, 1000, 19500, &got), KVT_OK);
    EQ(got, 600);
    EQ(kvt_file_read_full(f, r, 1000, 19500), KVT_ECORRUPT);
    CHECK(strstr(kvt_errmsg(), "short read at offset 19500") != NULL);
    EQ(kvt_file_sync(f), KVT_OK);
    EQ(kvt_file_truncate(f, 5000), KVT_OK);
    EQ(kvt_file_size(f, &sz), KVT_OK);
    EQ(sz, 5000);
    EQ(st.writes, 2);
    EQ(st.bytes_written, 10100);
    EQ(st.fsyncs, 1);
    EQ(st.reads, 3);
    EQ(st.bytes_read, 10000 + 600 + 600);
    /* Locks: flock conflicts between two open file descriptions. */
    EQ(px->open(px, pth("a"), KVT_O_READONLY, &g), KVT_OK);
    EQ(kvt_file_lock(f, 1), KVT_OK);
    EQ(kvt_file_lock(g, 0), KVT_ELOCKED);
    EQ(kvt_file_lock(g, 1), KVT_ELOCKED);
    EQ(kvt_file_lock(f, 0), KVT_OK);            /* downgrade */
    EQ(kvt_file_lock(g, 0), KVT_OK);            /* shared + shared */
    CHECK(kvt_file_write(g, w, 10, 0) == KVT_EIO);  /* read-only handle */
    EQ(kvt_file_close(g), KVT_OK);
    EQ(kvt_file_close(f), KVT_OK);
    /* Directories. */
    EQ(px->mkdir(px, pth("d")), KVT_OK);
    EQ(px->mkdir(px, pth("d")), KVT_OK);
    EQ(px->mkdir(px, pth("a")), KVT_EIO);       /* exists, not a directory */
    EQ(px->exists(px, pth("d")), 1);
    EQ(px->exists(px, pth("zz")), 0);
    EQ(px->sync_dir(px, dir), KVT_OK);
    EQ(px->sync_dir(px, pth("zz")), KVT_EIO);
    /* O_DIRECT on ext4 works with aligned buffers; elsewhere a clear KVT_EINVAL. */
    int rc = px->open(px, pth("direct"), KVT_O_CREATE | KVT_O_DIRECT, &f);
    CHECK(rc == KVT_OK || (rc == KVT_EINVAL && strstr(kvt_errmsg(), "O_DIRECT")));
    if (rc == KVT_OK) {
        uint8_t *al = NULL;
        CHECK(posix_memalign((void **)&al, 4096, 8192) == 0);
        fill(al, 8192, 3);
        EQ(kvt_file_write(f, al, 8192, 4096), KVT_OK);
        memset(al, 0, 8192);
        EQ(kvt_file_read_full(f, al, 4096, 8192), KVT_OK);
        fill(r, 8192, 3);
        CHECK(memcmp(al, r + 4096, 4096) == 0);
        size_t got2 = 0;                         /* read across EOF: short, not EINVAL */
        EQ(kvt_file_truncate(f, 4096 + 4096 + 100), KVT_OK);
        EQ(kvt_file_read(f, al, 8192, 4096, &got2), KVT_OK);
        EQ(got2, 4096 + 100);
        free(al);
        EQ(kvt_file_close(f), KVT_OK);
    }
}

static kvt_vfs *new_fault(void) {
    kvt_vfs *v = NULL;
    CHECK(kvt_fault_vfs_new(&v) == KVT_OK && v);
    return v;
}

static void test_fault_arming(void) {
    kvt_vfs *v = new_fault();
    kvt_file *f;
    EQ(v->open(v, pth("fa"), KVT_O_CREATE, &f), KVT_OK);
    uint8_t b[100], r[100];
    fill(b, sizeof b, 5);
    EQ(kvt_fault_set(v, KVT_FAULT_WRITE, 3, 0, KVT_EIO), KVT_OK);
    EQ(kvt_file_write(f, b, 10, 0), KVT_OK);
    EQ(kvt_file_write(f, b, 10, 10), KVT_OK);
    EQ(kvt_file_write(f, b, 10, 20), KVT_EIO);   /* 3rd fails, writes nothing */
    uint64_t sz;
    EQ(kvt_file_size(f, &sz), KVT_OK);
    EQ(sz, 20);
    EQ(kvt_file_write(f, b, 10, 20), KVT_OK);    /* once: the next one works */
    EQ(kvt_fault_count(v, KVT_FAULT_WRITE), 4);
    /* Persistent ENOSPC from the 2nd write on. */
    EQ(kvt_fault_set(v, KVT_FAULT_WRITE, 2, 1, KVT_ENOSPC), KVT_OK);
    EQ(kvt_file_write(f, b, 10, 30), KVT_OK);
    EQ(kvt_file_write(f, b, 10, 40), KVT_ENOSPC);
    CHECK(strstr(kvt_errmsg(), "injected") != NULL);
    EQ(kvt_file_write(f, b, 10, 40), KVT_ENOSPC);
    EQ(kvt_file_write(f, b, 1, 0), KVT_ENOSPC);
    EQ(kvt_file_size(f, &sz), KVT_OK);
    EQ(sz, 40);
    EQ(kvt_file_read_full(f, r, 10, 30), KVT_OK);   /* reads are not affected */
    CHECK(memcmp(r, b, 10) == 0);
    EQ(kvt_fault_set(v, KVT_FAULT_WRITE, 0, 0, KVT_EIO), KVT_OK);   /* disarm */
    EQ(kvt_file_write(f, b, 10, 40), KVT_OK);
    /* Syncs. */
    EQ(kvt_fault_set(v, KVT_FAULT_SYNC, 1, 0, KVT_EIO), KVT_OK);
    EQ(kvt_file_sync(f), KVT_EIO);
    EQ(kvt_file_sync(f), KVT_OK);
    EQ(kvt_fault_count(v, KVT_FAULT_SYNC), 2);
    EQ(kvt_fault_set(v, KVT_FAULT_WRITE | KVT_FAULT_SYNC, 1, 1, KVT_EIO), KVT_OK);
    EQ(kvt_file_sync(f), KVT_EIO);
    EQ(kvt_file_write(f, b, 1, 0), KVT_EIO);
    /* Bad arguments. */
    EQ(kvt_fault_set(v, 8, 1, 0, KVT_EIO), KVT_EINVAL);
    EQ(kvt_fault_set(v, KVT_FAULT_SYNC, 1, 0, KVT_ECORRUPT), KVT_EINVAL);
    EQ(kvt_fault_set(kvt_vfs_posix(), KVT_FAULT_SYNC, 1, 0, KVT_EIO), KVT_EINVAL);
    kvt_fault_reset(v);
    EQ(kvt_fault_count(v, KVT_FAULT_WRITE), 0);
    EQ(kvt_file_write(f, b, 1, 0), KVT_OK);
    EQ(kvt_file_sync(f), KVT_OK);
    EQ(kvt_file_close(f), KVT_OK);
    kvt_fault_vfs_free(v);
}

/* Build a synced state, then unsynced overwrites, appends, a truncate, a second file
 * and a closed-unsynced file; DROP must restore exactly the synced contents. */
static void test_crash_drop(void) {
    kvt_vfs *v = new_fault();
    kvt_file *f, *g, *h;
    static uint8_t a[20000], b[20000], r[40000];
    fill(a, sizeof a, 7);
    fill(b, sizeof b, 8);
    EQ(v->open(v, pth("c1"), KVT_O_CREATE, &f), KVT_OK);
    EQ(v->open(v, pth("c2"), KVT_O_CREATE, &g), KVT_OK);
    EQ(kvt_file_lock(f, 1), KVT_OK);
    EQ(kvt_file_write(f, a, 8000, 0), KVT_OK);
    EQ(kvt_file_sync(f), KVT_OK);
    EQ(kvt_file_write(f, b, 3000, 1000), KVT_OK);     /* overwrite */
    EQ(kvt_file_write(f, b, 5000, 7000), KVT_OK);     /* overwrite + extend */
    EQ(kvt_file_truncate(f, 500), KVT_OK);
    EQ(kvt_file_write(f, b, 100, 15000), KVT_OK);     /* hole */
    EQ(kvt_file_write(g, b, 4000, 0), KVT_OK);        /* never synced */
    EQ(v->open(v, pth("c3"), KVT_O_CREATE, &h), KVT_OK);
    EQ(kvt_file_write(h, b, 4000, 0), KVT_OK);
    EQ(kvt_file_close(h), KVT_OK);                    /* close is not a sync */
    EQ(kvt_fault_crash(v, KVT_CRASH_DROP, 1), KVT_OK);
    EQ(slurp(pth("c1"), r, sizeof r), 8000);
    CHECK(memcmp(r, a, 8000) == 0);
    EQ(slurp(pth("c2"), r, sizeof r), 0);
    EQ(slurp(pth("c3"), r, sizeof r), 0);
    /* The process is dead: every call fails, close still frees, lock is released. */
    uint64_t sz;
    EQ(kvt_file_write(f, a, 10, 0), KVT_EIO);
    EQ(kvt_file_read_full(f, r, 10, 0), KVT_EIO);
    EQ(kvt_file_sync(f), KVT_EIO);
    EQ(kvt_file_size(f, &sz), KVT_EIO);
    kvt_vfs *px = kvt_vfs_posix();
    EQ(px->open(px, pth("c1"), 0, &h), KVT_OK);
    EQ(kvt_file_lock(h, 1), KVT_OK);
    EQ(kvt_file_close(h), KVT_OK);
    /* A new "process": opens work again, the old handles stay dead. */
    EQ(v->open(v, pth("c1"), 0, &h), KVT_OK);
    EQ(kvt_file_read_full(h, r, 8000, 0), KVT_OK);
    CHECK(memcmp(r, a, 8000) == 0);
    EQ(kvt_file_write(h, b, 10, 0), KVT_OK);
    EQ(kvt_file_write(f, a, 10, 0), KVT_EIO);
    kvt_fault_reset(v);
    EQ(kvt_file_write(f, a, 10, 0), KVT_EIO);
    kvt_fault_vfs_free(v);                            /* h still open: freed at its close */
    EQ(kvt_file_close(h), KVT_OK);
    EQ(kvt_file_close(f), KVT_OK);
    EQ(kvt_file_close(g), KVT_OK);
}

/* TEAR: the result is the synced state plus a 512-aligned strict prefix of the newest
 * unsynced write; over many seeds both an empty and a non-empty prefix occur. */
static void test_crash_tear(void) {
    static uint8_t a[8192], b[6000], r[16384], want[16384];
    fill(a, sizeof a, 11);
    fill(b, sizeof b, 12);
    int seen_empty = 0, seen_part = 0;
    for (uint64_t seed = 0; seed < 120; seed++) {
        kvt_vfs *v = new_fault();
        kvt_file *f;
        EQ(v->open(v, pth("t1"), KVT_O_CREATE, &f), KVT_OK);
        EQ(kvt_file_truncate(f, 0), KVT_OK);
        EQ(kvt_file_write(f, a, 4100, 0), KVT_OK);
        EQ(kvt_file_sync(f), KVT_OK);
        EQ(kvt_file_write(f, b, 3000, 100), KVT_OK);     /* older unsynced: dropped */
        EQ(kvt_file_write(f, b, 6000, 3000), KVT_OK);    /* newest: torn */
        if (seed % 2) EQ(kvt_file_truncate(f, 5000), KVT_OK);   /* undone before the tear */
        EQ(kvt_fault_crash(v, KVT_CRASH_TEAR, seed), KVT_OK);
        size_t n = slurp(pth("t1"), r, sizeof r);
        int matched = 0;
        for (size_t cut = 3000; cut < 9000 && !matched; cut = (cut / 512 + 1) * 512) {
            size_t keep = cut - 3000, wn = cut > 4100 ? cut : 4100;
            memcpy(want, a, 4100);
            memcpy(want + 3000, b, keep);
            if (n == wn && memcmp(r, want, n) == 0) {
                matched = 1;
                if (keep == 0) seen_empty = 1; else seen_part = 1;
            }
        }
        CHECK(matched);
        EQ(kvt_file_close(f), KVT_OK);
        kvt_fault_vfs_free(v);
    }
    CHECK(seen_empty && seen_part);
}

/* O_DIRECT through the fault VFS: alignment is checked, I/O works. */
static void test_fault_direct(void) {
    kvt_vfs *v = new_fault();
    kvt_file *f;
    EQ(v->open(v, pth("fd"), KVT_O_CREATE | KVT_O_DIRECT, &f), KVT_OK);
    uint8_t *al = NULL;
    CHECK(posix_memalign((void **)&al, 4096, 4096) == 0);
    memset(al, 1, 4096);
    EQ(kvt_file_write(f, al, 4096, 0), KVT_OK);
    EQ(kvt_file_write(f, al, 100, 0), KVT_EINVAL);
    EQ(kvt_file_write(f, al + 1, 4096, 0), KVT_EINVAL);
    EQ(kvt_file_read_full(f, al, 4096, 0), KVT_OK);
    free(al);
    EQ(kvt_file_close(f), KVT_OK);
    kvt_fault_vfs_free(v);
}

/* Several threads write their own 4 KiB slots and sync; one crash at the end must leave
 * every slot either its last synced version or absent (zeros/short), never torn. */
typedef struct thr { kvt_file *f; int id, errors; } thr;

static void *slot_writer(void *arg) {
    thr *t = arg;
    uint8_t b[4096];
    for (int round = 1; round <= 30; round++) {
        memset(b, (uint8_t)(t->id * 40 + round), sizeof b);
        if (kvt_file_write(t->f, b, sizeof b, (uint64_t)t->id * 4096) != KVT_OK) t->errors++;
        if (round % 3 == 0 && kvt_file_sync(t->f) != KVT_OK) t->errors++;
    }
    return NULL;
}

static void test_fault_threads(void) {
    kvt_vfs *v = new_fault();
    kvt_file *f;
    EQ(v->open(v, pth("thr"), KVT_O_CREATE, &f), KVT_OK);
    enum { T = 4 };
    pthread_t th[T];
    thr t[T];
    for (int i = 0; i < T; i++) {
        t[i] = (thr){f, i, 0};
        CHECK(pthread_create(&th[i], NULL, slot_writer, &t[i]) == 0);
    }
    for (int i = 0; i < T; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < T; i++) EQ(t[i].errors, 0);
    EQ(kvt_fault_count(v, KVT_FAULT_WRITE), T * 30);
    EQ(kvt_fault_count(v, KVT_FAULT_SYNC), T * 10);
    EQ(kvt_fault_crash(v, KVT_CRASH_DROP, 0), KVT_OK);
    static uint8_t r[T * 4096];
    size_t n = slurp(pth("thr"), r, sizeof r);
    CHECK(n <= sizeof r);
    /* Every thread's last sync came after its round 30 write: all durable. */
    for (int i = 0; i < T && n == sizeof r; i++)
        for (int k = 0; k < 4096; k++)
            if (r[i * 4096 + k] != (uint8_t)(i * 40 + 30)) { CHECK(!"slot content"); break; }
    EQ(n, sizeof r);
    EQ(kvt_file_close(f), KVT_OK);
    kvt_fault_vfs_free(v);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/kvt_test_vfs_XXXXXX");
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    test_posix();
    test_fault_arming();
    test_crash_drop();
    test_crash_tear();
    test_fault_direct();
    test_fault_threads();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cleanup of %s failed\n", dir);
    if (failures) { fprintf(stderr, "test_vfs: %d failures\n", failures); return 1; }
    printf("test_vfs: ok\n");
    return 0;
}
