/* kvt_limits.h - the limits and defaults every layer shares, C and Python alike: the
 * cffi build reads each "#define KVT_X n" below (src/kvtrees/_build_ffi.py), so Python
 * takes them from here (src/kvtrees/limits.py). Plain integers only. */
#ifndef KVT_LIMITS_H
#define KVT_LIMITS_H

#define KVT_MAX_KEY 4096               /* bytes of an engine key */
#define KVT_MAX_VALUE 67108864         /* bytes of a value: 64 MiB */
#define KVT_MAX_RECORD 135266304       /* one log record (a batch): 2 values + 1 MiB */
#define KVT_DEFAULT_CACHE 67108864     /* page cache: 64 MiB */
#define KVT_DEFAULT_WAL_LIMIT 67108864 /* log bytes that trigger a checkpoint: 64 MiB */

#endif
