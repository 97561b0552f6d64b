"""cffi build script (out-of-line API mode) for kvtrees._native.

The cdef is read from the headers, never copied: the text between "/* CDEF BEGIN */" and
"/* CDEF END */" of each header in CDEF_HEADERS (kvtrees.h, then kvt_mvcc.h), plus every
integer "#define KVT_X n" of kvt_error.h, kvt_vfs.h, kvt_limits.h and kvt_mvcc.h. The C
sources are every native/*/*.c except native/tests/,
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


CDEF_HEADERS = ("kvtrees.h", "kvt_mvcc.h")


def _cdef_block():
    blocks = []
    for name in CDEF_HEADERS:
        m = re.search(r"/\* CDEF BEGIN \*/(.*?)/\* CDEF END \*/", _read(name), re.S)
        if not m:
            raise RuntimeError(f"{name} has no CDEF BEGIN/END block")
        blocks.append(m.group(1))
    return "\n".join(blocks)


def _int_defines(*headers):
    out = []
    pat = re.compile(r"^#define\s+(KVT_[A-Z0-9_]+)\s+\(?\s*-?(0x[0-9A-Fa-f]+|\d+)\s*\)?\s*(?:/\*.*)?$")
    for h in headers:
        for line in _read(h).splitlines():
            m = pat.match(line.strip())
            if m:
                out.append(f"#define {m.group(1)} ...")
    return "\n".join(out)


def _rel(path, absolute=False):
    # setuptools wants source paths relative to the project root (its cwd); a standalone
    # compile (python _build_ffi.py OUTDIR) chdirs into OUTDIR, so it needs absolute ones.
    if absolute:
        return path
    try:
        rel = os.path.relpath(path, os.getcwd())
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def _sources(absolute=False):
    found = sorted(glob.glob(os.path.join(NATIVE, "*", "*.c")))
    srcs = [p for p in found if os.path.basename(os.path.dirname(p)) != "tests"]
    if not srcs:
        raise RuntimeError(f"no C sources found under {NATIVE}")
    return [_rel(p, absolute) for p in srcs]


def _flags():
    cflags = ["-std=gnu11", "-O2", "-g", "-Wall", "-Wextra", "-Wno-unused-parameter",
              "-pthread", "-fvisibility=hidden"]
    ldflags = ["-pthread"]
    if os.environ.get("KVT_SANITIZE") == "1":
        san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
        cflags += san
        ldflags += san
    return cflags, ldflags


def make_builder(absolute=False):
    """The FFI builder; absolute=True for a standalone compile outside setuptools."""
    builder = FFI()
    builder.cdef(_cdef_block() + "\n" + _int_defines("kvt_error.h", "kvt_vfs.h", "kvt_limits.h",
                                                     "kvt_mvcc.h"))
    cflags, ldflags = _flags()
    builder.set_source(
        "kvtrees._native",
        '#include "kvtrees.h"\n#include "kvt_mvcc.h"',
        sources=_sources(absolute),
        include_dirs=[_rel(INCLUDE, absolute)],
        extra_compile_args=cflags,
        extra_link_args=ldflags,
    )
    return builder


ffibuilder = make_builder()

if __name__ == "__main__":
    # python src/kvtrees/_build_ffi.py [OUTDIR]: build kvtrees/_native*.so under OUTDIR
    import sys
    print(make_builder(absolute=True).compile(tmpdir=sys.argv[1] if len(sys.argv) > 1 else ".",
                                             verbose=True))
