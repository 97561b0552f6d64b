/* bt_int.h - private to the B+tree engine (native/btree/).
 *
 * Page layout (after the pager's KVT_PAGE_HDR bytes; the page type byte is the pager's
 * byte 4: BT_LEAF or BT_BRANCH):
 *   [32] u16 count        cells in the page
 *   [34] u16 reserved
 *   [36] u32 content_lo   offset of the lowest cell byte (page_size when empty)
 *   [40] u32 garbage      bytes of dead cells inside [content_lo, page_size)
 *   [44] u32 reserved
 *   [48] u64 leftmost     branch: the child holding keys below cell 0's key
 *   [56] u16 slot[count]  cell offsets, sorted by key
 *   ...  free space ...
 *   [content_lo..]        cells, in any order
 *
 * Leaf cell:   [u16 klen][u32 vlen | BT_VOVF][key local][value | u64 overflow pgno]
 * Branch cell: [u16 klen][u64 child][key local]
 * Branch semantics: child(0) = leftmost holds keys < key(0); child(i+1) = cell i's child
 * holds keys in [key(i), key(i+1)).
 *
 * Long keys. A cell is at most max_local bytes (a quarter of the usable space minus its
 * slot), so every page holds at least 4 cells and a split always succeeds. A key longer
 * than kmax bytes is "spilled": the cell keeps its first kpre = kmax - 8 bytes (so most
 * comparisons are decided in the page) followed by the u64 first page of an overflow
 * blob that holds the whole key. With 4 KiB pages kmax is 994; with 16 KiB and larger
 * pages every legal key (<= 4096 bytes) is stored inline. Values that do not fit in the
 * cell (cell > max_local) go to an overflow blob.
 * Each spilled key blob is owned by exactly one cell (a separator gets its own copy).
 */
#ifndef BT_INT_H
#define BT_INT_H
#include <pthread.h>
#include "kvt_engine.h"
#include "kvt_error.h"

#define BT_LEAF   16
#define BT_BRANCH 17

#define BT_OFF_COUNT    32
#define BT_OFF_LO       36
#define BT_OFF_GARBAGE  40
#define BT_OFF_LEFTMOST 48
#define BT_HDR          56

#define BT_VOVF   0x80000000u          /* vlen flag: value lives in an overflow blob */
#define BT_LEAF_FIXED   6              /* klen + vlen */
#define BT_BRANCH_FIXED 10             /* klen + child */
#define BT_MAX_HEIGHT   32             /* deeper than this is damage, not data */
#define BT_MIN_PAGE     4096u
#define BT_MAX_PAGE     65536u         /* slot offsets are u16 */
#define BT_META_MAGIC   0x42545245u    /* "ERTB" */
#define BT_META_VERSION 1u

/* A read-only digest of the root branch for readers: the first 8 key bytes of each cell
 * (big-endian, zero-padded) and every child, in two dense arrays. Most lookups then route
 * through the root without pinning it and without touching its scattered cells. Valid
 * while built_for == the tree's version (bumped by every put/delete, which run under the
 * db's exclusive lock, so a valid digest cannot change under a reader). */
typedef struct bt_rootidx {
    pthread_mutex_t mu;       /* serialises (re)builds by concurrent readers */
    uint64_t built_for;       /* version it describes (atomic); 0: none */
    uint32_t n;               /* root cells */
    uint64_t *prefix;         /* n prefixes */
    kvt_pgno *child;          /* n + 1 children: child[0] is the leftmost */
} bt_rootidx;

/* The write path: every page from the root to a leaf, pinned and writable. */
typedef struct bt_path {
    kvt_page *pg[BT_MAX_HEIGHT];   /* pinned, writable; pg[0] is the root */
    uint32_t idx[BT_MAX_HEIGHT];   /* child index taken at each branch */
    uint32_t depth;                /* pages in the path */
} bt_path;

/* The append cursor (bt_append.c): after a put past the tree's largest key, the
 * rightmost write path stays pinned and writable for the next put of the same record,
 * valid while version == the tree's version. Dropped at the end of every record
 * (apply_end), before any other write, at flush and at close. */
typedef struct bt_append {
    bt_path path;
    uint64_t version;
    int live;
} bt_append;

/* Leaves collected for logging by reference (bt_log.c) while one ascending record is
 * applied: page numbers, sealed checksums and the first/last keys (offsets in keys). */
typedef struct bt_log_entry {
    kvt_pgno pgno;
    uint32_t crc, foff, flen, loff, llen;
} bt_log_entry;

typedef struct bt_log {
    int on;
    size_t n, cap;
    bt_log_entry *e;
    kvt_buf keys;
    kvt_pgno *pg;            /* cap each: the arguments of kvt_pager_log_pages */
    uint32_t *crc;
    uint8_t *ok;
    struct kvt_logged_page *out;
} bt_log;

typedef struct bt_tree {
    kvt_pager *pager;
    uint32_t ps;            /* page size */
    uint32_t usable;        /* ps - BT_HDR */
    uint32_t max_local;     /* largest cell */
    uint32_t min_fill;      /* a non-root page with fewer used bytes is rebalanced */
    uint32_t kmax, kpre;    /* longest inline key; spilled key prefix length */
    kvt_pgno root;          /* KVT_PGNO_NONE when empty */
    uint32_t height;
    uint64_t entries;
    uint64_t pages;         /* pages in the tree (not counting overflow) */
    uint8_t *tmp;           /* writer-only scratch page (compaction) */
    uint64_t version;       /* bumped by every put/delete (writer only) */
    bt_rootidx ridx;
    bt_append app;          /* writer only */
    bt_log log;             /* writer only */
} bt_tree;

/* A decoded, bounds-checked cell. Pointers point into the pinned page. */
typedef struct bt_cell {
    const uint8_t *p;       /* cell start */
    uint32_t size;          /* bytes the cell occupies */
    uint32_t klen;          /* full key length */
    const uint8_t *key;     /* local key bytes */
    uint32_t kloc;          /* local key bytes (klen, or kpre when spilled) */
    kvt_pgno kblob;         /* spilled key blob, or 0 */
    uint32_t vlen;          /* leaf: value length */
    const uint8_t *val;     /* leaf: inline value, NULL if overflow */
    kvt_pgno vblob;         /* leaf: value blob, or 0 */
    kvt_pgno child;         /* branch: child page */
} bt_cell;

/* Per-operation scratch for full keys of spilled cells (readers run concurrently, so
 * nothing of this lives in the tree). */
typedef struct bt_scratch {
    kvt_buf a, b;
} bt_scratch;

/* ---- page access (bt_page.c) ---- */
static inline uint32_t bt_count(const uint8_t *d) { return kvt_get16(d + BT_OFF_COUNT); }
static inline uint32_t bt_lo(const uint8_t *d) { return kvt_get32(d + BT_OFF_LO); }
static inline uint32_t bt_garbage(const uint8_t *d) { return kvt_get32(d + BT_OFF_GARBAGE); }
static inline kvt_pgno bt_leftmost(const uint8_t *d) { return kvt_get64(d + BT_OFF_LEFTMOST); }
static inline int bt_is_leaf(const uint8_t *d) { return d[4] == BT_LEAF; }

void bt_page_init(const bt_tree *t, uint8_t *d, int leaf);
/* Header sanity: type as expected (leaf < 0: either), count/content_lo within the page. */
int  bt_page_verify(const bt_tree *t, const kvt_page *pg, int leaf);
int  bt_cell_at(const bt_tree *t, const kvt_page *pg, uint32_t i, bt_cell *c);
uint32_t bt_used(const bt_tree *t, const uint8_t *d);      /* slots + live cells */
uint32_t bt_free_contig(const uint8_t *d);
kvt_pgno bt_child(const bt_tree *t, const kvt_page *pg, uint32_t j, int *rc);
void bt_set_child(uint8_t *d, uint32_t j, kvt_pgno child);  /* page already verified */
/* Insert raw cell bytes at slot i; the caller checked that it fits (bt_fits), compacting
 * first if needed. KVT_ECORRUPT (page untouched) if the page's cells or header lie. */
int  bt_insert_raw(const bt_tree *t, kvt_page *pg, uint32_t i, const uint8_t *cell, uint32_t n);
int  bt_fits(const bt_tree *t, const uint8_t *d, uint32_t n);
void bt_remove_slot(uint8_t *d, uint32_t i, uint32_t cell_size);
/* Defragment: every slot and cell length checked; KVT_ECORRUPT leaves the page as it was. */
int  bt_compact(const bt_tree *t, kvt_page *pg);

/* ---- keys (bt_key.c) ---- */
/* Leaf slot i of page d when its cell is the common kind (key and value inline) and
 * lies inside the page: key and value pointers without the full decode. 0: take the
 * checked path (visit). The bounds are the ones decode_in checks for such a cell. */
static inline int bt_inline_cell(const bt_tree *t, const uint8_t *d, uint32_t i,
                                 const uint8_t **k, uint32_t *kl, const uint8_t **v,
                                 uint32_t *vl) {
    uint32_t off = kvt_get16(d + BT_HDR + 2u * i);
    if (off < bt_lo(d) || off + BT_LEAF_FIXED > t->ps) return 0;
    const uint8_t *p = d + off;
    uint32_t klen = kvt_get16(p), vraw = kvt_get32(p + 2);
    if (klen == 0 || klen > t->kmax || (vraw & BT_VOVF)) return 0;
    if ((uint64_t)off + BT_LEAF_FIXED + klen + vraw > t->ps) return 0;
    *k = p + BT_LEAF_FIXED;
    *kl = klen;
    *v = *k + klen;
    *vl = vraw;
    return 1;
}

/* The first 8 bytes of a key as a big-endian word, zero-padded: words that differ order
 * their keys like memcmp; equal words leave the decision to a full comparison. */
static inline uint64_t bt_be_prefix(const uint8_t *p, size_t n) {
    if (n >= 8) return __builtin_bswap64(kvt_get64(p));
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++) w |= (uint64_t)p[i] << (56 - 8 * i);
    return w;
}
uint32_t bt_key_local(const bt_tree *t, size_t klen);
/* Compare a search key with a cell's key (<0, 0, >0 like memcmp); *rc set on error. */
int  bt_cmp(const bt_tree *t, const uint8_t *k, size_t kl, const bt_cell *c,
            bt_scratch *s, int *rc);
/* The full key of a cell: in the page, or read into buf. */
int  bt_full_key(const bt_tree *t, const bt_cell *c, kvt_buf *buf, const uint8_t **k);
/* Binary search: *idx = first slot with key >= k, *eq = whether that key equals k. */
int  bt_search(const bt_tree *t, const kvt_page *pg, const uint8_t *k, size_t kl,
               bt_scratch *s, uint32_t *idx, int *eq);
/* Child index 0..count to descend into for k. */
int  bt_route(const bt_tree *t, const kvt_page *pg, const uint8_t *k, size_t kl,
              bt_scratch *s, uint32_t *j);
/* Encode the key part of a cell at dst (spilling to a new blob if long). */
int  bt_key_encode(bt_tree *t, const uint8_t *k, size_t kl, uint8_t *dst);
int  bt_build_leaf(bt_tree *t, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl,
                   uint8_t *dst, uint32_t *n);
int  bt_build_branch(bt_tree *t, const uint8_t *k, size_t kl, kvt_pgno child,
                     uint8_t *dst, uint32_t *n);
int  bt_free_cell_blobs(bt_tree *t, const bt_cell *c);
int  bt_read_value(const bt_tree *t, const bt_cell *c, kvt_buf *out);
void bt_scratch_free(bt_scratch *s);

/* ---- structure changes (bt_split.c, bt_merge.c) ---- */
void bt_path_release(bt_tree *t, bt_path *path);
/* Insert cell bytes at slot i of path level lv, splitting up the path as needed. */
int  bt_insert_at(bt_tree *t, bt_path *path, uint32_t lv, uint32_t i,
                  const uint8_t *cell, uint32_t n, int append);
/* Before splitting a full leaf (random inserts): even it out with an adjacent sibling
 * that has room, inserting the cell; *done 0 if no sibling could take it. B*-tree style,
 * this raises leaf fill from ~69% to ~80% (1M random 116-byte pairs: 45K leaves -> 38K),
 * so more of a large tree fits the cache. */
int  bt_shift_insert(bt_tree *t, bt_path *path, uint32_t lv, uint32_t i,
                     const uint8_t *cell, uint32_t n, int *done);
/* The branch cell separating adjacent leaf cells a < b (shortest prefix of b > a). */
int  bt_leaf_separator(bt_tree *t, const uint8_t *a, const uint8_t *b, kvt_pgno child,
                       uint8_t *dst, uint32_t *n);
/* After a removal at level lv: merge or redistribute underfull pages up the path. */
int  bt_rebalance(bt_tree *t, bt_path *path, uint32_t lv);

/* Cell lists: copies of cells, used to rebuild pages during split/merge. */
typedef struct bt_list {
    uint8_t *buf;             /* cell bytes */
    uint32_t *off, *len;      /* per cell */
    uint32_t n, used, cap_cells, cap_bytes;
} bt_list;
int  bt_list_init(bt_list *l, uint32_t cells, uint32_t bytes);
void bt_list_free(bt_list *l);
int  bt_list_push(bt_list *l, const uint8_t *cell, uint32_t n);
int  bt_list_add_page(const bt_tree *t, bt_list *l, const kvt_page *pg);
/* KVT_ECORRUPT (naming pg) unless cells [from, to) of the list fit one page: the lists
 * come from decoded cells, whose sizes a forged page can make disagree with its header. */
int  bt_list_check(const bt_tree *t, const kvt_page *pg, const bt_list *l, uint32_t from,
                   uint32_t to);
/* Rebuild page pg with cells [from, to) of the list (bt_list_check first: on error the
 * page is untouched). */
int  bt_list_fill(const bt_tree *t, kvt_page *pg, const bt_list *l, uint32_t from, uint32_t to);
/* Split point: the first cell of the right half (leaf) or the cell promoted to the
 * parent (branch), chosen so that the smaller half is as large as possible. */
uint32_t bt_list_mid(const bt_list *l, int leaf);

/* ---- append fast path (bt_append.c) ---- */
/* Put k (already the tree's version bumped) through the append cursor when it is live
 * and k sorts after the tree's largest key: *done 1 when it was inserted. Otherwise the
 * cursor is dropped and *done 0 (the caller takes the normal path). */
int  bt_append_put(bt_tree *t, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl,
                   int *done);
/* After a normal put that appended into the rightmost leaf without a split: keep its
 * path as the cursor (takes over the pins). */
void bt_append_keep(bt_tree *t, bt_path *path);
void bt_append_drop(bt_tree *t);

/* ---- leaves logged by reference (bt_log.c) ---- */
/* Retire a leaf the append cursor filled (kvt_pager_retire), collecting it when a
 * logged record is being applied and every cell is inline. */
int  bt_log_retire(bt_tree *t, kvt_page *leaf);
void bt_log_free(bt_tree *t);
/* The engine ops (kvt_engine.h): log_begin, log_end, put_page (put: the engine's put). */
void bt_log_begin(bt_tree *t);
int  bt_log_end(bt_tree *t, int ok, const struct kvt_logged_page **out, size_t *n);
int  bt_log_put_page(bt_tree *t, kvt_pgno pgno, const uint8_t *page,
                     int (*put)(bt_tree *, const uint8_t *, size_t, const uint8_t *, size_t));

/* ---- root digest (bt_root.c) ---- */
void bt_rootidx_init(bt_tree *t);
void bt_rootidx_free(bt_tree *t);
/* The root's child for k from the digest: 1 and *child, or 0 (no digest, the root is a
 * leaf, or k ties with a separator on its first 8 bytes): then search the root page. */
int  bt_rootidx_route(bt_tree *t, const uint8_t *k, size_t kl, kvt_pgno *child);

/* ---- scan / check (bt_scan.c, bt_check.c) ---- */
int bt_scan(bt_tree *t, const uint8_t *from, size_t fl, int inclusive, int reverse,
            kvt_scan_pos *pos,
            kvt_scan_fn fn, void *ctx);
int bt_check(bt_tree *t);

#endif
