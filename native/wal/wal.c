/* wal.c - the redo log: framed, checksummed batch records with group commit.
 *
 * File: a 32-byte header [magic "KVTWAL01", u64 gen, u32 crc32c of the 32 bytes with
 * this field zeroed, 12 zero bytes], then records, each a 24-byte header
 * [u32 crc32c of (the other 20 header bytes + payload), u32 payload length, u64 gen,
 * u64 lsn of the record's start] followed by the payload. The lsn field is informative
 * (it makes identical payloads differ on disk); replay trusts crc, length and gen.
 *
 * Usage order: open, then replay (or reset) before the first append: replay is what
 * finds the end of the valid log (and cuts a torn tail), so appends never land after
 * garbage. A log older than the checkpoint is emptied by replay (reset to that gen),
 * so records appended next carry the checkpoint's gen.
 *
 * Space: the file is grown ahead of the tail with zeros (64 KiB, then doubling up to
 * 4 MiB at a time) and a reset rewrites only the header, keeping the file. Appends then
 * overwrite allocated blocks, so a commit's fdatasync flushes data only, not the file
 * size and extent metadata a growing file needs (etcd preallocates its WAL segments for
 * the same reason; measured here, an overwrite+fdatasync costs ~0.65x an append+fdatasync).
 * What lies past the tail is zeros or records of older gens; replay stops at either
 * (a zero header fails its CRC, an old gen ends the log) and cuts it before appending,
 * so a stale record can never be taken as the continuation of the current log.
 *
 * Threads: append/reset/replay by the single writer; sync by anyone. mu guards lsn,
 * durable, syncing and fatal; the leader of a group commit fsyncs without holding it.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "kvt_engine.h"
#include "kvt_error.h"
#include "kvt_util.h"
#include "kvt_wal.h"

#define FILE_HDR   32u
#define REC_HDR    24u
#define WAL_MAGIC  "KVTWAL01"
/* A batch holds at most a couple of maximal values plus keys and framing: anything
 * longer is a damaged length field, never a reason for a huge allocation. */
#define MAX_RECORD ((uint64_t)KVT_MAX_RECORD)
#define SCAN_CHUNK (64u * 1024u)
#define PREALLOC_MIN (64u * 1024u)
#define PREALLOC_MAX (4u * 1024u * 1024u)

/* A thread in kvt_wal_sync waiting for another's fsync. Each waits on its own condvar
 * and is woken alone, when its LSN is durable or it is to lead the next fsync: a shared
 * condvar woke every waiter per fsync, and the herd fighting for mu cost more CPU than
 * the puts (measured: 16 writers spent over half their time in futex calls). */
typedef struct wal_waiter {
    uint64_t lsn;
    int woken;
    pthread_cond_t cv;
    struct wal_waiter *next;
} wal_waiter;

struct kvt_wal {
    kvt_vfs *vfs;
    kvt_file *f;               /* NULL: read-only open of a missing log */
    char *path;
    int read_only;
    int have_header;           /* file starts with a valid header */
    int ready;                 /* replay or reset has set tail and gen */
    int created;               /* file was empty at open: sync its directory once */
    uint64_t hdr_gen;          /* gen named by the file header */
    uint64_t gen;              /* gen of records being appended */
    uint64_t tail;             /* file offset of the next append (atomic reads) */
    uint64_t alloc;            /* file size: [tail, alloc) is zeros or older gens' records */
    uint8_t *buf;              /* append staging buffer */
    size_t buf_cap;
    pthread_mutex_t mu;
    struct wal_waiter *waiters; /* threads waiting for an fsync (unordered) */
    uint64_t lsn;              /* LSN past the last appended record */
    uint64_t durable;          /* LSN known fsynced */
    int syncing, fatal;
    int gathering;             /* the leader waits on arrive for the group to come back */
    uint64_t appends;          /* records appended (guarded by mu) */
    uint64_t synced_appends;   /* appends when the last fsync started */
    pthread_cond_t arrive;     /* signalled when a gathering leader's group is back */
    uint64_t last_group;       /* records the last fsync covered */
    uint64_t last_sync_ns;     /* how long the last fsync took */
};

/* ---- header codecs ---------------------------------------------------------------- */

static void encode_file_hdr(uint8_t h[FILE_HDR], uint64_t gen) {
    memset(h, 0, FILE_HDR);
    memcpy(h, WAL_MAGIC, 8);
    kvt_put64(h + 8, gen);
    kvt_put32(h + 16, kvt_crc32c(0, h, FILE_HDR));
}

static uint32_t rec_crc(const uint8_t hdr[REC_HDR], const uint8_t *payload, size_t len) {
    return kvt_crc32c(kvt_crc32c(0, hdr + 4, REC_HDR - 4), payload, len);
}

/* Classify the first 32 bytes: 1 valid, 0 damaged, < 0 not ours at all. */
static int check_file_hdr(kvt_wal *w, const uint8_t h[FILE_HDR], uint64_t *gen) {
    if (memcmp(h, WAL_MAGIC, 8) != 0) {
        if (memcmp(h, WAL_MAGIC, 6) == 0)
            return kvt_seterr(KVT_EVERSION, "%s: log format %.2s not supported (want 01)",
                              w->path, (const char *)h + 6);
        return 0;
    }
    uint8_t c[FILE_HDR];
    memcpy(c, h, FILE_HDR);
    kvt_put32(c + 16, 0);
    if (kvt_crc32c(0, c, FILE_HDR) != kvt_get32(h + 16)) return 0;
    *gen = kvt_get64(h + 8);
    return 1;
}

/* ---- open / close ----------------------------------------------------------------- */

/* Read and judge the header. A short or damaged header on a file no longer than a
 * header is a crash during reset/creation (the log was empty): treated as no log. */
static int load_header(kvt_wal *w) {
    uint64_t size;
    KVT_TRY(kvt_file_size(w->f, &size));
    w->alloc = size;
    w->created = size == 0;
    if (size < FILE_HDR) return KVT_OK;
    uint8_t h[FILE_HDR];
    KVT_TRY(kvt_file_read_full(w->f, h, FILE_HDR, 0));
    int ok = check_file_hdr(w, h, &w->hdr_gen);
    KVT_TRY(ok);
    if (ok) { w->have_header = 1; return KVT_OK; }
    if (size == FILE_HDR) return KVT_OK;
    return kvt_seterr(KVT_ECORRUPT, "%s: log header is damaged or not a kvtrees log "
                      "(file of %" PRIu64 " bytes)", w->path, size);
}

static int open_file(kvt_wal *w, kvt_io_stats *stats) {
    if (w->read_only && !w->vfs->exists(w->vfs, w->path)) return KVT_OK;
    KVT_TRY(w->vfs->open(w->vfs, w->path, w->read_only ? KVT_O_READONLY : KVT_O_CREATE, &w->f));
    w->f->stats = stats;
    return load_header(w);
}

int kvt_wal_open(kvt_vfs *vfs, const char *path, int read_only, kvt_io_stats *stats, kvt_wal **out) {
    *out = NULL;
    kvt_wal *w = calloc(1, sizeof *w);
    if (!w) return kvt_seterr(KVT_ENOMEM, "%s: out of memory opening log", path);
    w->vfs = vfs ? vfs : kvt_vfs_posix();
    w->read_only = read_only;
    w->path = strdup(path);
    if (!w->path) {
        free(w);
        return kvt_seterr(KVT_ENOMEM, "%s: out of memory opening log", path);
    }
    if (pthread_mutex_init(&w->mu, NULL) != 0 || pthread_cond_init(&w->arrive, NULL) != 0) {
        free(w->path);
        free(w);
        return kvt_seterr(KVT_ENOMEM, "%s: cannot create log mutex", path);
    }
    int rc = open_file(w, stats);
    if (rc < 0) {
        kvt_wal_close(w);
        return rc;
    }
    *out = w;
    return KVT_OK;
}

int kvt_wal_close(kvt_wal *w) {
    if (!w) return KVT_OK;
    int rc = kvt_file_close(w->f);
    pthread_cond_destroy(&w->arrive);
    pthread_mutex_destroy(&w->mu);
    free(w->buf);
    free(w->path);
    free(w);
    return rc;
}

/* ---- fatal latch and group commit --------------------------------------------------- */

/* With mu held: wake the waiters whose LSN is durable (every waiter once the log is
 * fatal: they fail), then, if no fsync runs, one waiter still short, to lead the next. */
static void wake_waiters(kvt_wal *w) {
    int fatal = __atomic_load_n(&w->fatal, __ATOMIC_ACQUIRE);
    wal_waiter **pp = &w->waiters;
    while (*pp) {
        wal_waiter *q = *pp;
        if (fatal || q->lsn <= w->durable) {
            *pp = q->next;
            q->woken = 1;
            pthread_cond_signal(&q->cv);
        } else {
            pp = &q->next;
        }
    }
    if (w->waiters && !w->syncing) {
        wal_waiter *q = w->waiters;
        w->waiters = q->next;
        q->woken = 1;
        pthread_cond_signal(&q->cv);
    }
}

/* With mu held, an fsync running: sleep until woken by wake_waiters. */
static void wait_for_sync(kvt_wal *w, wal_waiter *me) {
    me->woken = 0;
    me->next = w->waiters;
    w->waiters = me;
    while (!me->woken) pthread_cond_wait(&me->cv, &w->mu);
}

static int latch_fatal(kvt_wal *w, int rc) {
    pthread_mutex_lock(&w->mu);
    __atomic_store_n(&w->fatal, 1, __ATOMIC_RELEASE);
    wake_waiters(w);
    pthread_mutex_unlock(&w->mu);
    return rc;
}

static int fatal_err(kvt_wal *w) {
    return kvt_seterr(KVT_EFATAL, "%s: log unusable after an earlier I/O failure", w->path);
}

static uint64_t mono_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Called with mu held, as leader: when the last fsync covered several records, wait
 * until as many records have arrived since it started (its writers are back), for at
 * most half its duration. Without it, writers settle into two alternating half groups:
 * those released by one fsync come back while the next one already runs. The last
 * arrival wakes the leader, once; an earlier version woke it per append and ended the
 * wait at a 30 us gap between appends, and the timer's slack made every gather about
 * 120 us long, as long as the fsync itself (measured, 16 writers). A lone writer never
 * waits (its groups are 1). */
static void gather_group(kvt_wal *w) {
    if (w->last_group < 2) return;
    uint64_t deadline = mono_ns() + w->last_sync_ns / 2;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);   /* the condvar's clock */
    uint64_t ns = (uint64_t)ts.tv_nsec + w->last_sync_ns / 2;
    ts.tv_sec += (time_t)(ns / 1000000000u);
    ts.tv_nsec = (long)(ns % 1000000000u);
    w->gathering = 1;
    while (w->appends - w->synced_appends < w->last_group && mono_ns() < deadline &&
           pthread_cond_timedwait(&w->arrive, &w->mu, &ts) == 0) {}
    w->gathering = 0;
}

static int lead_sync(kvt_wal *w) {
    w->syncing = 1;
    gather_group(w);
    uint64_t target = w->lsn, first = w->appends;
    pthread_mutex_unlock(&w->mu);
    uint64_t t0 = mono_ns();
    int rc = w->f ? kvt_file_sync(w->f) : KVT_OK;
    uint64_t took = mono_ns() - t0;
    pthread_mutex_lock(&w->mu);
    w->syncing = 0;
    w->last_sync_ns = took;
    w->last_group = first - w->synced_appends;
    w->synced_appends = first;
    if (rc < 0) __atomic_store_n(&w->fatal, 1, __ATOMIC_RELEASE);
    else if (target > w->durable) w->durable = target;
    wake_waiters(w);
    return rc;
}

int kvt_wal_sync(kvt_wal *w, uint64_t lsn) {
    pthread_mutex_lock(&w->mu);
    int rc = KVT_OK, have_cv = 0;
    wal_waiter me = {.lsn = lsn};
    if (lsn > w->lsn)
        rc = kvt_seterr(KVT_EINVAL, "%s: sync to LSN %" PRIu64 " past the log end %" PRIu64,
                        w->path, lsn, w->lsn);
    while (rc == KVT_OK && w->durable < lsn) {
        if (w->fatal) {
            rc = fatal_err(w);
        } else if (w->syncing) {
            if (!have_cv && pthread_cond_init(&me.cv, NULL) != 0) {
                rc = kvt_seterr(KVT_ENOMEM, "%s: cannot create a condition variable", w->path);
                break;
            }
            have_cv = 1;
            wait_for_sync(w, &me);     /* woken: durable, fatal, or to lead */
        } else {
            rc = lead_sync(w);
        }
    }
    pthread_mutex_unlock(&w->mu);
    if (have_cv) pthread_cond_destroy(&me.cv);
    return rc;
}

/* ---- append ----------------------------------------------------------------------- */

static int usable_for_write(kvt_wal *w) {
    if (w->read_only) return kvt_seterr(KVT_EREADONLY, "%s: log opened read-only", w->path);
    if (__atomic_load_n(&w->fatal, __ATOMIC_ACQUIRE)) return fatal_err(w);
    if (!w->ready)
        return kvt_seterr(KVT_EINVAL, "%s: append before kvt_wal_replay/kvt_wal_reset", w->path);
    return KVT_OK;
}

static int stage(kvt_wal *w, size_t n) {
    if (n <= w->buf_cap) return KVT_OK;
    size_t cap = w->buf_cap ? w->buf_cap : 4096;
    while (cap < n) cap *= 2;
    uint8_t *b = realloc(w->buf, cap);
    if (!b) return kvt_seterr(KVT_ENOMEM, "%s: out of memory staging a %zu-byte record", w->path, n);
    w->buf = b;
    w->buf_cap = cap;
    return KVT_OK;
}

/* A full disk refused the record: cut what part of it reached the file, so the log
 * ends where it did and the record is not committed (nothing was applied yet). The log
 * stays usable; only if the cut fails is its state unknown (latched). */
static int refuse_append(kvt_wal *w, int rc) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", kvt_errmsg());
    int t = kvt_file_truncate(w->f, w->tail);
    if (t < 0) return latch_fatal(w, rc);
    w->alloc = w->tail;
    return kvt_seterr(rc, "%s (the record was not logged: nothing committed)", msg);
}

/* Grow the file with zeros so that [tail, need) lies in allocated blocks. Best effort:
 * a failure here (a full disk, say) leaves the append to grow the file itself and to
 * report the error if it fails too; the zeros are never data. */
static void preallocate(kvt_wal *w, uint64_t need) {
    static const uint8_t zeros[SCAN_CHUNK];
    if (need <= w->alloc) return;
    if (w->alloc < w->tail) w->alloc = w->tail;      /* never zero a logged record */
    uint64_t grow = w->alloc < PREALLOC_MIN ? PREALLOC_MIN
                  : w->alloc > PREALLOC_MAX ? PREALLOC_MAX : w->alloc;
    uint64_t end = (need + grow + 4095) & ~(uint64_t)4095;
    while (w->alloc < end) {
        size_t n = (size_t)(end - w->alloc < SCAN_CHUNK ? end - w->alloc : SCAN_CHUNK);
        if (kvt_file_write(w->f, zeros, n, w->alloc) < 0) break;
        w->alloc += n;
    }
}

int kvt_wal_reserve(kvt_wal *w, size_t len) {
    KVT_TRY(usable_for_write(w));
    uint64_t need = w->tail + REC_HDR + len;
    preallocate(w, need);
    if (w->alloc < need)
        return kvt_seterr(KVT_ENOSPC, "%s: cannot reserve %zu bytes for a record", w->path, len);
    return KVT_OK;
}

/* A record at least this large is written as header + payload (two writes) instead of
 * being copied behind its header first: the copy of a large batch (a put_many of 1000
 * pairs is ~125 KiB) costs more than a second syscall. A crash between the two leaves a
 * record whose checksum fails, which replay cuts like any torn tail. */
#define UNSTAGED_MIN (64u << 10)

/* Called once the staging buffer holds REC_HDR + len bytes when len < UNSTAGED_MIN. */
static int write_record(kvt_wal *w, const void *rec, size_t len) {
    uint8_t small[REC_HDR], *h = small;
    int staged = len < UNSTAGED_MIN;
    if (staged) h = w->buf;
    kvt_put32(h + 4, (uint32_t)len);
    kvt_put64(h + 8, w->gen);
    kvt_put64(h + 16, w->lsn);         /* only this thread writes lsn */
    if (staged && len) memcpy(h + REC_HDR, rec, len);
    kvt_put32(h, rec_crc(h, rec, len));
    preallocate(w, w->tail + REC_HDR + len);
    if (staged) return kvt_file_write(w->f, h, REC_HDR + len, w->tail);
    int rc = kvt_file_write(w->f, h, REC_HDR, w->tail);
    return rc < 0 ? rc : kvt_file_write(w->f, rec, len, w->tail + REC_HDR);
}

int kvt_wal_append(kvt_wal *w, const void *rec, size_t len, uint64_t *lsn_out) {
    KVT_TRY(usable_for_write(w));
    if (len > MAX_RECORD)
        return kvt_seterr(KVT_ETOOLARGE, "%s: log record of %zu bytes exceeds %" PRIu64,
                          w->path, len, MAX_RECORD);
    if (len < UNSTAGED_MIN) KVT_TRY(stage(w, REC_HDR + len));   /* ENOMEM: refused */
    int rc = write_record(w, rec, len);
    if (rc == KVT_ENOSPC) return refuse_append(w, rc);
    if (rc < 0) return latch_fatal(w, rc);   /* a partial record may be on disk now */
    __atomic_store_n(&w->tail, w->tail + REC_HDR + len, __ATOMIC_RELEASE);
    if (w->alloc < w->tail) w->alloc = w->tail;      /* written past what was zeroed */
    pthread_mutex_lock(&w->mu);
    w->lsn += REC_HDR + len;
    w->appends++;
    if (w->gathering && w->appends - w->synced_appends >= w->last_group)
        pthread_cond_signal(&w->arrive);     /* the last group is back: fsync now */
    if (lsn_out) *lsn_out = w->lsn;
    pthread_mutex_unlock(&w->mu);
    return KVT_OK;
}

/* ---- reset ------------------------------------------------------------------------ */

static int sync_parent_dir(kvt_wal *w) {
    char *dir = strdup(w->path);
    if (!dir) return kvt_seterr(KVT_ENOMEM, "%s: out of memory", w->path);
    char *slash = strrchr(dir, '/');
    int rc = KVT_OK;
    if (slash) {
        if (slash == dir) slash[1] = '\0'; else *slash = '\0';
        rc = w->vfs->sync_dir(w->vfs, dir);
    } else {
        rc = w->vfs->sync_dir(w->vfs, ".");
    }
    free(dir);
    return rc;
}

static int rewrite_header(kvt_wal *w, uint64_t gen) {
    uint8_t h[FILE_HDR];
    encode_file_hdr(h, gen);
    /* In place when the records after it are of older gens, which replay never takes;
     * a gen not newer than the file's (never expected) empties the file instead. */
    if (w->have_header && gen <= w->hdr_gen) {
        KVT_TRY(kvt_file_truncate(w->f, 0));
        w->alloc = 0;
    }
    KVT_TRY(kvt_file_write(w->f, h, FILE_HDR, 0));
    if (w->alloc < FILE_HDR) w->alloc = FILE_HDR;
    KVT_TRY(kvt_file_sync(w->f));
    if (w->created) {
        KVT_TRY(sync_parent_dir(w));
        w->created = 0;
    }
    return KVT_OK;
}

int kvt_wal_reset(kvt_wal *w, uint64_t gen) {
    if (w->read_only) return kvt_seterr(KVT_EREADONLY, "%s: log opened read-only", w->path);
    if (__atomic_load_n(&w->fatal, __ATOMIC_ACQUIRE)) return fatal_err(w);
    int rc = rewrite_header(w, gen);
    if (rc < 0) {
        /* The log's state on disk is unknown, but the caller's checkpoint holds every
         * record logged so far: their commits are durable whatever the log became. */
        pthread_mutex_lock(&w->mu);
        w->durable = w->lsn;
        pthread_mutex_unlock(&w->mu);
        return latch_fatal(w, rc);
    }
    w->have_header = 1;
    w->hdr_gen = w->gen = gen;
    w->ready = 1;
    __atomic_store_n(&w->tail, (uint64_t)FILE_HDR, __ATOMIC_RELEASE);
    pthread_mutex_lock(&w->mu);
    w->durable = w->lsn;               /* the checkpoint holds everything logged so far */
    wake_waiters(w);
    pthread_mutex_unlock(&w->mu);
    return KVT_OK;
}

/* ---- replay ----------------------------------------------------------------------- */

typedef struct scan {
    kvt_wal *w;
    uint64_t gen, size;
    uint8_t *payload;
    size_t cap;
} scan;

static int scan_reserve(scan *s, size_t n) {
    if (n <= s->cap) return KVT_OK;
    uint8_t *p = realloc(s->payload, n ? n : 1);
    if (!p) return kvt_seterr(KVT_ENOMEM, "%s: out of memory reading a %zu-byte record", s->w->path, n);
    s->payload = p;
    s->cap = n;
    return KVT_OK;
}

/* Is hdr (at off) the header of an intact record of gen? Reads its payload into
 * s->payload. 1 yes, 0 no, < 0 an I/O error. */
static int record_ok(scan *s, const uint8_t hdr[REC_HDR], uint64_t off, uint64_t gen) {
    uint64_t len = kvt_get32(hdr + 4);
    if (kvt_get64(hdr + 8) != gen || len > MAX_RECORD || len > s->size - off - REC_HDR) return 0;
    KVT_TRY(scan_reserve(s, (size_t)len));
    KVT_TRY(kvt_file_read_full(s->w->f, s->payload, (size_t)len, off + REC_HDR));
    return rec_crc(hdr, s->payload, (size_t)len) == kvt_get32(hdr);
}

/* After a bad record at bad: the offset of the first intact record of gen at any later
 * byte position, or 0 if none (then the damage is a torn tail). */
static int find_later_record(scan *s, uint64_t bad, uint64_t *found) {
    uint8_t *chunk = malloc(SCAN_CHUNK + REC_HDR);
    if (!chunk) return kvt_seterr(KVT_ENOMEM, "%s: out of memory scanning the log", s->w->path);
    int rc = KVT_OK;
    *found = 0;
    for (uint64_t q = bad + 1; rc == KVT_OK && !*found && q + REC_HDR <= s->size;) {
        size_t n = (size_t)(s->size - q < SCAN_CHUNK + REC_HDR ? s->size - q : SCAN_CHUNK + REC_HDR);
        rc = kvt_file_read_full(s->w->f, chunk, n, q);
        for (size_t i = 0; rc == KVT_OK && i + REC_HDR <= n; i++) {
            int ok = record_ok(s, chunk + i, q + i, s->gen);
            if (ok < 0) rc = ok;
            else if (ok) { *found = q + i; break; }
        }
        q += n - REC_HDR + 1;
    }
    free(chunk);
    return rc;
}

/* A bad record at off: cut the tail if nothing valid follows, else it is corruption. */
static int judge_bad_record(scan *s, uint64_t off, const char *why) {
    uint64_t later = 0;
    KVT_TRY(find_later_record(s, off, &later));
    if (later)
        return kvt_seterr(KVT_ECORRUPT, "%s: damaged log record at offset %" PRIu64 " (%s) "
                          "followed by an intact record at offset %" PRIu64, s->w->path, off,
                          why, later);
    return KVT_OK;                     /* torn tail: the caller truncates at off */
}

/* Walk the records of gen from the header on; *end = offset past the last good one. */
static int walk_records(scan *s, kvt_wal_replay_fn fn, void *ctx, uint64_t *end) {
    uint64_t off = FILE_HDR;
    uint8_t hdr[REC_HDR];
    for (;;) {
        *end = off;
        if (off == s->size) return KVT_OK;
        if (s->size - off < REC_HDR) return judge_bad_record(s, off, "incomplete header");
        KVT_TRY(kvt_file_read_full(s->w->f, hdr, REC_HDR, off));
        uint64_t len = kvt_get32(hdr + 4);
        if (len > MAX_RECORD || len > s->size - off - REC_HDR)
            return judge_bad_record(s, off, "length past the end of the log");
        KVT_TRY(scan_reserve(s, (size_t)len));
        KVT_TRY(kvt_file_read_full(s->w->f, s->payload, (size_t)len, off + REC_HDR));
        if (rec_crc(hdr, s->payload, (size_t)len) != kvt_get32(hdr))
            return judge_bad_record(s, off, "checksum mismatch");
        if (kvt_get64(hdr + 8) != s->gen) return KVT_OK;   /* another gen ends the log */
        int rc = fn(ctx, s->payload, (size_t)len);
        if (rc < 0) return rc;
        if (rc > 0) return KVT_OK;     /* the caller ends the log before this record */
        off += REC_HDR + len;
    }
}

/* Replay when the header names exactly this gen. */
static int replay_records(kvt_wal *w, uint64_t gen, kvt_wal_replay_fn fn, void *ctx) {
    scan s = {w, gen, 0, NULL, 0};
    uint64_t end = FILE_HDR;
    int rc = kvt_file_size(w->f, &s.size);
    if (rc == KVT_OK) rc = walk_records(&s, fn, ctx, &end);
    free(s.payload);
    KVT_TRY(rc);
    if (end < s.size && !w->read_only) {
        KVT_TRY(kvt_file_truncate(w->f, end));   /* torn tail, zeros or stale records */
        KVT_TRY(kvt_file_sync(w->f));
        w->alloc = end;
    }
    w->gen = gen;
    w->ready = 1;
    __atomic_store_n(&w->tail, end, __ATOMIC_RELEASE);
    return KVT_OK;
}

int kvt_wal_replay(kvt_wal *w, uint64_t gen, kvt_wal_replay_fn fn, void *ctx) {
    if (__atomic_load_n(&w->fatal, __ATOMIC_ACQUIRE)) return fatal_err(w);
    if (w->have_header && w->hdr_gen > gen)
        return kvt_seterr(KVT_ECORRUPT, "%s: log follows checkpoint %" PRIu64 " but data file "
                          "is at %" PRIu64, w->path, w->hdr_gen, gen);
    if (w->have_header && w->hdr_gen == gen) return replay_records(w, gen, fn, ctx);
    /* No log, or one older than the checkpoint: nothing to replay; start gen's log. */
    if (w->read_only) {
        w->gen = gen;
        return KVT_OK;
    }
    return kvt_wal_reset(w, gen);
}

int kvt_wal_scan(kvt_wal *w, uint64_t gen, kvt_wal_replay_fn fn, void *ctx) {
    if (!w->have_header || w->hdr_gen != gen) return KVT_OK;
    scan s = {w, gen, 0, NULL, 0};
    uint64_t end = FILE_HDR;
    int rc = kvt_file_size(w->f, &s.size);
    if (rc == KVT_OK) rc = walk_records(&s, fn, ctx, &end);
    free(s.payload);
    return rc;
}

int kvt_wal_header_gen(const kvt_wal *w, uint64_t *gen) {
    if (!w->have_header) return 0;
    *gen = w->hdr_gen;
    return 1;
}

int kvt_wal_failed(const kvt_wal *w) {
    return w && __atomic_load_n(&w->fatal, __ATOMIC_ACQUIRE);
}

uint64_t kvt_wal_bytes(const kvt_wal *w) {
    return __atomic_load_n(&w->tail, __ATOMIC_ACQUIRE);
}

uint64_t kvt_wal_lsn(const kvt_wal *w) {
    kvt_wal *m = (kvt_wal *)w;         /* lsn is guarded by mu */
    pthread_mutex_lock(&m->mu);
    uint64_t lsn = m->lsn;
    pthread_mutex_unlock(&m->mu);
    return lsn;
}
