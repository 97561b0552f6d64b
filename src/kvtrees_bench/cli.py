"""`kvtrees bench`: argument parsing and the top-level flow."""
from __future__ import annotations

import argparse
import re
import sys
from typing import List, Optional

from kvtrees.limits import DEFAULT_CACHE

from .adapters import ENGINES, PEERS
from .workloads import QUICK, WORKLOADS

QUICK_NUM = 200_000
# --quick keeps the data (~25 MB) several times larger than the cache, so the run shows
# what separates the engines (I/O past the cache), not two in-memory trees.
QUICK_CACHE = 4 << 20
QUICK_OPS = 20_000
DEFAULT_NUM = 100_000
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1000, "kib": 1 << 10, "m": 1 << 20,
          "mb": 1000 ** 2, "mib": 1 << 20, "g": 1 << 30, "gb": 1000 ** 3, "gib": 1 << 30}


def size(text: str) -> int:
    """A byte size: 4096, 64MiB, 64M, 1.5GiB.

    >>> size("64MiB"), size("4k"), size("100")
    (67108864, 4096, 100)
    """
    m = re.fullmatch(r"\s*(-?[0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 4096, 64MiB)")
    v = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if v < 0:
        raise argparse.ArgumentTypeError(f"size must not be negative: {text!r}")
    return int(v)


def count(text: str) -> int:
    """A non-negative integer count; accepts 1_000_000, 1e6, 1M-style suffixes k/M."""
    t = text.strip().replace("_", "")
    mult = 1
    if t[-1:] in ("k", "K", "m", "M"):
        mult = 1000 if t[-1] in "kK" else 1_000_000
        t = t[:-1]
    try:
        v = float(t) * mult
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if v < 0 or v != int(v):
        raise argparse.ArgumentTypeError(f"must be a non-negative integer: {text!r}")
    return int(v)


def names(allowed, what):
    def parse(text: str) -> List[str]:
        items = [s.strip() for s in text.split(",") if s.strip()]
        if text.strip().lower() in ("", "none"):
            return []
        bad = [s for s in items if s not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(
                f"unknown {what}: {', '.join(bad)} (choose from {', '.join(allowed)})")
        return list(dict.fromkeys(items))
    return parse


def workload_names(text: str) -> List[str]:
    expanded = []
    for s in (s.strip() for s in text.split(",") if s.strip()):
        if s == "all":
            expanded += list(WORKLOADS)
        elif s == "ycsb":
            expanded += [w for w in WORKLOADS if w.startswith("ycsb-")]
        elif s == "quick":
            expanded += QUICK
        else:
            expanded.append(s)
    return names(list(WORKLOADS), "workload")(",".join(expanded))


def add_arguments(p: argparse.ArgumentParser) -> None:
    wl = ", ".join(WORKLOADS)
    p.add_argument("--workloads", type=workload_names, default=None,
                   help=f"comma list (also: all, ycsb, quick). Available: {wl}")
    p.add_argument("--engines", type=names(ENGINES, "engine"), default=list(ENGINES),
                   help="kvtrees engines, side by side (default btree,fractal)")
    p.add_argument("--peers", type=names(PEERS, "peer"), default=[],
                   help="peers through the same workload code: lmdb,rocksdb,sqlite "
                        "(skipped with a note when not installed)")
    p.add_argument("--num", type=count, default=None, help=f"keys (default {DEFAULT_NUM:,})")
    p.add_argument("--ops", type=count, default=0,
                   help="operations for read/mixed workloads (default: --num)")
    p.add_argument("--key-size", type=size, default=16)
    p.add_argument("--value-size", type=size, default=100)
    p.add_argument("--record-size", type=size, default=0,
                   help="YCSB record size (default: --value-size)")
    p.add_argument("--batch", type=count, default=1000, help="puts per commit for fills")
    p.add_argument("--cache-size", type=size, default=None,
                   help=f"default 64MiB (--quick: {QUICK_CACHE >> 20}MiB)")
    p.add_argument("--sync", action="store_true", help="fsync every commit")
    p.add_argument("--direct-io", action="store_true", help="O_DIRECT data files")
    p.add_argument("--threads", type=count, default=1, help="reader threads")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--repeat", type=count, default=None,
                   help="repetitions, interleaved across targets (default 3, --quick 1)")
    p.add_argument("--seek-nexts", type=count, default=100)
    p.add_argument("--iibench-indexes", type=count, default=3)
    p.add_argument("--store-ops", type=count, default=0,
                   help="operations of the store workload (default: min(--ops, 20000))")
    p.add_argument("--json", metavar="PATH", help="write the full report as JSON")
    p.add_argument("--plot", metavar="DIR", help="write PNG plots (needs matplotlib)")
    p.add_argument("--quick", action="store_true",
                   help=f"about a minute: --num {QUICK_NUM:,}, --ops {QUICK_OPS:,}, "
                   f"--cache-size {QUICK_CACHE >> 20}MiB, one repetition, all workloads")
    p.add_argument("--dir", help="scratch directory parent (default: the system temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directories")
    p.add_argument("--progress", choices=("auto", "rich", "plain", "none"), default="auto")
    p.add_argument("--plain", action="store_true", help="plain-text table even if rich exists")
    p.add_argument("--list", action="store_true", help="list the workloads and exit")


def check(p: argparse.ArgumentParser, a) -> None:
    if a.key_size < 1 or a.key_size > 4096:
        p.error("--key-size must be 1..4096")
    if a.value_size > 16 << 20 or a.record_size > 16 << 20:
        p.error("--value-size/--record-size must be at most 16MiB")
    for name in ("batch", "threads", "repeat", "num"):
        if getattr(a, name) < 1:
            p.error(f"--{name} must be at least 1")
    if a.cache_size < 1 << 16:
        p.error("--cache-size must be at least 64KiB")
    if not a.engines and not a.peers:
        p.error("nothing to run: give --engines and/or --peers")
    from .keys import KeySpace
    try:
        KeySpace(a.key_size).check_capacity(a.num + a.ops)
    except ValueError as e:
        p.error(str(e))


def parse(argv: Optional[List[str]], prog: str = "kvtrees bench") -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog, description="Benchmark the kvtrees engines "
                                "(and optional peers) on db_bench, YCSB, iiBench and "
                                "etcd-like workloads.")
    add_arguments(p)
    a = p.parse_args(argv)
    if a.num is None:
        a.num = QUICK_NUM if a.quick else DEFAULT_NUM
    if a.cache_size is None:
        a.cache_size = QUICK_CACHE if a.quick else DEFAULT_CACHE
    if a.quick and not a.ops:
        a.ops = QUICK_OPS
    if a.repeat is None:
        a.repeat = 1 if a.quick else 3
    if a.workloads is None:
        a.workloads = list(QUICK) if a.quick else [
            "fillseq", "fillrandom", "overwrite", "readrandom", "readmissing", "seekrandom",
            "deleterandom"]
    if not a.list:
        check(p, a)
    return a


def _sigterm_as_interrupt():
    """Turn SIGTERM into KeyboardInterrupt; returns the previous handler (None: untouched)."""
    import signal
    import threading

    def handler(_sig, _frame):
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, handler)


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    a = parse(argv)
    if a.list:
        for w in WORKLOADS.values():
            print(f"{w.name:18} {w.setup:7} {w.doc}")
        return 0
    from .report import make_progress, plot, print_table, validate, write_json
    from .runner import Config, run
    cfg = Config(workloads=a.workloads, engines=a.engines, peers=a.peers, num=a.num, ops=a.ops,
                 key_size=a.key_size, value_size=a.value_size, record_size=a.record_size,
                 batch=a.batch, cache_size=a.cache_size, sync=a.sync, direct_io=a.direct_io,
                 threads=a.threads, seed=a.seed, repeat=a.repeat, seek_nexts=a.seek_nexts,
                 iibench_indexes=a.iibench_indexes, store_ops=a.store_ops, dir=a.dir,
                 keep=a.keep)
    previous = _sigterm_as_interrupt()   # so scratch directories are removed on kill too
    try:
        report = run(cfg, make_progress(a.progress), argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            import signal
            signal.signal(signal.SIGTERM, previous)
    print_table(report, use_rich=not a.plain)
    problems = validate(report)
    if problems:  # a bug in this tool, not in the engines: say so loudly
        print("internal error: invalid report: " + "; ".join(problems[:5]), file=sys.stderr)
        return 3
    if a.json:
        write_json(report, a.json)
        print(f"wrote {a.json}")
    if a.plot:
        files = plot(report, a.plot)
        print(f"wrote {', '.join(files)}" if files else "plots skipped: matplotlib not installed")
    if not report["targets"]:
        print("error: no target could run (see notes above)", file=sys.stderr)
        return 2
    errors = [r for r in report["runs"] if "error" in r]
    return 1 if errors else 0
