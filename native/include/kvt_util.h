/* kvt_util.h - small shared helpers: growable byte buffer, CRC32C, little-endian codecs. */
#ifndef KVT_UTIL_H
#define KVT_UTIL_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* A byte buffer. fixed=1 wraps caller memory: a value larger than cap is not copied,
 * len is set to the size needed and kvt_buf_set returns KVT_EBUFSMALL. */
typedef struct kvt_buf {
    uint8_t *data;
    size_t len, cap;
    int fixed;
} kvt_buf;

int  kvt_buf_set(kvt_buf *b, const void *src, size_t n);     /* replace contents */
int  kvt_buf_append(kvt_buf *b, const void *src, size_t n);
int  kvt_buf_reserve(kvt_buf *b, size_t cap);                /* growable buffers only */
void kvt_buf_free(kvt_buf *b);                               /* growable buffers only */
/* Append keeping only the newest max bytes of (contents || src): the append rule of
 * upserts, fold-safe because the newest max bytes of (newest max of x) || y equal those
 * of x || y. Growable buffers only. */
int  kvt_buf_append_newest(kvt_buf *b, const void *src, size_t n, size_t max);

/* CRC32C (Castagnoli); hardware instruction when the CPU has it. crc starts at 0. */
uint32_t kvt_crc32c(uint32_t crc, const void *data, size_t n);

/* Byte-wise comparison of keys: memcmp order, shorter prefix first. */
static inline int kvt_keycmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl) {
    size_t n = al < bl ? al : bl;
    int c = n ? memcmp(a, b, n) : 0;
    if (c) return c;
    return al < bl ? -1 : (al > bl ? 1 : 0);
}

static inline uint16_t kvt_get16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint32_t kvt_get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t kvt_get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline void kvt_put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static inline void kvt_put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void kvt_put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
/* (Files are little-endian; this project targets little-endian hosts and the pager
 * refuses to open files on a big-endian host.) */

#endif
