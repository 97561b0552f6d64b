/* pager_int.h - private state of the pager, shared by the files of native/pager/.
 *
 * Invariants (checked by kvt_pager_check_end):
 *  - every page number in [2, npages) is exactly one of: referenced by the engine's
 *    state, free (bit in freeb), deferred (bit in deferb: referenced by the last durable
 *    checkpoint but not by the current state), or a page of the durable free map
 *    (fm_pages);
 *  - newb marks pages allocated since the last checkpoint (gen ckpt_gen+1): only they may
 *    be modified in place or written to the file;
 *  - a free or deferred page has no frame in the pool (dropped on free), so a frame found
 *    in the hash table always holds the current content of its page;
 *  - pool, bitmaps and counters are protected by mu; the file is read without it by
 *    blob reads and by cache misses (pread is thread-safe): a missing page gets a
 *    pinned frame marked `loading`, filled outside mu, and other readers of that page
 *    wait on `loaded`, so a miss never blocks readers of other pages;
 *  - read map (map.c): a pool miss on a page inside both the mapping and the file
 *    (file_pages) is served from the mapping through a map handle (no frame); verb marks
 *    the pages verified through it since this process last wrote them (every pager write
 *    goes through pager_write_pages, which clears their bits); the mapping is replaced
 *    only under the writer and only while no handle is out (nmapped 0).
 */
#ifndef KVT_PAGER_INT_H
#define KVT_PAGER_INT_H
#include <pthread.h>
#include <stdint.h>
#include "kvt_error.h"
#include "kvt_pager.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "kvtrees files are little-endian: big-endian hosts are not supported"
#endif

/* Page header layout (KVT_PAGE_HDR bytes). */
#define HDR_CRC   0     /* u32 crc32c of bytes [4, page_size) */
#define HDR_TYPE  4     /* u8 */
#define HDR_PGNO  8     /* u64: a page read at another place is corrupt */
#define HDR_GEN   16    /* u64: gen that wrote it */

#define META_BYTES 4096 /* meta content and checksum span: one 4 KiB block */
#define MIN_FRAMES 8

typedef struct bitmap {
    uint64_t *w;
    size_t nwords;      /* capacity in 64-bit words */
} bitmap;

typedef struct maph {     /* a pinned page served from the read map */
    kvt_page page;      /* first member; page.data points into p->map */
    struct maph *next;  /* free list */
} maph;

typedef struct frame {
    kvt_page page;      /* first member: a kvt_page* handed out is a frame* */
    struct frame *hnext;
    uint32_t pin;
    int load_rc;        /* result of the read that filled it, for waiters */
    uint8_t dirty, ref, live;
    uint8_t loading;    /* a reader fills it outside mu; others wait on p->loaded */
} frame;

struct kvt_pager {
    kvt_vfs *vfs;
    kvt_file *file;
    char *path;
    uint32_t page_size, engine_id;
    int direct_io, read_only, fatal;
    uint64_t ckpt_gen;           /* durable gen; the current gen is ckpt_gen + 1 */
    uint64_t ckpt_npages;        /* page count of the durable checkpoint */
    int nospace;                 /* a data-file write hit ENOSPC since the last checkpoint
                                  * attempt: write-back and blobs stay in the pool */
    int pool_blobs;              /* a blob was ever built in the pool (write_chain):
                                  * until then a view need not look for its pages there */
    uint64_t npages;             /* logical size in pages (meta pages included) */
    uint8_t engine_meta[KVT_ENGINE_META_MAX];
    size_t engine_meta_len;

    /* free space (freemap.c) */
    bitmap freeb, deferb, newb;
    uint64_t nfree, ndefer;
    uint64_t hint;               /* no free bit below word `hint` */
    kvt_pgno *fm_pages;          /* pages of the durable free map */
    size_t fm_count;
    kvt_pgno *fm_prev;           /* the previous map's pages while a checkpoint runs */
    size_t fm_prev_count;

    /* buffer pool (pool.c) */
    pthread_mutex_t mu;
    pthread_cond_t loaded;       /* a frame finished loading */
    frame **frames;              /* every frame ever made, for the clock hand */
    size_t nframes, cap_frames, max_frames, hand;
    frame **spare;               /* frames holding no page */
    size_t nspare;
    /* Frame pages come from slabs of FRAME_SLAB_PAGES: one aligned allocation per page
     * costs glibc about a second page of padding, doubling the cache's footprint. */
    uint8_t **slabs;
    size_t nslabs, slab_used;    /* pages handed out of the newest slab */
    frame **buckets;
    size_t nbuckets;             /* power of two */
    uint64_t ndirty, nlive;
    kvt_pager_stats st;
    /* Retired pages (kvt_pager_retire) waiting to be written as one run: consecutive
     * page numbers from retired_first, each frame checked again at the write (it may
     * have been evicted, reused or pinned meanwhile). */
    frame **retired;
    size_t nretired;
    kvt_pgno retired_first;
    uint8_t *retire_stage;       /* RETIRE_RUN pages, for the run's one write */

    /* read map (map.c) */
    uint8_t *map;                /* NULL: every miss is a pread into a frame */
    uint64_t map_len, map_min;   /* bytes mapped; smallest mapping to make */
    uint64_t file_pages;         /* pages the file surely holds: bound of map reads */
    bitmap verb;                 /* verified through the map since last written */
    maph *mh_free;
    maph **mh_all;               /* every handle made, freed at close */
    size_t nmh, cap_mh;
    uint64_t nmapped;            /* handles pinned by callers */
    int map_guard;               /* mapguard.c slot of the mapping, -1 none */

    /* consistency walk (check.c) */
    bitmap checkb;
    int checking;
};

/* bitmaps */
int  bm_ensure(bitmap *b, uint64_t nbits);
static inline int bm_get(const bitmap *b, uint64_t i) {
    return (i >> 6) < b->nwords && ((b->w[i >> 6] >> (i & 63)) & 1);
}
static inline void bm_set(bitmap *b, uint64_t i) { b->w[i >> 6] |= 1ull << (i & 63); }
static inline void bm_clr(bitmap *b, uint64_t i) { b->w[i >> 6] &= ~(1ull << (i & 63)); }
void bm_free(bitmap *b);

/* freemap.c: a new free map for a checkpoint; fm_write keeps the old map's page list
 * until fm_commit (the checkpoint is durable) or fm_undo (it was abandoned: the new
 * map's pages are freed and the old map is the current one again). */
void fm_commit(kvt_pager *p);
void fm_undo(kvt_pager *p);

/* pager.c */
int  pager_fail(kvt_pager *p, int rc);            /* latch fatal on a write/fsync error */
int  pager_check_usable(kvt_pager *p);            /* KVT_EFATAL once latched */
void page_hdr_init(uint8_t *data, uint8_t type, kvt_pgno pgno, uint64_t gen);
void page_seal(kvt_pager *p, uint8_t *data);      /* set the checksum */
int  page_verify(kvt_pager *p, const uint8_t *data, kvt_pgno pgno);
void *aligned_alloc_pages(kvt_pager *p, size_t bytes);

/* freemap.c (callers hold mu) */
int  fm_init(kvt_pager *p);
int  fm_grow(kvt_pager *p, uint64_t npages);
int  fm_alloc(kvt_pager *p, kvt_pgno *out);
int  fm_alloc_run(kvt_pager *p, uint64_t n, kvt_pgno *out);
int  fm_free(kvt_pager *p, kvt_pgno pgno);
int  fm_load(kvt_pager *p, kvt_pgno first, uint64_t count);
int  fm_write(kvt_pager *p, kvt_pgno *first, uint64_t *count);
void fm_release_deferred(kvt_pager *p);
void fm_trim_tail(kvt_pager *p);
void fm_destroy(kvt_pager *p);
size_t fm_bits_per_page(const kvt_pager *p);

/* pool.c (callers hold mu) */
int    pool_init(kvt_pager *p, uint64_t cache_bytes);
void   pool_destroy(kvt_pager *p);
frame *pool_lookup(kvt_pager *p, kvt_pgno pgno);
int    pool_take(kvt_pager *p, kvt_pgno pgno, frame **out);   /* pinned, uninitialised */
void   pool_drop(kvt_pager *p, frame *f);
void   pool_mark_dirty(kvt_pager *p, frame *f);
/* Unpin; when that was the last pin, queue the page for writing in a run and giving
 * its frame back (kvt_pager_retire); pool_retire_flush writes the queued run. A full
 * disk keeps the pages dirty in the pool. */
int    pool_retire(kvt_pager *p, frame *f);
int    pool_retire_flush(kvt_pager *p);
int    pool_flush_dirty(kvt_pager *p);
int    pool_get_locked(kvt_pager *p, kvt_pgno pgno, kvt_page **out);  /* hit, map, read */

/* map.c (callers hold mu, except map_open/map_close) */
int  map_open(kvt_pager *p, const kvt_pager_config *cfg);
void map_close(kvt_pager *p);
int  map_get_locked(kvt_pager *p, kvt_pgno pgno, kvt_page **out);  /* *out NULL: not mapped */
static inline int map_owns(const kvt_pager *p, const kvt_page *pg) {
    return p->map && pg->data >= p->map && pg->data < p->map + p->map_len;
}
void map_release(kvt_pager *p, kvt_page *pg);
const uint8_t *map_span_locked(const kvt_pager *p, kvt_pgno first, uint64_t n);
void map_truncated(kvt_pager *p, uint64_t npages);
void map_refresh(kvt_pager *p);                   /* writer, between operations */

/* mapguard.c: SIGBUS on a registered mapping is patched with zeros and counted. */
int      mapguard_add(void *addr, uint64_t len, int *slot);
void     mapguard_remove(int slot);
uint64_t mapguard_faults(int slot);
int      mapguard_inject(void *addr, uint64_t len);      /* test hook: a real SIGBUS */
static inline int map_faulted(const kvt_pager *p) {
    return p->map_guard >= 0 && mapguard_faults(p->map_guard) != 0;
}
/* Write n whole pages from first: the only way the pager writes data pages. */
int  pager_write_pages(kvt_pager *p, const void *buf, uint64_t n, kvt_pgno first);

/* free a page (callers hold mu) */
int pager_free_locked(kvt_pager *p, kvt_pgno pgno);
int pager_alloc_locked(kvt_pager *p, uint8_t type, frame **out);

#endif
