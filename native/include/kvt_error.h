/* kvt_error.h - the one error-code space of kvtrees.
 *
 * Every C function that can fail returns int: KVT_OK (0) on success, KVT_NOTFOUND (1)
 * where "absent" is a normal answer, or a negative KVT_E* code. kvt_strerror() names a
 * code; kvt_errmsg() gives the detail of the most recent error raised on this thread
 * (file, page, offset), set with kvt_seterr() at the point the error is detected.
 * C code never aborts the process: every failure is a return code.
 */
#ifndef KVT_ERROR_H
#define KVT_ERROR_H

#define KVT_OK          0
#define KVT_NOTFOUND    1    /* key absent / iterator exhausted: not an error */
#define KVT_EIO        -2    /* an I/O call failed */
#define KVT_ECORRUPT   -3    /* checksum or structural damage on disk */
#define KVT_ENOMEM     -4
#define KVT_ELOCKED    -5    /* directory locked by another writer */
#define KVT_ECLOSED    -6    /* handle closed */
#define KVT_EENGINE    -7    /* directory was created by another engine */
#define KVT_ETOOLARGE  -8    /* key or value over the limit */
#define KVT_ENOSPC     -9    /* disk full */
#define KVT_EREADONLY  -10   /* write on a read-only handle */
#define KVT_EINVAL     -11   /* bad argument */
#define KVT_EFATAL     -12   /* handle poisoned by an earlier I/O failure; reopen */
#define KVT_EBUFSMALL  -13   /* caller's buffer too small; the needed size was reported */
#define KVT_EVERSION   -14   /* file format or ABI version not supported */
#define KVT_EFAULT     -15   /* injected by the fault VFS (reported as KVT_EIO to users) */
#define KVT_ENOLEASE   -16   /* a store write named a lease that is not live */

const char *kvt_strerror(int rc);
const char *kvt_errmsg(void);
int kvt_seterr(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Propagate a failure: evaluates expr once, returns its code from the caller if < 0. */
#define KVT_TRY(expr) do { int kvt_rc_ = (expr); if (kvt_rc_ < 0) return kvt_rc_; } while (0)

#endif
