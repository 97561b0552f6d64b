/* ft_cache.c - the node cache (deserialized nodes by id) and the translation table.
 *
 * A node in the cache is either pinned (someone holds a pointer to it) or on the LRU
 * list only. Eviction takes unpinned nodes from the LRU tail, basements first, then
 * buffer segments, then leaves, internal headers and partitions (segment lists): the
 * headers are what every query walks through and are small, so they stay cached;
 * segments are kept over basements because a query needs one segment per level of its
 * path but only one basement. A dirty one is written
 * back first, which only the writer may do (readers skip dirty nodes: they may not call
 * the pager's write functions). The cache may exceed its budget while everything is
 * pinned or dirty during a read; the writer brings it back under at its next step.
 *
 * Writing a node back = encode, kvt_blob_write to a fresh blob, kvt_blob_free of the
 * previous one (the pager keeps it until the next checkpoint is durable), update the
 * table entry. Parents never change: they hold ids.
 */
#include <stdio.h>
#include "ft_int.h"

static uint64_t bucket(const kvt_engine *e, uint64_t id) {
    return (id * 0x9E3779B97F4A7C15ull) >> 20 & (e->nbuckets - 1);
}

int ft_cache_init(kvt_engine *e) {
    e->nbuckets = 1u << 14;
    e->hash = calloc(e->nbuckets, sizeof *e->hash);
    if (!e->hash) return kvt_seterr(KVT_ENOMEM, "fractal: no memory for the node cache");
    for (int i = 0; i < 3; i++) e->lru[i].lnext = e->lru[i].lprev = &e->lru[i];
    if (pthread_mutex_init(&e->mu, NULL))
        return kvt_seterr(KVT_ENOMEM, "fractal: cannot create the cache mutex");
    return KVT_OK;
}

/* ---- map and LRU, called with e->mu held ---- */

static fnode *map_find(kvt_engine *e, uint64_t id) {
    for (fnode *n = e->hash[bucket(e, id)]; n; n = n->hnext)
        if (n->id == id) return n;
    return NULL;
}

static void lru_unlink(fnode *n) {
    n->lprev->lnext = n->lnext;
    n->lnext->lprev = n->lprev;
}

static void lru_front(kvt_engine *e, fnode *n) {
    fnode *l = &e->lru[n->kind == FT_BASEMENT ? 0 : n->kind == FT_SEGMENT ? 1 : 2];
    n->lnext = l->lnext;
    n->lprev = l;
    l->lnext->lprev = n;
    l->lnext = n;
}

static void map_add(kvt_engine *e, fnode *n) {
    uint64_t b = bucket(e, n->id);
    n->hnext = e->hash[b];
    e->hash[b] = n;
    lru_front(e, n);
    n->mem = ft_node_mem(n);
    e->mem += n->mem;
    e->ncached++;
}

static void map_remove(kvt_engine *e, fnode *n) {
    fnode **pp = &e->hash[bucket(e, n->id)];
    while (*pp && *pp != n) pp = &(*pp)->hnext;
    if (*pp) *pp = n->hnext;
    lru_unlink(n);
    e->mem -= n->mem;
    e->ncached--;
}

void ft_cache_destroy(kvt_engine *e) {
    if (!e->hash) return;
    for (uint64_t b = 0; b < e->nbuckets; b++) {
        fnode *n = e->hash[b];
        while (n) { fnode *nx = n->hnext; ft_node_destroy(n); n = nx; }
    }
    free(e->hash);
    e->hash = NULL;
    pthread_mutex_destroy(&e->mu);
}

/* ---- translation table ---- */

static int tab_grow(kvt_engine *e, uint64_t need) {
    if (need <= e->captab) return KVT_OK;
    uint64_t c = e->captab ? e->captab * 2 : 1024;
    while (c < need) c *= 2;
    ftab *t = realloc(e->tab, c * sizeof *t);
    if (t) e->tab = t;
    uint8_t *l = realloc(e->live, c);
    if (l) e->live = l;
    if (!t || !l) return kvt_seterr(KVT_ENOMEM, "fractal: no memory for %llu table entries",
                                    (unsigned long long)c);
    memset(e->tab + e->captab, 0, (c - e->captab) * sizeof *t);
    memset(e->live + e->captab, 0, c - e->captab);
    e->captab = c;
    return KVT_OK;
}

int ft_tab_alloc(kvt_engine *e, uint64_t *id) {
    if (e->nfree) {
        *id = e->freeids[--e->nfree];
    } else {
        if (e->ntab == 0) e->ntab = 1;          /* id 0 means "none" */
        KVT_TRY(tab_grow(e, e->ntab + 1));
        *id = e->ntab++;
    }
    e->tab[*id] = (ftab){0};
    e->live[*id] = 1;
    return KVT_OK;
}

int ft_tab_release(kvt_engine *e, uint64_t id) {
    if (e->nfree == e->capfree) {
        uint64_t c = e->capfree ? e->capfree * 2 : 256;
        uint64_t *f = realloc(e->freeids, c * sizeof *f);
        if (!f) return kvt_seterr(KVT_ENOMEM, "fractal: no memory for the id free list");
        e->freeids = f;
        e->capfree = c;
    }
    e->freeids[e->nfree++] = id;
    e->live[id] = 0;
    e->tab[id] = (ftab){0};
    return KVT_OK;
}

/* ---- pin / load ---- */

static int load(kvt_engine *e, uint64_t id, fnode **out) {
    if (id == 0 || id >= e->ntab || !e->live[id] || e->tab[id].pgno == 0)
        return kvt_seterr(KVT_ECORRUPT, "fractal: %s: reference to unknown node %llu",
                          kvt_pager_path(e->p), (unsigned long long)id);
    kvt_buf b = {0};
    int rc = kvt_blob_read(e->p, e->tab[id].pgno, e->tab[id].len, &b);
    if (rc == KVT_OK) rc = ft_decode(e, id, b.data, b.len, out);
    if (rc < 0) {
        kvt_buf_free(&b);
        if (rc == KVT_ECORRUPT && !strstr(kvt_errmsg(), "page")) {
            char why[256];
            snprintf(why, sizeof why, "%s", kvt_errmsg());
            kvt_seterr(rc, "%s (%s, blob at page %llu)", why, kvt_pager_path(e->p),
                       (unsigned long long)e->tab[id].pgno);
        }
    }
    return rc;
}

static int cache_insert(kvt_engine *e, uint64_t id, fnode *fresh, fnode **out);

int ft_get_kind(kvt_engine *e, uint64_t id, uint8_t kind, fnode **out) {
    *out = NULL;
    fnode *n;
    KVT_TRY(ft_get(e, id, &n));
    if (n->kind == kind) { *out = n; return KVT_OK; }
    uint8_t got = n->kind;
    ft_unpin(e, n);
    return kvt_seterr(KVT_ECORRUPT, "fractal: node %llu is of kind %u, expected kind %u",
                      (unsigned long long)id, got, kind);
}

/* The cached node id pinned and made most recent, counted as a hit or a miss; NULL if
 * it is not cached. Caller holds e->mu. */
fnode *ft_pin_locked(kvt_engine *e, uint64_t id) {
    fnode *n = map_find(e, id);
    if (!n) return NULL;
    n->pins++;
    lru_unlink(n);
    lru_front(e, n);
    e->hits++;
    return n;
}

static fnode *pin_cached(kvt_engine *e, uint64_t id) {
    fnode *n = ft_pin_locked(e, id);
    if (!n) e->misses++;
    return n;
}

void ft_lock(kvt_engine *e) { pthread_mutex_lock(&e->mu); }
void ft_unlock(kvt_engine *e) { pthread_mutex_unlock(&e->mu); }

void ft_unpin_locked(kvt_engine *e, fnode *n) { (void)e; n->pins--; }

int ft_peek(kvt_engine *e, uint64_t id, fnode **out) {
    pthread_mutex_lock(&e->mu);
    fnode *n = pin_cached(e, id);
    pthread_mutex_unlock(&e->mu);
    *out = n;
    return n ? KVT_OK : KVT_NOTFOUND;
}

int ft_blob_loc(kvt_engine *e, uint64_t id, uint64_t *pgno, uint64_t *len) {
    if (id == 0 || id >= e->ntab || !e->live[id] || e->tab[id].pgno == 0)
        return kvt_seterr(KVT_ECORRUPT, "fractal: %s: reference to unknown node %llu",
                          kvt_pager_path(e->p), (unsigned long long)id);
    *pgno = e->tab[id].pgno;
    *len = e->tab[id].len;
    return KVT_OK;
}

int ft_get(kvt_engine *e, uint64_t id, fnode **out) {
    pthread_mutex_lock(&e->mu);
    fnode *n = pin_cached(e, id);
    pthread_mutex_unlock(&e->mu);
    if (n) {
        *out = n;
        return KVT_OK;
    }
    fnode *fresh;
    KVT_TRY(load(e, id, &fresh));            /* I/O outside the lock */
    return cache_insert(e, id, fresh, out);
}

/* Put a freshly loaded node in the cache, pinned in *out (or drop it for the copy
 * another reader loaded meanwhile), then evict down to the budget. */
static int cache_insert(kvt_engine *e, uint64_t id, fnode *fresh, fnode **out) {
    pthread_mutex_lock(&e->mu);
    fnode *n = map_find(e, id);
    if (n) {                                 /* another reader loaded it meanwhile */
        ft_node_destroy(fresh);
    } else {
        n = fresh;
        map_add(e, n);
    }
    n->pins++;
    pthread_mutex_unlock(&e->mu);
    int rc = ft_evict(e);
    if (rc < 0) { ft_unpin(e, n); return rc; }
    *out = n;
    return KVT_OK;
}

int ft_cached_dirty(kvt_engine *e, uint64_t id) {
    pthread_mutex_lock(&e->mu);
    fnode *n = map_find(e, id);
    int d = n && n->dirty;
    pthread_mutex_unlock(&e->mu);
    return d;
}

/* ---- prefetch: read several nodes at once ---- */

/* The threads only read into buffers the caller allocated; decoding and caching happen
 * in the caller's thread, so every node's memory comes from the caller's malloc arena
 * (nodes allocated in short-lived threads' arenas would keep those arenas' memory
 * resident after eviction, past cache_size). */
typedef struct fetch {
    kvt_engine *e;
    uint64_t id, pgno, len;
    kvt_buf buf;
    int rc, started;
    pthread_t t;
} fetch;

static void *fetch_read(void *arg) {
    fetch *f = arg;
    f->rc = kvt_blob_read(f->e->p, f->pgno, f->len, &f->buf);
    return NULL;
}

uint32_t ft_prefetch(kvt_engine *e, const uint64_t *ids, uint32_t n, fnode **hold) {
    fetch f[FT_PREFETCH_MAX];
    uint32_t m = 0;
    pthread_mutex_lock(&e->mu);
    for (uint32_t i = 0; i < n && m < FT_PREFETCH_MAX; i++) {
        uint64_t id = ids[i];
        if (!id || id >= e->ntab || !e->live[id] || !e->tab[id].pgno || map_find(e, id)) continue;
        f[m++] = (fetch){ .e = e, .id = id, .pgno = e->tab[id].pgno, .len = e->tab[id].len };
    }
    pthread_mutex_unlock(&e->mu);
    /* Reads served by the OS page cache take microseconds, less than starting a thread
     * (measured, kvtrees bench --quick: buffered seekrandom and ycsb-e ran 1.7x slower
     * with it), so only O_DIRECT
     * reads are overlapped. */
    if (m < 2 || !kvt_pager_direct_io(e->p)) return 0;
    uint32_t held = 0;
    for (uint32_t i = 0; i < m; i++) f[i].rc = kvt_buf_reserve(&f[i].buf, f[i].len);
    pthread_attr_t at;
    int attr = pthread_attr_init(&at) == 0;
    if (attr) (void)pthread_attr_setstacksize(&at, 256 << 10);
    for (uint32_t i = 1; i < m; i++)
        if (f[i].rc == KVT_OK) f[i].started = pthread_create(&f[i].t, attr ? &at : NULL, fetch_read, &f[i]) == 0;
    if (attr) pthread_attr_destroy(&at);
    if (f[0].rc == KVT_OK) fetch_read(&f[0]);
    for (uint32_t i = 0; i < m; i++) {
        if (f[i].started) pthread_join(f[i].t, NULL);
        else if (i > 0 && f[i].rc == KVT_OK) fetch_read(&f[i]);   /* no thread: read here */
        fnode *node = NULL, *pinned;
        if (f[i].rc == KVT_OK && ft_decode(e, f[i].id, f[i].buf.data, f[i].buf.len, &node) == KVT_OK) {
            f[i].buf = (kvt_buf){0};          /* the node owns it (arena) or freed it */
            pthread_mutex_lock(&e->mu);
            e->misses++;
            pthread_mutex_unlock(&e->mu);
            if (cache_insert(e, f[i].id, node, &pinned) == KVT_OK) hold[held++] = pinned;
        }
        kvt_buf_free(&f[i].buf);              /* errors: the caller's own ft_get reports */
    }
    return held;
}

void ft_unpin(kvt_engine *e, fnode *n) {
    if (!n) return;
    pthread_mutex_lock(&e->mu);
    n->pins--;
    pthread_mutex_unlock(&e->mu);
}

int ft_new(kvt_engine *e, uint8_t kind, uint32_t height, fnode **out) {
    fnode *n = ft_node_alloc(kind, height);
    if (!n) return KVT_ENOMEM;
    int rc = ft_tab_alloc(e, &n->id);
    if (rc < 0) { ft_node_destroy(n); return rc; }
    n->dirty = 1;
    n->pins = 1;
    pthread_mutex_lock(&e->mu);
    map_add(e, n);
    pthread_mutex_unlock(&e->mu);
    *out = n;
    return KVT_OK;
}

void ft_dirty(kvt_engine *e, fnode *n) {
    uint64_t m = ft_node_mem(n);
    pthread_mutex_lock(&e->mu);
    n->dirty = 1;
    e->mem += m - n->mem;
    n->mem = m;
    pthread_mutex_unlock(&e->mu);
}

int ft_drop(kvt_engine *e, fnode *n) {
    uint64_t pg = e->tab[n->id].pgno;
    KVT_TRY(ft_tab_release(e, n->id));
    pthread_mutex_lock(&e->mu);
    map_remove(e, n);
    pthread_mutex_unlock(&e->mu);
    ft_node_destroy(n);
    return pg ? kvt_blob_free(e->p, pg) : KVT_OK;
}

/* ---- write-back and eviction ---- */

static int write_back(kvt_engine *e, fnode *n) {
    kvt_buf b = {0};
    kvt_pgno pg = 0;
    int rc = ft_encode(n, &b);
    if (rc == KVT_OK) rc = kvt_blob_write(e->p, b.data, b.len, &pg);
    if (rc == KVT_OK && e->tab[n->id].pgno) rc = kvt_blob_free(e->p, e->tab[n->id].pgno);
    if (rc == KVT_OK) {
        e->tab[n->id] = (ftab){ pg, b.len };
        n->dirty = 0;
        e->writebacks++;
        e->wb_bytes[n->kind] += b.len;
    }
    kvt_buf_free(&b);
    return rc;
}

/* The least recently used node that can go now (NULL: none). Called with e->mu held. */
static fnode *victim_in(kvt_engine *e, fnode *l) {
    int budget = 64;                         /* readers: look past a few dirty nodes */
    for (fnode *n = l->lprev; n != l; n = n->lprev) {
        if (n->pins == 0 && (!n->dirty || e->writer)) return n;
        if (!e->writer && --budget == 0) break;
    }
    return NULL;
}

static fnode *victim(kvt_engine *e) {
    fnode *n = NULL;
    for (int i = 0; i < 3 && !n; i++) n = victim_in(e, &e->lru[i]);
    return n;
}

int ft_evict(kvt_engine *e) {
    for (;;) {
        pthread_mutex_lock(&e->mu);
        fnode *n = e->mem > e->cache_budget ? victim(e) : NULL;
        if (n) { map_remove(e, n); e->evictions++; }
        pthread_mutex_unlock(&e->mu);
        if (!n) return KVT_OK;
        int rc = n->dirty ? write_back(e, n) : KVT_OK;   /* only the writer gets dirty ones */
        if (rc < 0) {                                     /* keep it: the state stays whole */
            pthread_mutex_lock(&e->mu);
            map_add(e, n);
            pthread_mutex_unlock(&e->mu);
            return rc;
        }
        ft_node_destroy(n);
    }
}

int ft_write_all(kvt_engine *e) {
    for (uint64_t b = 0; b < e->nbuckets; b++)
        for (fnode *n = e->hash[b]; n; n = n->hnext)
            if (n->dirty) KVT_TRY(write_back(e, n));
    return KVT_OK;
}
