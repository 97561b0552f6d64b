/* file.c - the kvt_file_* wrappers: dispatch to the VFS and count I/O into f->stats.
 * Counters use relaxed atomics: they are statistics, read without ordering needs. */
#include <inttypes.h>
#include "kvt_error.h"
#include "kvt_vfs.h"

#define COUNT(f, field, v) \
    do { if ((f)->stats) __atomic_fetch_add(&(f)->stats->field, (v), __ATOMIC_RELAXED); } while (0)

int kvt_file_read(kvt_file *f, void *buf, size_t n, uint64_t off, size_t *got) {
    size_t g = 0;
    int rc = f->io->read(f, buf, n, off, &g);
    if (got) *got = g;
    COUNT(f, reads, 1);
    COUNT(f, bytes_read, g);
    return rc;
}

int kvt_file_read_full(kvt_file *f, void *buf, size_t n, uint64_t off) {
    size_t got = 0;
    KVT_TRY(kvt_file_read(f, buf, n, off, &got));
    if (got < n)
        return kvt_seterr(KVT_ECORRUPT, "%s: short read at offset %" PRIu64
                          " (wanted %zu bytes, got %zu)", f->path, off, n, got);
    return KVT_OK;
}

int kvt_file_write(kvt_file *f, const void *buf, size_t n, uint64_t off) {
    KVT_TRY(f->io->write(f, buf, n, off));
    COUNT(f, writes, 1);
    COUNT(f, bytes_written, n);
    return KVT_OK;
}

int kvt_file_sync(kvt_file *f) {
    KVT_TRY(f->io->sync(f));
    COUNT(f, fsyncs, 1);
    return KVT_OK;
}

int kvt_file_truncate(kvt_file *f, uint64_t size) { return f->io->truncate(f, size); }
int kvt_file_size(kvt_file *f, uint64_t *out) { return f->io->size(f, out); }
int kvt_file_lock(kvt_file *f, int exclusive) { return f->io->lock(f, exclusive); }

int kvt_file_close(kvt_file *f) {
    if (!f) return KVT_OK;
    return f->io->close(f);
}

int kvt_file_can_map(const kvt_file *f) { return f && f->io->map && f->io->unmap; }

int kvt_file_map(kvt_file *f, uint64_t len, void **out) {
    *out = NULL;
    if (!kvt_file_can_map(f))
        return kvt_seterr(KVT_EINVAL, "%s: this VFS cannot map files", f->path);
    return f->io->map(f, len, out);
}

int kvt_file_unmap(kvt_file *f, void *addr, uint64_t len) {
    if (!addr) return KVT_OK;
    if (!kvt_file_can_map(f))
        return kvt_seterr(KVT_EINVAL, "%s: this VFS cannot map files", f->path);
    return f->io->unmap(f, addr, len);
}
