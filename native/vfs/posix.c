/* posix.c - the POSIX VFS: plain file descriptors, EINTR-safe pread/pwrite loops,
 * fdatasync, flock. Every failure is mapped to a KVT code with path, offset and strerror. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "kvt_error.h"
#include "kvt_vfs.h"

typedef struct posix_file {
    kvt_file base;                     /* first member: a kvt_file* is a posix_file* */
    int fd;
    int direct;                        /* opened with O_DIRECT */
} posix_file;

static int errno_code(int e) {
    return (e == ENOSPC || e == EDQUOT) ? KVT_ENOSPC : KVT_EIO;
}

/* Set the thread's error detail from errno and return the mapped code. */
static int io_err(int e, const char *op, const char *path, uint64_t off) {
    return kvt_seterr(errno_code(e), "%s: %s failed at offset %llu: %s", path, op,
                      (unsigned long long)off, strerror(e));
}

static int path_err(int e, const char *op, const char *path) {
    return kvt_seterr(errno_code(e), "%s: %s failed: %s", path, op, strerror(e));
}

static int px_fd(kvt_file *f) { return ((posix_file *)f)->fd; }

static int px_close(kvt_file *f) {
    int rc = KVT_OK;
    if (close(px_fd(f)) != 0 && errno != EINTR) rc = path_err(errno, "close", f->path);
    free(f->path);
    free(f);
    return rc;
}

static int px_read(kvt_file *f, void *buf, size_t n, uint64_t off, size_t *got) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(px_fd(f), (char *)buf + done, n - done, (off_t)(off + done));
        if (r < 0) {
            if (errno == EINTR) continue;
            *got = done;
            return io_err(errno, "read", f->path, off + done);
        }
        if (r == 0) break;             /* end of file */
        done += (size_t)r;
        /* A short O_DIRECT read is end of file; retrying at the now unaligned offset
         * would fail with EINVAL instead of returning 0. */
        if (((posix_file *)f)->direct) break;
    }
    *got = done;
    return KVT_OK;
}

static int px_write(kvt_file *f, const void *buf, size_t n, uint64_t off) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = pwrite(px_fd(f), (const char *)buf + done, n - done, (off_t)(off + done));
        if (r < 0) {
            if (errno == EINTR) continue;
            return io_err(errno, "write", f->path, off + done);
        }
        if (r == 0) return io_err(ENOSPC, "write", f->path, off + done);
        done += (size_t)r;
    }
    return KVT_OK;
}

static int px_sync(kvt_file *f) {
    int r;
    do r = fdatasync(px_fd(f)); while (r != 0 && errno == EINTR);
    return r == 0 ? KVT_OK : path_err(errno, "fdatasync", f->path);
}

static int px_truncate(kvt_file *f, uint64_t size) {
    int r;
    do r = ftruncate(px_fd(f), (off_t)size); while (r != 0 && errno == EINTR);
    return r == 0 ? KVT_OK : io_err(errno, "truncate", f->path, size);
}

static int px_size(kvt_file *f, uint64_t *out) {
    struct stat st;
    if (fstat(px_fd(f), &st) != 0) return path_err(errno, "fstat", f->path);
    *out = (uint64_t)st.st_size;
    return KVT_OK;
}

static int px_lock(kvt_file *f, int exclusive) {
    int r;
    do r = flock(px_fd(f), (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB);
    while (r != 0 && errno == EINTR);
    if (r == 0) return KVT_OK;
    if (errno == EWOULDBLOCK)
        return kvt_seterr(KVT_ELOCKED, "%s: locked by another process", f->path);
    return path_err(errno, "flock", f->path);
}

/* Read-only MAP_SHARED: pwrite()s of this process show through it (one page cache). */
static int px_map(kvt_file *f, uint64_t len, void **out) {
    *out = NULL;
    if (((posix_file *)f)->direct)
        return kvt_seterr(KVT_EINVAL, "%s: no mapping of a file opened with O_DIRECT",
                          f->path);
    if (len == 0 || len > (uint64_t)SIZE_MAX)
        return kvt_seterr(KVT_EINVAL, "%s: mapping of %llu bytes", f->path,
                          (unsigned long long)len);
    void *m = mmap(NULL, (size_t)len, PROT_READ, MAP_SHARED, px_fd(f), 0);
    if (m == MAP_FAILED)
        return kvt_seterr(errno == ENOMEM ? KVT_ENOMEM : KVT_EIO, "%s: mmap of %llu bytes "
                          "failed: %s", f->path, (unsigned long long)len, strerror(errno));
    *out = m;
    return KVT_OK;
}

static int px_unmap(kvt_file *f, void *addr, uint64_t len) {
    if (munmap(addr, (size_t)len) == 0) return KVT_OK;
    return path_err(errno, "munmap", f->path);
}

static const kvt_io_methods posix_methods = {
    px_close, px_read, px_write, px_sync, px_truncate, px_size, px_lock, px_map, px_unmap,
};

static int open_flags(int flags) {
    int o = O_CLOEXEC | ((flags & KVT_O_READONLY) ? O_RDONLY : O_RDWR);
    if ((flags & KVT_O_CREATE) && !(flags & KVT_O_READONLY)) o |= O_CREAT;
    if (flags & KVT_O_DIRECT) o |= O_DIRECT;
    return o;
}

static int open_fd(const char *path, int flags, int *fd_out) {
    int fd;
    do fd = open(path, open_flags(flags), 0644); while (fd < 0 && errno == EINTR);
    if (fd >= 0) { *fd_out = fd; return KVT_OK; }
    if (errno == EINVAL && (flags & KVT_O_DIRECT))
        /* tmpfs and some others refuse O_DIRECT: say so instead of a bare EINVAL, and let
         * the caller decide whether to reopen without it (benchmarks should not). */
        return kvt_seterr(KVT_EINVAL, "%s: the file system refuses O_DIRECT (open without "
                          "direct_io)", path);
    return path_err(errno, "open", path);
}

static int px_open(kvt_vfs *vfs, const char *path, int flags, kvt_file **out) {
    *out = NULL;
    posix_file *pf = calloc(1, sizeof *pf);
    char *p = strdup(path);
    if (!pf || !p) {
        free(pf);
        free(p);
        return kvt_seterr(KVT_ENOMEM, "%s: out of memory opening file", path);
    }
    int rc = open_fd(path, flags, &pf->fd);
    if (rc < 0) {
        free(pf);
        free(p);
        return rc;
    }
    pf->base.io = &posix_methods;
    pf->base.path = p;
    pf->direct = (flags & KVT_O_DIRECT) != 0;
    *out = &pf->base;
    return KVT_OK;
}

static int px_mkdir(kvt_vfs *vfs, const char *path) {
    if (mkdir(path, 0755) == 0) return KVT_OK;
    if (errno == EEXIST) {
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return KVT_OK;
        return kvt_seterr(KVT_EIO, "%s: exists and is not a directory", path);
    }
    return path_err(errno, "mkdir", path);
}

static int px_exists(kvt_vfs *vfs, const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static int px_sync_dir(kvt_vfs *vfs, const char *path) {
    int fd;
    do fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC); while (fd < 0 && errno == EINTR);
    if (fd < 0) return path_err(errno, "open directory", path);
    int r;
    do r = fsync(fd); while (r != 0 && errno == EINTR);
    int e = errno;
    close(fd);
    return r == 0 ? KVT_OK : path_err(e, "fsync directory", path);
}

static kvt_vfs posix_vfs = {
    "posix", px_open, px_mkdir, px_exists, px_sync_dir, NULL,
};

kvt_vfs *kvt_vfs_posix(void) { return &posix_vfs; }
