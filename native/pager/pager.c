/* pager.c - open/close, meta pages, copy-on-write, alloc/free and checkpoints.
 *
 * State machine: OPEN (gen ckpt_gen+1 being built) --checkpoint--> OPEN (gen+1), or
 * --failed write/fsync--> FATAL (every call returns KVT_EFATAL until close).
 *
 * Meta page (pages 0 and 1, written alternately: gen g goes to slot g % 2), in its
 * first META_BYTES bytes, after the usual page header (crc of [4, META_BYTES)):
 *   32 magic "KVTPAGE1", 40 u32 format version, 44 u32 page size, 48 u32 engine id,
 *   52 u32 engine meta length, 56 u64 page count, 64 u64 free map first page,
 *   72 u64 free map page count, 80 u64 free pages (informational), 88 engine meta.
 * Checkpoint order: dirty pages, fsync, free map, fsync, meta, fsync; only then are
 * deferred frees released, so the previous checkpoint is intact until the new one is.
 *
 * Full disk: a write that fails with ENOSPC never latches. Write-back and blobs keep
 * the pages in the pool instead (nospace; the engine never sees the error), and a
 * checkpoint that runs out of space is abandoned: pages it wrote stay current-gen
 * pages (clean or dirty in the pool), its free map is undone, the previous checkpoint
 * stays the durable one, and KVT_ENOSPC goes to the caller, who may retry later.
 * A failed fsync still latches: the kernel may have dropped the pages.
 */
#include <stdlib.h>
#include <inttypes.h>
#include "pager_int.h"

#define META_MAGIC   "KVTPAGE1"
#define META_VERSION 1
#define M_MAGIC   32
#define M_VERSION 40
#define M_PSIZE   44
#define M_ENGINE  48
#define M_EMLEN   52
#define M_NPAGES  56
#define M_FMFIRST 64
#define M_FMCOUNT 72
#define M_NFREE   80
#define M_EMETA   88

typedef struct meta {
    uint64_t gen, npages, fm_first, fm_count;
    uint32_t page_size, engine_id, em_len;
    uint8_t em[KVT_ENGINE_META_MAX];
} meta;

/* ---- helpers shared by the pager files ---- */

int pager_fail(kvt_pager *p, int rc) {
    p->fatal = 1;
    return rc;
}

int pager_check_usable(kvt_pager *p) {
    if (p->fatal)
        return kvt_seterr(KVT_EFATAL, "%s: pager unusable after an earlier I/O failure",
                          p->path);
    return KVT_OK;
}

void page_hdr_init(uint8_t *data, uint8_t type, kvt_pgno pgno, uint64_t gen) {
    memset(data, 0, KVT_PAGE_HDR);
    data[HDR_TYPE] = type;
    kvt_put64(data + HDR_PGNO, pgno);
    kvt_put64(data + HDR_GEN, gen);
}

void page_seal(kvt_pager *p, uint8_t *data) {
    kvt_put32(data + HDR_CRC, kvt_crc32c(0, data + 4, p->page_size - 4));
}

int page_verify(kvt_pager *p, const uint8_t *data, kvt_pgno pgno) {
    if (kvt_get32(data + HDR_CRC) != kvt_crc32c(0, data + 4, p->page_size - 4))
        return kvt_seterr(KVT_ECORRUPT, "%s: page %" PRIu64 ": checksum mismatch",
                          p->path, pgno);
    if (kvt_get64(data + HDR_PGNO) != pgno)
        return kvt_seterr(KVT_ECORRUPT, "%s: page %" PRIu64 ": header names page %" PRIu64,
                          p->path, pgno, kvt_get64(data + HDR_PGNO));
    if (data[HDR_TYPE] == KVT_PT_FREE || data[HDR_TYPE] == KVT_PT_META)
        return kvt_seterr(KVT_ECORRUPT, "%s: page %" PRIu64 ": bad page type %u",
                          p->path, pgno, data[HDR_TYPE]);
    return KVT_OK;
}

void *aligned_alloc_pages(kvt_pager *p, size_t bytes) {
    void *m = NULL;
    if (posix_memalign(&m, 4096, bytes ? bytes : 4096) != 0) return NULL;
    return m;
}

/* ---- meta pages ---- */

static void meta_encode(kvt_pager *p, const meta *m, kvt_pgno slot, uint8_t *buf) {
    memset(buf, 0, META_BYTES);
    page_hdr_init(buf, KVT_PT_META, slot, m->gen);
    memcpy(buf + M_MAGIC, META_MAGIC, 8);
    kvt_put32(buf + M_VERSION, META_VERSION);
    kvt_put32(buf + M_PSIZE, m->page_size);
    kvt_put32(buf + M_ENGINE, m->engine_id);
    kvt_put32(buf + M_EMLEN, m->em_len);
    kvt_put64(buf + M_NPAGES, m->npages);
    kvt_put64(buf + M_FMFIRST, m->fm_first);
    kvt_put64(buf + M_FMCOUNT, m->fm_count);
    kvt_put64(buf + M_NFREE, p->nfree + p->ndefer);
    memcpy(buf + M_EMETA, m->em, m->em_len);
    kvt_put32(buf + HDR_CRC, kvt_crc32c(0, buf + 4, META_BYTES - 4));
}

static int valid_page_size(uint32_t ps) {
    return ps >= 4096 && ps <= (1u << 20) && (ps & (ps - 1)) == 0;
}

/* 1 if buf holds a valid meta page for slot, 0 if not (torn, zero, foreign),
 * KVT_EVERSION for a valid page of an unknown format version. */
static int meta_decode(const uint8_t *buf, kvt_pgno slot, meta *m) {
    if (kvt_get32(buf + HDR_CRC) != kvt_crc32c(0, buf + 4, META_BYTES - 4)) return 0;
    if (memcmp(buf + M_MAGIC, META_MAGIC, 8) != 0 || buf[HDR_TYPE] != KVT_PT_META ||
        kvt_get64(buf + HDR_PGNO) != slot)
        return 0;
    if (kvt_get32(buf + M_VERSION) != META_VERSION) return KVT_EVERSION;
    m->gen = kvt_get64(buf + HDR_GEN);
    m->page_size = kvt_get32(buf + M_PSIZE);
    m->engine_id = kvt_get32(buf + M_ENGINE);
    m->em_len = kvt_get32(buf + M_EMLEN);
    m->npages = kvt_get64(buf + M_NPAGES);
    m->fm_first = kvt_get64(buf + M_FMFIRST);
    m->fm_count = kvt_get64(buf + M_FMCOUNT);
    if (!valid_page_size(m->page_size) || m->em_len > KVT_ENGINE_META_MAX || m->npages < 2)
        return 0;
    memcpy(m->em, buf + M_EMETA, m->em_len);
    return 1;
}

/* Read slot's meta at the given page size; *ok 1 if valid. */
static int read_meta(kvt_pager *p, uint8_t *buf, uint32_t ps, kvt_pgno slot, meta *m,
                     int *ok) {
    size_t got = 0;
    *ok = 0;
    KVT_TRY(kvt_file_read(p->file, buf, META_BYTES, slot * ps, &got));
    if (got < META_BYTES) return KVT_OK;
    int v = meta_decode(buf, slot, m);
    if (v < 0)
        return kvt_seterr(v, "%s: meta page %" PRIu64 ": unsupported format version %u",
                          p->path, slot, kvt_get32(buf + M_VERSION));
    *ok = v == 1 && (slot == 0 || m->page_size == ps);
    return KVT_OK;
}

/* The valid meta with the highest gen; slot 1's offset depends on the page size,
 * which a damaged slot 0 cannot tell, so every legal size is tried. */
static int pick_meta(kvt_pager *p, meta *best) {
    uint8_t *buf = aligned_alloc_pages(p, META_BYTES);
    if (!buf) return kvt_seterr(KVT_ENOMEM, "pager: meta buffer");
    meta m0, m1;
    int ok0 = 0, ok1 = 0, rc = read_meta(p, buf, 4096, 0, &m0, &ok0);
    for (uint32_t ps = 4096; rc == KVT_OK && ps <= (1u << 20) && !ok1; ps *= 2) {
        if (ok0 && ps != m0.page_size) continue;
        rc = read_meta(p, buf, ps, 1, &m1, &ok1);
    }
    free(buf);
    KVT_TRY(rc);
    if (ok0 && ok1 && m0.page_size != m1.page_size) ok1 = 0;
    if (!ok0 && !ok1)
        return kvt_seterr(KVT_ECORRUPT, "%s: no valid meta page (both damaged)", p->path);
    *best = (ok0 && (!ok1 || m0.gen >= m1.gen)) ? m0 : m1;
    return KVT_OK;
}

static int write_meta(kvt_pager *p, const meta *m, kvt_pgno slot, size_t bytes) {
    uint8_t *buf = aligned_alloc_pages(p, bytes);
    if (!buf) return kvt_seterr(KVT_ENOMEM, "pager: meta buffer");
    memset(buf, 0, bytes);
    meta_encode(p, m, slot, buf);
    int rc = kvt_file_write(p->file, buf, bytes, slot * p->page_size);
    free(buf);
    /* ENOSPC: the slot written holds the older of the two checkpoints; the newest
     * valid meta is still the durable one, so the caller can abandon its checkpoint. */
    if (rc == KVT_ENOSPC) return rc;
    return rc < 0 ? pager_fail(p, rc) : KVT_OK;
}

static void meta_from_state(kvt_pager *p, meta *m, uint64_t gen) {
    memset(m, 0, sizeof *m);
    m->gen = gen;
    m->page_size = p->page_size;
    m->engine_id = p->engine_id;
    m->npages = p->npages;
    m->fm_first = p->fm_count ? p->fm_pages[0] : 0;
    m->fm_count = p->fm_count;
    m->em_len = (uint32_t)p->engine_meta_len;
    memcpy(m->em, p->engine_meta, p->engine_meta_len);
}

/* ---- open / close ---- */

static int create_file(kvt_pager *p, const kvt_pager_config *cfg) {
    uint32_t ps = cfg->page_size ? cfg->page_size : 4096;
    if (!valid_page_size(ps))
        return kvt_seterr(KVT_EINVAL, "%s: page size %u is not a power of two in "
                          "4096..1048576", p->path, ps);
    p->page_size = ps;
    p->engine_id = cfg->engine_id;
    p->npages = p->ckpt_npages = 2;
    KVT_TRY(fm_init(p));
    meta m;
    meta_from_state(p, &m, 0);
    int rc = write_meta(p, &m, 0, ps);       /* full pages: the file is 2 pages long */
    if (rc == KVT_OK) rc = write_meta(p, &m, 1, ps);
    if (rc < 0) return pager_fail(p, rc);
    rc = kvt_file_sync(p->file);
    return rc < 0 ? pager_fail(p, rc) : KVT_OK;
}

/* Bound the meta's sizes by the file before sizing bitmaps from them: the free map's
 * pages lie inside the file (fsynced before the meta), and it covers every page. The
 * page count itself may exceed the file (free tail pages are trimmed after the meta is
 * written), so it is bounded through the map, never trusted for an allocation alone. */
static int check_meta_sizes(kvt_pager *p, const meta *m, uint64_t fsize) {
    uint64_t file_pages = fsize / m->page_size;
    uint64_t covered = m->fm_count * (uint64_t)fm_bits_per_page(p);
    if (m->fm_count > file_pages || (m->npages > 2 && m->npages > covered))
        return kvt_seterr(KVT_ECORRUPT, "%s: meta page (gen %" PRIu64 "): %" PRIu64
                          " pages with a free map of %" PRIu64 " pages, file has %" PRIu64,
                          p->path, m->gen, m->npages, m->fm_count, file_pages);
    return KVT_OK;
}

static int load_file(kvt_pager *p, const kvt_pager_config *cfg, uint64_t fsize) {
    meta m;
    KVT_TRY(pick_meta(p, &m));
    if (cfg->engine_id && m.engine_id && cfg->engine_id != m.engine_id)
        return kvt_seterr(KVT_EENGINE, "%s: file belongs to engine %u, not %u", p->path,
                          m.engine_id, cfg->engine_id);
    p->page_size = m.page_size;
    KVT_TRY(check_meta_sizes(p, &m, fsize));
    p->engine_id = m.engine_id;
    p->ckpt_gen = m.gen;
    p->npages = 2;
    memcpy(p->engine_meta, m.em, m.em_len);
    p->engine_meta_len = m.em_len;
    KVT_TRY(fm_grow(p, m.npages));
    p->ckpt_npages = p->npages;
    KVT_TRY(fm_load(p, m.fm_first, m.fm_count));
    /* Pages after the checkpoint's end (evictions before a crash) are garbage, but they
     * are cut by kvt_pager_discard_unsaved() once the caller knows the checkpoint is the
     * right one: if the newest meta page is damaged, the file must stay as it was. */
    return KVT_OK;
}

static int open_file(kvt_pager *p, const kvt_pager_config *cfg) {
    int flags = (p->read_only ? KVT_O_READONLY : KVT_O_CREATE) |
                (p->direct_io ? KVT_O_DIRECT : 0);
    KVT_TRY(p->vfs->open(p->vfs, p->path, flags, &p->file));
    p->file->stats = cfg->stats;
    uint64_t size = 0;
    KVT_TRY(kvt_file_size(p->file, &size));
    if (size == 0) {
        if (p->read_only)
            return kvt_seterr(KVT_EINVAL, "%s: empty file opened read-only", p->path);
        return create_file(p, cfg);
    }
    return load_file(p, cfg, size);
}

int kvt_pager_open(kvt_vfs *vfs, const char *path, const kvt_pager_config *cfg,
                   kvt_pager **out) {
    *out = NULL;
    kvt_pager *p = calloc(1, sizeof *p);
    if (!p) return kvt_seterr(KVT_ENOMEM, "pager: open %s", path);
    p->path = strdup(path);
    p->vfs = vfs;
    p->direct_io = cfg->direct_io;
    p->read_only = cfg->read_only;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->loaded, NULL);
    int rc = p->path ? open_file(p, cfg) : kvt_seterr(KVT_ENOMEM, "pager: path");
    if (rc == KVT_OK) rc = map_open(p, cfg);
    if (rc == KVT_OK) rc = pool_init(p, cfg->cache_bytes);
    if (rc < 0) {
        kvt_pager_close(p);
        return rc;
    }
    *out = p;
    return KVT_OK;
}

int kvt_pager_close(kvt_pager *p) {
    if (!p) return KVT_OK;
    map_close(p);
    int rc = p->file ? kvt_file_close(p->file) : KVT_OK;
    pool_destroy(p);
    fm_destroy(p);
    pthread_cond_destroy(&p->loaded);
    pthread_mutex_destroy(&p->mu);
    free(p->path);
    free(p);
    return rc;
}

uint32_t kvt_pager_page_size(const kvt_pager *p) { return p->page_size; }
uint32_t kvt_pager_engine_id(const kvt_pager *p) { return p->engine_id; }
int kvt_pager_direct_io(const kvt_pager *p) { return p->direct_io; }
uint64_t kvt_pager_ckpt_gen(const kvt_pager *p) { return p->ckpt_gen; }
const char *kvt_pager_path(const kvt_pager *p) { return p->path; }

const uint8_t *kvt_pager_engine_meta(const kvt_pager *p, size_t *len) {
    *len = p->engine_meta_len;
    return p->engine_meta;
}

/* ---- writes ---- */

int pager_alloc_locked(kvt_pager *p, uint8_t type, frame **out) {
    kvt_pgno pg;
    KVT_TRY(fm_alloc(p, &pg));
    frame *f;
    int rc = pool_take(p, pg, &f);
    if (rc < 0) {
        fm_free(p, pg);
        return rc;
    }
    memset(f->page.data, 0, p->page_size);
    page_hdr_init(f->page.data, type, pg, p->ckpt_gen + 1);
    pool_mark_dirty(p, f);
    *out = f;
    return KVT_OK;
}

int kvt_pager_alloc(kvt_pager *p, uint8_t type, kvt_page **out) {
    frame *f = NULL;
    pthread_mutex_lock(&p->mu);
    int rc = pager_check_usable(p);
    if (rc == KVT_OK) rc = pager_alloc_locked(p, type, &f);
    pthread_mutex_unlock(&p->mu);
    *out = f ? &f->page : NULL;
    return rc;
}

/* Copy a page of the last checkpoint (a pool frame or a page of the read map) to a new
 * page of the current gen; the caller's pin on the old one is released. */
static int copy_on_write(kvt_pager *p, kvt_page *old, frame **out) {
    frame *nf;
    KVT_TRY(pager_alloc_locked(p, old->data[HDR_TYPE], &nf));
    memcpy(nf->page.data + KVT_PAGE_HDR, old->data + KVT_PAGE_HDR,
           p->page_size - KVT_PAGE_HDR);
    kvt_pgno oldno = old->pgno;
    if (map_owns(p, old)) {
        map_release(p, old);
    } else {
        frame *of = (frame *)old;
        if (of->pin) of->pin--;
        if (!of->pin) pool_drop(p, of);  /* the current state no longer uses it */
    }
    bm_set(&p->deferb, oldno);
    p->ndefer++;
    *out = nf;
    return KVT_OK;
}

/* A page served from the read map becomes a pinned frame (the pool's copy if it has
 * one), so that dirty pages only ever live in the pool. The handle is released. */
static int frame_of_mapped(kvt_pager *p, kvt_page *pg, frame **out) {
    frame *f = pool_lookup(p, pg->pgno);
    if (f) {
        f->pin++;
        f->ref = 1;
    } else {
        KVT_TRY(pool_take(p, pg->pgno, &f));
        memcpy(f->page.data, pg->data, p->page_size);
    }
    map_release(p, pg);
    *out = f;
    return KVT_OK;
}

/* New this gen: modified in place (a mapped page first becomes a frame). Else copied on
 * write, straight from the map when the pool has no frame of it (else a frame of the
 * page would outlive its deferred free). On failure *pg is still the caller's pin. */
static int write_locked(kvt_pager *p, kvt_page **pg) {
    kvt_page *cur = *pg;
    int isnew = bm_get(&p->newb, cur->pgno), mapped = map_owns(p, cur);
    frame *f;
    if (mapped && (isnew || pool_lookup(p, cur->pgno))) {
        KVT_TRY(frame_of_mapped(p, cur, &f));
        *pg = cur = &f->page;
    }
    if (isnew) {
        pool_mark_dirty(p, (frame *)cur);
    } else {
        KVT_TRY(copy_on_write(p, cur, &f));
        *pg = &f->page;
    }
    /* A page copied from a mapping that faulted may hold zeros (mapguard.c): it must
     * never be written back, so the pager stops here. */
    if (mapped && map_faulted(p))
        return pager_fail(p, kvt_seterr(KVT_EIO, "%s: page %" PRIu64 " copied from the "
                                        "read map after a read error under it", p->path,
                                        (*pg)->pgno));
    return KVT_OK;
}

int kvt_pager_write(kvt_pager *p, kvt_page **pg) {
    pthread_mutex_lock(&p->mu);
    int rc = pager_check_usable(p);
    if (rc == KVT_OK) rc = write_locked(p, pg);
    pthread_mutex_unlock(&p->mu);
    return rc;
}

int pager_free_locked(kvt_pager *p, kvt_pgno pgno) {
    if (pgno < 2 || pgno >= p->npages)
        return kvt_seterr(KVT_ECORRUPT, "%s: free of page %" PRIu64 ": out of range (%"
                          PRIu64 " pages)", p->path, pgno, p->npages);
    if (bm_get(&p->freeb, pgno) || bm_get(&p->deferb, pgno))
        return kvt_seterr(KVT_ECORRUPT, "%s: page %" PRIu64 " freed twice", p->path, pgno);
    frame *f = pool_lookup(p, pgno);
    if (f && f->pin)
        return kvt_seterr(KVT_EINVAL, "%s: free of pinned page %" PRIu64, p->path, pgno);
    if (f) pool_drop(p, f);
    if (bm_get(&p->newb, pgno)) return fm_free(p, pgno);   /* never durable: reuse now */
    bm_set(&p->deferb, pgno);
    p->ndefer++;
    return KVT_OK;
}

int kvt_pager_free(kvt_pager *p, kvt_pgno pgno) {
    pthread_mutex_lock(&p->mu);
    int rc = pager_check_usable(p);
    if (rc == KVT_OK) rc = pager_free_locked(p, pgno);
    pthread_mutex_unlock(&p->mu);
    return rc;
}

/* Recovery reads a page the log names straight from the file (the pool and the
 * allocator do not know it yet): checksum and page number verified. */
int kvt_pager_read_page(kvt_pager *p, kvt_pgno pgno, uint8_t *buf) {
    if (pgno < 2) return kvt_seterr(KVT_ECORRUPT, "%s: page %" PRIu64 " named by the log",
                                    p->path, pgno);
    KVT_TRY(kvt_file_read_full(p->file, buf, p->page_size, pgno * p->page_size));
    return page_verify(p, buf, pgno);
}

/* The page becomes a deferred free: out of the allocator's reach until the next
 * checkpoint is durable (then released as usual). Pages between the logical end and
 * pgno become free pages. */
int kvt_pager_reserve(kvt_pager *p, kvt_pgno pgno) {
    pthread_mutex_lock(&p->mu);
    int rc = pager_check_usable(p);
    if (rc == KVT_OK && pgno < 2)
        rc = kvt_seterr(KVT_ECORRUPT, "%s: reserve of page %" PRIu64, p->path, pgno);
    if (rc == KVT_OK && pgno >= p->npages) {
        uint64_t old = p->npages;
        rc = fm_grow(p, pgno + 1);
        for (uint64_t i = old; rc == KVT_OK && i <= pgno; i++) fm_free(p, i);
    }
    if (rc == KVT_OK && !bm_get(&p->deferb, pgno)) {
        if (!bm_get(&p->freeb, pgno))
            rc = kvt_seterr(KVT_ECORRUPT, "%s: page %" PRIu64 " named by the log is in use "
                            "by the checkpoint", p->path, pgno);
        else {
            bm_clr(&p->freeb, pgno);
            p->nfree--;
            bm_set(&p->deferb, pgno);
            p->ndefer++;
        }
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

int kvt_pager_sync(kvt_pager *p) {
    pthread_mutex_lock(&p->mu);
    int rc = pager_check_usable(p);
    if (rc == KVT_OK && (rc = kvt_file_sync(p->file)) < 0) rc = pager_fail(p, rc);
    pthread_mutex_unlock(&p->mu);
    return rc;
}

/* ---- checkpoint ---- */

static int sync_file(kvt_pager *p) {
    int rc = kvt_file_sync(p->file);
    return rc < 0 ? pager_fail(p, rc) : KVT_OK;
}

/* After the new meta is durable: the old checkpoint's pages can be reused. */
static void finish_checkpoint(kvt_pager *p, uint64_t gen) {
    p->ckpt_gen = gen;
    fm_commit(p);
    fm_release_deferred(p);
    memset(p->newb.w, 0, p->newb.nwords * sizeof *p->newb.w);
    p->st.checkpoints++;
    uint64_t before = p->npages;
    fm_trim_tail(p);
    p->ckpt_npages = p->npages;
    if (p->npages < before &&       /* best effort: a longer file is still valid */
        kvt_file_truncate(p->file, p->npages * p->page_size) == KVT_OK)
        map_truncated(p, p->npages);
    map_refresh(p);                 /* the writer, no reader: the mapping may move */
}

static int checkpoint_locked(kvt_pager *p, const void *em, size_t len) {
    KVT_TRY(pager_check_usable(p));
    if (p->read_only)
        return kvt_seterr(KVT_EREADONLY, "%s: checkpoint of a read-only pager", p->path);
    if (len > KVT_ENGINE_META_MAX)
        return kvt_seterr(KVT_EINVAL, "%s: engine meta of %zu bytes (max %d)", p->path,
                          len, KVT_ENGINE_META_MAX);
    p->nospace = 0;                 /* try the writes again */
    int rc = pool_retire_flush(p);
    if (rc == KVT_OK) rc = pool_flush_dirty(p);
    kvt_pgno fm_first;
    uint64_t fm_count;
    if (rc == KVT_OK) rc = fm_write(p, &fm_first, &fm_count);
    if (rc == KVT_ENOSPC) p->nospace = 1;
    KVT_TRY(rc);
    KVT_TRY(sync_file(p));
    uint64_t gen = p->ckpt_gen + 1;
    meta m;
    meta_from_state(p, &m, gen);
    m.em_len = (uint32_t)len;
    if (len) memcpy(m.em, em, len);
    rc = write_meta(p, &m, gen % 2, META_BYTES);
    if (rc == KVT_ENOSPC) {
        fm_undo(p);
        p->nospace = 1;
        return rc;
    }
    KVT_TRY(rc);
    KVT_TRY(sync_file(p));
    if (len) memcpy(p->engine_meta, em, len);
    p->engine_meta_len = len;
    finish_checkpoint(p, gen);
    return KVT_OK;
}

int kvt_pager_checkpoint(kvt_pager *p, const void *engine_meta, size_t len) {
    pthread_mutex_lock(&p->mu);
    int rc = checkpoint_locked(p, engine_meta, len);
    pthread_mutex_unlock(&p->mu);
    return rc;
}

int kvt_pager_failed(const kvt_pager *p) { return p && p->fatal; }

int kvt_pager_discard_unsaved(kvt_pager *p) {
    if (!p || p->read_only || p->fatal || !p->file) return KVT_OK;
    pthread_mutex_lock(&p->mu);
    uint64_t size = 0, keep = p->ckpt_npages * p->page_size;
    int rc = kvt_file_size(p->file, &size);
    if (rc == KVT_OK && size > keep) rc = kvt_file_truncate(p->file, keep);
    if (rc == KVT_OK && size > keep) map_truncated(p, p->ckpt_npages);
    pthread_mutex_unlock(&p->mu);
    return rc;
}

uint64_t kvt_pager_pending_free(const kvt_pager *p) {
    uint64_t n = __atomic_load_n(&p->ndefer, __ATOMIC_RELAXED) +
                 __atomic_load_n(&p->ndirty, __ATOMIC_RELAXED);
    return n * p->page_size;
}

void kvt_pager_get_stats(kvt_pager *p, kvt_pager_stats *out) {
    pthread_mutex_lock(&p->mu);
    *out = p->st;
    out->pages_total = p->npages;
    out->pages_free = p->nfree;
    out->pages_pending_free = p->ndefer;
    out->pages_dirty = p->ndirty;
    out->pages_cached = p->nlive;
    pthread_mutex_unlock(&p->mu);
}
