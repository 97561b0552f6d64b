/* kvt_pager.h - fixed-size pages, a bounded buffer pool, copy-on-write checkpoints.
 *
 * File layout: pages 0 and 1 are the two meta pages (checkpoint headers, written
 * alternately, each checksummed); every other page starts with a KVT_PAGE_HDR-byte
 * header owned by the pager (crc32c, type, pgno, gen) and the engine owns the rest.
 *
 * Generations. Checkpoint number G (the "gen") is durable once its meta page is.
 * Between checkpoints the pager is in gen G+1: a page whose header gen is G+1 was
 * allocated after the last checkpoint and may be modified in place and written back
 * (on eviction) any number of times; a page from an older gen is part of the last
 * checkpoint and is never overwritten: kvt_pager_write() copies it to a new page
 * (copy-on-write), gives the caller the new page number to store in the parent, and
 * frees the old page only once the next checkpoint is durable. So the file always holds
 * the last checkpoint intact, and recovery is: newest valid meta + redo of the WAL.
 *
 * Memory: the buffer pool holds at most cache_bytes of pages (plus pinned pages);
 * clean pages are evicted LRU, dirty ones are written back first.
 * Read map (decision, see docs/ARCHITECTURE.md): unless direct_io, no_map or a VFS
 * without map (the fault VFS), the file is also mapped read-only (MAP_SHARED, at least
 * map_bytes and twice the file, so the writer rarely has to replace it: only at a
 * checkpoint, with no mapped page pinned). A pool miss on a page inside the mapping
 * and the file is then served from the mapping: no copy, no frame, no eviction; its
 * checksum, page number and type are verified on its first read since this process
 * last wrote it (each pager write clears that mark). Dirty pages always live in the
 * pool: kvt_pager_write() first copies a mapped page into a frame (same COW rules).
 * Pool hits are served as before; pages outside the mapping take the pread path.
 * Damage found through the map is KVT_ECORRUPT naming file and page, as with pread,
 * and the check walk still re-reads clean pages from disk.
 * Guarded access (mapguard.c): a media error or a data file truncated behind the
 * pager's back raises SIGBUS when a mapped page is touched. A process-wide handler
 * catches it for registered mappings, replaces the mapping from that page on by zero
 * pages and counts the fault; from then on the pager serves no page from the map (the
 * pread path reports the short or failed read), every engine operation that ran while
 * the count moved returns KVT_EIO (engines bracket get/scan/put/del/check with
 * kvt_pager_map_faults/kvt_pager_map_guard), and kvt_pager_write of a page copied
 * from the map after a fault fails with KVT_EIO and latches the pager (zeros are never
 * written back). Accesses are also bounded by the file size the pager knows, so a
 * damaged page number never touches the map past the end of the file.
 * Errors: a failed write or fsync latches the pager into a fatal state; every later
 * call returns KVT_EFATAL (never retry: the OS may have dropped the data).
 * Threads: kvt_pager_get/unpin may be called by many readers at once; all calls that
 * modify (write/alloc/free/checkpoint) come from the single writer while no reader runs
 * (the db layer's rwlock guarantees it).
 */
#ifndef KVT_PAGER_H
#define KVT_PAGER_H
#include "kvt_vfs.h"
#include "kvt_util.h"

typedef uint64_t kvt_pgno;
#define KVT_PGNO_NONE 0          /* page 0 is a meta page, so 0 never names a data page */
#define KVT_PAGE_HDR 32          /* bytes at the start of every page owned by the pager */
#define KVT_ENGINE_META_MAX 256  /* engine bytes stored in each checkpoint header */

/* Page types (byte 4 of the page). Engines use values >= 16. */
#define KVT_PT_FREE      0
#define KVT_PT_META      1
#define KVT_PT_FREELIST  2
#define KVT_PT_OVERFLOW  3

typedef struct kvt_page {        /* a pinned page in the buffer pool */
    kvt_pgno pgno;
    uint8_t *data;               /* page_size bytes, data[0..KVT_PAGE_HDR) is the pager's */
} kvt_page;

typedef struct kvt_pager_config {
    uint32_t page_size;          /* used when creating the file; a power of two, 4096..1 MiB */
    uint32_t engine_id;          /* stored at creation; another non-zero id -> KVT_EENGINE */
    uint64_t cache_bytes;
    int direct_io, read_only;
    kvt_io_stats *stats;         /* I/O counters of the data file; may be NULL */
    int no_map;                  /* never read through a mapping (see the read map above) */
    uint64_t map_bytes;          /* smallest mapping to reserve; 0: 1 GiB */
} kvt_pager_config;

typedef struct kvt_pager_stats {
    uint64_t cache_hits, cache_misses, evictions, writebacks;
    uint64_t pages_total, pages_free, pages_pending_free, pages_dirty, pages_cached;
    uint64_t checkpoints;
    uint64_t map_reads;          /* misses served from the read map (in cache_misses too) */
    uint64_t map_verifies;       /* of which the first read since written: checksummed */
} kvt_pager_stats;

typedef struct kvt_pager kvt_pager;

int  kvt_pager_open(kvt_vfs *vfs, const char *path, const kvt_pager_config *cfg, kvt_pager **out);
int  kvt_pager_close(kvt_pager *p);          /* discards dirty pages: checkpoint first */
uint32_t kvt_pager_page_size(const kvt_pager *p);
uint32_t kvt_pager_engine_id(const kvt_pager *p);
uint64_t kvt_pager_ckpt_gen(const kvt_pager *p);    /* gen of the checkpoint opened/last written */
int kvt_pager_direct_io(const kvt_pager *p);        /* 1: the data file is read with O_DIRECT */
/* Engine bytes of the last checkpoint; *len 0 for a new file. */
const uint8_t *kvt_pager_engine_meta(const kvt_pager *p, size_t *len);

/* Pin page pgno (loading and verifying its checksum: KVT_ECORRUPT names file and page).
 * A page from the read map is valid until unpinned and must not be written through
 * data: call kvt_pager_write() first, which returns a pool page instead. */
int  kvt_pager_get(kvt_pager *p, kvt_pgno pgno, kvt_page **out);
void kvt_pager_unpin(kvt_pager *p, kvt_page *pg);
/* A hint that page pgno will be read soon: its first 4 KiB are prefetched from the read
 * map (nothing without one). Never faults, never blocks. */
void kvt_pager_prefetch(kvt_pager *p, kvt_pgno pgno);
/* Unpin a page the caller will not need again soon (a leaf a sequential load has
 * filled): when no one else pins it, it is written soon if dirty (as an eviction would,
 * same copy-on-write rules) and its frame is reused for the next page, so a load does
 * not grow the pool with pages written once. Errors as for a write-back (a failed
 * write latches; a full disk keeps the page dirty in the pool and returns KVT_OK). */
int  kvt_pager_retire(kvt_pager *p, kvt_page *pg);
/* Retired pages are written in runs of adjacent page numbers (one write, not one per
 * page); this writes the pending run now (a checkpoint does too). */
int  kvt_pager_retire_flush(kvt_pager *p);
/* Pages logged by reference (native/db/paged.c: a full leaf written once, the log
 * naming it instead of repeating its entries). retire_sealed: retire a page whose
 * content is final, setting its checksum now into *crc. log_pages (after the record's
 * pages were retired): write the pending run and, for each page whose file copy is
 * exactly what was sealed, set logged[i] and take it out of the current gen's
 * in-place set: later writes copy it and its free waits for the next checkpoint, so
 * the file keeps it as long as the log names it. read_page: a page's bytes from the
 * file, verified (recovery; the file is then not cut back to the checkpoint). sync: fsync the data file (before a log sync that must
 * cover records naming pages). */
int  kvt_pager_retire_sealed(kvt_pager *p, kvt_page *pg, uint32_t *crc);
int  kvt_pager_log_pages(kvt_pager *p, const kvt_pgno *pg, const uint32_t *crc, size_t n,
                         uint8_t *logged);
int  kvt_pager_read_page(kvt_pager *p, kvt_pgno pgno, uint8_t *buf);
int  kvt_pager_sync(kvt_pager *p);
/* Recovery: keep page pgno (named by the log, not by the checkpoint) from being
 * allocated, and so overwritten, until the next checkpoint is durable; a crash during
 * recovery then finds it again. */
int  kvt_pager_reserve(kvt_pager *p, kvt_pgno pgno);
/* Make a pinned page writable and dirty. May replace *pg by a copy at a new pgno
 * (the old one is unpinned): the caller must then store (*pg)->pgno in the parent. */
int  kvt_pager_write(kvt_pager *p, kvt_page **pg);
/* A new, zeroed, dirty, pinned page of the given type. */
int  kvt_pager_alloc(kvt_pager *p, uint8_t type, kvt_page **out);
/* The current state no longer references pgno (must not be pinned by the caller). */
int  kvt_pager_free(kvt_pager *p, kvt_pgno pgno);
static inline uint8_t kvt_page_type(const kvt_page *pg) { return pg->data[4]; }

/* Write every dirty page, fsync, write the free-space map and the next meta page with
 * engine_meta, fsync. On success the new gen is durable and deferred frees are released. */
int  kvt_pager_checkpoint(kvt_pager *p, const void *engine_meta, size_t len);
/* KVT_ENOSPC from a checkpoint is not fatal: the checkpoint was abandoned, the last one
 * is still the durable one and the pager stays usable (see pager.c, full disk). */
/* 1 once a write or fsync failure has latched the pager (every call is KVT_EFATAL). */
int  kvt_pager_failed(const kvt_pager *p);
/* Truncate the data file to the durable checkpoint's length, giving back the space of
 * pages written since: at open once the checkpoint is known to be the right one (pages
 * a crash left after it are garbage; open itself never truncates), and at a close or
 * failed open after a checkpoint could not be made (the pager must then only be
 * closed). A no-op read-only or after a latched failure (the new meta may be on disk). */
int  kvt_pager_discard_unsaved(kvt_pager *p);
/* Bytes of the data file that a checkpoint would have to free/write (for triggers). */
uint64_t kvt_pager_pending_free(const kvt_pager *p);

/* Large values: a chain of KVT_PT_OVERFLOW pages, immutable once written. */
int  kvt_blob_write(kvt_pager *p, const void *data, size_t len, kvt_pgno *first);
int  kvt_blob_read(kvt_pager *p, kvt_pgno first, size_t len, kvt_buf *out);
int  kvt_blob_free(kvt_pager *p, kvt_pgno first);
int  kvt_blob_check(kvt_pager *p, kvt_pgno first, size_t len);   /* refs its pages */
/* A blob read in place in the read map, without copying it whole (a reader that needs
 * a few bytes of a large blob: the fractal tree's point query in one basement). Open
 * gives KVT_NOTFOUND when the blob cannot be viewed (no map, direct_io, a chain, in
 * the pool, beyond the mapping, over 64 pages): read it with kvt_blob_read instead.
 * view_read gives bytes [off, off+n) of the blob: in place when they lie in one page,
 * else copied into tmp (n bytes); every page is checksummed on its first touch since it
 * was written (KVT_ECORRUPT), and a read past the blob's length is KVT_ECORRUPT. The
 * pointers stay valid until close, which must follow every successful open (it
 * records the verified pages and turns rc into KVT_EIO when a map fault was caught
 * meanwhile, see guarded access). Readers only, within one engine call: the mapping
 * is replaced only by the writer. */
typedef struct kvt_blob_view {
    kvt_pager *p;
    const uint8_t *base;         /* the blob's first page in the map; NULL: closed */
    kvt_pgno first;
    size_t len;
    uint64_t npages, seen, verified, touched, faults;   /* page bit masks */
} kvt_blob_view;
int  kvt_blob_view_open(kvt_pager *p, kvt_pgno first, size_t len, kvt_blob_view *v);
int  kvt_blob_view_read(kvt_blob_view *v, size_t off, size_t n, uint8_t *tmp,
                        const uint8_t **out);
int  kvt_blob_view_close(kvt_blob_view *v, int rc);
/* As view_read, in place only: KVT_NOTFOUND when the bytes straddle two pages. */
int  kvt_blob_view_ptr(kvt_blob_view *v, size_t off, size_t n, const uint8_t **out);
/* Hint that blob (first, len) will be viewed soon: the CPU prefetches its first page's
 * header and the bytes at the n blob offsets off[] (no check, no fault; nothing when the
 * blob could not be viewed), so the misses overlap with the caller's other work. */
void kvt_blob_prefetch(kvt_pager *p, kvt_pgno first, size_t len, const size_t *off,
                       unsigned n);
/* Hint that bytes [off, off+n) of an open view will be read soon (a CPU prefetch, no
 * check, no fault: it lets independent cache misses overlap). */
void kvt_blob_view_prefetch(const kvt_blob_view *v, size_t off, size_t n);

/* Consistency walk. Between begin and end the engine calls check_ref for every page its
 * state references (each exactly once); end verifies that referenced, free, deferred-free
 * and pager-internal pages partition the file, and re-reads each clean referenced page
 * from disk to verify its checksum. */
int  kvt_pager_check_begin(kvt_pager *p);
int  kvt_pager_check_ref(kvt_pager *p, kvt_pgno pgno);
int  kvt_pager_check_end(kvt_pager *p);

/* Read-map faults caught so far (see guarded access above). An operation reads the
 * count first and passes it with its result to kvt_pager_map_guard, which returns rc
 * unchanged, or KVT_EIO when a fault was caught meanwhile (the op may have read zeros). */
uint64_t kvt_pager_map_faults(const kvt_pager *p);
int kvt_pager_map_guard(kvt_pager *p, uint64_t before, int rc);
/* Test hook: the next touch of mapped page pgno raises a real SIGBUS, as a disk read
 * error under the map does. KVT_EINVAL when the page is not in the read map. */
int kvt_pager_map_inject_fault(kvt_pager *p, kvt_pgno pgno);

void kvt_pager_get_stats(kvt_pager *p, kvt_pager_stats *out);
const char *kvt_pager_path(const kvt_pager *p);

#endif
