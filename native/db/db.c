/* db.c - opening and closing a kvtrees directory, checkpoints, sync, check and stats.
 *
 * A directory holds data.kvt (the pager file), wal.log (the redo log) and LOCK (an
 * flock: exclusive for a writer, shared for read-only handles). Open is: lock, pager,
 * engine on the last checkpoint's engine meta, WAL replay of that checkpoint's gen, and
 * (when writable) a checkpoint if anything was replayed, so the log starts empty.
 *
 * Full disk (decision): the log append is the commit point, and it is the only write a
 * commit can fail on for lack of space. A refused append is cut back and reported as
 * KVT_ENOSPC with nothing committed and the handle healthy (reads, and writes once
 * there is space, keep working). Data-file writes never fail a commit: write-back keeps
 * pages in memory, and a checkpoint the disk cannot hold is abandoned (the previous
 * one and the log stay as they were) and retried later; only an explicit checkpoint
 * reports KVT_ENOSPC. So recovery never needs free space: it replays into memory and
 * checkpoints if it can, open succeeds either way, and close gives back the space of
 * an abandoned checkpoint. A failed fsync stays fatal (its outcome is unknown).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "db_internal.h"

#define MIB (1024ull * 1024ull)
#define DEFAULT_CACHE       ((uint64_t)KVT_DEFAULT_CACHE)
#define DEFAULT_INTERVAL_MS 100
#define DEFAULT_PAGE_SIZE   4096
#define DEFAULT_WAL_LIMIT   ((uint64_t)KVT_DEFAULT_WAL_LIMIT)
#define MIN_CACHE           (256 * 1024ull)
/* After a checkpoint refused for lack of space, commits retry it once the log has grown
 * by this much (not on every commit: each try writes every dirty page again). */
#define CKPT_RETRY_BYTES    (256 * 1024ull)

static int checkpoint_now(kvt_db *db);
static int checkpoint_or_defer(kvt_db *db);

const char *kvt_version(void) { return KVT_VERSION; }

void kvt_options_init(kvt_options *o) {
    memset(o, 0, sizeof *o);
    o->cache_size = DEFAULT_CACHE;
    o->sync_mode = 0;
    o->sync_interval_ms = DEFAULT_INTERVAL_MS;
    o->page_size = DEFAULT_PAGE_SIZE;
    o->wal_limit = DEFAULT_WAL_LIMIT;
}

/* ---- fatal latch ------------------------------------------------------------------ */

/* ENOSPC that left the log and the pager usable (a refused append, an abandoned
 * checkpoint) changed nothing durable or in memory: not latched. */
int kvt_db_latch(kvt_db *db, int rc) {
    int expected = 0;
    if (rc == KVT_ENOSPC && !kvt_wal_failed(db->wal) && !kvt_pager_failed(db->pager))
        return rc;
    if (rc < 0 && atomic_compare_exchange_strong(&db->fatal, &expected, rc))
        snprintf(db->fatal_msg, sizeof db->fatal_msg, "%s: %s", kvt_strerror(rc), kvt_errmsg());
    return rc;
}

int kvt_db_usable(kvt_db *db, int writing) {
    if (atomic_load_explicit(&db->fatal, memory_order_relaxed))
        return kvt_seterr(KVT_EFATAL, "%s: unusable after an earlier failure (%s)", db->dir,
                          db->fatal_msg);
    if (writing && db->opt.read_only)
        return kvt_seterr(KVT_EREADONLY, "%s: opened read-only", db->dir);
    return KVT_OK;
}

/* ---- options -------------------------------------------------------------------- */

static int is_pow2(uint32_t v) { return v && !(v & (v - 1)); }

static int validate_options(const kvt_options *in, kvt_options *o) {
    if (in) *o = *in;
    else kvt_options_init(o);
    if (!o->cache_size) o->cache_size = DEFAULT_CACHE;
    if (o->cache_size < MIN_CACHE) o->cache_size = MIN_CACHE;
    if (!o->sync_interval_ms) o->sync_interval_ms = DEFAULT_INTERVAL_MS;
    if (!o->page_size) o->page_size = DEFAULT_PAGE_SIZE;
    if (!o->wal_limit) o->wal_limit = DEFAULT_WAL_LIMIT;
    if (o->sync_mode < 0 || o->sync_mode > 2)
        return kvt_seterr(KVT_EINVAL, "sync_mode %d is not 0 (commit), 1 (interval) or 2 (none)",
                          o->sync_mode);
    if (!is_pow2(o->page_size) || o->page_size < 4096 || o->page_size > (1u << 20))
        return kvt_seterr(KVT_EINVAL, "page_size %u is not a power of two in 4096..1 MiB",
                          o->page_size);
    if (o->basement_size && (!is_pow2(o->basement_size) || o->basement_size < 4096 ||
                             o->basement_size > (1u << 20)))
        return kvt_seterr(KVT_EINVAL, "basement_size %u is not a power of two in 4096..1 MiB",
                          o->basement_size);
    return KVT_OK;
}

static const char *const known_engines[] = {"btree", "fractal"};

static int find_named_engine(const char *name, const kvt_engine_ops **out) {
    *out = kvt_db_engine_by_name(name);
    if (*out) return KVT_OK;
    for (size_t i = 0; i < sizeof known_engines / sizeof *known_engines; i++)
        if (strcmp(name, known_engines[i]) == 0)
            return kvt_seterr(KVT_EINVAL, "engine '%s' is not available in this build", name);
    return kvt_seterr(KVT_EINVAL, "unknown engine '%s' (expected 'btree' or 'fractal')", name);
}

/* ---- paths and the LOCK file ------------------------------------------------------ */

static char *join_path(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int make_paths(kvt_db *db, const char *dir) {
    db->dir = strdup(dir);
    db->data_path = join_path(dir, "data.kvt");
    db->wal_path = join_path(dir, "wal.log");
    db->lock_path = join_path(dir, "LOCK");
    if (!db->dir || !db->data_path || !db->wal_path || !db->lock_path)
        return kvt_seterr(KVT_ENOMEM, "%s: out of memory for paths", dir);
    return KVT_OK;
}

static int take_lock(kvt_db *db) {
    int ro = db->opt.read_only;
    if (!ro) KVT_TRY(db->vfs->mkdir(db->vfs, db->dir));
    else if (!db->vfs->exists(db->vfs, db->data_path))
        return kvt_seterr(KVT_EINVAL, "%s: no database here to open read-only", db->dir);
    int flags = ro ? KVT_O_READONLY : KVT_O_CREATE;
    int rc = db->vfs->open(db->vfs, db->lock_path, flags, &db->lock_file);
    if (rc < 0 && ro)   /* a read-only open of a directory whose LOCK was never made */
        rc = db->vfs->open(db->vfs, db->data_path, KVT_O_READONLY, &db->lock_file);
    KVT_TRY(rc);
    rc = kvt_file_lock(db->lock_file, !ro);
    if (rc == KVT_ELOCKED)
        return kvt_seterr(KVT_ELOCKED, "%s: locked by another %s", db->dir,
                          ro ? "writer" : "handle (writer or reader)");
    return rc;
}

/* ---- pager + engine ------------------------------------------------------------- */

static void engine_config(const kvt_db *db, kvt_engine_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->page_size = db->opt.page_size;
    cfg->node_size = db->opt.node_size;
    cfg->basement_size = db->opt.basement_size;
    cfg->cache_bytes = db->opt.cache_size;
}

static int open_pager_as(kvt_db *db, const kvt_engine_ops *ops, int read_only, kvt_pager **out) {
    kvt_engine_config ecfg;
    engine_config(db, &ecfg);
    kvt_pager_config pc = {
        .page_size = ops ? ops->page_size(&ecfg) : db->opt.page_size,
        .engine_id = ops ? ops->engine_id : 0,
        .cache_bytes = db->opt.cache_size,
        .direct_io = db->opt.direct_io,
        .read_only = read_only,
        .stats = &db->data_io,
        .no_map = db->opt.no_mmap,
    };
    return kvt_pager_open(db->vfs, db->data_path, &pc, out);
}

/* Which registered engine created the existing data file (NULL if none matches). */
static const kvt_engine_ops *probe_file_engine(kvt_db *db) {
    for (int i = 0; i < kvt_db_engine_count(); i++) {
        const kvt_engine_ops *ops = kvt_db_engine_at(i);
        kvt_pager *p = NULL;
        if (!ops || open_pager_as(db, ops, 1, &p) < 0) continue;
        kvt_pager_close(p);
        return ops;
    }
    return NULL;
}

static int engine_mismatch(kvt_db *db, const kvt_engine_ops *wanted) {
    char detail[256];
    snprintf(detail, sizeof detail, "%s", kvt_errmsg());
    const kvt_engine_ops *found = probe_file_engine(db);
    return kvt_seterr(KVT_EENGINE, "%s: created by engine '%s', opened with engine '%s' (%s)",
                      db->dir, found ? found->name : "unknown", wanted->name, detail);
}

/* No engine opens the file: a damaged file (its own error, naming data.kvt) or one of
 * an engine this build lacks. */
static int unknown_file_engine(kvt_db *db) {
    kvt_pager *p = NULL;
    int rc = open_pager_as(db, NULL, 1, &p);
    if (rc < 0 && rc != KVT_EENGINE) return rc;
    kvt_pager_close(p);
    return kvt_seterr(KVT_EENGINE, "%s: data.kvt was not created by an engine of this build",
                      db->dir);
}

/* Open the pager for the engine asked for, or for the file's own engine. */
static int open_pager(kvt_db *db) {
    int exists = db->vfs->exists(db->vfs, db->data_path);
    const kvt_engine_ops *ops = NULL;
    if (db->opt.engine) KVT_TRY(find_named_engine(db->opt.engine, &ops));
    else if (exists) {
        ops = probe_file_engine(db);
        if (!ops) return unknown_file_engine(db);
    } else KVT_TRY(find_named_engine("btree", &ops));
    int rc = open_pager_as(db, ops, db->opt.read_only, &db->pager);
    if (rc == KVT_EENGINE) return engine_mismatch(db, ops);
    KVT_TRY(rc);
    db->ops = ops;
    db->opt.engine = ops->name;
    return KVT_OK;
}

static int open_engine(kvt_db *db) {
    kvt_engine_config cfg;
    engine_config(db, &cfg);
    size_t mlen = 0;
    const uint8_t *meta = kvt_pager_engine_meta(db->pager, &mlen);
    return db->ops->open(db->pager, &cfg, meta, mlen, &db->eng);
}

/* ---- WAL and recovery ----------------------------------------------------------- */

struct replay_ctx { kvt_db *db; uint64_t records; };

int kvt_db_replay_fn(void *ctx, const uint8_t *rec, size_t len) {
    struct replay_ctx *c = ctx;
    if (c->db->replay && c->records == c->db->replay->stop_at) return 1;   /* log ends */
    c->records++;
    return kvt_db_apply_record(c->db, rec, len, NULL);
}

/* A log that follows a newer checkpoint than the data file's newest valid meta page:
 * the checkpoint the log was reset after is in data.kvt, so the damage is there. */
static int check_log_follows_data(kvt_db *db) {
    uint64_t log_gen = 0, data_gen = kvt_pager_ckpt_gen(db->pager);
    if (!kvt_wal_header_gen(db->wal, &log_gen) || log_gen <= data_gen) return KVT_OK;
    return kvt_seterr(KVT_ECORRUPT, "%s: damaged: its newest valid checkpoint is %llu but "
                      "wal.log was started after checkpoint %llu, so the meta page of "
                      "checkpoint %llu is missing or corrupt", db->data_path,
                      (unsigned long long)data_gen, (unsigned long long)log_gen,
                      (unsigned long long)log_gen);
}

/* Replay the log onto the checkpoint; a failure leaves data.kvt as it was found, less
 * the garbage a crash may have left after the checkpoint's end. */
static int recover(kvt_db *db) {
    KVT_TRY(kvt_wal_open(db->vfs, db->wal_path, db->opt.read_only, &db->wal_io, &db->wal));
    KVT_TRY(check_log_follows_data(db));    /* before anything in data.kvt changes */
    kvt_paged_replay pages;                 /* pages the log names: read them first */
    int rc = kvt_db_paged_scan(db, &pages);
    int named = pages.n > 0;                /* then the file keeps what follows the ckpt */
    if (rc == KVT_OK && !named) rc = kvt_pager_discard_unsaved(db->pager);
    struct replay_ctx c = {db, 0};
    db->replay = &pages;
    if (rc == KVT_OK)
        rc = kvt_wal_replay(db->wal, kvt_pager_ckpt_gen(db->pager), kvt_db_replay_fn, &c);
    db->replay = NULL;
    db->logged_bytes = pages.n * (uint64_t)kvt_pager_page_size(db->pager);   /* until reset */
    kvt_db_paged_free(&pages);
    if (rc == KVT_OK && c.records && !db->opt.read_only) {
        /* Not needed for correctness: on a full disk the log is kept and open succeeds. */
        pthread_mutex_lock(&db->writer);
        rc = checkpoint_or_defer(db);
        pthread_mutex_unlock(&db->writer);
    }
    if (rc < 0) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", kvt_errmsg());
        if (!named) (void)kvt_pager_discard_unsaved(db->pager);   /* replay's pages */
        return kvt_seterr(rc, "%s", msg);
    }
    return KVT_OK;
}

/* ---- open / close --------------------------------------------------------------- */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int init_sync_objects(kvt_db *db) {
    if (pthread_mutex_init(&db->writer, NULL))
        return kvt_seterr(KVT_ENOMEM, "%s: cannot create writer mutex", db->dir);
    if (pthread_rwlock_init(&db->rw, NULL)) {
        pthread_mutex_destroy(&db->writer);
        return kvt_seterr(KVT_ENOMEM, "%s: cannot create rwlock", db->dir);
    }
    return KVT_OK;
}

/* Release everything; returns the first error met while closing the layers. */
static int free_db(kvt_db *db, int have_sync) {
    int rc = KVT_OK, r;
    if (db->eng) db->ops->close(db->eng);
    if (db->wal && (r = kvt_wal_close(db->wal)) < 0 && !rc) rc = r;
    if (db->pager && (r = kvt_pager_close(db->pager)) < 0 && !rc) rc = r;
    if (db->lock_file && (r = kvt_file_close(db->lock_file)) < 0 && !rc) rc = r;
    if (have_sync) {
        pthread_rwlock_destroy(&db->rw);
        pthread_mutex_destroy(&db->writer);
    }
    kvt_buf_free(&db->paged_rec);
    free(db->dir);
    free(db->data_path);
    free(db->wal_path);
    free(db->lock_path);
    free(db);
    return rc;
}

static int open_layers(kvt_db *db) {
    KVT_TRY(take_lock(db));
    KVT_TRY(open_pager(db));
    KVT_TRY(open_engine(db));
    return recover(db);
}

int kvt_open(const char *dir, const kvt_options *o, kvt_db **out) {
    if (!out) return kvt_seterr(KVT_EINVAL, "kvt_open: out is NULL");
    *out = NULL;
    if (!dir || !*dir) return kvt_seterr(KVT_EINVAL, "kvt_open: empty directory path");
    kvt_db *db = calloc(1, sizeof *db);
    if (!db) return kvt_seterr(KVT_ENOMEM, "%s: out of memory", dir);
    int rc = validate_options(o, &db->opt);
    if (rc == KVT_OK) rc = make_paths(db, dir);
    if (rc < 0) { free_db(db, 0); return rc; }
    db->vfs = db->opt.vfs ? db->opt.vfs : kvt_vfs_posix();
    rc = init_sync_objects(db);
    if (rc < 0) { free_db(db, 0); return rc; }
    atomic_store(&db->last_sync_ns, now_ns());
    rc = open_layers(db);
    if (rc < 0) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", kvt_errmsg());
        free_db(db, 1);
        return kvt_seterr(rc, "%s", msg);   /* the cause, not a close-time message */
    }
    *out = db;
    return KVT_OK;
}

int kvt_close(kvt_db *db) {
    if (!db) return KVT_OK;
    int rc = KVT_OK;
    pthread_mutex_lock(&db->writer);
    if (!db->opt.read_only && !atomic_load(&db->fatal)) rc = checkpoint_now(db);
    if (rc == KVT_ENOSPC && !atomic_load(&db->fatal)) {
        /* Nothing is lost (the log holds it): give back what the checkpoint wrote,
         * unless the log names pages past the checkpoint's end (paged.c). */
        rc = db->logged_bytes ? KVT_OK : kvt_pager_discard_unsaved(db->pager);
    }
    pthread_mutex_unlock(&db->writer);
    char msg[512];
    snprintf(msg, sizeof msg, "%s", kvt_errmsg());
    int r = free_db(db, 1);
    if (rc < 0) return kvt_seterr(rc, "%s", msg);
    return r;
}

const char *kvt_engine_name(kvt_db *db) { return db && db->ops ? db->ops->name : ""; }

/* ---- checkpoint / sync / check / stats ------------------------------------------ */

/* Flush, checkpoint, empty the log; the caller holds writer. KVT_ENOSPC unlatched:
 * abandoned, the previous checkpoint and the log unchanged. */
static int checkpoint_now(kvt_db *db) {
    uint8_t meta[KVT_ENGINE_META_MAX];
    size_t mlen = sizeof meta;
    KVT_TRY(kvt_db_usable(db, 1));
    pthread_rwlock_wrlock(&db->rw);
    int rc = db->ops->flush(db->eng, meta, &mlen);
    if (rc >= 0 && mlen > sizeof meta)
        rc = kvt_seterr(KVT_EINVAL, "%s: engine meta of %zu bytes exceeds %u", db->dir, mlen,
                        KVT_ENGINE_META_MAX);
    if (rc >= 0) rc = kvt_pager_checkpoint(db->pager, meta, mlen);
    pthread_rwlock_unlock(&db->rw);
    if (rc < 0) return kvt_db_latch(db, rc);
    db->ckpt_refused_at = 0;
    rc = kvt_wal_reset(db->wal, kvt_pager_ckpt_gen(db->pager));
    if (rc < 0) return kvt_db_latch(db, rc);
    db->logged_bytes = 0;                   /* the data file is fsynced and the log empty */
    atomic_store(&db->data_unsynced, 0);
    atomic_fetch_add(&db->checkpoints, 1);
    atomic_store(&db->last_sync_ns, now_ns());
    return KVT_OK;
}

/* A checkpoint that may wait: one refused for lack of space (unlatched) is deferred
 * until the log has grown by CKPT_RETRY_BYTES more and reported as done. */
static int checkpoint_or_defer(kvt_db *db) {
    uint64_t log = kvt_wal_bytes(db->wal);
    if (db->ckpt_refused_at && log < db->ckpt_refused_at + CKPT_RETRY_BYTES) return KVT_OK;
    int rc = checkpoint_now(db);
    if (rc == KVT_ENOSPC && !atomic_load(&db->fatal)) {
        atomic_fetch_add(&db->checkpoints_refused, 1);
        db->ckpt_refused_at = log ? log : 1;
        return KVT_OK;
    }
    return rc;
}

/* The checkpoint a commit triggers never fails that commit: the commit is in the log
 * already (and is made durable by the log's fsync that follows), so failing it would
 * report a committed write as failed. A failure that latched the handle is reported by
 * the next call instead; any other is retried by a later commit. */
int kvt_db_checkpoint_locked(kvt_db *db) {
    (void)checkpoint_or_defer(db);
    return KVT_OK;
}

int kvt_checkpoint(kvt_db *db) {
    if (!db) return kvt_seterr(KVT_ECLOSED, "kvt_checkpoint: no handle");
    if (db->opt.read_only) return kvt_db_usable(db, 0);
    pthread_mutex_lock(&db->writer);
    int rc = checkpoint_now(db);
    pthread_mutex_unlock(&db->writer);
    return rc;
}

int kvt_sync(kvt_db *db) {
    if (!db) return kvt_seterr(KVT_ECLOSED, "kvt_sync: no handle");
    KVT_TRY(kvt_db_usable(db, 0));
    if (db->opt.read_only) return KVT_OK;
    pthread_mutex_lock(&db->writer);
    int rc = kvt_db_paged_sync(db);         /* pages the log names, before the log */
    uint64_t lsn = kvt_wal_lsn(db->wal);
    pthread_mutex_unlock(&db->writer);
    KVT_TRY(rc);
    rc = kvt_wal_sync(db->wal, lsn);
    if (rc < 0) return kvt_db_latch(db, rc);
    atomic_store(&db->last_sync_ns, now_ns());
    return KVT_OK;
}

static int check_locked(kvt_db *db) {
    KVT_TRY(kvt_pager_check_begin(db->pager));
    int rc = db->ops->check(db->eng);
    if (rc < 0) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", kvt_errmsg());
        kvt_pager_check_end(db->pager);   /* reset the walk; the engine's error wins */
        return kvt_seterr(rc, "%s", msg);
    }
    return kvt_pager_check_end(db->pager);
}

int kvt_check(kvt_db *db) {
    if (!db) return kvt_seterr(KVT_ECLOSED, "kvt_check: no handle");
    KVT_TRY(kvt_db_usable(db, 0));
    pthread_mutex_lock(&db->writer);
    pthread_rwlock_rdlock(&db->rw);
    int rc = check_locked(db);
    pthread_rwlock_unlock(&db->rw);
    pthread_mutex_unlock(&db->writer);
    return rc;
}

static uint64_t ld(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }

int kvt_get_stats(kvt_db *db, kvt_stats *s) {
    if (!db || !s) return kvt_seterr(KVT_EINVAL, "kvt_get_stats: NULL argument");
    memset(s, 0, sizeof *s);
    s->data_bytes_written = ld(&db->data_io.bytes_written);
    s->wal_bytes_written = ld(&db->wal_io.bytes_written);
    s->bytes_written = s->data_bytes_written + s->wal_bytes_written;
    s->bytes_read = ld(&db->data_io.bytes_read) + ld(&db->wal_io.bytes_read);
    s->fsyncs = ld(&db->data_io.fsyncs) + ld(&db->wal_io.fsyncs);
    s->checkpoints = atomic_load(&db->checkpoints);
    s->commits = atomic_load(&db->commits);
    s->checkpoints_refused = atomic_load(&db->checkpoints_refused);
    s->cache_size = db->opt.cache_size;
    s->page_size = kvt_pager_page_size(db->pager);
    kvt_pager_stats ps;
    kvt_engine_stats es;
    memset(&es, 0, sizeof es);
    pthread_rwlock_rdlock(&db->rw);
    kvt_pager_get_stats(db->pager, &ps);
    db->ops->stats(db->eng, &es);
    s->wal_size = kvt_wal_bytes(db->wal);
    pthread_rwlock_unlock(&db->rw);
    s->cache_hits = ps.cache_hits + es.cache_hits;
    s->cache_misses = ps.cache_misses + es.cache_misses;
    s->evictions = ps.evictions + es.evictions;
    s->map_reads = ps.map_reads;
    s->map_verifies = ps.map_verifies;
    s->pages_total = ps.pages_total;
    s->pages_free = ps.pages_free;
    s->file_size = ps.pages_total * s->page_size;
    s->height = es.height;
    s->entries = es.entries;
    s->nodes = es.nodes;
    s->flushes = es.flushes;
    return KVT_OK;
}
