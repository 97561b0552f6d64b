/* mvcc_key.c - encoding of the MVCC layout's engine keys and entry values (kvt_mvcc.h). */
#include "mvcc_int.h"

static void put_be64(uint8_t *p, uint64_t v) {
    for (int i = 7; i >= 0; i--) { p[i] = (uint8_t)v; v >>= 8; }
}

static uint64_t get_be64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | p[i];
    return v;
}

int mvcc_kv_prefix(kvt_buf *out, const uint8_t *k, size_t kl) {
    out->len = 0;
    KVT_TRY(kvt_buf_reserve(out, 1 + 2 * kl + 2 + 8));
    uint8_t *p = out->data;
    *p++ = 'k';
    for (size_t i = 0; i < kl; i++) {
        *p++ = k[i];
        if (k[i] == 0) *p++ = 0xFF;
    }
    *p++ = 0;
    *p++ = 1;
    out->len = (size_t)(p - out->data);
    if (out->len + 8 > KVT_MAX_KEY)
        return kvt_seterr(KVT_ETOOLARGE, "key of %zu bytes is too long for the store", kl);
    return KVT_OK;
}

void mvcc_kv_set_rev(kvt_buf *key_with_prefix, size_t prefix_len, uint64_t rev) {
    put_be64(key_with_prefix->data + prefix_len, UINT64_MAX - rev);
    key_with_prefix->len = prefix_len + 8;
}

uint64_t mvcc_kv_rev(const uint8_t *ek, size_t ekl) {
    return UINT64_MAX - get_be64(ek + ekl - 8);
}

void mvcc_revlog_key(uint8_t out[MVCC_REVLOG_KEY], uint64_t rev, uint32_t sub) {
    out[0] = 'r';
    put_be64(out + 1, rev);
    for (int i = 0; i < 4; i++) out[9 + i] = (uint8_t)(sub >> (24 - 8 * i));
}

int mvcc_attach_key(kvt_buf *out, uint64_t lease, const uint8_t *k, size_t kl) {
    KVT_TRY(kvt_buf_reserve(out, 9 + kl));
    out->data[0] = 'a';
    put_be64(out->data + 1, lease);
    memcpy(out->data + 9, k, kl);
    out->len = 9 + kl;
    return KVT_OK;
}

void mvcc_entry_header(uint8_t out[KVT_MVCC_HDR], const kvt_mvcc_kv *e) {
    out[0] = e->tombstone ? KVT_MVCC_TOMBSTONE : 0;
    put_be64(out + 1, e->create);
    put_be64(out + 9, e->version);
    put_be64(out + 17, e->lease);
}

int mvcc_entry_parse(const uint8_t *v, size_t vl, uint64_t mod, kvt_mvcc_kv *e) {
    if (vl < KVT_MVCC_HDR)
        return kvt_seterr(KVT_ECORRUPT, "store: version entry of %zu bytes (header is %d)", vl,
                          KVT_MVCC_HDR);
    e->tombstone = (v[0] & KVT_MVCC_TOMBSTONE) != 0;
    e->create = get_be64(v + 1);
    e->version = get_be64(v + 9);
    e->lease = get_be64(v + 17);
    e->mod = mod;
    e->vlen = vl - KVT_MVCC_HDR;
    return KVT_OK;
}
