/* map_fault.c - test hook: a failing disk under the read map (see kvt_pager.h,
 * guarded access). Every data page the read map covers faults (a real SIGBUS) on its
 * next touch; readers must then get KVT_EIO or KVT_ECORRUPT, never a dead process. */
#include "db_internal.h"

int kvt_debug_map_fault(kvt_db *db) {
    if (!db) return kvt_seterr(KVT_ECLOSED, "kvt_debug_map_fault: no handle");
    kvt_pager_stats st;
    kvt_pager_get_stats(db->pager, &st);
    int injected = 0;
    pthread_rwlock_wrlock(&db->rw);              /* no reader is touching the map */
    for (kvt_pgno pg = 2; pg < st.pages_total; pg++) {
        int rc = kvt_pager_map_inject_fault(db->pager, pg);
        if (rc == KVT_EINVAL) break;             /* past the mapping (or no mapping) */
        if (rc < 0) { pthread_rwlock_unlock(&db->rw); return rc; }
        injected++;
    }
    pthread_rwlock_unlock(&db->rw);
    if (!injected) return kvt_seterr(KVT_EINVAL, "%s: no read map to fault", db->data_path);
    return KVT_OK;
}
