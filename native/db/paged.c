/* paged.c - full leaves logged by reference: a sequential load writes its entries once.
 *
 * A put record is logged before it is applied, so each entry is written twice: in the
 * log, then in its page. For a strictly ascending put_many under sync mode "none"
 * (nothing is fsynced per commit) the order is reversed: the log's space is reserved,
 * the record is applied while the engine collects the leaves it fills and retires
 * (kvt_engine_ops.log_begin/log_end: written to the data file, checksummed, and from
 * then on copied on write with their frees deferred, so the file keeps them unchanged
 * until the next checkpoint), and the record logged in their place names those pages
 * (op KVT_BATCH_OP_PAGE: page number and checksum) and keeps only the ops outside
 * their key ranges. The pages are written before the log record, so a process crash
 * never loses an acknowledged commit; a failure after the apply latches the handle
 * (the record is then neither logged nor acknowledged, and reopening recovers without
 * it: all or nothing).
 * Recovery reads every named page from the file first (kvt_db_paged_scan) and keeps
 * them in place until its checkpoint is durable (reserved: never reallocated, and the
 * file is not cut back to the checkpoint's length), so a crash during recovery finds
 * them again; replay then puts each page's entries again. A page
 * the file does not hold as logged (lost with the OS cache, which sync mode "none"
 * allows) ends the log before that record, like a torn tail. An explicit sync first
 * fsyncs the data file (kvt_db_paged_sync), so a durable record never names a page
 * that is not. Checkpoint triggers count the named pages as log bytes.
 */
#include <stdlib.h>
#include <string.h>
#include "db_internal.h"

#define PAGE_OP_BYTES 25u        /* op, klen 8, vlen 8, pgno, crc, 0 */

static int eligible(const kvt_db *db, size_t len) {
    const kvt_engine_ops *o = db->ops;
    /* smaller than two pages, a record cannot fill a leaf of its own */
    return db->opt.sync_mode == 2 && o->log_begin && o->log_end && o->put_page &&
           len >= 2 * (size_t)kvt_pager_page_size(db->pager);
}

/* Whether k lies in a logged page's key range; j moves forward only (ops and pages are
 * both in ascending key order). */
static int in_page(const kvt_logged_page *pg, size_t n, size_t *j, const uint8_t *k, size_t kl) {
    while (*j < n && kvt_keycmp(pg[*j].last, pg[*j].last_len, k, kl) < 0) (*j)++;
    return *j < n && kvt_keycmp(pg[*j].first, pg[*j].first_len, k, kl) <= 0;
}

/* The record as logged: the ops outside every page, then one PAGE op per page. */
static int build(kvt_db *db, const uint8_t *rec, size_t len, const kvt_logged_page *pg,
                 size_t n) {
    kvt_buf *b = &db->paged_rec;
    b->len = 0;
    KVT_TRY(kvt_buf_reserve(b, len + n * PAGE_OP_BYTES));
    uint8_t *d = b->data;
    uint32_t total = kvt_get32(rec), count = 0;
    size_t at = 4, off = 4, j = 0;
    for (uint32_t i = 0; i < total; i++) {
        size_t start = off;
        batch_op o;
        KVT_TRY(kvt_db_record_next(rec, len, &off, &o));
        if (in_page(pg, n, &j, o.k, o.kl)) continue;
        memcpy(d + at, rec + start, off - start);
        at += off - start;
        count++;
    }
    for (size_t i = 0; i < n; i++, at += PAGE_OP_BYTES, count++) {
        d[at] = KVT_BATCH_OP_PAGE;
        kvt_put32(d + at + 1, 8);
        kvt_put32(d + at + 5, 8);
        kvt_put64(d + at + 9, pg[i].pgno);
        kvt_put32(d + at + 17, pg[i].crc);
        kvt_put32(d + at + 21, 0);
    }
    kvt_put32(d, count);
    b->len = at;
    return KVT_OK;
}

int kvt_db_paged_commit(kvt_db *db, const uint8_t *rec, size_t len, uint64_t *lsn) {
    if (!eligible(db, len)) return 1;
    /* Applied before it is logged, so the append must not be refused for space then:
     * the logged record is at most the record plus one PAGE op per 2 KiB of it. */
    size_t room = len + PAGE_OP_BYTES * (len / 2048 + 2);
    if (kvt_wal_reserve(db->wal, room) < 0) return 1;   /* the usual path reports it */
    const kvt_logged_page *pg = NULL;
    size_t n = 0;
    pthread_rwlock_wrlock(&db->rw);
    db->ops->log_begin(db->eng);
    int rc = kvt_db_apply_record(db, rec, len, NULL);
    int end = db->ops->log_end(db->eng, rc == KVT_OK, &pg, &n);
    if (rc == KVT_OK) rc = end;
    if (rc == KVT_OK && n) rc = build(db, rec, len, pg, n);
    pthread_rwlock_unlock(&db->rw);
    if (rc < 0) return kvt_db_latch(db, rc);   /* engine half-applied: reopen replays */
    if (n) atomic_store(&db->data_unsynced, 1);
    rc = n ? kvt_wal_append(db->wal, db->paged_rec.data, db->paged_rec.len, lsn)
           : kvt_wal_append(db->wal, rec, len, lsn);
    if (rc < 0) {
        /* applied but not logged: only a reopen gets back to what the log holds */
        if (rc == KVT_ENOSPC || rc == KVT_ENOMEM || rc == KVT_ETOOLARGE)
            rc = kvt_seterr(KVT_EIO, "%s: a batch applied could not be logged: %s", db->dir,
                            kvt_errmsg());
        return kvt_db_latch(db, rc);
    }
    db->logged_bytes += n * kvt_pager_page_size(db->pager);
    return KVT_OK;
}

int kvt_db_paged_sync(kvt_db *db) {
    if (!atomic_exchange(&db->data_unsynced, 0)) return KVT_OK;
    int rc = kvt_pager_sync(db->pager);
    return rc < 0 ? kvt_db_latch(db, rc) : KVT_OK;
}

/* ---- recovery ------------------------------------------------------------------- */

typedef struct scan_ctx { kvt_db *db; kvt_paged_replay *r; } scan_ctx;

static int keep_page(kvt_paged_replay *r, kvt_pgno pgno, uint8_t *buf) {
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 64;
        uint8_t **pv = realloc(r->page, cap * sizeof *pv);
        if (!pv) return kvt_seterr(KVT_ENOMEM, "out of memory reading logged pages");
        r->page = pv;
        kvt_pgno *nv = realloc(r->pgno, cap * sizeof *nv);
        if (!nv) return kvt_seterr(KVT_ENOMEM, "out of memory reading logged pages");
        r->pgno = nv;
        r->cap = cap;
    }
    r->page[r->n] = buf;
    r->pgno[r->n++] = pgno;
    return KVT_OK;
}

/* A damaged record is left for the replay to judge; a page the file does not hold as
 * the record names it ends the log here (the record and its pages are dropped). */
static int scan_record(void *ctx, const uint8_t *rec, size_t len) {
    scan_ctx *c = ctx;
    kvt_paged_replay *r = c->r;
    uint64_t index = r->records++;
    size_t mark = r->n, off = 4;
    uint32_t ps = kvt_pager_page_size(c->db->pager);
    uint32_t count = len >= 4 ? kvt_get32(rec) : 0;
    for (uint32_t i = 0; i < count; i++) {
        batch_op o;
        if (kvt_db_record_next(rec, len, &off, &o) < 0) return KVT_OK;
        if (o.op != KVT_BATCH_OP_PAGE) continue;
        kvt_pgno pgno = kvt_get64(o.k);
        uint8_t *buf = NULL;
        if (posix_memalign((void **)&buf, 4096, ps))   /* aligned for direct I/O */
            return kvt_seterr(KVT_ENOMEM, "out of memory reading logged pages");
        int rc = kvt_pager_read_page(c->db->pager, pgno, buf);
        if (rc == KVT_ECORRUPT || (rc == KVT_OK && kvt_get32(buf) != kvt_get32(o.v))) {
            free(buf);
            while (r->n > mark) free(r->page[--r->n]);
            r->stop_at = index;
            return 1;
        }
        if (rc == KVT_OK) rc = keep_page(r, pgno, buf);
        if (rc < 0) { free(buf); return rc; }
    }
    return KVT_OK;
}

int kvt_db_paged_scan(kvt_db *db, kvt_paged_replay *r) {
    memset(r, 0, sizeof *r);
    r->stop_at = UINT64_MAX;
    if (!db->ops->put_page) return KVT_OK;   /* an engine that never logs pages */
    scan_ctx c = {db, r};
    KVT_TRY(kvt_wal_scan(db->wal, kvt_pager_ckpt_gen(db->pager), scan_record, &c));
    /* Replay allocates pages: none of these until a checkpoint no longer needs them. */
    for (size_t i = 0; i < r->n && !db->opt.read_only; i++)
        KVT_TRY(kvt_pager_reserve(db->pager, r->pgno[i]));
    return KVT_OK;
}

int kvt_db_paged_apply(kvt_db *db, const batch_op *o) {
    kvt_paged_replay *r = db->replay;
    kvt_pgno pgno = kvt_get64(o->k);
    if (!r || !db->ops->put_page || r->next >= r->n || r->pgno[r->next] != pgno)
        return kvt_seterr(KVT_ECORRUPT, "%s: a log record names page %llu, not read by "
                          "recovery", db->wal_path, (unsigned long long)pgno);
    uint8_t *page = r->page[r->next];
    r->page[r->next++] = NULL;
    int rc = db->ops->put_page(db->eng, pgno, page);
    free(page);
    return rc;
}

void kvt_db_paged_free(kvt_paged_replay *r) {
    for (size_t i = 0; i < r->n; i++) free(r->page[i]);
    free(r->page);
    free(r->pgno);
    memset(r, 0, sizeof *r);
}
