/* pool.c - the buffer pool: page number -> frame hash table, pin counts and clock
 * eviction. At most max_frames frames (cache_bytes / page_size, at least MIN_FRAMES)
 * unless every frame is pinned, in which case the pool grows rather than fail.
 * Evicting a dirty frame writes it back first (never in read-only mode: there dirty
 * pages come from WAL replay and exist nowhere else; nor once a write-back has met a
 * full disk: the frame stays dirty in memory and the pool grows, since its content is
 * in the log and the next checkpoint retries). Every function here expects mu
 * to be held, except kvt_pager_get/unpin which take it.
 */
#include <stdlib.h>
#include <inttypes.h>
#include "pager_int.h"

#ifdef __SANITIZE_ADDRESS__
#define FRAME_SLAB_PAGES 1u        /* one page per allocation: ASan guards each page */
#else
#define FRAME_SLAB_PAGES 64u       /* 256 KiB slabs of 4 KiB pages */
#endif

static size_t hash_slot(const kvt_pager *p, kvt_pgno pgno) {
    return (size_t)((pgno * 0x9E3779B97F4A7C15ull) >> 17) & (p->nbuckets - 1);
}

static int rehash(kvt_pager *p, size_t nb) {
    frame **b = calloc(nb, sizeof *b);
    if (!b) return kvt_seterr(KVT_ENOMEM, "pager: hash table of %zu buckets", nb);
    frame **old = p->buckets;
    size_t on = p->nbuckets;
    p->buckets = b;
    p->nbuckets = nb;
    for (size_t i = 0; i < on; i++) {
        for (frame *f = old[i], *next; f; f = next) {
            next = f->hnext;
            size_t s = hash_slot(p, f->page.pgno);
            f->hnext = b[s];
            b[s] = f;
        }
    }
    free(old);
    return KVT_OK;
}

int pool_init(kvt_pager *p, uint64_t cache_bytes) {
    uint64_t n = cache_bytes / p->page_size;
    p->max_frames = n < MIN_FRAMES ? MIN_FRAMES : (size_t)n;
    size_t nb = 64;
    while (nb < 2 * p->max_frames && nb < (1u << 24)) nb *= 2;
    return rehash(p, nb);
}

void pool_destroy(kvt_pager *p) {
    for (size_t i = 0; i < p->nframes; i++) free(p->frames[i]);
    for (size_t i = 0; i < p->nslabs; i++) free(p->slabs[i]);
    free(p->slabs);
    p->slabs = NULL;
    p->nslabs = p->slab_used = 0;
    free(p->frames);
    free(p->spare);
    free(p->buckets);
    free(p->retired);
    free(p->retire_stage);
    p->retired = NULL;
    p->retire_stage = NULL;
    p->nretired = 0;
    p->frames = p->spare = p->buckets = NULL;
    p->nframes = p->nspare = p->nbuckets = 0;
}

frame *pool_lookup(kvt_pager *p, kvt_pgno pgno) {
    for (frame *f = p->buckets[hash_slot(p, pgno)]; f; f = f->hnext)
        if (f->page.pgno == pgno) return f;
    return NULL;
}

static void hash_remove(kvt_pager *p, frame *f) {
    frame **pp = &p->buckets[hash_slot(p, f->page.pgno)];
    while (*pp && *pp != f) pp = &(*pp)->hnext;
    if (*pp) *pp = f->hnext;
    f->hnext = NULL;
}

static int hash_insert(kvt_pager *p, frame *f) {
    if (p->nlive + 1 > p->nbuckets) KVT_TRY(rehash(p, p->nbuckets * 2));
    size_t s = hash_slot(p, f->page.pgno);
    f->hnext = p->buckets[s];
    p->buckets[s] = f;
    return KVT_OK;
}

/* Remove a frame's page from the pool (its content is discarded). */
void pool_drop(kvt_pager *p, frame *f) {
    if (!f->live) return;
    hash_remove(p, f);
    if (f->dirty) p->ndirty--;
    f->dirty = f->ref = 0;
    f->live = 0;
    f->pin = 0;
    p->nlive--;
    p->spare[p->nspare++] = f;         /* spare has room for every frame */
}

void pool_mark_dirty(kvt_pager *p, frame *f) {
    if (!f->dirty) {
        f->dirty = 1;
        p->ndirty++;
    }
}

static int write_frame(kvt_pager *p, frame *f) {
    /* (ENOSPC: still dirty, kept in the pool) */
    page_seal(p, f->page.data);
    int rc = pager_write_pages(p, f->page.data, 1, f->page.pgno);
    if (rc == KVT_ENOSPC) return rc;    /* still dirty; the page is current-gen */
    if (rc < 0) return pager_fail(p, rc);
    f->dirty = 0;
    p->ndirty--;
    p->st.writebacks++;
    return KVT_OK;
}

/* ---- retired pages: written in runs, their frames reused ------------------------ */

#define RETIRE_RUN 64u           /* pages per write (256 KiB with 4 KiB pages) */

/* Frame i of the queue still holds its page, dirty or clean, and nobody pins it. */
static int retired_ok(const kvt_pager *p, size_t i) {
    const frame *f = p->retired[i];
    return f->live && !f->pin && f->page.pgno == p->retired_first + i;
}

/* Write the queued pages that are still what they were, adjacent ones as one write,
 * and make their frames spares. A full disk leaves them dirty in the pool. */
int pool_retire_flush(kvt_pager *p) {
    size_t n = p->nretired;
    p->nretired = 0;
    int rc = KVT_OK;
    for (size_t i = 0, run; i < n && rc == KVT_OK; i += run) {
        run = 1;
        if (!retired_ok(p, i)) continue;
        while (i + run < n && retired_ok(p, i + run)) run++;
        frame **v = p->retired + i;
        size_t ndirty = 0;
        for (size_t j = 0; j < run; j++) ndirty += v[j]->dirty;
        if (ndirty == run && run > 1 && p->retire_stage) {
            for (size_t j = 0; j < run; j++) {
                page_seal(p, v[j]->page.data);
                memcpy(p->retire_stage + j * p->page_size, v[j]->page.data, p->page_size);
            }
            rc = pager_write_pages(p, p->retire_stage, run, v[0]->page.pgno);
            if (rc == KVT_OK) {
                for (size_t j = 0; j < run; j++) v[j]->dirty = 0;
                p->ndirty -= run;
                p->st.writebacks += run;
            } else if (rc != KVT_ENOSPC) {
                rc = pager_fail(p, rc);
            }
        } else {
            for (size_t j = 0; j < run && rc == KVT_OK; j++)
                if (v[j]->dirty) rc = write_frame(p, v[j]);
        }
        if (rc == KVT_ENOSPC) { p->nospace = 1; return KVT_OK; }
        for (size_t j = 0; rc == KVT_OK && j < run; j++)
            if (!v[j]->dirty) pool_drop(p, v[j]);
    }
    return rc;
}

int pool_retire(kvt_pager *p, frame *f) {
    if (f->pin) f->pin--;
    if (f->pin || !f->live || p->read_only || p->nospace) return KVT_OK;
    if (!p->retired) {
        p->retired = malloc(RETIRE_RUN * sizeof *p->retired);
        p->retire_stage = aligned_alloc_pages(p, (size_t)RETIRE_RUN * p->page_size);
        if (!p->retired) return KVT_OK;          /* no memory: it stays in the pool */
    }
    if (p->nretired && (p->nretired == RETIRE_RUN ||
                        f->page.pgno != p->retired_first + p->nretired))
        KVT_TRY(pool_retire_flush(p));
    if (!p->nretired) p->retired_first = f->page.pgno;
    p->retired[p->nretired++] = f;
    return KVT_OK;
}

/* One page of frame memory, carved from the newest slab (a new slab when it is used
 * up). Slabs live until the pool is destroyed, as frames do. */
static uint8_t *slab_page(kvt_pager *p) {
    if (!p->nslabs || p->slab_used == FRAME_SLAB_PAGES) {
        uint8_t **v = realloc(p->slabs, (p->nslabs + 1) * sizeof *v);
        if (!v) return NULL;
        p->slabs = v;
        uint8_t *slab = aligned_alloc_pages(p, (size_t)FRAME_SLAB_PAGES * p->page_size);
        if (!slab) return NULL;
        p->slabs[p->nslabs++] = slab;
        p->slab_used = 0;
    }
    return p->slabs[p->nslabs - 1] + (p->slab_used++) * (size_t)p->page_size;
}

static int new_frame(kvt_pager *p, frame **out) {
    if (p->nframes == p->cap_frames) {
        size_t cap = p->cap_frames ? 2 * p->cap_frames : 64;
        frame **fr = realloc(p->frames, cap * sizeof *fr);
        if (fr) p->frames = fr;
        frame **sp = fr ? realloc(p->spare, cap * sizeof *sp) : NULL;
        if (!sp) return kvt_seterr(KVT_ENOMEM, "pager: frame table of %zu", cap);
        p->spare = sp;
        p->cap_frames = cap;
    }
    frame *f = calloc(1, sizeof *f);
    uint8_t *d = f ? slab_page(p) : NULL;
    if (!d) {
        free(f);
        return kvt_seterr(KVT_ENOMEM, "pager: page frame of %u bytes", p->page_size);
    }
    f->page.data = d;
    p->frames[p->nframes++] = f;
    *out = f;
    return KVT_OK;
}

/* Clock: give unpinned frames a second chance; NULL when none can be evicted. */
static int evict_one(kvt_pager *p, frame **out) {
    *out = NULL;
    for (size_t step = 0; step < 2 * p->nframes; step++) {
        frame *f = p->frames[p->hand];
        p->hand = (p->hand + 1) % p->nframes;
        if (!f->live || f->pin) continue;
        if (f->ref) { f->ref = 0; continue; }
        if (f->dirty && (p->read_only || p->nospace)) continue;
        if (f->dirty) {
            int rc = write_frame(p, f);
            if (rc == KVT_ENOSPC) {
                p->nospace = 1;
                continue;
            }
            KVT_TRY(rc);
        }
        hash_remove(p, f);
        f->live = 0;
        p->nlive--;
        p->st.evictions++;
        *out = f;
        return KVT_OK;
    }
    return KVT_OK;
}

/* A pinned frame for pgno, registered in the hash table, content undefined. A stale
 * unpinned frame of the same page (there should be none) is reused. */
int pool_take(kvt_pager *p, kvt_pgno pgno, frame **out) {
    frame *f = pool_lookup(p, pgno);
    if (f) {
        if (f->pin)
            return kvt_seterr(KVT_EINVAL, "%s: page %" PRIu64 " reused while pinned",
                              p->path, pgno);
        pool_drop(p, f);
    }
    f = NULL;
    if (p->nspare) f = p->spare[--p->nspare];
    else if (p->nframes < p->max_frames) KVT_TRY(new_frame(p, &f));
    else KVT_TRY(evict_one(p, &f));
    if (!f) KVT_TRY(new_frame(p, &f));        /* everything pinned: grow past the limit */
    f->page.pgno = pgno;
    f->pin = 1;
    f->ref = 1;
    f->dirty = 0;
    f->live = 1;
    p->nlive++;
    int rc = hash_insert(p, f);
    if (rc < 0) {
        f->live = 0;
        p->nlive--;
        p->spare[p->nspare++] = f;
        return rc;
    }
    *out = f;
    return KVT_OK;
}

static int cmp_frame_pgno(const void *a, const void *b) {
    kvt_pgno x = (*(frame *const *)a)->page.pgno, y = (*(frame *const *)b)->page.pgno;
    return x < y ? -1 : x > y;
}

/* Write dirty frames v[0..n) (adjacent page numbers) as one I/O through a staging
 * buffer; a single frame is written from its own memory. */
static int write_run(kvt_pager *p, frame **v, size_t n, uint8_t *stage) {
    if (n == 1) return write_frame(p, v[0]);
    for (size_t i = 0; i < n; i++) {
        page_seal(p, v[i]->page.data);
        memcpy(stage + i * p->page_size, v[i]->page.data, p->page_size);
    }
    int rc = pager_write_pages(p, stage, n, v[0]->page.pgno);
    if (rc == KVT_ENOSPC) return rc;    /* all still dirty; the checkpoint is abandoned */
    if (rc < 0) return pager_fail(p, rc);
    for (size_t i = 0; i < n; i++) v[i]->dirty = 0;
    p->ndirty -= n;
    p->st.writebacks += n;
    return KVT_OK;
}

/* Write back every dirty frame in page order, adjacent pages coalesced into writes of
 * up to FLUSH_RUN_BYTES (sequential I/O, few syscalls). */
#define FLUSH_RUN_BYTES (1u << 20)
int pool_flush_dirty(kvt_pager *p) {
    if (!p->ndirty) return KVT_OK;
    size_t max = FLUSH_RUN_BYTES / p->page_size ? FLUSH_RUN_BYTES / p->page_size : 1;
    frame **v = malloc(p->ndirty * sizeof *v);
    uint8_t *stage = v ? aligned_alloc_pages(p, max * p->page_size) : NULL;
    if (!stage) {
        free(v);
        return kvt_seterr(KVT_ENOMEM, "pager: dirty list of %" PRIu64, p->ndirty);
    }
    size_t n = 0;
    for (size_t i = 0; i < p->nframes && n < p->ndirty; i++)
        if (p->frames[i]->live && p->frames[i]->dirty) v[n++] = p->frames[i];
    qsort(v, n, sizeof *v, cmp_frame_pgno);
    int rc = KVT_OK;
    for (size_t i = 0, run; i < n && rc == KVT_OK; i += run) {
        run = 1;
        while (i + run < n && run < max && v[i + run]->page.pgno == v[i]->page.pgno + run)
            run++;
        rc = write_run(p, v + i, run, stage);
    }
    free(stage);
    free(v);
    return rc;
}

/* Drop the caller's pin on a frame whose load failed (already out of the hash table);
 * the last one out makes it a spare. */
static void release_failed(kvt_pager *p, frame *f) {
    if (--f->pin == 0) p->spare[p->nspare++] = f;
}

/* A hit on a frame another reader is still loading: wait for it. */
static int wait_loaded(kvt_pager *p, frame *f) {
    while (f->loading) pthread_cond_wait(&p->loaded, &p->mu);
    if (f->load_rc < 0) {
        int rc = f->load_rc;
        kvt_pgno pgno = f->page.pgno;
        release_failed(p, f);
        return kvt_seterr(rc, "%s: page %" PRIu64 ": %s (seen by a concurrent reader)",
                          p->path, pgno, kvt_strerror(rc));
    }
    return KVT_OK;
}

/* Read and verify a page into a frame this thread owns; mu is released meanwhile. */
static int load_frame(kvt_pager *p, frame *f) {
    kvt_pgno pgno = f->page.pgno;
    f->loading = 1;
    f->load_rc = 0;
    pthread_mutex_unlock(&p->mu);
    int rc = kvt_file_read_full(p->file, f->page.data, p->page_size, pgno * p->page_size);
    if (rc == KVT_OK) rc = page_verify(p, f->page.data, pgno);
    pthread_mutex_lock(&p->mu);
    f->loading = 0;
    f->load_rc = rc;
    pthread_cond_broadcast(&p->loaded);
    if (rc < 0) {
        hash_remove(p, f);
        f->live = 0;
        p->nlive--;
        release_failed(p, f);
    }
    return rc;
}

/* A pool hit, else the read map (map.c), else a pread into a new frame. */
int pool_get_locked(kvt_pager *p, kvt_pgno pgno, kvt_page **out) {
    KVT_TRY(pager_check_usable(p));
    frame *f = pool_lookup(p, pgno);
    if (f) {
        f->pin++;
        f->ref = 1;
        p->st.cache_hits++;
        if (f->loading) KVT_TRY(wait_loaded(p, f));
        *out = &f->page;
        return KVT_OK;
    }
    if (pgno < 2 || pgno >= p->npages)
        return kvt_seterr(KVT_ECORRUPT, "%s: page %" PRIu64 ": out of range (%" PRIu64
                          " pages)", p->path, pgno, p->npages);
    if (bm_get(&p->freeb, pgno))
        return kvt_seterr(KVT_ECORRUPT, "%s: page %" PRIu64 ": referenced but free",
                          p->path, pgno);
    KVT_TRY(map_get_locked(p, pgno, out));
    if (*out) return KVT_OK;
    KVT_TRY(pool_take(p, pgno, &f));
    p->st.cache_misses++;
    KVT_TRY(load_frame(p, f));
    *out = &f->page;
    return KVT_OK;
}

int kvt_pager_get(kvt_pager *p, kvt_pgno pgno, kvt_page **out) {
    kvt_page *pg = NULL;
    pthread_mutex_lock(&p->mu);
    int rc = pool_get_locked(p, pgno, &pg);
    pthread_mutex_unlock(&p->mu);
    *out = rc < 0 ? NULL : pg;
    return rc;
}

int kvt_pager_retire(kvt_pager *p, kvt_page *pg) {
    if (!pg) return KVT_OK;
    pthread_mutex_lock(&p->mu);
    int rc = KVT_OK;
    if (map_owns(p, pg)) map_release(p, pg);
    else rc = pool_retire(p, (frame *)pg);
    pthread_mutex_unlock(&p->mu);
    return rc;
}

int kvt_pager_retire_flush(kvt_pager *p) {
    pthread_mutex_lock(&p->mu);
    int rc = p->nretired ? pool_retire_flush(p) : KVT_OK;
    pthread_mutex_unlock(&p->mu);
    return rc;
}

void kvt_pager_unpin(kvt_pager *p, kvt_page *pg) {
    if (!pg) return;
    frame *f = (frame *)pg;
    pthread_mutex_lock(&p->mu);
    if (map_owns(p, pg)) map_release(p, pg);
    else if (f->pin) f->pin--;
    pthread_mutex_unlock(&p->mu);
}

/* ---- pages logged by reference (native/db/paged.c) ------------------------------ */

int kvt_pager_retire_sealed(kvt_pager *p, kvt_page *pg, uint32_t *crc) {
    pthread_mutex_lock(&p->mu);
    int rc = KVT_OK;
    if (map_owns(p, pg)) {              /* never dirty: nothing this record wrote */
        *crc = 0;
        map_release(p, pg);
    } else {
        page_seal(p, pg->data);         /* the checksum the log record will name */
        *crc = kvt_get32(pg->data);
        rc = pool_retire(p, (frame *)pg);
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

/* A page is logged only if the file holds exactly what was sealed: it is new this gen
 * (so nothing durable names it), and either has no frame (written, then dropped) or a
 * clean frame with that checksum. Logged, it leaves newb: from now on it is copied on
 * write and its free is deferred to the next checkpoint, as for a checkpointed page,
 * so the file keeps it unchanged for as long as the log may name it. */
int kvt_pager_log_pages(kvt_pager *p, const kvt_pgno *pg, const uint32_t *crc, size_t n,
                        uint8_t *logged) {
    pthread_mutex_lock(&p->mu);
    int rc = pager_check_usable(p);
    if (rc == KVT_OK && p->nretired) rc = pool_retire_flush(p);
    for (size_t i = 0; i < n; i++) {
        logged[i] = 0;
        if (rc < 0 || !crc[i] || pg[i] < 2 || pg[i] >= p->npages || !bm_get(&p->newb, pg[i]))
            continue;
        frame *f = pool_lookup(p, pg[i]);
        if (f && (f->dirty || f->loading || kvt_get32(f->page.data) != crc[i])) continue;
        bm_clr(&p->newb, pg[i]);
        logged[i] = 1;
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}
