/* kvtrees.h - the public C API, the one the Python binding calls.
 *
 * A kvt_db is a directory holding data.kvt (pager file), wal.log (redo log) and LOCK.
 * Handles are safe for one writer and many readers at once: each call takes the db's
 * reader/writer lock itself, and no call holds Python's GIL (cffi releases it).
 * The declarations between CDEF BEGIN and CDEF END are read verbatim by the cffi
 * build (src/kvtrees/_build_ffi.py): keep them plain C (no macros, no attributes).
 */
#ifndef KVTREES_H
#define KVTREES_H
#include <stddef.h>
#include <stdint.h>
#include "kvt_error.h"
#include "kvt_vfs.h"
#include "kvt_limits.h"

#define KVT_VERSION "0.1.0"

/* CDEF BEGIN */
typedef struct kvt_vfs kvt_vfs;
typedef struct kvt_db kvt_db;
typedef struct kvt_batch kvt_batch;
typedef struct kvt_iter kvt_iter;

typedef struct kvt_options {
    const char *engine;          /* "btree" | "fractal"; NULL: the directory's, or btree if new */
    uint64_t cache_size;         /* bytes of page cache (default 64 MiB) */
    int sync_mode;               /* 0 commit, 1 interval, 2 none */
    uint32_t sync_interval_ms;   /* for interval (default 100) */
    uint32_t page_size;          /* btree page size (default 4096) */
    uint32_t node_size;          /* fractal node buffer budget (default: see docs) */
    uint32_t basement_size;      /* fractal basement size (default: see docs) */
    int direct_io;
    int read_only;
    uint64_t wal_limit;          /* checkpoint once the log exceeds this many bytes */
    kvt_vfs *vfs;                /* NULL: POSIX */
    int no_mmap;                 /* 1: read pages with pread only, never through the read
                                  * map (see kvt_pager.h); direct_io implies it */
} kvt_options;

typedef struct kvt_stats {
    uint64_t bytes_written, bytes_read, fsyncs;         /* data file + log, from the VFS */
    uint64_t wal_bytes_written, data_bytes_written;
    uint64_t cache_hits, cache_misses, evictions;
    uint64_t height, entries, nodes, flushes;
    uint64_t file_size, wal_size, pages_total, pages_free;
    uint64_t checkpoints, commits;
    uint64_t checkpoints_refused;       /* abandoned for lack of space (kept in the log) */
    uint64_t cache_size, page_size;
    uint64_t map_reads, map_verifies;   /* pool misses served by the pager's read map
                                         * (counted in cache_misses too); of which
                                         * checksummed (first read since written) */
} kvt_stats;

const char *kvt_version(void);
const char *kvt_strerror(int rc);
const char *kvt_errmsg(void);
uint32_t kvt_crc32c(uint32_t crc, const void *data, size_t n);

void kvt_options_init(kvt_options *o);
int  kvt_open(const char *dir, const kvt_options *o, kvt_db **out);
int  kvt_close(kvt_db *db);               /* checkpoints (unless read-only/fatal), frees */
const char *kvt_engine_name(kvt_db *db);

/* KVT_OK: value copied to dst, *vlen set. KVT_NOTFOUND. KVT_EBUFSMALL: *vlen is the
 * size needed, nothing copied: call again with a larger buffer. */
int  kvt_get(kvt_db *db, const uint8_t *k, size_t kl, uint8_t *dst, size_t cap, size_t *vlen);
int  kvt_put(kvt_db *db, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl);
int  kvt_delete(kvt_db *db, const uint8_t *k, size_t kl, int *existed);

/* Atomic batches: all or nothing, also across a crash. */
int  kvt_batch_new(kvt_db *db, kvt_batch **out);
int  kvt_batch_put(kvt_batch *b, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl);
int  kvt_batch_delete(kvt_batch *b, const uint8_t *k, size_t kl);
/* Append: at commit the key's value becomes its old value (empty when absent) followed
 * by the operand, keeping the newest KVT_MAX_VALUE bytes: value := last KVT_MAX_VALUE
 * bytes of (old || operand), so an append never fails at apply time and both engines give
 * the same result (blind on the fractal tree: no read at commit). The operand is checked
 * like a put value: over KVT_MAX_VALUE gives KVT_ETOOLARGE, nothing written. */
int  kvt_batch_upsert(kvt_batch *b, const uint8_t *k, size_t kl, const uint8_t *operand, size_t ol);
/* Many puts from one packed buffer (one native call instead of one per pair): buf is a
 * batch record of puts only, as the log stores it: u32 n, then n times u8 1, u32 klen,
 * u32 vlen, key, value (integers little-endian). Every op is checked (a key 1..KVT_MAX_KEY
 * bytes, a value <= KVT_MAX_VALUE: KVT_ETOOLARGE / KVT_EINVAL; a malformed buffer:
 * KVT_EINVAL) before anything is written: on error nothing is added or committed.
 * kvt_put_many commits buf as one atomic batch, logged without a copy (n 0: nothing);
 * kvt_batch_put_many appends its puts to the batch. */
int  kvt_put_many(kvt_db *db, const uint8_t *buf, size_t len);
int  kvt_batch_put_many(kvt_batch *b, const uint8_t *buf, size_t len);
size_t kvt_batch_count(kvt_batch *b);
int  kvt_batch_commit(kvt_batch *b);      /* then empty, reusable */
void kvt_batch_clear(kvt_batch *b);
void kvt_batch_free(kvt_batch *b);

/* Range iterator over [start, end) (NULL: unbounded), ascending or descending.
 * It reads ahead in chunks, each under the read lock, and resumes after the last key
 * returned: never out of order, never a key twice, safe while other threads write. */
int  kvt_iter_new(kvt_db *db, const uint8_t *start, size_t sl, const uint8_t *end, size_t el,
                  int reverse, kvt_iter **out);
/* KVT_OK with pointers valid until the next call, or KVT_NOTFOUND at the end. */
int  kvt_iter_next(kvt_iter *it, const uint8_t **k, size_t *kl, const uint8_t **v, size_t *vl);
/* Bulk form of kvt_iter_next: every entry left in the current chunk (refilled when
 * empty), KVT_NOTFOUND at the end. n entries whose key and value bytes lie back to back
 * from data (k0 v0 k1 v1 ..., `bytes` in all), their lengths in lens[0..2n) (kl0, vl0,
 * kl1, ...); uniform 1 when every key has length kl and every value length vl. Valid
 * until the next call on it. May be mixed with kvt_iter_next. */
typedef struct kvt_chunk {
    const char *data;            /* char: Python's ffi.unpack makes it one bytes object */
    size_t bytes, n;
    const uint32_t *lens;
    uint32_t kl, vl;
    int uniform;
} kvt_chunk;
int  kvt_iter_next_many(kvt_iter *it, kvt_chunk *out);
void kvt_iter_free(kvt_iter *it);

int  kvt_checkpoint(kvt_db *db);
int  kvt_sync(kvt_db *db);
int  kvt_check(kvt_db *db);
int  kvt_get_stats(kvt_db *db, kvt_stats *out);
/* The engines this library has, by index (NULL past the last). */
const char *kvt_engine_at(int i);

/* Test hooks: the fault-injecting VFS (see kvt_vfs.h). */
int  kvt_fault_vfs_new(kvt_vfs **out);
void kvt_fault_vfs_free(kvt_vfs *vfs);
int  kvt_fault_set(kvt_vfs *vfs, int op, uint64_t nth, int persistent, int err);
int  kvt_fault_crash(kvt_vfs *vfs, int mode, uint64_t seed);
int  kvt_fault_only(kvt_vfs *vfs, const char *suffix);
void kvt_fault_reset(kvt_vfs *vfs);
uint64_t kvt_fault_count(kvt_vfs *vfs, int op);
int  kvt_fault_hold_syncs(kvt_vfs *vfs, int hold);
uint64_t kvt_fault_held(kvt_vfs *vfs);
/* Test hook: every data page in the read map raises a real SIGBUS on its next touch, as
 * a failing disk would (kvt_pager.h, guarded access); KVT_EINVAL without a read map. */
int  kvt_debug_map_fault(kvt_db *db);
/* CDEF END */

#endif
