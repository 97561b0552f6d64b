"""etcd's auto-compaction (--auto-compaction-mode / --auto-compaction-retention).

revision mode: every `interval` seconds (etcd: 5 minutes), compact to
(current revision - retention) if that moved. periodic mode: retention is a duration;
the revision is sampled every retention/10 (at least every second) and the store is
compacted to the newest sample at least `retention` old, as etcd 3.4 does.
"""
from __future__ import annotations

import collections
import logging
import re
import threading
import time

from .. import errors as kerr

_log = logging.getLogger("kvtrees.server.compactor")
REVISION_INTERVAL = 300.0
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def parse_retention(mode: str, text: str) -> float:
    """revision mode: a revision count; periodic: a duration ("1h", "30m", "90s") or a
    bare number of hours, as etcd. ValueError on anything else."""
    text = str(text).strip()
    if mode == "revision":
        n = int(text)
        if n < 0:
            raise ValueError("auto-compaction-retention must be >= 0")
        return float(n)
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text) * 3600
    total, pos = 0.0, 0
    for m in re.finditer(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError("bad auto-compaction-retention %r" % text)
    return total


class Compactor:
    """A background thread compacting `store` per mode and retention."""

    def __init__(self, store, mode: str, retention: float,
                 revision_interval: float = REVISION_INTERVAL):
        if mode not in ("periodic", "revision"):
            raise ValueError("auto-compaction-mode must be periodic or revision")
        self.store = store
        self.mode = mode
        self.retention = retention
        self.revision_interval = revision_interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="kvtrees-compactor")
        self.last = 0

    def start(self) -> None:
        if self.retention > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _run(self) -> None:
        if self.mode == "revision":
            self._run_revision()
        else:
            self._run_periodic()

    def _run_revision(self) -> None:
        while not self._stop.wait(self.revision_interval):
            self._compact(self.store.revision - int(self.retention))

    def _run_periodic(self) -> None:
        step = max(1.0, self.retention / 10)
        samples: collections.deque = collections.deque()   # (monotonic time, revision)
        while True:
            samples.append((time.monotonic(), self.store.revision))
            target = 0
            while samples and samples[0][0] <= time.monotonic() - self.retention:
                target = samples.popleft()[1]
            if target:
                self._compact(target)
            if self._stop.wait(step):
                return

    def _compact(self, rev: int) -> None:
        if rev <= max(self.last, self.store.compact_revision):
            return
        is_leader = getattr(self.store, "is_leader", None)
        if is_leader is not None and not is_leader():
            return              # a Raft member: the leader's compactor decides, as etcd's

        try:
            self.store.compact(rev)
            self.last = rev
            _log.info("auto-compacted to revision %d", rev)
        except kerr.CompactedError:
            self.last = rev
        except kerr.ClosedError:
            self._stop.set()
        except kerr.KvtreesError as e:
            _log.warning("auto-compaction to %d failed: %s", rev, e)
