/* fault.c - the fault-injecting VFS, wrapping the POSIX one, for crash and error tests.
 *
 * Fault arming: the nth write or sync from kvt_fault_set() fails with the chosen code
 * (a failing write writes nothing); persistent arming keeps failing every later one.
 *
 * Crash simulation: every write and truncate is applied to the real file at once (so
 * reads see it, like the page cache), after recording an undo entry: offset, the bytes
 * it overwrote or cut off, and the old size. A sync of a file forgets its entries (they
 * are durable). kvt_fault_crash reverts each file's entries newest-first: DROP loses
 * every unsynced op; TEAR additionally keeps a random 512-byte-aligned strict prefix of
 * the newest unsynced write (a torn sector run). Undo state is kept per inode, not per
 * handle, so writes through a handle that was closed without fsync are lost too, and an
 * fsync through any handle covers them. After a crash the old handles are dead (every
 * call but close returns KVT_EIO, their locks are released); files opened afterwards
 * belong to a new "process" and work normally.
 *
 * O_DIRECT: the wrapped file is opened buffered (undo capture reads at any offset), but
 * the 4096 alignment contract of KVT_O_DIRECT is still checked, so alignment bugs show.
 * Every call takes the VFS mutex: I/O through this VFS is serialised (tests only).
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "kvt_error.h"
#include "kvt_vfs.h"

#define TEAR_ALIGN   512u
#define DIRECT_ALIGN 4096u

typedef struct undo {
    uint64_t off;          /* write: its offset; truncate: the new size */
    uint64_t len;          /* write: its length; truncate: 0 */
    uint64_t old_size;     /* file size before the op */
    uint8_t *old;          /* bytes the op overwrote / cut off, from off */
    size_t old_len;
    int is_write;
} undo;

typedef struct fnode {     /* one inode seen through this VFS */
    struct fnode *next;
    dev_t dev;
    ino_t ino;
    char *path;
    int refs;              /* open handles */
    undo *u;
    size_t n, cap;
} fnode;

typedef struct arming {
    uint64_t left;         /* ops until the failing one; 0: disarmed */
    int persistent, firing, err;
} arming;

typedef struct fault_vfs {
    kvt_vfs base;          /* first member */
    pthread_mutex_t mu;
    kvt_vfs *inner;
    arming arm[2];         /* [0] writes, [1] syncs */
    char only[64];         /* "": faults hit every file; else only paths ending so */
    uint64_t count[2];
    int hold;              /* syncs wait on held_cv while set */
    uint64_t held;
    pthread_cond_t held_cv;
    int freed, open_files;
    fnode *nodes;
    struct ffile *files;   /* open handles */
} fault_vfs;

typedef struct ffile {
    kvt_file base;         /* first member */
    kvt_file *inner;       /* NULL once dead */
    fault_vfs *fv;
    fnode *node;
    struct ffile *next, *prev;
    int direct;
} ffile;

static const char *op_name(int k) { return k == 0 ? "write" : "sync"; }

/* ---- undo entries ---------------------------------------------------------------- */

static void node_forget(fnode *nd) {
    for (size_t i = 0; i < nd->n; i++) free(nd->u[i].old);
    free(nd->u);
    nd->u = NULL;
    nd->n = nd->cap = 0;
}

static void node_free(fnode *nd) {
    node_forget(nd);
    free(nd->path);
    free(nd);
}

/* Drop nodes nobody holds open and with nothing to undo. */
static void nodes_gc(fault_vfs *fv) {
    for (fnode **pp = &fv->nodes; *pp;) {
        fnode *nd = *pp;
        if (nd->refs == 0 && nd->n == 0) {
            *pp = nd->next;
            node_free(nd);
        } else {
            pp = &nd->next;
        }
    }
}

static int node_push(fnode *nd, const undo *e) {
    if (nd->n == nd->cap) {
        size_t cap = nd->cap ? nd->cap * 2 : 16;
        undo *u = realloc(nd->u, cap * sizeof *u);
        if (!u) return kvt_seterr(KVT_ENOMEM, "%s: fault VFS: out of memory for undo log", nd->path);
        nd->u = u;
        nd->cap = cap;
    }
    nd->u[nd->n++] = *e;
    return KVT_OK;
}

/* Record the state that an op touching [off, off+len) and/or cutting at cut destroys:
 * the old size and the old bytes from off up to min(end, old size). */
static int capture(kvt_file *in, uint64_t off, uint64_t end, int is_write, uint64_t len,
                   undo *e) {
    memset(e, 0, sizeof *e);
    e->off = off;
    e->len = len;
    e->is_write = is_write;
    KVT_TRY(in->io->size(in, &e->old_size));
    uint64_t stop = end < e->old_size ? end : e->old_size;
    if (stop <= off) return KVT_OK;
    e->old_len = (size_t)(stop - off);
    e->old = malloc(e->old_len);
    if (!e->old) return kvt_seterr(KVT_ENOMEM, "%s: fault VFS: out of memory for undo", in->path);
    size_t got = 0;
    int rc = in->io->read(in, e->old, e->old_len, off, &got);
    if (rc == KVT_OK && got != e->old_len)
        rc = kvt_seterr(KVT_EIO, "%s: fault VFS: short read capturing undo at %" PRIu64, in->path, off);
    if (rc < 0) {
        free(e->old);
        e->old = NULL;
    }
    return rc;
}

/* Undo one op: put the old bytes back, then restore the old size. */
static int revert(kvt_file *rw, const undo *e) {
    if (e->old_len) KVT_TRY(rw->io->write(rw, e->old, e->old_len, e->off));
    return rw->io->truncate(rw, e->old_size);
}

/* ---- crash ----------------------------------------------------------------------- */

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A random cut in [off, off+len): off itself or a 512-aligned file offset inside. */
static uint64_t tear_cut(const undo *e, uint64_t *rng) {
    uint64_t first = (e->off / TEAR_ALIGN + 1) * TEAR_ALIGN;
    uint64_t end = e->off + e->len;
    uint64_t inside = first < end ? (end - 1 - first) / TEAR_ALIGN + 1 : 0;
    uint64_t pick = splitmix(rng) % (inside + 1);
    return pick == 0 ? e->off : first + (pick - 1) * TEAR_ALIGN;
}

static int revert_range(kvt_file *rw, const fnode *nd, size_t from, size_t to) {
    for (size_t i = from; i > to; i--) KVT_TRY(revert(rw, &nd->u[i - 1]));
    return KVT_OK;
}

/* Revert every unsynced op of one inode; with tear, keep a prefix of the newest write. */
static int crash_node(fnode *nd, int tear, uint64_t *rng) {
    kvt_vfs *px = kvt_vfs_posix();
    if (nd->n == 0 || !px->exists(px, nd->path)) {   /* nothing to undo / file gone */
        node_forget(nd);
        return KVT_OK;
    }
    kvt_file *rw;
    KVT_TRY(px->open(px, nd->path, 0, &rw));
    size_t w = nd->n;                  /* index+1 of the newest write entry, 0: none */
    while (tear && w > 0 && !nd->u[w - 1].is_write) w--;
    uint8_t *keep = NULL;
    uint64_t keep_off = 0, keep_len = 0;
    int rc = KVT_OK;
    if (tear && w > 0) {
        rc = revert_range(rw, nd, nd->n, w);           /* newer truncates first */
        const undo *e = &nd->u[w - 1];
        keep_off = e->off;
        keep_len = tear_cut(e, rng) - e->off;
        if (rc == KVT_OK && keep_len) {
            keep = malloc(keep_len);
            rc = keep ? rw->io->read(rw, keep, keep_len, keep_off, &(size_t){0})
                      : kvt_seterr(KVT_ENOMEM, "fault VFS: out of memory tearing %s", nd->path);
        }
        if (rc == KVT_OK) rc = revert_range(rw, nd, w, 0);
    } else {
        rc = revert_range(rw, nd, nd->n, 0);
    }
    if (rc == KVT_OK && keep_len) rc = rw->io->write(rw, keep, keep_len, keep_off);
    free(keep);
    int crc = rw->io->close(rw);
    node_forget(nd);
    return rc < 0 ? rc : crc;
}

/* ---- file methods ---------------------------------------------------------------- */

static int dead_err(ffile *f) {
    return kvt_seterr(KVT_EIO, "%s: fault VFS: handle is dead after a simulated crash", f->base.path);
}

/* Count an op of kind k and decide whether it is the armed failure. */
static int targeted(const fault_vfs *fv, const char *path) {
    size_t n = strlen(fv->only), pl = strlen(path);
    return !n || (pl >= n && strcmp(path + pl - n, fv->only) == 0);
}

static int fault_hit(fault_vfs *fv, int k, const char *path) {
    fv->count[k]++;
    arming *a = &fv->arm[k];
    if (!targeted(fv, path)) return KVT_OK;
    if (!a->firing && a->left) {
        if (--a->left == 0) a->firing = 1;
    }
    if (!a->firing) return KVT_OK;
    if (!a->persistent) a->firing = 0;
    return kvt_seterr(a->err, "%s: fault VFS: injected %s failure (%s #%" PRIu64 ")", path,
                      a->err == KVT_ENOSPC ? "ENOSPC" : "EIO", op_name(k), fv->count[k]);
}

static int check_direct(ffile *f, const void *buf, size_t n, uint64_t off) {
    if (!f->direct || ((uintptr_t)buf % DIRECT_ALIGN == 0 && n % DIRECT_ALIGN == 0 &&
                       off % DIRECT_ALIGN == 0))
        return KVT_OK;
    return kvt_seterr(KVT_EINVAL, "%s: O_DIRECT I/O not 4096-aligned (buf %p, %zu bytes at %"
                      PRIu64 ")", f->base.path, buf, n, off);
}

static void destroy_vfs(fault_vfs *fv);

static int ff_close(kvt_file *kf) {
    ffile *f = (ffile *)kf;
    fault_vfs *fv = f->fv;
    pthread_mutex_lock(&fv->mu);
    int rc = f->inner ? f->inner->io->close(f->inner) : KVT_OK;
    f->node->refs--;
    fv->open_files--;
    if (f->prev) f->prev->next = f->next; else fv->files = f->next;
    if (f->next) f->next->prev = f->prev;
    nodes_gc(fv);
    int last = fv->freed && fv->open_files == 0;
    pthread_mutex_unlock(&fv->mu);
    free(kf->path);
    free(f);
    if (last) destroy_vfs(fv);
    return rc;
}

static int ff_read(kvt_file *kf, void *buf, size_t n, uint64_t off, size_t *got) {
    ffile *f = (ffile *)kf;
    *got = 0;
    pthread_mutex_lock(&f->fv->mu);
    int rc = !f->inner ? dead_err(f) : check_direct(f, buf, n, off);
    if (rc == KVT_OK) rc = f->inner->io->read(f->inner, buf, n, off, got);
    pthread_mutex_unlock(&f->fv->mu);
    return rc;
}

static int write_locked(ffile *f, const void *buf, size_t n, uint64_t off) {
    if (!f->inner) return dead_err(f);
    KVT_TRY(check_direct(f, buf, n, off));
    KVT_TRY(fault_hit(f->fv, 0, f->base.path));
    undo e;
    KVT_TRY(capture(f->inner, off, off + n, 1, n, &e));
    int rc = node_push(f->node, &e);
    if (rc < 0) {
        free(e.old);
        return rc;
    }
    return f->inner->io->write(f->inner, buf, n, off);
}

static int ff_write(kvt_file *kf, const void *buf, size_t n, uint64_t off) {
    ffile *f = (ffile *)kf;
    pthread_mutex_lock(&f->fv->mu);
    int rc = write_locked(f, buf, n, off);
    pthread_mutex_unlock(&f->fv->mu);
    return rc;
}

static int sync_locked(ffile *f) {
    if (!f->inner) return dead_err(f);
    KVT_TRY(fault_hit(f->fv, 1, f->base.path));
    KVT_TRY(f->inner->io->sync(f->inner));
    node_forget(f->node);              /* durable now */
    return KVT_OK;
}

static int ff_sync(kvt_file *kf) {
    ffile *f = (ffile *)kf;
    pthread_mutex_lock(&f->fv->mu);
    if (f->fv->hold) {
        f->fv->held++;
        while (f->fv->hold) pthread_cond_wait(&f->fv->held_cv, &f->fv->mu);
    }
    int rc = sync_locked(f);
    pthread_mutex_unlock(&f->fv->mu);
    return rc;
}

static int truncate_locked(ffile *f, uint64_t size) {
    if (!f->inner) return dead_err(f);
    undo e;
    KVT_TRY(capture(f->inner, size, UINT64_MAX, 0, 0, &e));
    int rc = node_push(f->node, &e);
    if (rc < 0) {
        free(e.old);
        return rc;
    }
    return f->inner->io->truncate(f->inner, size);
}

static int ff_truncate(kvt_file *kf, uint64_t size) {
    ffile *f = (ffile *)kf;
    pthread_mutex_lock(&f->fv->mu);
    int rc = truncate_locked(f, size);
    pthread_mutex_unlock(&f->fv->mu);
    return rc;
}

static int ff_size(kvt_file *kf, uint64_t *out) {
    ffile *f = (ffile *)kf;
    pthread_mutex_lock(&f->fv->mu);
    int rc = f->inner ? f->inner->io->size(f->inner, out) : dead_err(f);
    pthread_mutex_unlock(&f->fv->mu);
    return rc;
}

static int ff_lock(kvt_file *kf, int exclusive) {
    ffile *f = (ffile *)kf;
    pthread_mutex_lock(&f->fv->mu);
    int rc = f->inner ? f->inner->io->lock(f->inner, exclusive) : dead_err(f);
    pthread_mutex_unlock(&f->fv->mu);
    return rc;
}

static const kvt_io_methods fault_methods = {
    ff_close, ff_read, ff_write, ff_sync, ff_truncate, ff_size, ff_lock,
    NULL, NULL,   /* no map: a simulated crash must be able to undo every read source */
};

/* ---- VFS methods ----------------------------------------------------------------- */

static int node_get(fault_vfs *fv, const char *path, fnode **out) {
    struct stat st;
    if (stat(path, &st) != 0)
        return kvt_seterr(KVT_EIO, "%s: fault VFS: stat after open failed", path);
    for (fnode *nd = fv->nodes; nd; nd = nd->next)
        if (nd->dev == st.st_dev && nd->ino == st.st_ino) { *out = nd; return KVT_OK; }
    fnode *nd = calloc(1, sizeof *nd);
    char *p = strdup(path);
    if (!nd || !p) {
        free(nd);
        free(p);
        return kvt_seterr(KVT_ENOMEM, "%s: fault VFS: out of memory", path);
    }
    nd->dev = st.st_dev;
    nd->ino = st.st_ino;
    nd->path = p;
    nd->next = fv->nodes;
    fv->nodes = nd;
    *out = nd;
    return KVT_OK;
}

static int open_locked(fault_vfs *fv, const char *path, int flags, ffile *f) {
    KVT_TRY(fv->inner->open(fv->inner, path, flags & ~KVT_O_DIRECT, &f->inner));
    int rc = node_get(fv, path, &f->node);
    if (rc < 0) {
        f->inner->io->close(f->inner);
        return rc;
    }
    f->node->refs++;
    fv->open_files++;
    f->next = fv->files;
    if (f->next) f->next->prev = f;
    fv->files = f;
    return KVT_OK;
}

static int fv_open(kvt_vfs *vfs, const char *path, int flags, kvt_file **out) {
    fault_vfs *fv = (fault_vfs *)vfs;
    *out = NULL;
    ffile *f = calloc(1, sizeof *f);
    char *p = strdup(path);
    if (!f || !p) {
        free(f);
        free(p);
        return kvt_seterr(KVT_ENOMEM, "%s: out of memory opening file", path);
    }
    f->base.io = &fault_methods;
    f->base.path = p;
    f->fv = fv;
    f->direct = (flags & KVT_O_DIRECT) != 0;
    pthread_mutex_lock(&fv->mu);
    int rc = open_locked(fv, path, flags, f);
    pthread_mutex_unlock(&fv->mu);
    if (rc < 0) {
        free(f);
        free(p);
        return rc;
    }
    *out = &f->base;
    return KVT_OK;
}

static int fv_mkdir(kvt_vfs *vfs, const char *path) {
    fault_vfs *fv = (fault_vfs *)vfs;
    return fv->inner->mkdir(fv->inner, path);
}

static int fv_exists(kvt_vfs *vfs, const char *path) {
    fault_vfs *fv = (fault_vfs *)vfs;
    return fv->inner->exists(fv->inner, path);
}

static int fv_sync_dir(kvt_vfs *vfs, const char *path) {
    fault_vfs *fv = (fault_vfs *)vfs;
    return fv->inner->sync_dir(fv->inner, path);
}

/* ---- public API ------------------------------------------------------------------ */

int kvt_fault_vfs_new(kvt_vfs **out) {
    *out = NULL;
    fault_vfs *fv = calloc(1, sizeof *fv);
    if (!fv) return kvt_seterr(KVT_ENOMEM, "fault VFS: out of memory");
    if (pthread_mutex_init(&fv->mu, NULL) != 0 || pthread_cond_init(&fv->held_cv, NULL) != 0) {
        free(fv);
        return kvt_seterr(KVT_ENOMEM, "fault VFS: mutex init failed");
    }
    fv->base = (kvt_vfs){"fault", fv_open, fv_mkdir, fv_exists, fv_sync_dir, fv};
    fv->inner = kvt_vfs_posix();
    *out = &fv->base;
    return KVT_OK;
}

static void destroy_vfs(fault_vfs *fv) {
    while (fv->nodes) {
        fnode *nd = fv->nodes;
        fv->nodes = nd->next;
        node_free(nd);
    }
    pthread_mutex_destroy(&fv->mu);
    pthread_cond_destroy(&fv->held_cv);
    free(fv);
}

/* Files still open keep the VFS alive: the last close frees it. */
void kvt_fault_vfs_free(kvt_vfs *vfs) {
    if (!vfs) return;
    fault_vfs *fv = (fault_vfs *)vfs;
    pthread_mutex_lock(&fv->mu);
    fv->freed = 1;
    int now = fv->open_files == 0;
    pthread_mutex_unlock(&fv->mu);
    if (now) destroy_vfs(fv);
}

int kvt_fault_set(kvt_vfs *vfs, int op, uint64_t nth, int persistent, int err) {
    fault_vfs *fv = (fault_vfs *)vfs;
    if (!vfs || vfs->open != fv_open) return kvt_seterr(KVT_EINVAL, "kvt_fault_set: not a fault VFS");
    if (!op || (op & ~(KVT_FAULT_WRITE | KVT_FAULT_SYNC)))
        return kvt_seterr(KVT_EINVAL, "kvt_fault_set: bad op %d", op);
    if (err != KVT_EIO && err != KVT_ENOSPC)
        return kvt_seterr(KVT_EINVAL, "kvt_fault_set: err must be KVT_EIO or KVT_ENOSPC, not %d", err);
    pthread_mutex_lock(&fv->mu);
    for (int k = 0; k < 2; k++)
        if (op & (k == 0 ? KVT_FAULT_WRITE : KVT_FAULT_SYNC))
            fv->arm[k] = (arming){nth, persistent != 0, 0, err};
    pthread_mutex_unlock(&fv->mu);
    return KVT_OK;
}

int kvt_fault_only(kvt_vfs *vfs, const char *suffix) {
    fault_vfs *fv = (fault_vfs *)vfs;
    if (!vfs || vfs->open != fv_open) return kvt_seterr(KVT_EINVAL, "kvt_fault_only: not a fault VFS");
    if (suffix && strlen(suffix) >= sizeof fv->only)
        return kvt_seterr(KVT_EINVAL, "kvt_fault_only: suffix longer than %zu bytes",
                          sizeof fv->only - 1);
    pthread_mutex_lock(&fv->mu);
    snprintf(fv->only, sizeof fv->only, "%s", suffix ? suffix : "");
    pthread_mutex_unlock(&fv->mu);
    return KVT_OK;
}

/* Kill every handle: close the real file (releasing its lock), keep the wrapper. */
static void kill_handles(fault_vfs *fv) {
    for (ffile *f = fv->files; f; f = f->next) {
        if (!f->inner) continue;
        f->inner->io->close(f->inner);  /* a dead process's close errors go nowhere */
        f->inner = NULL;
    }
}

int kvt_fault_crash(kvt_vfs *vfs, int mode, uint64_t seed) {
    fault_vfs *fv = (fault_vfs *)vfs;
    if (!vfs || vfs->open != fv_open) return kvt_seterr(KVT_EINVAL, "kvt_fault_crash: not a fault VFS");
    if (mode != KVT_CRASH_DROP && mode != KVT_CRASH_TEAR)
        return kvt_seterr(KVT_EINVAL, "kvt_fault_crash: bad mode %d", mode);
    pthread_mutex_lock(&fv->mu);
    kill_handles(fv);
    uint64_t rng = seed;
    int rc = KVT_OK;
    for (fnode *nd = fv->nodes; nd; nd = nd->next) {
        int r = crash_node(nd, mode == KVT_CRASH_TEAR, &rng);
        if (r < 0 && rc == KVT_OK) rc = r;
    }
    nodes_gc(fv);
    pthread_mutex_unlock(&fv->mu);
    return rc;
}

void kvt_fault_reset(kvt_vfs *vfs) {
    fault_vfs *fv = (fault_vfs *)vfs;
    if (!vfs || vfs->open != fv_open) return;
    pthread_mutex_lock(&fv->mu);
    memset(fv->arm, 0, sizeof fv->arm);
    memset(fv->count, 0, sizeof fv->count);
    fv->only[0] = '\0';
    pthread_mutex_unlock(&fv->mu);
}

uint64_t kvt_fault_count(kvt_vfs *vfs, int op) {
    fault_vfs *fv = (fault_vfs *)vfs;
    if (!vfs || vfs->open != fv_open) return 0;
    pthread_mutex_lock(&fv->mu);
    uint64_t n = 0;
    if (op & KVT_FAULT_WRITE) n += fv->count[0];
    if (op & KVT_FAULT_SYNC) n += fv->count[1];
    pthread_mutex_unlock(&fv->mu);
    return n;
}

int kvt_fault_hold_syncs(kvt_vfs *vfs, int hold) {
    fault_vfs *fv = (fault_vfs *)vfs;
    if (!vfs || vfs->open != fv_open) return kvt_seterr(KVT_EINVAL, "not a fault VFS");
    pthread_mutex_lock(&fv->mu);
    fv->hold = hold != 0;
    if (!fv->hold) pthread_cond_broadcast(&fv->held_cv);
    pthread_mutex_unlock(&fv->mu);
    return KVT_OK;
}

uint64_t kvt_fault_held(kvt_vfs *vfs) {
    fault_vfs *fv = (fault_vfs *)vfs;
    if (!vfs || vfs->open != fv_open) return 0;
    pthread_mutex_lock(&fv->mu);
    uint64_t n = fv->held;
    pthread_mutex_unlock(&fv->mu);
    return n;
}
