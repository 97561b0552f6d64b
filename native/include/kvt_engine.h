/* kvt_engine.h - the engine interface: an ordered map of byte keys to byte values
 * stored through a kvt_pager. The B+tree and the fractal tree implement it; the db
 * layer (db.c) owns everything else: directory, lock, WAL, recovery, batches,
 * checkpoints and the reader/writer lock.
 *
 * Calling rules (guaranteed by the db layer, relied upon by engines):
 *  - put/del/flush run with no concurrent call on the same engine;
 *  - get/scan/check may run concurrently with each other, never with a writer;
 *  - keys are 1..KVT_MAX_KEY bytes, values 0..KVT_MAX_VALUE bytes (checked by db.c).
 */
#ifndef KVT_ENGINE_H
#define KVT_ENGINE_H
#include "kvt_pager.h"

#define KVT_ENGINE_ABI 1
#include "kvt_limits.h"       /* KVT_MAX_KEY, KVT_MAX_VALUE */

typedef struct kvt_engine kvt_engine;

typedef struct kvt_engine_config {
    uint32_t page_size;        /* btree: page size */
    uint32_t node_size;        /* fractal: internal-node buffer budget in bytes */
    uint32_t basement_size;    /* fractal: basement node size (its pager page size) */
    uint64_t cache_bytes;
} kvt_engine_config;

typedef struct kvt_engine_stats {
    uint64_t height;           /* levels, a leaf-only tree is 1; 0 when empty */
    uint64_t entries;          /* live keys (exact for btree, may be estimated) */
    uint64_t nodes;            /* pages or nodes in the tree (may be estimated) */
    uint64_t flushes;          /* fractal: buffer flushes done; btree: 0 */
    /* An engine's own node cache above the pager (0 when it has none): the db layer
     * reports them added to the pager's counters. */
    uint64_t cache_hits, cache_misses, evictions;
} kvt_engine_stats;

/* A scan position saved by scan_at: opaque to the caller, engine-defined. */
#define KVT_SCAN_POS_WORDS 72
typedef struct kvt_scan_pos { uint64_t w[KVT_SCAN_POS_WORDS]; } kvt_scan_pos;

/* Visitor for scan: return 0 to continue, 1 to stop, < 0 to abort with that error. */
typedef int (*kvt_scan_fn)(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl);

/* A full leaf page a record's log entry names instead of its entries (log_end). */
typedef struct kvt_logged_page {
    kvt_pgno pgno;
    uint32_t crc;              /* the page's checksum field as written */
    uint32_t first_len, last_len;
    const uint8_t *first, *last;   /* its smallest and largest key */
} kvt_logged_page;

typedef struct kvt_engine_ops {
    uint32_t abi;              /* KVT_ENGINE_ABI */
    const char *name;          /* "btree", "fractal" */
    uint32_t engine_id;        /* stored in the file's meta page */
    /* Page size the pager must use for a new file, from the engine config. */
    uint32_t (*page_size)(const kvt_engine_config *cfg);
    /* Open on a pager; meta/meta_len are the engine bytes of the last checkpoint
     * (meta_len 0: a new, empty tree). */
    int  (*open)(kvt_pager *p, const kvt_engine_config *cfg, const uint8_t *meta,
                 size_t meta_len, kvt_engine **out);
    void (*close)(kvt_engine *e);
    /* KVT_OK with the value in *out, or KVT_NOTFOUND. */
    int  (*get)(kvt_engine *e, const uint8_t *k, size_t kl, kvt_buf *out);
    int  (*put)(kvt_engine *e, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl);
    /* existed may be NULL (blind delete: an engine may then skip the lookup). */
    int  (*del)(kvt_engine *e, const uint8_t *k, size_t kl, int *existed);
    /* Visit entries in key order from `from` (NULL: the first/last key): forward gives
     * keys >= from (> from if !inclusive), reverse gives keys <= from (< if !inclusive)
     * in descending order. */
    int  (*scan)(kvt_engine *e, const uint8_t *from, size_t fl, int inclusive, int reverse,
                 kvt_scan_fn fn, void *ctx);
    /* Before a checkpoint: bring all state into pager pages and write the engine bytes
     * (<= KVT_ENGINE_META_MAX) that open() needs to find it again. */
    int  (*flush)(kvt_engine *e, uint8_t *meta, size_t *meta_len);
    /* Full invariant walk (order, fill, structure) calling kvt_pager_check_ref for
     * every page; KVT_ECORRUPT with kvt_seterr detail on damage. */
    int  (*check)(kvt_engine *e);
    void (*stats)(kvt_engine *e, kvt_engine_stats *out);
    /* Optional (NULL: not supported natively; the db layer then does get + put).
     * Append: the key's value becomes the newest KVT_MAX_VALUE bytes of its old value
     * (empty when absent) followed by the operand; never ETOOLARGE. A writer call, like put. */
    int  (*upsert)(kvt_engine *e, const uint8_t *k, size_t kl, const uint8_t *operand,
                   size_t ol);
    /* Optional (NULL: callers use scan and stop themselves). A forward scan of the keys
     * in [from, to): for an engine whose scan does work per key range (the fractal
     * tree merges buffered messages), the bound keeps a short seek short. */
    int  (*scan_until)(kvt_engine *e, const uint8_t *from, size_t fl, const uint8_t *to,
                       size_t tl, kvt_scan_fn fn, void *ctx);
    /* Optional (NULL: the db layer calls scan again from the last key). As scan; in
     * addition, when the visitor stops the scan (returns 1), *pos records the entry it
     * refused, and a later scan_at in the same direction with that *pos resumes there
     * (from/inclusive ignored) if the engine was not written in between; otherwise, or
     * with pos->w[0] == 0, it seeks from/inclusive like scan. Any other end of the scan
     * clears pos->w[0]. A reader call, like scan. */
    int  (*scan_at)(kvt_engine *e, const uint8_t *from, size_t fl, int inclusive,
                    int reverse, kvt_scan_pos *pos, kvt_scan_fn fn, void *ctx);
    /* Optional (NULL: nothing to do). Called by the db layer after the ops of one batch
     * record were applied (also when one failed), still under the exclusive lock: an
     * engine may keep state across the puts of one record (the B+tree keeps the
     * rightmost write path pinned for ascending keys) and must drop it here. An error
     * (a failed write of pages the engine wrote early) fails the record's commit. */
    int  (*apply_end)(kvt_engine *e);
    /* Optional, all three or none (native/db/paged.c: full leaves logged by reference).
     * log_begin: the record applied next is strictly ascending; collect the pages it
     * fills completely and retires. log_end (after apply_end; ok 0: the record failed,
     * just stop collecting): the collected pages that kvt_pager_log_pages accepted, in
     * key order, each with its first and last key; the array and keys stay valid until
     * the next log_begin. put_page (recovery): put every entry of such a page, given as
     * verified bytes read from the file. */
    void (*log_begin)(kvt_engine *e);
    int  (*log_end)(kvt_engine *e, int ok, const struct kvt_logged_page **out, size_t *n);
    int  (*put_page)(kvt_engine *e, kvt_pgno pgno, const uint8_t *page);
} kvt_engine_ops;

extern const kvt_engine_ops kvt_btree_ops;
extern const kvt_engine_ops kvt_fractal_ops;

#endif
