/* mvcc_put.c - kvt_mvcc_put with write groups (contract: kvt_mvcc.h).
 *
 * Concurrent puts are coalesced as RocksDB's write groups are: each put queues a request
 * and waits; the queue's head leads when no one does: it takes the queue (up to
 * GROUP_MAX requests, stopping before a key already in the group), and under the writer
 * lock gives each request its revision (head+1, head+2, ... in queue order) and its
 * changes, all in one log record committed at once. The leader then steps down (the
 * next group forms and commits meanwhile), waits outside every lock for the fsync that
 * covers the record (durable handle), publishes the group's revisions and wakes each
 * member on its own condition variable. So a group costs one log append and one lock
 * hand-over instead of one per put, a member sleeps once, and each put is still
 * durable on return, with its own revision in order. kvt_mvcc_put_begin is the same
 * put as a group of one that never waits (kvt_mvcc.h).
 *
 * A request that fails on its own (a lease that is not live, no memory for its changes)
 * fails alone: its changes are cut from the record before the next request's. A failed
 * commit fails every member (nothing of the record was applied), and so does a failed
 * fsync (the handle is latched: the outcome is unknown).
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include "mvcc_int.h"

#define GROUP_MAX 128            /* requests per group */

typedef struct mvcc_put_req {
    const uint8_t *k, *v;
    size_t kl, vl;
    uint64_t lease;
    int want_prev;
    uint8_t *prev_buf;
    size_t prev_cap;
    kvt_mvcc_put_result *res;
    uint64_t lsn;                /* log position past the group's record */
    int rc, done;
    int sleeping;                /* waits on cv (under q_mu): signal it to wake it */
    pthread_cond_t cv;           /* initialised only by a request that has to wait */
    char msg[256];               /* the error's message, for the member's own thread */
    struct mvcc_put_req *next;
} mvcc_put_req;

/* Hand the previous value to the caller: its buffer if it fits, else the heap. */
static int give_prev_value(const kvt_buf *src, mvcc_put_req *r) {
    if (src->len <= r->prev_cap) {
        if (src->len) memcpy(r->prev_buf, src->data, src->len);
        return KVT_OK;
    }
    r->res->prev_heap = malloc(src->len);
    if (!r->res->prev_heap) return kvt_seterr(KVT_ENOMEM, "no memory for a previous value");
    memcpy(r->res->prev_heap, src->data, src->len);
    return KVT_OK;
}

/* Under the writer lock: read the key's current version (no earlier member of the
 * group writes this key) and append the put's changes at revision rev. */
static int stage_put(kvt_mvcc *m, mvcc_put_req *r, uint64_t head, uint64_t rev) {
    if (r->lease && !mvcc_lease_live(m, r->lease))
        return kvt_seterr(KVT_ENOLEASE, "requested lease %#llx not found",
                          (unsigned long long)r->lease);
    KVT_TRY(mvcc_kv_prefix(&m->key, r->k, r->kl));
    size_t plen = m->key.len;
    kvt_mvcc_kv prev = {0};
    int rc;
    if (!r->want_prev && mvcc_head_header(m, r->k, r->kl, &prev))
        rc = prev.mod ? KVT_OK : KVT_NOTFOUND;    /* the header is all a put needs */
    else
        rc = mvcc_read_version(m, r->k, r->kl, &m->key, plen, head, &prev, &m->aux);
    if (rc < 0) return rc;
    int live = rc == KVT_OK && !prev.tombstone;
    if (live && r->want_prev) KVT_TRY(give_prev_value(&m->aux, r));
    kvt_mvcc_kv e = {.mod = rev, .lease = r->lease};
    e.create = live ? prev.create : e.mod;
    e.version = live ? prev.version + 1 : 1;
    KVT_TRY(mvcc_record_change(m, plen, r->k, r->kl, r->v, r->vl, &e, 0,
                               live ? prev.lease : 0));
    if (live) r->res->prev = prev;
    r->res->rev = e.mod;
    r->res->create = e.create;
    r->res->version = e.version;
    return KVT_OK;
}

static void fail_req(mvcc_put_req *r, int rc) {
    r->rc = rc;
    snprintf(r->msg, sizeof r->msg, "%s", kvt_errmsg());
    if (r->res->prev_heap) {
        free(r->res->prev_heap);
        r->res->prev_heap = NULL;
    }
    memset(&r->res->prev, 0, sizeof r->res->prev);
    r->res->rev = r->res->create = r->res->version = 0;
}

/* Does an earlier member of the group (first..stop) write key k? */
static int key_in_group(const mvcc_put_req *first, const mvcc_put_req *stop,
                        const mvcc_put_req *r) {
    for (const mvcc_put_req *q = first; q != stop; q = q->next)
        if (q->rc == KVT_OK && q->kl == r->kl && memcmp(q->k, r->k, r->kl) == 0) return 1;
    return 0;
}

/* Under the writer lock: stage the members from first on (the group ends before a
 * repeated key or at GROUP_MAX), commit them as one record. Returns the first request
 * not in the group (NULL: all were). */
static mvcc_put_req *commit_group(kvt_mvcc *m, mvcc_put_req *first) {
    uint64_t head = atomic_load(&m->head), rev = head;
    int rc = kvt_db_usable(m->db, 1), staged = 0, n = 0;
    mvcc_put_req *r = first;
    if (rc < 0) {                         /* the handle cannot write: fail the group */
        for (; r && n < GROUP_MAX; r = r->next, n++) fail_req(r, rc);
        return r;
    }
    m->rec.len = 0;
    for (; r && n < GROUP_MAX; r = r->next, n++) {
        if (key_in_group(first, r, r)) break;
        size_t mark = m->rec.len;
        int one = stage_put(m, r, head, rev + 1);
        if (one < 0) {
            m->rec.len = mark;            /* this request's changes only */
            fail_req(r, one);
            continue;
        }
        r->rc = KVT_OK;
        rev++;
        staged++;
    }
    mvcc_put_req *rest = r;
    uint64_t lsn = 0;
    if (rc == KVT_OK && staged) rc = kvt_db_commit_logged(m->db, m->rec.data, m->rec.len, &lsn);
    for (r = first; r != rest; r = r->next) {
        if (r->rc != KVT_OK) continue;
        if (rc < 0) {
            fail_req(r, rc);
            continue;
        }
        r->lsn = lsn;
        kvt_mvcc_kv hdr = {.mod = r->res->rev, .create = r->res->create,
                           .version = r->res->version, .lease = r->lease};
        mvcc_note_header(m, r->k, r->kl, &hdr);
    }
    if (rc == KVT_OK && staged) kvt_mvcc_set_head(m, rev);
    return rest;
}

/* With q_mu held: wake r if it sleeps (its own condvar: each waiter is woken alone; a
 * shared one woke all of them per group, and the herd fighting for q_mu cost more CPU
 * than the puts, measured with 16 writers). */
static void wake_req(mvcc_put_req *r) {
    if (r->sleeping) pthread_cond_signal(&r->cv);
}

/* The group's fsync, by its leader outside every lock (the next group forms and commits
 * meanwhile; kvt_wal_sync lets the fsyncs of consecutive groups coincide), then the
 * group's revisions become visible. A failed fsync fails every member. */
static void sync_group(kvt_mvcc *m, mvcc_put_req *first, const mvcc_put_req *rest) {
    uint64_t lsn = 0, top = 0;
    for (mvcc_put_req *r = first; r != rest; r = r->next)
        if (r->rc == KVT_OK) {
            lsn = r->lsn;
            top = r->res->rev;
        }
    if (!lsn) return;
    int rc = kvt_db_sync_upto(m->db, lsn);
    if (rc == KVT_OK) {
        kvt_mvcc_publish(m, top);
        return;
    }
    for (mvcc_put_req *r = first; r != rest; r = r->next)
        if (r->rc == KVT_OK) {
            r->rc = rc;                   /* its revision stays in res: assigned, unknown */
            snprintf(r->msg, sizeof r->msg, "%s", kvt_errmsg());
        }
}

/* The leader (q_mu held, at the queue's head): detach the queue, commit one group from
 * it without q_mu, put what the group did not take back at the queue's front (before
 * the requests that arrived meanwhile: FIFO is revision order), step down and wake the
 * new head to lead; then, on a durable handle, fsync for the group; then mark its
 * members done and wake them. So a member sleeps once per put, woken when its put is
 * durable and visible. */
static void lead(kvt_mvcc *m) {
    mvcc_put_req *first = m->q_head;
    m->q_head = m->q_tail = NULL;
    m->q_leading = 1;
    pthread_mutex_unlock(&m->q_mu);
    pthread_mutex_lock(&m->lock);
    mvcc_put_req *rest = commit_group(m, first);
    pthread_mutex_unlock(&m->lock);
    pthread_mutex_lock(&m->q_mu);
    if (rest) {
        mvcc_put_req *last = rest;
        while (last->next) last = last->next;
        last->next = m->q_head;
        if (!m->q_head) m->q_tail = last;
        m->q_head = rest;
    }
    m->q_leading = 0;
    if (m->q_head) wake_req(m->q_head);
    if (m->durable) {
        pthread_mutex_unlock(&m->q_mu);   /* members wait on done: the chain stays put */
        sync_group(m, first, rest);
        pthread_mutex_lock(&m->q_mu);
    }
    for (mvcc_put_req *r = first; r != rest; r = r->next) {
        r->done = 1;
        wake_req(r);
    }
}

/* Queue r and wait until a group (led by this thread or another) has taken it. The
 * queue's head leads when no one does. */
static void join_group(kvt_mvcc *m, mvcc_put_req *r) {
    int have_cv = 0;
    pthread_mutex_lock(&m->q_mu);
    if (m->q_tail) m->q_tail->next = r;
    else m->q_head = r;
    m->q_tail = r;
    while (!r->done) {
        if (!m->q_leading && m->q_head == r) {
            lead(m);
            continue;
        }
        if (!have_cv && pthread_cond_init(&r->cv, NULL) != 0) {
            pthread_mutex_unlock(&m->q_mu);      /* cannot sleep: yield, look again */
            sched_yield();
            pthread_mutex_lock(&m->q_mu);
            continue;
        }
        have_cv = 1;
        r->sleeping = 1;
        pthread_cond_wait(&r->cv, &m->q_mu);
        r->sleeping = 0;
    }
    pthread_mutex_unlock(&m->q_mu);
    if (have_cv) pthread_cond_destroy(&r->cv);
}

static int check_put_args(const uint8_t *k, size_t kl, const uint8_t *v, size_t vl,
                          int want_prev, const uint8_t *prev_buf, size_t prev_cap,
                          kvt_mvcc_put_result *res) {
    if (!res) return kvt_seterr(KVT_EINVAL, "kvt_mvcc_put: res is NULL");
    memset(res, 0, sizeof *res);
    KVT_TRY(mvcc_check_key(k, kl));
    if (vl && !v) return kvt_seterr(KVT_EINVAL, "NULL value pointer");
    if (want_prev && prev_cap && !prev_buf) return kvt_seterr(KVT_EINVAL, "NULL prev buffer");
    return KVT_OK;
}

/* The end of a put whose group took it (in flight, r->rc set): wait for the fsync that
 * covers its record (outside every lock: the group's members share it, kvt_wal_sync
 * groups waiters, and log order is revision order, so it covers every revision <= ours),
 * publish, leave. */
static int finish_put(kvt_mvcc *m, int rc, uint64_t lsn, kvt_mvcc_put_result *res) {
    if (rc == KVT_OK && m->durable) {
        rc = kvt_db_sync_upto(m->db, lsn);
        if (rc == KVT_OK) kvt_mvcc_publish(m, res->rev);
    }
    if (rc < 0 && res->prev_heap) {
        free(res->prev_heap);
        res->prev_heap = NULL;
    }
    mvcc_leave(m);
    return rc;
}

/* A put's request, not yet queued. */
static mvcc_put_req new_req(const uint8_t *k, size_t kl, const uint8_t *v, size_t vl,
                            uint64_t lease, int want_prev, uint8_t *prev_buf,
                            size_t prev_cap, kvt_mvcc_put_result *res) {
    return (mvcc_put_req){.k = k, .kl = kl, .v = v, .vl = vl, .lease = lease,
                          .want_prev = want_prev, .prev_buf = prev_buf,
                          .prev_cap = prev_cap, .res = res};
}

int kvt_mvcc_put(kvt_mvcc *m, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl,
                 uint64_t lease, int want_prev, uint8_t *prev_buf, size_t prev_cap,
                 kvt_mvcc_put_result *res) {
    KVT_TRY(check_put_args(k, kl, v, vl, want_prev, prev_buf, prev_cap, res));
    KVT_TRY(mvcc_enter(m));
    mvcc_put_req r = new_req(k, kl, v, vl, lease, want_prev, prev_buf, prev_cap, res);
    join_group(m, &r);                    /* returns with the put durable (or failed) */
    if (r.rc < 0) {
        kvt_seterr(r.rc, "%s", r.msg);
        free(res->prev_heap);
        res->prev_heap = NULL;
    }
    mvcc_leave(m);
    return r.rc;
}

/* Lead a group of one if nobody else writes: the queue empty, no leader, the writer
 * lock free, and no checkpoint due (its I/O must not run where the caller cannot let
 * other threads go on). Never waits for a lock. */
static int try_lead_alone(kvt_mvcc *m, mvcc_put_req *r) {
    if (pthread_mutex_trylock(&m->q_mu)) return 0;
    int idle = !m->q_head && !m->q_leading && !pthread_mutex_trylock(&m->lock);
    if (idle) m->q_leading = 1;
    pthread_mutex_unlock(&m->q_mu);
    if (!idle) return 0;
    if (kvt_db_checkpoint_due(m->db, 2 * r->kl + r->vl + KVT_MVCC_HDR + MVCC_REVLOG_KEY)) {
        r->rc = KVT_MVCC_BUSY;
    } else {
        commit_group(m, r);      /* a group of one: always taken */
        if (r->rc < 0) kvt_seterr(r->rc, "%s", r->msg);
    }
    pthread_mutex_unlock(&m->lock);
    pthread_mutex_lock(&m->q_mu);
    m->q_leading = 0;
    if (m->q_head) wake_req(m->q_head);     /* puts queued meanwhile: the head leads */
    pthread_mutex_unlock(&m->q_mu);
    return r->rc != KVT_MVCC_BUSY;
}

int kvt_mvcc_put_begin(kvt_mvcc *m, const uint8_t *k, size_t kl, const uint8_t *v,
                       size_t vl, uint64_t lease, int want_prev, uint8_t *prev_buf,
                       size_t prev_cap, kvt_mvcc_put_result *res, uint64_t *lsn) {
    KVT_TRY(check_put_args(k, kl, v, vl, want_prev, prev_buf, prev_cap, res));
    if (!lsn) return kvt_seterr(KVT_EINVAL, "kvt_mvcc_put_begin: lsn is NULL");
    KVT_TRY(mvcc_enter(m));
    mvcc_put_req r = new_req(k, kl, v, vl, lease, want_prev, prev_buf, prev_cap, res);
    if (!try_lead_alone(m, &r)) {
        mvcc_leave(m);
        return KVT_MVCC_BUSY;
    }
    if (r.rc < 0) return finish_put(m, r.rc, 0, res);
    *lsn = r.lsn;
    return KVT_OK;
}

int kvt_mvcc_put_end(kvt_mvcc *m, uint64_t lsn, kvt_mvcc_put_result *res) {
    return finish_put(m, KVT_OK, lsn, res);
}
