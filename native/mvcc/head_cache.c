/* head_cache.c - the newest mod revision of recently used keys (0: the key has no
 * version), so a read at or above it is one exact engine get instead of a seek; and,
 * where known, that version's header (create, version, lease, tombstone), so a put,
 * which needs only the header, reads nothing from the engine.
 *
 * A seek ("newest version <= rev") is cheap on the B+tree but on the fractal tree it
 * merges every buffered message between the seek key and the end of the key's versions,
 * all of which are that key's older versions: the cost grows with the key's history.
 * An exact get walks one root-to-leaf path on both engines.
 *
 * Chained hash table, FIFO eviction (cheap, bounded), no locking of its own: the
 * caller (mvcc.c) holds its heads lock around every call.
 */
#include <stdlib.h>
#include "mvcc_int.h"

struct head_ent {
    struct head_ent *next;       /* bucket chain */
    struct head_ent *newer;      /* FIFO order: oldest first */
    uint64_t hash, mod;
    kvt_mvcc_kv hdr;             /* the header of version mod, if has_hdr */
    int has_hdr;
    uint32_t kl;
    uint8_t k[];
};

static uint64_t hash_key(const uint8_t *k, size_t kl) {
    uint64_t h = 1469598103934665603ull;             /* FNV-1a */
    for (size_t i = 0; i < kl; i++) h = (h ^ k[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

int hc_init(head_cache *c, size_t max_entries) {
    memset(c, 0, sizeof *c);
    size_t nb = 1024;
    while (nb < max_entries) nb *= 2;
    c->tab = calloc(nb, sizeof *c->tab);
    if (!c->tab) return kvt_seterr(KVT_ENOMEM, "no memory for the MVCC head cache");
    c->nbuckets = nb;
    c->max = max_entries;
    return KVT_OK;
}

void hc_free(head_cache *c) {
    for (head_ent *e = c->oldest; e;) {
        head_ent *n = e->newer;
        free(e);
        e = n;
    }
    free(c->tab);
    memset(c, 0, sizeof *c);
}

static head_ent **slot_of(const head_cache *c, const uint8_t *k, size_t kl, uint64_t h) {
    head_ent **pp = &c->tab[h & (c->nbuckets - 1)];
    for (; *pp; pp = &(*pp)->next) {
        head_ent *e = *pp;
        if (e->hash == h && e->kl == kl && memcmp(e->k, k, kl) == 0) break;
    }
    return pp;
}

int hc_lookup(const head_cache *c, const uint8_t *k, size_t kl, uint64_t *mod,
              int *has_hdr) {
    head_ent *e = *slot_of(c, k, kl, hash_key(k, kl));
    if (!e) return 0;
    *mod = e->mod;
    if (has_hdr) *has_hdr = e->has_hdr;
    return 1;
}

int hc_lookup_header(const head_cache *c, const uint8_t *k, size_t kl, kvt_mvcc_kv *hdr) {
    head_ent *e = *slot_of(c, k, kl, hash_key(k, kl));
    if (!e || !e->has_hdr) return 0;
    *hdr = e->hdr;
    return 1;
}

static void evict_oldest(head_cache *c) {
    head_ent *e = c->oldest;
    head_ent **pp = slot_of(c, e->k, e->kl, e->hash);
    *pp = e->next;
    c->oldest = e->newer;
    if (!c->oldest) c->newest = NULL;
    c->n--;
    free(e);
}

/* Insert or update; hdr (NULL: not known) is the header of version mod. Best effort:
 * without memory the key is simply not cached. */
void hc_set(head_cache *c, const uint8_t *k, size_t kl, uint64_t mod, const kvt_mvcc_kv *hdr) {
    uint64_t h = hash_key(k, kl);
    head_ent **pp = slot_of(c, k, kl, h);
    head_ent *e = *pp;
    if (e) {
        e->mod = mod;
        e->has_hdr = hdr != NULL;
        if (hdr) e->hdr = *hdr;
        return;
    }
    e = malloc(sizeof *e + kl);
    if (!e) return;
    e->next = NULL;
    e->newer = NULL;
    e->hash = h;
    e->mod = mod;
    e->has_hdr = hdr != NULL;
    if (hdr) e->hdr = *hdr;
    e->kl = (uint32_t)kl;
    memcpy(e->k, k, kl);
    *pp = e;
    if (c->newest) c->newest->newer = e;
    else c->oldest = e;
    c->newest = e;
    if (++c->n > c->max) evict_oldest(c);
}
