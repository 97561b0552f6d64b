"""The library's layering: importing every library module loads no benchmark code, and
no library module names the bench package (it lives beside the library, in
src/kvtrees_bench/, for the `kvtrees bench` command only)."""

import os
import subprocess
import sys

import kvtrees

SRC = os.path.dirname(kvtrees.__file__)


def test_library_imports_no_benchmark_code():
    code = ("import sys, pkgutil, importlib, kvtrees\n"
            "for m in pkgutil.walk_packages(kvtrees.__path__, 'kvtrees.'):\n"
            "    if m.name != 'kvtrees.cli' and not m.name.endswith('__main__'):\n"
            "        try:\n"
            "            importlib.import_module(m.name)\n"
            "        except ImportError as e:\n"
            "            if 'grpc' not in str(e): raise\n"
            "print(sorted(n for n in sys.modules if n.startswith('kvtrees_bench')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_only_the_command_line_names_the_bench_package():
    naming = []
    for root, _, files in os.walk(SRC):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                with open(path, encoding="utf-8") as f:
                    if "kvtrees_bench" in f.read():
                        naming.append(os.path.relpath(path, SRC))
    assert naming == ["cli.py"]
