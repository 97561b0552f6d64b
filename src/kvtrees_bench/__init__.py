"""kvtrees benchmark harness (`kvtrees bench`, `python -m kvtrees bench`).

A package of its own beside `kvtrees`, installed with it so the console script works
from a wheel; the library never imports it (only the command line's `bench` command
does). bench/ in the repository holds RESULTS.md, plots and the run scripts."""
from .cli import main

__all__ = ["main"]
