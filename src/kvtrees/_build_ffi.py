"""cffi build script (out-of-line API mode) for kvtrees._native.

The cdef is read from the headers, never copied: the text between "/* CDEF BEGIN */" and
"/* CDEF END */" of native/include/kvtrees.h, plus every integer "#define KVT_X n" of
kvt_error.h and kvt_vfs.h. The C sources are every native/*/*.c except native/tests/,
globbed at build time. KVT_SANITIZE=1 builds with ASan + UBSan.
"""

import glob
import os
import re

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NATIVE = os.path.join(ROOT, "native")
INCLUDE = os.path.join(NATIVE, "include")


def _read(name):
    with open(os.path.join(INCLUDE, name), encoding="utf-8") as f:
        return f.read()


def _cdef_block():
    text = _read("kvtrees.h")
    m = re.search(r"/\* CDEF BEGIN \*/(.*?)/\* CDEF END \*/", text, re.S)
    if not m:
        raise RuntimeError("kvtrees.h has no CDEF BEGIN/END block")
    return m.group(1)


def _int_defines(*headers):
    out = []
    pat = re.compile(r"^#define\s+(KVT_[A-Z0-9_]+)\s+\(?\s*-?(0x[0-9A-Fa-f]+|\d+)\s*\)?\s*(?:/\*.*)?$")
    for h in headers:
        for line in _read(h).splitlines():
            m = pat.match(line.strip())
            if m:
                out.append(f"#define {m.group(1)} ...")
    return "\n".join(out)


def _rel(path):
    # setuptools wants source paths relative to the project root (its cwd).
    try:
        rel = os.path.relpath(path, os.getcwd())
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def _sources():
    found = sorted(glob.glob(os.path.join(NATIVE, "*", "*.c")))
    srcs = [p for p in found if os.path.basename(os.path.dirname(p)) != "tests"]
    if not srcs:
        raise RuntimeError(f"no C sources found under {NATIVE}")
    return [_rel(p) for p in srcs]


def _flags():
    cflags = ["-std=gnu11", "-O2", "-g", "-Wall", "-Wextra", "-Wno-unused-parameter",
              "-pthread", "-fvisibility=hidden"]
    ldflags = ["-pthread"]
    if os.environ.get("KVT_SANITIZE") == "1":
        san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
        cflags += san
        ldflags += san
    return cflags, ldflags


ffibuilder = FFI()
ffibuilder.cdef(_cdef_block() + "\n" + _int_defines("kvt_error.h", "kvt_vfs.h"))
_cflags, _ldflags = _flags()
ffibuilder.set_source(
    "kvtrees._native",
    '#include "kvtrees.h"',
    sources=_sources(),
    include_dirs=[_rel(INCLUDE)],
    extra_compile_args=_cflags,
    extra_link_args=_ldflags,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
