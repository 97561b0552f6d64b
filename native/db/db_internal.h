/* db_internal.h - the kvt_db handle shared by the files of native/db/.
 *
 * Locking, outermost first:
 *   writer  (mutex)  : one committer / checkpointer / checker at a time;
 *   rw      (rwlock) : engine access; readers (get, iterator chunks, stats) share it,
 *                      applying a batch and checkpointing take it exclusively.
 * The WAL's group commit (kvt_wal_sync) runs with neither held.
 * fatal is latched (never cleared) by the first failure that may have left the engine,
 * pager or log inconsistent with what is durable; the handle then refuses everything
 * with KVT_EFATAL and a reopen recovers from the last checkpoint plus the log.
 */
#ifndef KVT_DB_INTERNAL_H
#define KVT_DB_INTERNAL_H
#include <pthread.h>
#include <stdatomic.h>
#include "kvtrees.h"
#include "kvt_engine.h"
#include "kvt_pager.h"
#include "kvt_wal.h"

#define KVT_BATCH_OP_PUT 1
#define KVT_BATCH_OP_DEL 2
#define KVT_BATCH_OP_UPSERT 3      /* append the value to the key's old value */
/* A full leaf logged by reference (paged.c): key = u64 page number, value = u32 the
 * page's checksum field + u32 0. Only in records the db layer writes itself. */
#define KVT_BATCH_OP_PAGE 4
/* One WAL record: must not exceed the log's record limit (wal.c MAX_RECORD), or the
 * commit would fail only at append time. */
#define KVT_BATCH_MAX_BYTES ((uint64_t)KVT_MAX_RECORD)

typedef struct batch_op {
    uint8_t op;
    const uint8_t *k, *v;
    uint32_t kl, vl;
} batch_op;

/* Recovery's first pass (paged.c): copies of the pages the log names, in log order,
 * and the index of the first record naming a page the file does not hold as logged
 * (replay ends the log there, as at a torn tail; UINT64_MAX: none). */
typedef struct kvt_paged_replay {
    uint8_t **page;
    kvt_pgno *pgno;
    size_t n, cap, next;
    uint64_t records, stop_at;
} kvt_paged_replay;

struct kvt_db {
    char *dir, *data_path, *wal_path, *lock_path;
    kvt_vfs *vfs;
    kvt_file *lock_file;
    kvt_pager *pager;
    kvt_wal *wal;
    const kvt_engine_ops *ops;
    kvt_engine *eng;
    kvt_options opt;                 /* validated copy; opt.engine points at ops->name */
    kvt_io_stats data_io, wal_io;
    pthread_mutex_t writer;
    pthread_rwlock_t rw;
    atomic_int fatal;                /* latched error code, 0 while healthy */
    char fatal_msg[256];             /* detail of the latched error (written once) */
    atomic_uint_fast64_t last_sync_ns;
    atomic_uint_fast64_t commits, checkpoints, checkpoints_refused;
    kvt_buf paged_rec;               /* a logged-by-reference record being built */
    uint64_t logged_bytes;           /* page bytes the log names since the checkpoint */
    atomic_int data_unsynced;        /* the log names pages not yet fsynced */
    kvt_paged_replay *replay;        /* during recovery only */
    uint64_t ckpt_refused_at;        /* log size when a checkpoint last met a full disk
                                      * (0: none since the last checkpoint); writer only */
};

/* registry.c */
const kvt_engine_ops *kvt_db_engine_by_name(const char *name);
const kvt_engine_ops *kvt_db_engine_by_id(uint32_t id);
const kvt_engine_ops *kvt_db_engine_at(int i);   /* NULL past the end or for missing */
int kvt_db_engine_count(void);

/* db.c */
int kvt_db_latch(kvt_db *db, int rc);            /* latch fatal, returns rc */
int kvt_db_usable(kvt_db *db, int writing);      /* KVT_OK / EFATAL / EREADONLY */
/* Caller holds writer. A commit-triggered checkpoint: always KVT_OK (the commit is in
 * the log); a full disk defers it, a latched failure shows on the next call; see db.c. */
int kvt_db_checkpoint_locked(kvt_db *db);

/* batch.c */
int kvt_db_apply_record(kvt_db *db, const uint8_t *rec, size_t len, int *existed);
int kvt_db_replay_fn(void *ctx, const uint8_t *rec, size_t len);
/* For layers above the db that build their own records (native/mvcc/): append one op to
 * a record in the batch format (an empty buffer becomes a zero-count record first);
 * commit a record (log + apply, no fsync) returning its LSN; make every record up to an
 * LSN durable (the shared group fsync of kvt_wal_sync). */
int kvt_db_record_add(kvt_buf *rec, uint8_t op, const uint8_t *k, size_t kl,
                      const uint8_t *v, size_t vl);
int kvt_db_commit_logged(kvt_db *db, const uint8_t *rec, size_t len, uint64_t *lsn);
int kvt_db_sync_upto(kvt_db *db, uint64_t lsn);
/* would committing a record of about len bytes now run a checkpoint? (writer lock) */
int kvt_db_checkpoint_due(kvt_db *db, size_t len);

/* batch.c: decode the op at *off of a record, advancing it (every length checked). */
int kvt_db_record_next(const uint8_t *rec, size_t len, size_t *off, batch_op *o);

/* paged.c: commit a strictly ascending put record with the full leaves it fills logged
 * by reference. 1: not applicable now (the caller commits it as usual), 0: committed,
 * < 0: failed (latched when anything was applied). Caller holds writer. */
int  kvt_db_paged_commit(kvt_db *db, const uint8_t *rec, size_t len, uint64_t *lsn);
/* Recovery: the first pass over the log, then apply one PAGE op during replay. */
int  kvt_db_paged_scan(kvt_db *db, kvt_paged_replay *r);
int  kvt_db_paged_apply(kvt_db *db, const batch_op *o);
void kvt_db_paged_free(kvt_paged_replay *r);
/* Before a log sync that must cover records naming pages: fsync the data file. */
int  kvt_db_paged_sync(kvt_db *db);

#endif
