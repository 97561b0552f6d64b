#!/usr/bin/env python3
"""Thin wrapper: `python bench/run.py ARGS` == `kvtrees bench ARGS` from a source checkout.
The harness itself lives in src/kvtrees_bench/ so the installed console script has it."""
import os
import sys

try:
    import kvtrees_bench  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from kvtrees_bench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
