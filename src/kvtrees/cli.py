"""The `kvtrees` command line: `kvtrees bench ...`, `kvtrees serve ...`, and the
store tools of cli_tools.py (check, dump, snapshot)."""
from __future__ import annotations

import sys
from typing import List, Optional

USAGE = """usage: kvtrees <command> [options]

commands:
  bench      benchmark the engines (try: kvtrees bench --quick; kvtrees bench --help)
  serve      serve etcd's v3 gRPC API over a store (kvtrees serve --help)
"""
from kvtrees.cli_tools import USAGE as _TOOLS_USAGE  # noqa: E402

USAGE += _TOOLS_USAGE


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "bench":
        from kvtrees_bench.cli import main as bench_main
        return bench_main(rest)
    if cmd == "serve":
        from kvtrees.server.cli import main as serve_main
        return serve_main(rest)
    from kvtrees.cli_tools import COMMANDS as tools
    if cmd in tools:
        return tools[cmd](rest)
    print(f"kvtrees: unknown command {cmd!r}\n\n{USAGE}", end="", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
