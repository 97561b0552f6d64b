/* mvcc_int.h - internals shared by the files of native/mvcc/. */
#ifndef KVT_MVCC_INT_H
#define KVT_MVCC_INT_H
#include <pthread.h>
#include <stdatomic.h>
#include "kvt_mvcc.h"
#include "kvt_util.h"
#include "../db/db_internal.h"

#define MVCC_REVLOG_KEY 13
#define MVCC_HEAD_CACHE_ENTRIES (1u << 17)   /* ~100-150 bytes each with short keys */

typedef struct head_ent head_ent;
typedef struct head_cache {
    head_ent **tab;
    size_t nbuckets, n, max;
    head_ent *oldest, *newest;
} head_cache;

struct kvt_mvcc {
    kvt_db *db;
    int durable;                   /* visible waits for the fsync */
    pthread_mutex_t lock;          /* the store's writer lock */
    pthread_mutex_t heads_mu;      /* the head cache, head, writing */
    head_cache heads;
    int writing;                   /* a write noted keys but has not set head yet */
    _Atomic uint64_t head;
    _Atomic uint64_t visible;
    atomic_int closed;
    atomic_int inflight;           /* calls that may touch db (close waits for 0) */
    kvt_buf rec, key, aux, val;    /* scratch, under lock */
    uint64_t *leases;              /* live lease ids, sorted (under lock) */
    size_t nleases, capleases;
    /* write groups (mvcc_put.c): puts queue here; one leader commits a group */
    pthread_mutex_t q_mu;
    struct mvcc_put_req *q_head, *q_tail;
    int q_leading;
};

/* mvcc.c: calls that may touch the db count themselves in flight (close waits) */
int  mvcc_enter(kvt_mvcc *m);
void mvcc_leave(kvt_mvcc *m);
/* The newest version of k at or below rev (head cache, else a seek); key holds the
 * engine prefix of k (prefix_len bytes) and is extended; the value goes to value. */
int  mvcc_read_version(kvt_mvcc *m, const uint8_t *k, size_t kl, kvt_buf *key,
                       size_t prefix_len, uint64_t rev, kvt_mvcc_kv *out, kvt_buf *value);

/* mvcc.c: the header of k's newest version (mod 0: none) if the head cache knows it
 * (writer lock held, so it is the newest); 0 if not: then read the version */
int  mvcc_head_header(kvt_mvcc *m, const uint8_t *k, size_t kl, kvt_mvcc_kv *hdr);
/* mvcc.c: kvt_mvcc_note() that also records the new version's header */
void mvcc_note_header(kvt_mvcc *m, const uint8_t *k, size_t kl, const kvt_mvcc_kv *hdr);

/* mvcc.c: one change (entry, revision-log entry, lease attachment) appended to m->rec;
 * m->key holds the engine prefix of k (writer lock held) */
int  mvcc_record_change(kvt_mvcc *m, size_t prefix_len, const uint8_t *k, size_t kl,
                        const uint8_t *v, size_t vl, const kvt_mvcc_kv *e, uint32_t sub,
                        uint64_t old_lease);
/* mvcc.c: KVT_EINVAL for an empty key */
int  mvcc_check_key(const uint8_t *k, size_t kl);
/* mvcc.c: is lease id live? (writer lock held) */
int  mvcc_lease_live(const kvt_mvcc *m, uint64_t id);

/* head_cache.c (caller holds heads_mu) */
int  hc_init(head_cache *c, size_t max_entries);
void hc_free(head_cache *c);
/* 1 and the key's newest mod (0: no version) if cached; *has_hdr (if not NULL): whether
 * that version's header is cached too */
int  hc_lookup(const head_cache *c, const uint8_t *k, size_t kl, uint64_t *mod,
               int *has_hdr);
/* 1 and the header of the key's newest version (mod 0: no version) when known */
int  hc_lookup_header(const head_cache *c, const uint8_t *k, size_t kl, kvt_mvcc_kv *hdr);
void hc_set(head_cache *c, const uint8_t *k, size_t kl, uint64_t mod, const kvt_mvcc_kv *hdr);

/* mvcc_key.c */
int  mvcc_kv_prefix(kvt_buf *out, const uint8_t *k, size_t kl);   /* k + esc(key) + 00 01 */
void mvcc_kv_set_rev(kvt_buf *key_with_prefix, size_t prefix_len, uint64_t rev);
uint64_t mvcc_kv_rev(const uint8_t *ek, size_t ekl);
void mvcc_revlog_key(uint8_t out[MVCC_REVLOG_KEY], uint64_t rev, uint32_t sub);
int  mvcc_attach_key(kvt_buf *out, uint64_t lease, const uint8_t *k, size_t kl);
void mvcc_entry_header(uint8_t out[KVT_MVCC_HDR], const kvt_mvcc_kv *e);
int  mvcc_entry_parse(const uint8_t *v, size_t vl, uint64_t mod, kvt_mvcc_kv *e);

#endif
