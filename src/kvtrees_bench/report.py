"""Output: the table (rich if installed, plain text otherwise), the progress bar, JSON
(with a validator the tests use) and PNG plots (matplotlib, if installed)."""
from __future__ import annotations

import json
import os
import sys
from typing import List, Optional

from .runner import SCHEMA_VERSION, Progress

COLUMNS = [  # (header, key, formatter)
    ("workload", "workload", str),
    ("target", "target", str),
    ("ops/s", "ops_per_s", lambda v: f"{v:,.0f}"),
    ("±", "spread_pct", lambda v: f"{v / 2:.1f}%"),
    ("p50 µs", "lat_p50_us", lambda v: f"{v:,.1f}"),
    ("p99 µs", "lat_p99_us", lambda v: f"{v:,.1f}"),
    ("per", "lat_unit", str),
    ("wr B/op", "bytes_written_per_op", lambda v: f"{v:,.1f}"),
    ("rd B/op", "bytes_read_per_op", lambda v: f"{v:,.1f}"),
    ("io", "io_source", lambda v: {"engine": "eng", "device": "dev"}.get(v, v)),
    ("fsyncs", "fsyncs", lambda v: f"{v:,.0f}"),
    ("miss/op", "cache_misses_per_op", lambda v: f"{v:.3f}"),
    ("file", "file_size", lambda v: human(v)),
    ("peak RSS", "peak_rss", lambda v: human(v)),
]


def human(n) -> str:
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def cell(row: dict, key: str, fmt) -> str:
    v = row.get(key)
    if row.get("status", "ok") != "ok" and key not in ("workload", "target"):
        return row["status"] if key == "ops_per_s" else ""
    return "n/a" if v is None else fmt(v)


def table_rows(summary: List[dict]) -> List[List[str]]:
    return [[cell(r, key, fmt) for _h, key, fmt in COLUMNS] for r in summary]


def plain_table(summary: List[dict]) -> str:
    heads = [h for h, _k, _f in COLUMNS]
    rows = table_rows(summary)
    ok = [r for s, r in zip(summary, rows) if s.get("status") == "ok"]
    widths = [max([len(h)] + [len(r[i]) for r in ok]) for i, h in enumerate(heads)]
    widths[0] = max([widths[0]] + [len(r[0]) for r in rows])
    widths[1] = max([widths[1]] + [len(r[1]) for r in rows])

    def fmt(r, status=None):
        if status is not None:   # a row that did not run: its reason, unaligned
            return f"{r[0].ljust(widths[0])}  {r[1].ljust(widths[1])}  {status}"
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    lines = [fmt(heads), fmt(["-" * w for w in widths])]
    for s, r in zip(summary, rows):
        lines.append(fmt(r) if s.get("status") == "ok" else fmt(r, s.get("status")))
    return "\n".join(lines)


def print_table(report: dict, use_rich: bool, file=None) -> None:
    file = file or sys.stdout
    summary = report["summary"]
    if use_rich and file.isatty():
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:
            use_rich = False
    else:
        use_rich = False
    if not use_rich:
        print(plain_table(summary), file=file)
    else:
        t = Table(title="kvtrees bench (medians over repetitions; ± = (max-min)/2 of ops/s)")
        for i, (h, _k, _f) in enumerate(COLUMNS):
            t.add_column(h, justify="left" if i < 2 else "right", no_wrap=True)
        prev = None
        for r, cells in zip(summary, table_rows(summary)):
            if prev is not None and r["workload"] != prev:
                t.add_section()
            prev = r["workload"]
            t.add_row(*cells)
        Console(file=file).print(t)
    if report.get("skipped_targets"):
        for t, why in report["skipped_targets"].items():
            print(f"skipped {t}: {why}", file=file)
    print("±: half the ops/s range over repetitions. per: latency per op or per batch "
          "(--batch puts).\nio: eng = the engine's own VFS counters; dev = block-device "
          "sectors after os.sync() (the disk is shared: other processes add noise); "
          "n/a = unavailable", file=file)


# -- progress ----------------------------------------------------------------------------
class PlainProgress(Progress):
    def __init__(self, quiet: bool = False):
        self.n = self.total = 0
        self.quiet = quiet

    def start(self, total):
        self.total = total

    def step(self, desc):
        if not self.quiet:
            print(f"[{self.n}/{self.total}] {desc} ...", file=sys.stderr, flush=True)

    def done_one(self, run):
        self.n += 1
        if self.quiet:
            return
        if "ops_per_s" in run:
            print(f"[{self.n}/{self.total}] {run['target']} {run['workload']}: "
                  f"{run['ops_per_s']:,.0f} ops/s", file=sys.stderr, flush=True)
        else:
            print(f"[{self.n}/{self.total}] {run['target']} {run['workload']}: "
                  f"{run.get('error') or run.get('skipped')}", file=sys.stderr, flush=True)


class RichProgress(Progress):
    def __init__(self):
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RP,
                                   TextColumn, TimeElapsedColumn)
        self.console = Console(stderr=True)
        self.bar = RP(TextColumn("{task.description:<40}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=self.console, transient=False)
        self.task = None

    def start(self, total):
        self.bar.start()
        self.task = self.bar.add_task("starting", total=total)

    def step(self, desc):
        self.bar.update(self.task, description=desc)

    def done_one(self, run):
        self.bar.advance(self.task)
        if "error" in run:
            self.bar.console.print(f"[red]{run['target']} {run['workload']}: {run['error']}")

    def log(self, msg):
        self.bar.console.print(msg, markup=False, highlight=False)

    def stop(self):
        self.bar.update(self.task, description="done")
        self.bar.stop()


def make_progress(kind: str) -> Progress:
    """kind: auto (rich on a terminal), rich, plain, none."""
    if kind in ("auto", "rich"):
        try:
            import rich  # noqa: F401
            if kind == "rich" or sys.stderr.isatty():
                return RichProgress()
        except ImportError:
            pass
    return PlainProgress(quiet=(kind == "none"))


# -- JSON --------------------------------------------------------------------------------
def write_json(report: dict, path: str) -> None:
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=1, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)


_NUM = (int, float)
_RUN_OK = {"target": str, "workload": str, "rep": int, "ops": int, "seconds": _NUM,
           "ops_per_s": _NUM, "lat_unit": str, "lat_p50_us": _NUM, "lat_p99_us": _NUM,
           "bytes_written_per_op": _NUM, "bytes_read_per_op": _NUM, "io_source": str,
           "fsyncs": int, "cache_misses_per_op": _NUM, "file_size": int, "height": int,
           "peak_rss": int, "extra": dict}
_NULLABLE = {"lat_p50_us", "lat_p99_us", "bytes_written_per_op", "bytes_read_per_op",
             "io_source", "fsyncs", "cache_misses_per_op", "file_size", "height"}


def validate(report: dict) -> List[str]:
    """Problems found in a report (empty list: valid). Checks types, required keys and
    consistency between runs and summary."""
    errs = []

    def need(obj, key, typ, where, nullable=False):
        if key not in obj:
            errs.append(f"{where}: missing {key}")
        elif obj[key] is None:
            if not nullable:
                errs.append(f"{where}: {key} is null")
        elif not isinstance(obj[key], typ) or isinstance(obj[key], bool) and typ is not bool:
            errs.append(f"{where}: {key} has type {type(obj[key]).__name__}")

    for k, typ in (("schema", int), ("machine", dict), ("config", dict), ("targets", list),
                   ("workloads", list), ("runs", list), ("summary", list),
                   ("skipped_targets", dict), ("elapsed_s", _NUM)):
        need(report, k, typ, "report")
    if errs:
        return errs
    if report["schema"] != SCHEMA_VERSION:
        errs.append(f"report: schema {report['schema']} != {SCHEMA_VERSION}")
    for k in ("nproc", "memory_bytes", "cpu"):
        need(report["machine"], k, (int, str), "machine", nullable=True)
    for i, r in enumerate(report["runs"]):
        where = f"runs[{i}]"
        if "error" in r or "skipped" in r:
            for k in ("target", "workload"):
                need(r, k, str, where)
            continue
        for k, typ in _RUN_OK.items():
            need(r, k, typ, where, nullable=k in _NULLABLE)
        if isinstance(r.get("ops"), int) and r["ops"] <= 0:
            errs.append(f"{where}: ops {r['ops']} <= 0")
        if r.get("lat_unit") not in ("op", "batch"):
            errs.append(f"{where}: lat_unit {r.get('lat_unit')!r}")
        p50, p99 = r.get("lat_p50_us"), r.get("lat_p99_us")
        if isinstance(p50, _NUM) and isinstance(p99, _NUM) and p50 > p99:
            errs.append(f"{where}: p50 {p50} > p99 {p99}")
    pairs = {(r.get("workload"), r.get("target")) for r in report["runs"]}
    for i, s in enumerate(report["summary"]):
        where = f"summary[{i}]"
        need(s, "status", str, where)
        if (s.get("workload"), s.get("target")) not in pairs:
            errs.append(f"{where}: no run for {s.get('workload')}/{s.get('target')}")
        if s.get("status") == "ok":
            need(s, "ops_per_s", _NUM, where)
            lo, med, hi = s.get("ops_per_s_min"), s.get("ops_per_s"), s.get("ops_per_s_max")
            if all(isinstance(x, _NUM) for x in (lo, med, hi)) and not lo <= med <= hi:
                errs.append(f"{where}: median {med} outside [{lo}, {hi}]")
    return errs


# -- plots -------------------------------------------------------------------------------
def plot(report: dict, out_dir: str) -> List[str]:
    """PNG plots: ops/s bars per workload per target, and the iiBench insert-rate curve.
    Returns the files written ([] without matplotlib)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    os.makedirs(out_dir, exist_ok=True)
    files = []
    f = plot_bars(plt, report, out_dir)
    if f:
        files.append(f)
    f = plot_iibench(plt, report, out_dir)
    if f:
        files.append(f)
    return files


def plot_bars(plt, report, out_dir) -> Optional[str]:
    ok = [s for s in report["summary"] if s.get("status") == "ok"]
    if not ok:
        return None
    wl = [w for w in report["workloads"] if any(s["workload"] == w for s in ok)]
    targets = report["targets"]
    fig, ax = plt.subplots(figsize=(min(16, max(8, 0.35 * len(wl) * max(1, len(targets)) + 3)), 5.5))
    width = 0.8 / max(1, len(targets))
    for ti, t in enumerate(targets):
        xs, ys, lo, hi = [], [], [], []
        for wi, w in enumerate(wl):
            s = next((s for s in ok if s["workload"] == w and s["target"] == t), None)
            if s:
                xs.append(wi + ti * width)
                ys.append(s["ops_per_s"])
                lo.append(s["ops_per_s"] - s["ops_per_s_min"])
                hi.append(s["ops_per_s_max"] - s["ops_per_s"])
        ax.bar(xs, ys, width, label=t, yerr=[lo, hi], capsize=2)
    ax.set_xticks([i + width * (len(targets) - 1) / 2 for i in range(len(wl))])
    ax.set_xticklabels(wl, rotation=35, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("ops/s (median, log scale; bars: min-max)")
    cfg = report["config"]
    ax.set_title(f"kvtrees bench: num={cfg['num']} key={cfg['key_size']}B "
                 f"value={cfg['value_size']}B cache={human(cfg['cache_size'])}")
    ax.legend()
    fig.tight_layout()
    path = os.path.join(out_dir, "workloads.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_iibench(plt, report, out_dir) -> Optional[str]:
    runs = [r for r in report["runs"] if r.get("workload") == "iibench"
            and r.get("extra", {}).get("curve")]
    if not runs:
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    styles = ("-", "--", ":", "-.")
    for ti, t in enumerate(report["targets"]):
        for r in (r for r in runs if r["target"] == t):
            curve = r["extra"]["curve"]
            ax.plot([c[0] for c in curve], [c[1] for c in curve], marker=".",
                    color=f"C{ti}", linestyle=styles[r["rep"] % len(styles)],
                    label=f"{t} (rep {r['rep'] + 1})")
    ax.set_xlabel("rows inserted")
    ax.set_ylabel(f"rows/s in interval (1 + {report['config']['iibench_indexes']} "
                  "entries per row)")
    ax.set_title(f"iiBench insert rate (cache {human(report['config']['cache_size'])})")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = os.path.join(out_dir, "iibench.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
