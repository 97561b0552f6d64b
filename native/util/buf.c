/* buf.c - growable / caller-owned byte buffers. */
#include <stdlib.h>
#include "kvt_error.h"
#include "kvt_util.h"

int kvt_buf_reserve(kvt_buf *b, size_t cap) {
    if (cap <= b->cap) return KVT_OK;
    if (b->fixed) return KVT_EBUFSMALL;
    size_t n = b->cap ? b->cap : 64;
    while (n < cap) n *= 2;
    uint8_t *d = realloc(b->data, n);
    if (!d) return kvt_seterr(KVT_ENOMEM, "cannot grow buffer to %zu bytes", n);
    b->data = d;
    b->cap = n;
    return KVT_OK;
}

int kvt_buf_set(kvt_buf *b, const void *src, size_t n) {
    if (n > b->cap) {
        if (b->fixed) { b->len = n; return KVT_EBUFSMALL; }
        KVT_TRY(kvt_buf_reserve(b, n));
    }
    if (n) memcpy(b->data, src, n);
    b->len = n;
    return KVT_OK;
}

int kvt_buf_append(kvt_buf *b, const void *src, size_t n) {
    if (b->len + n > b->cap) {
        if (b->fixed) { b->len += n; return KVT_EBUFSMALL; }
        KVT_TRY(kvt_buf_reserve(b, b->len + n));
    }
    if (n) memcpy(b->data + b->len, src, n);
    b->len += n;
    return KVT_OK;
}

void kvt_buf_free(kvt_buf *b) {
    if (!b->fixed) free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int kvt_buf_append_newest(kvt_buf *b, const void *src, size_t n, size_t max) {
    const uint8_t *d = src;
    if (n >= max) return kvt_buf_set(b, d + n - max, max);
    size_t keep = max - n;                       /* bytes of the old contents that stay */
    if (b->len > keep) {
        memmove(b->data, b->data + b->len - keep, keep);
        b->len = keep;
    }
    return n ? kvt_buf_append(b, src, n) : KVT_OK;
}
