/* kvtrees._direct - the store's put, point read and txn called from CPython directly,
 * not through cffi: the put keeps the GIL for its in-memory half, the read builds its
 * KeyValue in C, the txn returns its response as bytes in one step.
 *
 * A cffi call releases the GIL for the whole call. For a put on a store that does not
 * wait for fsyncs (sync="none"), the call is a few microseconds of memory work, and
 * with many threads releasing the GIL costs more than the work: every put hands the GIL
 * over and back, and the woken threads contend for the store's locks (measured with 16
 * threads: 51k context switches per 200k puts and 98k puts/s through cffi, 2.9k and
 * 132k here). So such a put is committed with the GIL held (kvt_mvcc_put_begin, which
 * never waits for a lock or runs a checkpoint), falling back to kvt_mvcc_put with the
 * GIL released when it would wait. A put that waits for its fsync (sync="commit") is
 * kvt_mvcc_put with the GIL released throughout: its thread sleeps once, in the write
 * group, and committing with the GIL held measured slower there (groups of one, and
 * every thread contending for the GIL on its way back: 22k puts/s against 38k).
 *
 * The native functions come from kvtrees._native (cffi) as addresses, so this module
 * links nothing and the two builds cannot disagree on the code, only on the struct
 * layout, which both take from kvt_mvcc.h.
 *
 * A point read (kvt_mvcc_get) releases the GIL as before (it may read from the disk);
 * what it saves is the Python around a cffi call: reading the result struct field by
 * field and building the KeyValue in Python.
 *
 * Calls(handle, (begin, end, put, get, txn, release, visible), raise_error, durable,
 *       KeyValue, Entry, prev_unknown, owner)
 *   addresses of a kvt_mvcc handle and of kvt_mvcc_put_begin, kvt_mvcc_put_end,
 *   kvt_mvcc_put, kvt_mvcc_get, kvt_mvcc_txn, kvt_mvcc_release and kvt_mvcc_visible;
 *   raise_error(rc) returns the exception for a native code (it reads the C detail
 *   message, kept per thread); durable: the handle was opened durable; KeyValue and
 *   Entry: the tuple subclasses reads and puts return; prev_unknown: a put's prev when
 *   one exists but was not asked for; owner: the object that frees the handle (cffi's
 *   gc'd pointer), kept alive while this object lives so the address stays valid.
 * Calls.put(key, value, lease, want_prev) -> (rev, create, version, prev)
 *   key and value bytes (checked by the caller); prev the live previous version as an
 *   Entry when want_prev, else prev_unknown when one exists, else None. O(log n).
 * Calls.get_kv(key, rev) -> KeyValue or None: the live version of key at rev. O(log n).
 * Calls.get_kv_visible(key): the same at the visible revision. O(log n).
 * Calls.txn(request) -> response bytes of kvt_mvcc_txn, the GIL released. O(ops log n).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include "kvt_mvcc.h"

typedef int (*begin_fn)(kvt_mvcc *, const uint8_t *, size_t, const uint8_t *, size_t,
                        uint64_t, int, uint8_t *, size_t, kvt_mvcc_put_result *,
                        uint64_t *);
typedef int (*end_fn)(kvt_mvcc *, uint64_t, kvt_mvcc_put_result *);
typedef int (*put_fn)(kvt_mvcc *, const uint8_t *, size_t, const uint8_t *, size_t,
                      uint64_t, int, uint8_t *, size_t, kvt_mvcc_put_result *);
typedef int (*get_fn)(kvt_mvcc *, const uint8_t *, size_t, uint64_t, uint8_t *, size_t,
                      kvt_mvcc_kv *);
typedef int (*txn_fn)(kvt_mvcc *, const uint8_t *, size_t, uint8_t **, size_t *);
typedef void (*release_fn)(void *);
typedef uint64_t (*visible_fn)(kvt_mvcc *);

#define GET_STACK 4096            /* values up to this size are read into the stack */

typedef struct {
    PyObject_HEAD
    kvt_mvcc *m;
    begin_fn begin;
    end_fn end;
    put_fn put;
    get_fn get;
    txn_fn txn;
    release_fn release;
    visible_fn visible;
    PyObject *raise_error;
    PyTypeObject *kv_type;       /* kvtrees.mvcc.KeyValue, a tuple subclass */
    PyTypeObject *entry_type;    /* kvtrees.mvcc.Entry, a tuple subclass */
    PyObject *prev_unknown;      /* put's prev when it exists but was not read */
    PyObject *owner;             /* keeps the handle m alive (it frees m when collected) */
    int durable;                 /* the handle waits for fsyncs: put with the GIL released */
} Calls;

static int Calls_init(Calls *self, PyObject *args, PyObject *kw) {
    unsigned long long m, b, e, p, g, t, r, v;
    PyObject *raise_error, *kv_type, *entry_type, *prev_unknown, *owner;
    int durable;
    if (!PyArg_ParseTuple(args, "K(KKKKKKK)OpO!O!OO:Calls", &m, &b, &e, &p, &g, &t, &r, &v,
                          &raise_error, &durable, &PyType_Type, &kv_type, &PyType_Type,
                          &entry_type, &prev_unknown, &owner))
        return -1;
    if (!PyType_IsSubtype((PyTypeObject *)kv_type, &PyTuple_Type) ||
        !PyType_IsSubtype((PyTypeObject *)entry_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "Calls: KeyValue and Entry must be tuple subclasses");
        return -1;
    }
    self->durable = durable;
    if (!m || !b || !e || !p || !g || !t || !r || !v) {
        PyErr_SetString(PyExc_ValueError, "Calls: NULL address");
        return -1;
    }
    self->m = (kvt_mvcc *)(uintptr_t)m;
    self->begin = (begin_fn)(uintptr_t)b;
    self->end = (end_fn)(uintptr_t)e;
    self->put = (put_fn)(uintptr_t)p;
    self->get = (get_fn)(uintptr_t)g;
    self->txn = (txn_fn)(uintptr_t)t;
    self->release = (release_fn)(uintptr_t)r;
    self->visible = (visible_fn)(uintptr_t)v;
    Py_INCREF(raise_error);
    Py_XSETREF(self->raise_error, raise_error);
    Py_INCREF(kv_type);
    Py_XSETREF(self->kv_type, (PyTypeObject *)kv_type);
    Py_INCREF(entry_type);
    Py_XSETREF(self->entry_type, (PyTypeObject *)entry_type);
    Py_INCREF(prev_unknown);
    Py_XSETREF(self->prev_unknown, prev_unknown);
    Py_INCREF(owner);
    Py_XSETREF(self->owner, owner);
    return 0;
}

static void Calls_dealloc(Calls *self) {
    Py_XDECREF(self->raise_error);
    Py_XDECREF(self->kv_type);
    Py_XDECREF(self->entry_type);
    Py_XDECREF(self->prev_unknown);
    Py_XDECREF(self->owner);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Raise the mapped exception for rc (on the thread of the failing call). */
static PyObject *raise_code(Calls *self, int rc) {
    PyObject *exc = PyObject_CallFunction(self->raise_error, "i", rc);
    if (exc) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}

/* An instance of tuple subclass type with the n items (references stolen; a NULL item
 * means its creation failed: all are released, NULL returned), as tuple.__new__ builds
 * one, without Python code. */
static PyObject *new_record(PyTypeObject *type, PyObject **items, int n) {
    PyObject *out = NULL;
    int ok = 1;
    for (int i = 0; i < n; i++) ok = ok && items[i];
    if (ok) out = type->tp_alloc(type, n);
    if (!out) {
        for (int i = 0; i < n; i++) Py_XDECREF(items[i]);
        return NULL;
    }
    for (int i = 0; i < n; i++) PyTuple_SET_ITEM(out, i, items[i]);
    return out;
}

/* KeyValue(key, value, create, mod, version, lease) */
static PyObject *new_kv(Calls *self, PyObject *key, const char *v, size_t vl,
                        const kvt_mvcc_kv *kv) {
    PyObject *items[6] = {
        Py_NewRef(key), PyBytes_FromStringAndSize(v, (Py_ssize_t)vl),
        PyLong_FromUnsignedLongLong(kv->create), PyLong_FromUnsignedLongLong(kv->mod),
        PyLong_FromUnsignedLongLong(kv->version), PyLong_FromUnsignedLongLong(kv->lease),
    };
    return new_record(self->kv_type, items, 6);
}

/* Entry(key, mod, tombstone False, create, version, lease, value) */
static PyObject *new_entry(Calls *self, PyObject *key, const char *v, size_t vl,
                           const kvt_mvcc_kv *kv) {
    PyObject *items[7] = {
        Py_NewRef(key), PyLong_FromUnsignedLongLong(kv->mod), Py_NewRef(Py_False),
        PyLong_FromUnsignedLongLong(kv->create), PyLong_FromUnsignedLongLong(kv->version),
        PyLong_FromUnsignedLongLong(kv->lease), PyBytes_FromStringAndSize(v, (Py_ssize_t)vl),
    };
    return new_record(self->entry_type, items, 7);
}

static PyObject *Calls_put(Calls *self, PyObject *args) {
    PyObject *key, *value;
    unsigned long long lease;
    int want_prev;
    if (!PyArg_ParseTuple(args, "SSKp:put", &key, &value, &lease, &want_prev)) return NULL;
    const char *k = PyBytes_AS_STRING(key), *v = PyBytes_AS_STRING(value);
    Py_ssize_t kl = PyBytes_GET_SIZE(key), vl = PyBytes_GET_SIZE(value);
    kvt_mvcc_put_result res;
    uint64_t lsn = 0;
    /* prev values go to the heap (no buffer): a put asking for one is rare, and a
     * shared buffer would need a lock */
    int rc = KVT_MVCC_BUSY;
    if (!self->durable)
        rc = self->begin(self->m, (const uint8_t *)k, (size_t)kl, (const uint8_t *)v,
                         (size_t)vl, lease, want_prev, NULL, 0, &res, &lsn);
    if (rc == KVT_OK) {
        rc = self->end(self->m, lsn, &res);    /* not durable: no wait */
    } else if (rc == KVT_MVCC_BUSY) {
        Py_BEGIN_ALLOW_THREADS
        rc = self->put(self->m, (const uint8_t *)k, (size_t)kl, (const uint8_t *)v,
                       (size_t)vl, lease, want_prev, NULL, 0, &res);
        Py_END_ALLOW_THREADS
    }
    if (rc < 0) return raise_code(self, rc);
    PyObject *prev;
    if (want_prev && res.prev.mod)
        prev = new_entry(self, key, res.prev_heap ? (const char *)res.prev_heap : "",
                         res.prev.vlen, &res.prev);
    else     /* a previous version not read: it exists when this is not version 1 */
        prev = Py_NewRef(!want_prev && res.version > 1 ? self->prev_unknown : Py_None);
    free(res.prev_heap);
    if (!prev) return NULL;
    return Py_BuildValue("(KKKN)", (unsigned long long)res.rev,
                         (unsigned long long)res.create, (unsigned long long)res.version,
                         prev);
}

/* The live version of key at rev as a KeyValue, or None. The GIL is released around
 * the read (it may wait for the disk); values up to GET_STACK bytes are read into the
 * stack, longer ones into a buffer of the size the first read reported. */
static PyObject *get_kv_at(Calls *self, PyObject *key, uint64_t rev) {
    const uint8_t *k = (const uint8_t *)PyBytes_AS_STRING(key);
    size_t kl = (size_t)PyBytes_GET_SIZE(key);
    uint8_t stack[GET_STACK], *buf = stack;
    size_t cap = sizeof stack;
    kvt_mvcc_kv kv;
    int rc;
    for (;;) {
        Py_BEGIN_ALLOW_THREADS
        rc = self->get(self->m, k, kl, rev, buf, cap, &kv);
        Py_END_ALLOW_THREADS
        if (rc != KVT_EBUFSMALL) break;
        if (buf != stack) PyMem_Free(buf);
        cap = kv.vlen;
        buf = PyMem_Malloc(cap ? cap : 1);
        if (!buf) return PyErr_NoMemory();
    }
    PyObject *out = NULL;
    if (rc == KVT_OK && !kv.tombstone)
        out = new_kv(self, key, (const char *)buf, kv.vlen, &kv);
    else if (rc == KVT_OK || rc == KVT_NOTFOUND || rc == KVT_ETOOLARGE)
        out = Py_NewRef(Py_None);          /* too long a key was never stored: absent */
    else
        raise_code(self, rc);
    if (buf != stack) PyMem_Free(buf);
    return out;
}

/* get_kv(key, rev) -> KeyValue or None */
static PyObject *Calls_get_kv(Calls *self, PyObject *args) {
    PyObject *key;
    unsigned long long rev;
    if (!PyArg_ParseTuple(args, "SK:get_kv", &key, &rev)) return NULL;
    return get_kv_at(self, key, rev);
}

/* get_kv_visible(key) -> KeyValue or None: at the visible revision, read here (one
 * call instead of two from Python). */
static PyObject *Calls_get_kv_visible(Calls *self, PyObject *key) {
    if (!PyBytes_Check(key)) {
        PyErr_SetString(PyExc_TypeError, "get_kv_visible: key must be bytes");
        return NULL;
    }
    return get_kv_at(self, key, self->visible(self->m));
}

/* txn(request) -> response bytes (kvt_mvcc_txn's encodings), the GIL released. */
static PyObject *Calls_txn(Calls *self, PyObject *arg) {
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "txn: request must be bytes");
        return NULL;
    }
    const uint8_t *req = (const uint8_t *)PyBytes_AS_STRING(arg);
    size_t rl = (size_t)PyBytes_GET_SIZE(arg);
    uint8_t *resp = NULL;
    size_t len = 0;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = self->txn(self->m, req, rl, &resp, &len);
    Py_END_ALLOW_THREADS
    if (rc < 0) return raise_code(self, rc);
    PyObject *out = PyBytes_FromStringAndSize((const char *)resp, (Py_ssize_t)len);
    self->release(resp);
    return out;
}

static PyMethodDef Calls_methods[] = {
    {"txn", (PyCFunction)Calls_txn, METH_O, "txn(request) -> response bytes"},
    {"get_kv", (PyCFunction)Calls_get_kv, METH_VARARGS,
     "get_kv(key, rev) -> KeyValue or None"},
    {"get_kv_visible", (PyCFunction)Calls_get_kv_visible, METH_O,
     "get_kv_visible(key) -> KeyValue or None, at the visible revision"},
    {"put", (PyCFunction)Calls_put, METH_VARARGS,
     "put(key, value, lease, want_prev) -> (rev, create, version, prev)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CallsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "kvtrees._direct.Calls",
    .tp_basicsize = sizeof(Calls),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The native MVCC layer's put and point read, called without cffi (module doc).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Calls_init,
    .tp_dealloc = (destructor)Calls_dealloc,
    .tp_methods = Calls_methods,
};

static struct PyModuleDef direct_module = {
    PyModuleDef_HEAD_INIT, "kvtrees._direct",
    "The store's put called without cffi, keeping the GIL for the in-memory half.", -1,
    NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__direct(void) {
    if (PyType_Ready(&CallsType) < 0) return NULL;
    PyObject *mod = PyModule_Create(&direct_module);
    if (!mod) return NULL;
    Py_INCREF(&CallsType);
    if (PyModule_AddObject(mod, "Calls", (PyObject *)&CallsType) < 0) {
        Py_DECREF(&CallsType);
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}
