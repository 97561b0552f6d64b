/* ft_int.h - private to the fractal tree engine (a Bε-tree, PerconaFT-like).
 *
 * Three layers:
 *   tree logic   ft_write.c (put/del, buffer flushes, splits), ft_read.c (get, scan),
 *                ft_check.c (invariant walk)
 *   node cache   ft_cache.c: deserialized nodes by id, pin counts, LRU, write-back,
 *                and the translation table node id -> blob (pgno, len)
 *   backing      the shared pager: every node is one blob (kvt_blob_write/read/free)
 *
 * Node kinds. An INTERNAL node is a small header: n children, n-1 pivots and per child
 * the id of its message buffer (a PARTITION node, 0 while the buffer is empty) with the
 * buffer's record count and bytes. A PARTITION is one child's buffer, stored, cached and
 * evicted on its own, and shaped like a leaf: n SEGMENT ids with pivots and per segment
 * its message count and bytes; a SEGMENT holds sorted messages (one per key, up to about
 * basement_size bytes). A query loads the (small) partition and one segment on each
 * level of its path; a flush rewrites only the segments it changed plus the headers.
 * RUNS: a child's buffer is a chain of partitions, newest first (the internal node names
 * the newest, each partition names the next older one in `older`). A batch flushed into
 * a buffer whose newest run would have to be read back and rewritten becomes a new run
 * instead (it is written once); so a message is written about once per level, not once
 * per flush it shares a segment with. A newer run's message for a key is newer than an
 * older run's. At most max_runs (FT_DEF_RUNS) runs per buffer, then a batch merges into
 * the newest; flushing a buffer down merges them all.
 * A LEAF holds n basement ids, n-1 pivots and per
 * basement its entry count and byte size, so a leaf can be split without reading its
 * basements. A BASEMENT holds sorted (key, value) entries and is read on its own: a point
 * query reads one basement, never a whole leaf. Child i covers [piv[i-1], piv[i]).
 *
 * Node ids go through the translation table, so writing a node back at a new place
 * never dirties its parent. The table (plus the greatest key ever put) is one blob
 * rewritten at each flush(); its location, the root id and counters are the engine
 * meta bytes of the checkpoint.
 *
 * MSN invariant: for any key, messages deeper in the tree are older (smaller MSN) than
 * messages above them, and a basement entry is older than every message for its key.
 * So a query takes the first message it meets walking down, and a scan the newest.
 *
 * Threads: get/scan/check run concurrently with each other; they only touch shared
 * state (cache map, LRU, pins, memory count) under e->mu. put/del/flush run alone.
 */
#ifndef FT_INT_H
#define FT_INT_H
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "kvt_engine.h"
#include "kvt_error.h"

#define FT_META_MAGIC  0x31544d46u   /* "FMT1" */
#define FT_NODE_MAGIC  0x314e5446u   /* "FTN1" */
#define FT_TAB_MAGIC   0x31425446u   /* "FTB1" */
#define FT_VERSION     3

/* Defaults (chosen by measurement, see native/fractal/README.md). */
#define FT_DEF_NODE_SIZE     (4u << 20) /* internal-node buffer budget */
#define FT_DEF_BASEMENT_SIZE (32u << 10)
#define FT_LEAF_FACTOR       1u         /* leaf holds up to 1 x node_size of basements */
#define FT_FANOUT            16u        /* children per internal node before a split */
#define FT_PAGE_SIZE         4096u

/* Message / entry types. Entries in basements are PUT or PUTBLOB. UPSERT (a buffer
 * message only) appends its value to the key's older value (empty when none). */
enum { FT_PUT = 1, FT_DEL = 2, FT_PUTBLOB = 3, FT_UPSERT = 4 };
enum { FT_INTERNAL = 1, FT_LEAF = 2, FT_BASEMENT = 3, FT_PARTITION = 4, FT_SEGMENT = 5 };

#define FT_MAX_RUNS 16u              /* format limit: runs chained in one child's buffer */
#define FT_DEF_RUNS 4u               /* policy: runs before a batch merges into the newest */
#define FT_SEG_BLOOM 256u            /* bytes of Bloom filter per buffer segment */
/* Node header byte 5 of a basement or segment: how its record index is stored (ft_node.c;
 * 0: none, blobs written before it). Readers take all three forms. */
#define FT_INDEX_TAIL  1u           /* after the records: per record offset and key word */
#define FT_INDEX_FRONT 2u           /* before them: the key words, then the offsets */
#define FT_IDX_ENTRY 12u            /* index bytes per record: u32 offset, u64 key word */

/* 8 key bytes from p (n of them, zero-padded) as a big-endian word: words that differ
 * order their keys like memcmp; equal words leave it to a full comparison. */
static inline uint64_t ft_key_word(const uint8_t *p, size_t n) {
    if (n >= 8) {                                  /* the usual case: one load */
        uint64_t w;
        memcpy(&w, p, 8);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        w = __builtin_bswap64(w);
#endif
        return w;
    }
    uint64_t w = 0;
    for (size_t i = 0; i < 8; i++) w = w << 8 | (i < n ? p[i] : 0);
    return w;
}
#define FT_REC_HDR 17u               /* serialized: u8 type, u64 msn, u32 kl, u32 vl */
#define FT_BLOBREF 16u               /* PUTBLOB value: u64 pgno, u64 len */

typedef struct frec {
    const uint8_t *k, *v;            /* into the node's arena, or one malloc at k (owned) */
    uint32_t kl, vl;
    uint64_t msn;
    uint8_t type, owned;
} frec;

static inline uint64_t frec_size(const frec *r) { return FT_REC_HDR + r->kl + r->vl; }
static inline uint64_t frec_mem(const frec *r) { return r->owned ? 16u + r->kl + r->vl : 0; }

typedef struct fvec {                /* sorted by (key, msn) */
    frec *r;
    uint32_t n, cap;
    uint64_t bytes;                  /* serialized bytes of the records */
} fvec;

/* A pivot; w = ft_key_word(k, kl), its first 8 bytes, so that searches compare words
 * first (set by fkey_set, the only way a pivot is made). */
typedef struct fkey { uint8_t *k; uint32_t kl; uint64_t w; } fkey;

typedef struct fnode {
    uint64_t id;
    uint8_t kind, dirty;
    uint32_t height;                 /* leaf 0, internal 1 + child height; basement 0 */
    int pins;
    struct fnode *hnext, *lprev, *lnext;
    uint64_t mem;                    /* bytes charged to the cache */
    uint8_t *arena;                  /* the decoded blob; non-owned records point here */
    size_t arena_len;
    uint32_t n, cap;                 /* children (internal, leaf) */
    uint64_t *child;
    fkey *piv;                       /* n-1 pivots */
    uint64_t *part;                  /* internal: partition id per child (0: empty) */
    uint8_t *bloom;                  /* partition: FT_SEG_BLOOM bytes per segment, the
                                        keys of its messages (a get skips the segment) */
    uint32_t *bcount;                /* leaf: entries per basement; internal: messages
                                        per partition */
    uint64_t *bbytes;                /* leaf: bytes per basement; internal: per partition */
    fvec ents;                       /* basement: the entries; segment: the messages */
    uint64_t owned;                  /* basement/segment: record bytes outside the arena */
    uint64_t older;                  /* partition: the next older run's partition (0: none) */
    uint32_t runs;                   /* partition: runs in the chain from this one down */
} fnode;

typedef struct ftab { uint64_t pgno, len; } ftab;

struct kvt_engine {
    kvt_pager *p;
    uint64_t node_size, basement_size, cache_budget, big_value;
    uint32_t max_basements;          /* basements per leaf if set (tests); 0: the default */
    uint32_t min_basements;          /* node_size / basement_size */
    uint32_t max_runs;               /* runs per buffer (<= FT_MAX_RUNS); 0: FT_DEF_RUNS */
    uint64_t data_bytes;             /* bytes in all basements */
    uint32_t want_ns, want_bs;       /* sizes asked for (cfg or file), 0: default */
    uint64_t root, msn, entries, flushes;
    ftab *tab;                       /* indexed by node id; pgno 0 = no blob yet */
    uint8_t *live;                   /* node id in use */
    uint64_t ntab, captab;
    uint64_t *freeids;
    uint64_t nfree, capfree;
    uint64_t table_pgno, table_len;
    uint8_t *maxkey;                 /* greatest key ever put (ascending fast path) */
    uint32_t maxkl;
    int have_max;
    pthread_mutex_t mu;              /* cache map, LRU, pins, mem */
    fnode **hash;
    uint64_t nbuckets;
    fnode lru[3];                    /* sentinels, lnext = most recent: [0] basements,
                                        [1] segments, [2] leaves, internal headers and
                                        partitions
                                        (evicted last) */
    uint64_t mem, ncached;
    int writer;                      /* a put/del/flush is running (no readers) */
    uint64_t hits, misses, evictions, writebacks;
    uint64_t runs_started;           /* batches that became a new run (tuning, tests) */
    uint64_t wb_bytes[FT_SEGMENT + 1];  /* bytes written back per node kind (tuning) */
};

/* ft_rec.c - records and sorted vectors */
int  frec_new(uint8_t type, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl,
              uint64_t msn, frec *out);
int  frec_detach(frec *r);          /* make r own its bytes (copy out of an arena) */
void frec_free(frec *r);
int  frec_cmp(const frec *a, const frec *b);  /* key, then msn */
uint32_t fvec_lower(const fvec *v, const uint8_t *k, size_t kl);   /* first >= k */
uint32_t fvec_upper(const fvec *v, const uint8_t *k, size_t kl);   /* first > k */
int  fvec_reserve(fvec *v, uint32_t n);
int  fvec_insert(fvec *v, uint32_t pos, const frec *r);
void fvec_free(fvec *v);             /* frees owned records too */
uint32_t fpiv_child(const fkey *piv, uint32_t npiv, const uint8_t *k, size_t kl);
uint32_t fpiv_child_lt(const fkey *piv, uint32_t npiv, const uint8_t *k, size_t kl);
int  fkey_set(fkey *d, const uint8_t *k, size_t kl);
int  ft_blob_of(const frec *r, uint64_t *pgno, uint64_t *len);
int  ft_rec_release(kvt_engine *e, frec *r);  /* frees its blob (if any) and itself */
int  ft_rec_value(kvt_engine *e, const frec *r, kvt_buf *out);  /* appends r's value */
/* Fold the newer UPSERT *up (owned) onto the older record old (NULL: none): *up becomes
 * PUT/PUTBLOB old||operand (empty old for none or DEL), or UPSERT a||b over an UPSERT,
 * each cut to its newest KVT_MAX_VALUE bytes (kvt_buf_append_newest).
 * old is left as is (the caller releases it). */
int  ft_fold(kvt_engine *e, const frec *old, frec *up);

/* ft_node.c - (de)serialization */
extern int ft_test_no_index;        /* test hook: write blobs as before the record index */
extern int ft_test_tail_index;      /* test hook: write the index after the records */
int  ft_encode(const fnode *n, kvt_buf *out);
int  ft_decode(kvt_engine *e, uint64_t id, uint8_t *data, size_t len, fnode **out);
fnode *ft_node_alloc(uint8_t kind, uint32_t height);
int  ft_node_grow(fnode *n, uint32_t cap);
void ft_node_destroy(fnode *n);
uint64_t ft_node_mem(const fnode *n);
uint64_t ft_node_buffered(const fnode *n);  /* internal: bytes in all buffers */
int  ft_is_records(const fnode *n);         /* basement or segment: holds ents */
int  ft_is_list(const fnode *n);            /* leaf or partition: ids + counts + pivots */
int  ft_compact(fnode *b);                  /* basement: entries into one fresh arena */
void ft_bloom_build(fnode *pn, uint32_t j, const fvec *v);   /* segment j's filter */
void ft_bloom_add(fnode *pn, uint32_t j, const uint8_t *k, size_t kl);  /* one more key */
int  ft_bloom_maybe(const fnode *pn, uint32_t j, const uint8_t *k, size_t kl);
/* The same in two steps: a get hashes its key once for all the filters on its path. */
uint64_t ft_bloom_hash(const uint8_t *k, size_t kl);
int  ft_bloom_maybe_h(const fnode *pn, uint32_t j, uint64_t h);

/* ft_cache.c - node cache and translation table */
int  ft_cache_init(kvt_engine *e);
void ft_cache_destroy(kvt_engine *e);
int  ft_get(kvt_engine *e, uint64_t id, fnode **out);   /* pinned */
/* The cached node id pinned in *out (a hit), or KVT_NOTFOUND with *out NULL (counted as
 * a miss): nothing is loaded. */
int  ft_peek(kvt_engine *e, uint64_t id, fnode **out);
/* A walk of cached nodes under one lock: between ft_lock and ft_unlock, pin node id if
 * it is cached (a hit) or get NULL (nothing counted: unlock and ft_get it, which loads
 * it and counts the miss), and unpin. No I/O and no other ft_ call while locked. */
void ft_lock(kvt_engine *e);
void ft_unlock(kvt_engine *e);
fnode *ft_pin_locked(kvt_engine *e, uint64_t id);
void ft_unpin_locked(kvt_engine *e, fnode *n);
/* Where node id's blob is (KVT_ECORRUPT for an unknown id). */
int  ft_blob_loc(kvt_engine *e, uint64_t id, uint64_t *pgno, uint64_t *len);
/* ft_get of a node that must be of that kind (else KVT_ECORRUPT, nothing pinned). */
int  ft_get_kind(kvt_engine *e, uint64_t id, uint8_t kind, fnode **out);
/* Load the nodes of ids that are not cached, in parallel (one thread each beyond the
 * first, at most FT_PREFETCH_MAX), so that a reader that needs all of them waits for
 * about one read instead of n. The nodes loaded stay pinned in hold[] (returns how
 * many; the caller unpins them once it has pinned what it needs, so that loading the
 * later ones cannot evict the earlier). Best effort: failures are left to the caller's
 * ft_get. Reader context (the tree does not change meanwhile). */
#define FT_PREFETCH_MAX 16u
uint32_t ft_prefetch(kvt_engine *e, const uint64_t *ids, uint32_t n, fnode **hold);
/* 1 if node id is cached and dirty (changing it costs no extra write); no I/O. */
int  ft_cached_dirty(kvt_engine *e, uint64_t id);
void ft_unpin(kvt_engine *e, fnode *n);
int  ft_new(kvt_engine *e, uint8_t kind, uint32_t height, fnode **out);  /* pinned, dirty */
int  ft_drop(kvt_engine *e, fnode *n);      /* delete a pinned node from tree and cache */
void ft_dirty(kvt_engine *e, fnode *n);     /* mark dirty and re-account its memory */
int  ft_evict(kvt_engine *e);
int  ft_write_all(kvt_engine *e);
int  ft_tab_alloc(kvt_engine *e, uint64_t *id);
int  ft_tab_release(kvt_engine *e, uint64_t id);

/* ft_write.c */
int  ft_put_msg(kvt_engine *e, frec *m);    /* takes ownership of m */

/* ft_read.c */
int  ft_lookup(kvt_engine *e, const uint8_t *k, size_t kl, kvt_buf *out);
/* to (tl bytes, NULL: none): a forward scan stops before it (kvt_engine_ops.scan_until) */
int  ft_scan_until(kvt_engine *e, const uint8_t *from, size_t fl, const uint8_t *to, size_t tl,
                   kvt_scan_fn fn, void *ctx);
int  ft_scan(kvt_engine *e, const uint8_t *from, size_t fl, int inclusive, int reverse,
             kvt_scan_fn fn, void *ctx);

/* ft_check.c */
int  ft_check(kvt_engine *e);

#endif
