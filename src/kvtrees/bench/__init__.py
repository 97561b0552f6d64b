"""kvtrees benchmark harness (`kvtrees bench`, `python -m kvtrees bench`).

The implementation lives in the package so the console script works from an installed
wheel; bench/ in the repository holds RESULTS.md, plots and a thin run script."""
from .cli import main

__all__ = ["main"]
