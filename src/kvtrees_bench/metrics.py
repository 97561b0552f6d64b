"""Measurement helpers: percentiles, peak RSS, block-device I/O counters, machine info."""
from __future__ import annotations

import os
import platform
import resource
from typing import List, Optional

SECTOR = 512  # /sys/block/*/stat always counts 512-byte sectors


def percentile(sorted_vals: List[float], q: float) -> Optional[float]:
    """Nearest-rank percentile of an already sorted list.

    >>> percentile([1, 2, 3, 4], 50), percentile([1, 2, 3, 4], 99)
    (2, 4)
    """
    if not sorted_vals:
        return None
    idx = max(0, min(len(sorted_vals) - 1, int(round(q / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[idx]


def median(vals: List[float]) -> Optional[float]:
    if not vals:
        return None
    s = sorted(vals)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


# -- peak RSS ----------------------------------------------------------------------------
def reset_peak_rss() -> bool:
    """Reset VmHWM (Linux >= 4.0: write 5 to clear_refs) so each run has its own peak."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# -- block device counters (peers) ------------------------------------------------------
def device_stat_path(directory: str) -> Optional[str]:
    """The /sys stat file of the block device holding directory, or None (tmpfs, overlay
    on a virtual device, not Linux)."""
    try:
        st = os.stat(directory)
    except OSError:
        return None
    major, minor = os.major(st.st_dev), os.minor(st.st_dev)
    if major == 0:
        return None
    p = f"/sys/dev/block/{major}:{minor}/stat"
    return p if os.path.exists(p) else None


def device_io(stat_path: Optional[str]):
    """(bytes_read, bytes_written) of the device so far, after os.sync() so that the
    writes of the measured run have reached it. None when unavailable.
    /proc/self/io write_bytes is deliberately not used: it over-counts on this kernel."""
    if not stat_path:
        return None
    os.sync()
    try:
        with open(stat_path) as f:
            fields = f.read().split()
        return int(fields[2]) * SECTOR, int(fields[6]) * SECTOR
    except (OSError, IndexError, ValueError):
        return None


# -- machine -----------------------------------------------------------------------------
def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "memory_bytes": mem, "cpu": cpu,
            "kernel": platform.release(), "python": platform.python_version()}
