"""Build of kvtrees: metadata lives in pyproject.toml; this adds the cffi extension and
kvtrees._pack (a small CPython extension that packs pairs for Engine.put_many) and
kvtrees._direct (the store's put, get and txn called without cffi) and kvtrees._txnpack
(the txn request encoder in C); see their headers."""
import os

from setuptools import Extension, find_packages, setup


def _pack_flags():
    cflags, ldflags = ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"], []
    if os.environ.get("KVT_SANITIZE") == "1":       # as _build_ffi.py
        san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
        cflags += san
        ldflags += san
    return cflags, ldflags


_cflags, _ldflags = _pack_flags()

setup(
    package_dir={"": "src"},
    packages=find_packages("src"),
    cffi_modules=["src/kvtrees/_build_ffi.py:ffibuilder"],
    ext_modules=[Extension("kvtrees._pack", ["src/kvtrees/_pack.c"],
                           extra_compile_args=_cflags, extra_link_args=_ldflags),
                 Extension("kvtrees._direct", ["src/kvtrees/_direct.c"],
                           include_dirs=["native/include"],
                           extra_compile_args=_cflags, extra_link_args=_ldflags),
                 Extension("kvtrees._txnpack", ["src/kvtrees/_txnpack.c"],
                           extra_compile_args=_cflags, extra_link_args=_ldflags)],
    zip_safe=False,
)
