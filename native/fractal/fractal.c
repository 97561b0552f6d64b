/* fractal.c - kvt_fractal_ops: open/close, the engine meta bytes and the translation
 * table blob, and the thin entry points over ft_write.c / ft_read.c / ft_check.c.
 *
 * Engine meta (little-endian, 96 bytes):
 *   u32 magic, u32 version, u64 root, u64 table pgno, u64 table len, u64 msn,
 *   u64 entries, u64 flushes, u32 node_size, u32 basement_size (0: default),
 *   u64 data bytes, u64 reserved[2]
 * Table blob: u32 magic, u32 max key length (0: none), max key, u64 n, n x (u64 pgno, u64 len)
 * (entry 0 unused; pgno 0 = free id).
 */
#include "ft_int.h"

#define META_LEN 96u

static uint32_t ft_page_size(const kvt_engine_config *cfg) { (void)cfg; return FT_PAGE_SIZE; }

/* Sizes (see README.md for the measurements behind them). The node size is the buffer
 * budget of an internal node; a leaf holds FT_LEAF_FACTOR times as many bytes in
 * basements. Buffers are partitioned (only the header and the segments on a path are
 * read), so the total buffer space may exceed the cache; but a flush loads one whole
 * child buffer, so by default the node size shrinks with a small cache. */
static void apply_config(kvt_engine *e, const kvt_engine_config *cfg, uint32_t ns, uint32_t bs) {
    uint64_t cache = cfg && cfg->cache_bytes ? cfg->cache_bytes : 64ull << 20;
    e->cache_budget = cache - cache / 4;   /* headroom: malloc overhead, pager frames */
    uint64_t def_ns = FT_DEF_NODE_SIZE;
    while (def_ns > 64 * 1024 && def_ns > e->cache_budget / 3) def_ns /= 2;
    e->want_ns = cfg && cfg->node_size ? cfg->node_size : ns;     /* 0: default */
    e->want_bs = cfg && cfg->basement_size ? cfg->basement_size : bs;
    e->node_size = e->want_ns ? e->want_ns : def_ns;
    uint64_t def_bs = FT_DEF_BASEMENT_SIZE;
    while (def_bs > 4096 && def_bs > e->node_size / 4) def_bs /= 2;
    e->basement_size = e->want_bs ? e->want_bs : def_bs;
    if (e->node_size < 4096) e->node_size = 4096;
    if (e->basement_size < 512) e->basement_size = 512;
    uint64_t mb = e->node_size / e->basement_size;
    e->min_basements = mb < 2 ? 2 : mb > 256 ? 256 : (uint32_t)mb;
    e->max_basements = 0;
    e->big_value = e->basement_size / 8;
}

static int new_tree(kvt_engine *e) {
    fnode *leaf, *b = NULL;
    KVT_TRY(ft_new(e, FT_LEAF, 0, &leaf));
    int rc = ft_new(e, FT_BASEMENT, 0, &b);
    if (rc == KVT_OK) rc = ft_node_grow(leaf, 1);
    if (rc == KVT_OK) {
        leaf->child[0] = b->id;
        leaf->bcount[0] = 0;
        leaf->bbytes[0] = 0;
        leaf->n = 1;
        e->root = leaf->id;
        ft_dirty(e, leaf);
        ft_dirty(e, b);
    }
    ft_unpin(e, b);
    ft_unpin(e, leaf);
    return rc;
}

static int tab_corrupt(kvt_engine *e, const char *what) {
    return kvt_seterr(KVT_ECORRUPT, "fractal: %s: node table (blob at page %llu) damaged: %s",
                      kvt_pager_path(e->p), (unsigned long long)e->table_pgno, what);
}

static int tab_decode(kvt_engine *e, const uint8_t *p, size_t len) {
    if (len < 16 || kvt_get32(p) != FT_TAB_MAGIC) return tab_corrupt(e, "magic");
    uint32_t mkl = kvt_get32(p + 4);
    if (mkl > KVT_MAX_KEY || len < 16 + (size_t)mkl) return tab_corrupt(e, "max key");
    uint64_t n = kvt_get64(p + 8 + mkl);
    const uint8_t *t = p + 16 + mkl;
    if (n == 0 || (len - 16 - mkl) / 16 != n || (len - 16 - mkl) % 16) return tab_corrupt(e, "length");
    if (mkl) {
        e->maxkey = malloc(mkl);
        if (!e->maxkey) return kvt_seterr(KVT_ENOMEM, "fractal: no memory for the max key");
        memcpy(e->maxkey, p + 8, mkl);
        e->maxkl = mkl;
        e->have_max = 1;
    }
    for (uint64_t id = 1; id < n; id++) {
        uint64_t got;
        KVT_TRY(ft_tab_alloc(e, &got));
        e->tab[got] = (ftab){ kvt_get64(t + id * 16), kvt_get64(t + id * 16 + 8) };
    }
    for (uint64_t id = n; id-- > 1;)              /* ids without a blob are free */
        if (e->tab[id].pgno == 0) KVT_TRY(ft_tab_release(e, id));
    return KVT_OK;
}

static int tab_encode(const kvt_engine *e, kvt_buf *b) {
    uint8_t h[8];
    uint64_t n = e->ntab ? e->ntab : 1;
    KVT_TRY(kvt_buf_reserve(b, 16 + e->maxkl + n * 16));
    kvt_put32(h, FT_TAB_MAGIC);
    kvt_put32(h + 4, e->have_max ? e->maxkl : 0);
    KVT_TRY(kvt_buf_append(b, h, 8));
    if (e->have_max) KVT_TRY(kvt_buf_append(b, e->maxkey, e->maxkl));
    kvt_put64(h, n);
    KVT_TRY(kvt_buf_append(b, h, 8));
    for (uint64_t id = 0; id < n; id++) {
        uint8_t x[16] = {0};
        if (id > 0 && e->live[id]) { kvt_put64(x, e->tab[id].pgno); kvt_put64(x + 8, e->tab[id].len); }
        KVT_TRY(kvt_buf_append(b, x, 16));
    }
    return KVT_OK;
}

static int open_existing(kvt_engine *e, const uint8_t *m, size_t len) {
    if (len < META_LEN || kvt_get32(m) != FT_META_MAGIC)
        return kvt_seterr(KVT_ECORRUPT, "fractal: %s: engine meta damaged", kvt_pager_path(e->p));
    if (kvt_get32(m + 4) != FT_VERSION)
        return kvt_seterr(KVT_EVERSION, "fractal: %s: format version %u not supported",
                          kvt_pager_path(e->p), kvt_get32(m + 4));
    e->root = kvt_get64(m + 8);
    e->table_pgno = kvt_get64(m + 16);
    e->table_len = kvt_get64(m + 24);
    e->msn = kvt_get64(m + 32);
    e->entries = kvt_get64(m + 40);
    e->flushes = kvt_get64(m + 48);
    e->data_bytes = kvt_get64(m + 64);
    kvt_buf b = {0};
    int rc = kvt_blob_read(e->p, e->table_pgno, e->table_len, &b);
    if (rc == KVT_OK) rc = tab_decode(e, b.data, b.len);
    kvt_buf_free(&b);
    if (rc == KVT_OK && (e->root == 0 || e->root >= e->ntab || !e->live[e->root]))
        rc = tab_corrupt(e, "root id");
    return rc;
}

static void ft_close(kvt_engine *e) {
    if (!e) return;
    ft_cache_destroy(e);
    free(e->tab);
    free(e->live);
    free(e->freeids);
    free(e->maxkey);
    free(e);
}

static int ft_open(kvt_pager *p, const kvt_engine_config *cfg, const uint8_t *meta,
                   size_t meta_len, kvt_engine **out) {
    kvt_engine *e = calloc(1, sizeof *e);
    if (!e) return kvt_seterr(KVT_ENOMEM, "fractal: no memory for the engine");
    e->p = p;
    int rc = ft_cache_init(e);
    if (rc == KVT_OK && meta_len) {
        rc = open_existing(e, meta, meta_len);
        if (rc == KVT_OK) apply_config(e, cfg, kvt_get32(meta + 56), kvt_get32(meta + 60));
    } else if (rc == KVT_OK) {
        apply_config(e, cfg, 0, 0);
        rc = new_tree(e);
    }
    if (rc < 0) { ft_close(e); return rc; }
    *out = e;
    return KVT_OK;
}

static int ft_get_op(kvt_engine *e, const uint8_t *k, size_t kl, kvt_buf *out) {
    return ft_lookup(e, k, kl, out);
}

static int ft_put_op(kvt_engine *e, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    frec m;
    if (vl > e->big_value) {                     /* out of line: the message carries a ref */
        kvt_pgno pg;
        uint8_t ref[FT_BLOBREF];
        KVT_TRY(kvt_blob_write(e->p, v, vl, &pg));
        kvt_put64(ref, pg);
        kvt_put64(ref + 8, vl);
        int rc = frec_new(FT_PUTBLOB, k, kl, ref, sizeof ref, e->msn + 1, &m);
        if (rc < 0) { kvt_blob_free(e->p, pg); return rc; }
    } else {
        KVT_TRY(frec_new(FT_PUT, k, kl, v, vl, e->msn + 1, &m));
    }
    e->msn++;
    return ft_put_msg(e, &m);
}

static int ft_del_op(kvt_engine *e, const uint8_t *k, size_t kl, int *existed) {
    if (existed) {
        kvt_buf tmp = {0};
        int rc = ft_lookup(e, k, kl, &tmp);
        kvt_buf_free(&tmp);
        if (rc < 0) return rc;
        *existed = rc == KVT_OK;
        if (!*existed) return KVT_OK;            /* nothing to hide */
    }
    frec m;
    KVT_TRY(frec_new(FT_DEL, k, kl, NULL, 0, e->msn + 1, &m));
    e->msn++;
    return ft_put_msg(e, &m);
}

/* Blind append: one UPSERT message, folded on its way down (ft_fold), no read here. */
static int ft_upsert_op(kvt_engine *e, const uint8_t *k, size_t kl, const uint8_t *operand,
                        size_t ol) {
    frec m;
    KVT_TRY(frec_new(FT_UPSERT, k, kl, operand, ol, e->msn + 1, &m));
    e->msn++;
    return ft_put_msg(e, &m);
}

static int ft_scan_op(kvt_engine *e, const uint8_t *from, size_t fl, int inclusive, int reverse,
                      kvt_scan_fn fn, void *ctx) {
    return ft_scan(e, from, fl, inclusive, reverse, fn, ctx);
}

static int ft_flush_op(kvt_engine *e, uint8_t *meta, size_t *meta_len) {
    e->writer = 1;
    kvt_buf b = {0};
    kvt_pgno pg = 0;
    int rc = ft_write_all(e);
    if (rc == KVT_OK) rc = tab_encode(e, &b);
    if (rc == KVT_OK) rc = kvt_blob_write(e->p, b.data, b.len, &pg);
    if (rc == KVT_OK && e->table_pgno) rc = kvt_blob_free(e->p, e->table_pgno);
    if (rc == KVT_OK) { e->table_pgno = pg; e->table_len = b.len; }
    kvt_buf_free(&b);
    if (rc == KVT_OK) rc = ft_evict(e);
    e->writer = 0;
    if (rc < 0) return rc;
    memset(meta, 0, META_LEN);
    kvt_put32(meta, FT_META_MAGIC);
    kvt_put32(meta + 4, FT_VERSION);
    kvt_put64(meta + 8, e->root);
    kvt_put64(meta + 16, e->table_pgno);
    kvt_put64(meta + 24, e->table_len);
    kvt_put64(meta + 32, e->msn);
    kvt_put64(meta + 40, e->entries);
    kvt_put64(meta + 48, e->flushes);
    kvt_put32(meta + 56, e->want_ns);            /* explicit choices only */
    kvt_put32(meta + 60, e->want_bs);
    kvt_put64(meta + 64, e->data_bytes);
    *meta_len = META_LEN;
    return KVT_OK;
}

static int ft_check_op(kvt_engine *e) { return ft_check(e); }

static void ft_stats_op(kvt_engine *e, kvt_engine_stats *out) {
    fnode *r;
    memset(out, 0, sizeof *out);
    if (ft_get(e, e->root, &r) == KVT_OK) {
        out->height = r->kind == FT_LEAF && e->entries == 0 ? 0 : r->height + 1;
        ft_unpin(e, r);
    }
    out->entries = e->entries;
    out->nodes = e->ntab > 1 ? e->ntab - 1 - e->nfree : 0;
    out->flushes = e->flushes;
    pthread_mutex_lock(&e->mu);
    out->cache_hits = e->hits;
    out->cache_misses = e->misses;
    out->evictions = e->evictions;
    pthread_mutex_unlock(&e->mu);
}

const kvt_engine_ops kvt_fractal_ops = {
    .abi = KVT_ENGINE_ABI,
    .name = "fractal",
    .engine_id = 2,
    .page_size = ft_page_size,
    .open = ft_open,
    .close = ft_close,
    .get = ft_get_op,
    .put = ft_put_op,
    .del = ft_del_op,
    .scan = ft_scan_op,
    .flush = ft_flush_op,
    .check = ft_check_op,
    .stats = ft_stats_op,
    .upsert = ft_upsert_op,
    .scan_until = ft_scan_until,
};
