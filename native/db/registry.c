/* registry.c - the engine registry: the only global state of the db layer.
 * Both engines are linked in; a slot whose ABI does not match is reported as unavailable.
 */
#include <string.h>
#include "db_internal.h"


static const kvt_engine_ops *engine_slot(int i) {
    switch (i) {
    case 0: return &kvt_btree_ops;
    case 1: return &kvt_fractal_ops;
    default: return NULL;
    }
}

int kvt_db_engine_count(void) { return 2; }

const kvt_engine_ops *kvt_db_engine_at(int i) {
    const kvt_engine_ops *ops = engine_slot(i);
    if (!ops || ops->abi != KVT_ENGINE_ABI) return NULL;
    return ops;
}

const kvt_engine_ops *kvt_db_engine_by_name(const char *name) {
    for (int i = 0; i < kvt_db_engine_count(); i++) {
        const kvt_engine_ops *ops = kvt_db_engine_at(i);
        if (ops && ops->name && strcmp(ops->name, name) == 0) return ops;
    }
    return NULL;
}

const kvt_engine_ops *kvt_db_engine_by_id(uint32_t id) {
    for (int i = 0; i < kvt_db_engine_count(); i++) {
        const kvt_engine_ops *ops = kvt_db_engine_at(i);
        if (ops && ops->engine_id == id) return ops;
    }
    return NULL;
}

const char *kvt_engine_at(int i) {
    const kvt_engine_ops *ops = i >= 0 ? kvt_db_engine_at(i) : NULL;
    return ops ? ops->name : NULL;
}
