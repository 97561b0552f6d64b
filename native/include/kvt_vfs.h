/* kvt_vfs.h - the file-system layer: a struct of function pointers.
 *
 * Everything above this layer does I/O only through a kvt_file obtained from a kvt_vfs,
 * so a test can swap the POSIX VFS for the fault-injecting one (kvt_fault_vfs_*), which
 * fails the Nth write or fsync and, at a simulated crash, drops or tears every write not
 * yet synced. Byte and fsync counters live here (kvt_io_stats), not in /proc, because
 * the kernel's write_bytes over-counts buffered writes.
 */
#ifndef KVT_VFS_H
#define KVT_VFS_H
#include <stddef.h>
#include <stdint.h>

#define KVT_O_CREATE   0x1
#define KVT_O_READONLY 0x2
#define KVT_O_DIRECT   0x4   /* O_DIRECT: buffers, offsets, lengths aligned to 4096 */

typedef struct kvt_io_stats {          /* updated with relaxed atomics */
    uint64_t bytes_written, bytes_read, writes, reads, fsyncs;
} kvt_io_stats;

typedef struct kvt_file kvt_file;
typedef struct kvt_io_methods {
    int (*close)(kvt_file *f);
    /* Reads up to n bytes at off; *got < n only at end of file. */
    int (*read)(kvt_file *f, void *buf, size_t n, uint64_t off, size_t *got);
    int (*write)(kvt_file *f, const void *buf, size_t n, uint64_t off);
    int (*sync)(kvt_file *f);
    int (*truncate)(kvt_file *f, uint64_t size);
    int (*size)(kvt_file *f, uint64_t *out);
    /* Non-blocking advisory lock of the whole file: KVT_ELOCKED when held elsewhere. */
    int (*lock)(kvt_file *f, int exclusive);
    /* Optional (NULL: not supported, callers read with `read`). A read-only shared
     * mapping of the file's first len bytes (len may exceed the file: touching a page
     * past its end raises SIGBUS, so callers bound every access by the file size).
     * Writes through `write` are visible in the mapping (one page cache). Refused for
     * a file opened with KVT_O_DIRECT, whose reads must bypass the page cache. */
    int (*map)(kvt_file *f, uint64_t len, void **out);
    int (*unmap)(kvt_file *f, void *addr, uint64_t len);
} kvt_io_methods;

/* Base of every VFS's file object: implementations embed it as their first member. */
struct kvt_file {
    const kvt_io_methods *io;
    kvt_io_stats *stats;               /* may be NULL; set by the owner after open */
    char *path;                        /* for error messages; owned by the file */
};

typedef struct kvt_vfs kvt_vfs;
struct kvt_vfs {
    const char *name;
    int (*open)(kvt_vfs *vfs, const char *path, int flags, kvt_file **out);
    int (*mkdir)(kvt_vfs *vfs, const char *path);      /* ok if it exists */
    int (*exists)(kvt_vfs *vfs, const char *path);     /* 1 yes, 0 no */
    int (*sync_dir)(kvt_vfs *vfs, const char *path);
    void *ctx;
};

kvt_vfs *kvt_vfs_posix(void);          /* static singleton */

/* Wrappers that count into f->stats and map errno to KVT_EIO / KVT_ENOSPC. */
int kvt_file_read(kvt_file *f, void *buf, size_t n, uint64_t off, size_t *got);
int kvt_file_read_full(kvt_file *f, void *buf, size_t n, uint64_t off); /* short read -> KVT_ECORRUPT */
int kvt_file_write(kvt_file *f, const void *buf, size_t n, uint64_t off);
int kvt_file_sync(kvt_file *f);
int kvt_file_truncate(kvt_file *f, uint64_t size);
int kvt_file_size(kvt_file *f, uint64_t *out);
int kvt_file_lock(kvt_file *f, int exclusive);
int kvt_file_close(kvt_file *f);
int kvt_file_can_map(const kvt_file *f);                       /* 1 if map is supported */
int kvt_file_map(kvt_file *f, uint64_t len, void **out);       /* KVT_EINVAL if not */
int kvt_file_unmap(kvt_file *f, void *addr, uint64_t len);

/* Fault-injecting VFS, wrapping the POSIX one. Ops for kvt_fault_set: */
#define KVT_FAULT_WRITE 1
#define KVT_FAULT_SYNC  2
#define KVT_CRASH_DROP  0    /* unsynced writes vanish */
#define KVT_CRASH_TEAR  1    /* unsynced writes keep a random 512-byte-aligned prefix, newest first torn */
int  kvt_fault_vfs_new(kvt_vfs **out);
void kvt_fault_vfs_free(kvt_vfs *vfs);
/* Fail the nth (1-based, counted from this call) op of that kind with err
 * (KVT_EIO or KVT_ENOSPC); persistent: every later one fails too. nth 0 disarms. */
int  kvt_fault_set(kvt_vfs *vfs, int op, uint64_t nth, int persistent, int err);
/* Simulated power loss: undo unsynced writes of every file opened through this VFS,
 * then make every later call on those files fail with KVT_EIO (the handle is dead). */
int  kvt_fault_crash(kvt_vfs *vfs, int mode, uint64_t seed);
/* Armed failures fire only on files whose path ends with suffix (NULL or "": every
 * file; ops of other files are still counted). Cleared by kvt_fault_reset. */
int  kvt_fault_only(kvt_vfs *vfs, const char *suffix);
void kvt_fault_reset(kvt_vfs *vfs);    /* disarm, forget crash state, zero counters */
uint64_t kvt_fault_count(kvt_vfs *vfs, int op);   /* ops of that kind seen so far */
/* hold 1: every later sync waits (other ops go on) until a call with hold 0 releases
 * them; kvt_fault_held counts the syncs that have waited so far. */
int  kvt_fault_hold_syncs(kvt_vfs *vfs, int hold);
uint64_t kvt_fault_held(kvt_vfs *vfs);

#endif
