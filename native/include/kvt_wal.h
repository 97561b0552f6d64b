/* kvt_wal.h - the redo log of committed batches.
 *
 * A record is one committed batch (opaque bytes to the WAL), framed with its length,
 * the checkpoint generation it follows and a CRC32C. Records are appended, fsynced
 * per the db's sync policy, and replayed at open on top of the newest checkpoint.
 * LSNs are byte positions that grow monotonically for the life of the handle (they do
 * not restart when the log is emptied), so a committer can wait for "durable >= my end"
 * even if a checkpoint emptied the log meanwhile (a checkpoint makes everything durable).
 *
 * Damage: a torn tail (last record incomplete or failing its CRC with nothing valid
 * after it) is a crash artefact and is cut off; a damaged record followed by a valid
 * one is corruption (KVT_ECORRUPT), never silently skipped.
 * Threads: append and reset are called by the single writer; sync by any committer.
 */
#ifndef KVT_WAL_H
#define KVT_WAL_H
#include "kvt_vfs.h"

typedef struct kvt_wal kvt_wal;
typedef int (*kvt_wal_replay_fn)(void *ctx, const uint8_t *rec, size_t len);

int kvt_wal_open(kvt_vfs *vfs, const char *path, int read_only, kvt_io_stats *stats, kvt_wal **out);
int kvt_wal_close(kvt_wal *w);
/* Replay, in order, every intact record written after checkpoint gen. A log that names a
 * newer gen than the checkpoint (its checkpoint header was lost) -> KVT_ECORRUPT. */
int kvt_wal_replay(kvt_wal *w, uint64_t gen, kvt_wal_replay_fn fn, void *ctx);
/* As replay, but only reads (no cut, no state change): a first pass over the log.
 * In both, a callback returning > 0 ends the walk before that record (replay then cuts
 * the log there, as a torn tail). */
int kvt_wal_scan(kvt_wal *w, uint64_t gen, kvt_wal_replay_fn fn, void *ctx);
/* Make sure the file has allocated blocks for a record of len bytes at the tail, so
 * that appending it cannot fail for lack of space (KVT_ENOSPC: it could not). */
int kvt_wal_reserve(kvt_wal *w, size_t len);
/* Append one record (not yet durable); *lsn_out = LSN just past it. KVT_ENOSPC: the
 * disk refused it; the log was cut back to where it ended and stays usable (the record
 * is not logged). Any other write failure is fatal for the log. */
int kvt_wal_append(kvt_wal *w, const void *rec, size_t len, uint64_t *lsn_out);
/* Group commit: return once everything up to lsn is durable. One caller fsyncs for all
 * who are waiting; a failed fsync is fatal for the log (KVT_EFATAL afterwards). */
int kvt_wal_sync(kvt_wal *w, uint64_t lsn);
/* After checkpoint gen is durable: empty the log and start records of that gen. */
int kvt_wal_reset(kvt_wal *w, uint64_t gen);
uint64_t kvt_wal_bytes(const kvt_wal *w);     /* size of the log file now */
int kvt_wal_failed(const kvt_wal *w);         /* 1 once latched fatal */
/* The checkpoint gen the log's header names; 0 when it has no valid header. */
int kvt_wal_header_gen(const kvt_wal *w, uint64_t *gen);
uint64_t kvt_wal_lsn(const kvt_wal *w);       /* LSN past the last appended record */

#endif
