/* error.c - kvt_strerror and the per-thread detail message. */
#include <stdarg.h>
#include <stdio.h>
#include "kvt_error.h"

static __thread char errmsg[512];

const char *kvt_strerror(int rc) {
    switch (rc) {
    case KVT_OK:        return "ok";
    case KVT_NOTFOUND:  return "not found";
    case KVT_EIO:       return "I/O error";
    case KVT_ECORRUPT:  return "data is corrupt";
    case KVT_ENOMEM:    return "out of memory";
    case KVT_ELOCKED:   return "directory is locked by another writer";
    case KVT_ECLOSED:   return "handle is closed";
    case KVT_EENGINE:   return "directory was created by another engine";
    case KVT_ETOOLARGE: return "key or value too large";
    case KVT_ENOSPC:    return "no space left on device";
    case KVT_EREADONLY: return "handle is read-only";
    case KVT_EINVAL:    return "invalid argument";
    case KVT_EFATAL:    return "handle unusable after an earlier I/O failure; reopen it";
    case KVT_EBUFSMALL: return "buffer too small";
    case KVT_EVERSION:  return "unsupported file format version";
    case KVT_EFAULT:    return "injected fault";
    case KVT_ENOLEASE:  return "lease not found";
    default:            return "unknown error";
    }
}

const char *kvt_errmsg(void) { return errmsg[0] ? errmsg : ""; }

int kvt_seterr(int rc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, sizeof errmsg, fmt, ap);
    va_end(ap);
    return rc;
}
