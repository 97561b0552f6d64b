/* kvtrees._pack - packs (key, value) pairs into the buffer kvt_put_many takes.
 *
 * One C loop over the pairs instead of one Python-level call per put: the result is a
 * batch record of puts (kvtrees.h, kvt_put_many), u32 n, then per pair u8 1, u32 klen,
 * u32 vlen, key, value (little-endian), which the native layer logs and applies as is.
 *
 * pack_puts(pairs, max_key, max_value, too_large) -> bytes
 *   pairs: any iterable of 2-item sequences (key, value); keys and values are bytes,
 *   bytearray or memoryview. Raises TypeError for anything else (str included),
 *   ValueError for an empty key and too_large(...) for a key over max_key or a value
 *   over max_value bytes, naming the pair, before anything is packed, with the same
 *   messages as Engine.put. O(total bytes), with the GIL held (no Python code runs).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct span {
    const char *p;
    Py_ssize_t n;
} span;

/* The bytes of a key or value; *tmp receives a new reference when a copy was needed
 * (a bytearray's or memoryview's contents, taken as bytes so a later resize cannot
 * move them). what: "keys" or "values". */
static int get_span(PyObject *o, const char *what, span *out, PyObject **tmp) {
    *tmp = NULL;
    if (PyBytes_Check(o)) {
        out->p = PyBytes_AS_STRING(o);
        out->n = PyBytes_GET_SIZE(o);
        return 0;
    }
    if (PyByteArray_Check(o) || PyMemoryView_Check(o)) {
        PyObject *b = PyBytes_FromObject(o);
        if (!b) return -1;
        *tmp = b;
        out->p = PyBytes_AS_STRING(b);
        out->n = PyBytes_GET_SIZE(b);
        return 0;
    }
    if (PyUnicode_Check(o))
        PyErr_Format(PyExc_TypeError, "%s must be bytes, not str (encode it first)", what);
    else
        PyErr_Format(PyExc_TypeError, "%s must be bytes, not %.100s", what, Py_TYPE(o)->tp_name);
    return -1;
}

static void put32(char *d, uint32_t v) {
    d[0] = (char)(v & 0xff);
    d[1] = (char)((v >> 8) & 0xff);
    d[2] = (char)((v >> 16) & 0xff);
    d[3] = (char)((v >> 24) & 0xff);
}

/* Check one pair's lengths as Engine.put does. */
static int check_lengths(Py_ssize_t i, const span *k, const span *v, Py_ssize_t max_key,
                         Py_ssize_t max_value, PyObject *too_large) {
    if (k->n == 0) {
        PyErr_Format(PyExc_ValueError, "keys must not be empty (pair %zd)", i);
        return -1;
    }
    if (k->n > max_key) {
        PyErr_Format(too_large, "key of %zd bytes exceeds the %zd-byte limit (pair %zd)",
                     k->n, max_key, i);
        return -1;
    }
    if (v->n > max_value) {
        PyErr_Format(too_large, "value of %zd bytes exceeds the %zd-byte limit (pair %zd)",
                     v->n, max_value, i);
        return -1;
    }
    return 0;
}

/* Pass 1: every pair's spans into sp[2i], sp[2i+1] (copies kept alive in tmps). */
static int collect(PyObject **items, Py_ssize_t n, span *sp, PyObject *tmps,
                   Py_ssize_t max_key, Py_ssize_t max_value, PyObject *too_large,
                   Py_ssize_t *total) {
    Py_ssize_t sum = 4;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = items[i], *k, *v;
        if (PyTuple_Check(pair) && PyTuple_GET_SIZE(pair) == 2) {
            k = PyTuple_GET_ITEM(pair, 0);
            v = PyTuple_GET_ITEM(pair, 1);
        } else if (PyList_CheckExact(pair) && PyList_GET_SIZE(pair) == 2) {
            k = PyList_GET_ITEM(pair, 0);
            v = PyList_GET_ITEM(pair, 1);
        } else {
            PyErr_Format(PyExc_TypeError, "pair %zd is not a (key, value) tuple but %.100s",
                         i, Py_TYPE(pair)->tp_name);
            return -1;
        }
        PyObject *tk, *tv;
        if (get_span(k, "keys", &sp[2 * i], &tk) < 0) return -1;
        if (tk && PyList_Append(tmps, tk) < 0) { Py_DECREF(tk); return -1; }
        Py_XDECREF(tk);                 /* the list keeps it */
        if (get_span(v, "values", &sp[2 * i + 1], &tv) < 0) return -1;
        if (tv && PyList_Append(tmps, tv) < 0) { Py_DECREF(tv); return -1; }
        Py_XDECREF(tv);
        if (check_lengths(i, &sp[2 * i], &sp[2 * i + 1], max_key, max_value, too_large) < 0)
            return -1;
        sum += 9 + sp[2 * i].n + sp[2 * i + 1].n;
    }
    *total = sum;
    return 0;
}

static PyObject *pack_seq(PyObject *seq, Py_ssize_t max_key, Py_ssize_t max_value,
                          PyObject *too_large) {
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if ((uint64_t)n > UINT32_MAX)
        return PyErr_Format(too_large, "%zd pairs exceed one batch", n);
    span *sp = PyMem_Malloc(sizeof(span) * (size_t)(2 * n + 1));
    PyObject *tmps = PyList_New(0), *out = NULL;
    Py_ssize_t total = 0;
    if (!sp || !tmps) {
        PyErr_NoMemory();
    } else if (collect(PySequence_Fast_ITEMS(seq), n, sp, tmps, max_key, max_value,
                       too_large, &total) == 0 &&
               (out = PyBytes_FromStringAndSize(NULL, total)) != NULL) {
        char *d = PyBytes_AS_STRING(out);
        put32(d, (uint32_t)n);
        d += 4;
        for (Py_ssize_t i = 0; i < n; i++) {
            const span *k = &sp[2 * i], *v = &sp[2 * i + 1];
            d[0] = 1;
            put32(d + 1, (uint32_t)k->n);
            put32(d + 5, (uint32_t)v->n);
            memcpy(d + 9, k->p, (size_t)k->n);
            if (v->n) memcpy(d + 9 + k->n, v->p, (size_t)v->n);
            d += 9 + k->n + v->n;
        }
    }
    PyMem_Free(sp);
    Py_XDECREF(tmps);
    return out;
}

static PyObject *pack_puts(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "pack_puts(pairs, max_key, max_value, too_large)");
        return NULL;
    }
    Py_ssize_t max_key = PyLong_AsSsize_t(args[1]);
    if (max_key == -1 && PyErr_Occurred()) return NULL;
    Py_ssize_t max_value = PyLong_AsSsize_t(args[2]);
    if (max_value == -1 && PyErr_Occurred()) return NULL;
    if (PyUnicode_Check(args[0]) || PyBytes_Check(args[0])) {
        PyErr_Format(PyExc_TypeError, "pairs must be an iterable of (key, value), not %.100s",
                     Py_TYPE(args[0])->tp_name);
        return NULL;
    }
    PyObject *seq = PySequence_Fast(args[0], "pairs must be an iterable of (key, value)");
    if (!seq) return NULL;
    PyObject *out = pack_seq(seq, max_key, max_value, args[3]);
    Py_DECREF(seq);
    return out;
}

static PyMethodDef methods[] = {
    {"pack_puts", (PyCFunction)(void (*)(void))pack_puts, METH_FASTCALL,
     "pack_puts(pairs, max_key, max_value, too_large) -> bytes: the kvt_put_many buffer."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "kvtrees._pack",
    "Packs (key, value) pairs for kvt_put_many in one C loop.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__pack(void) { return PyModule_Create(&module); }
