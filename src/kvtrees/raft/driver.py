"""A threaded driver that runs one RawNode: the Ready loop with real time and I/O.

The pure core stays pure; this is where clocks, threads, storage and the network
meet. One thread owns the RawNode. Everything else talks to it through an inbox:
received messages, proposals, ReadIndex requests, transfer requests, transport
reports. Each loop iteration drains the inbox, ticks when a tick is due, then handles
every Ready exactly as :mod:`kvtrees.raft.rawnode` prescribes: persist (one fsync),
then send, then apply.

``apply(entry)`` is called on the driver thread, in log order, for every committed
NORMAL entry with data (conf changes are applied to Raft here and then passed to
``on_conf_change``). Reads: ``read_index(ctx, callback)`` calls
``callback(index)`` once the node has applied ``index``, which makes a read done
after it linearizable.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

from .errors import ProposalDroppedError, RaftError, StepPeerNotFoundError
from .rawnode import RawNode, Status
from .types import ConfChange, ConfState, Entry, EntryType, Message

log = logging.getLogger(__name__)


class NodeDriver:
    """Runs a RawNode on its own thread. ``storage`` needs ``save(hs, entries, snap)``."""

    def __init__(self, node: RawNode, storage, transport,
                 apply: Callable[[Entry], None], tick_interval: float = 0.01,
                 on_conf_change: Optional[Callable[[ConfChange, ConfState], None]] = None,
                 on_snapshot: Optional[Callable[[object], None]] = None,
                 snapshot_data: Optional[Callable[[], bytes]] = None,
                 snapshot_every: int = 0, snapshot_keep: int = 100) -> None:
        """``on_snapshot(snapshot)`` installs a snapshot received from the leader into
        the state machine. With ``snapshot_every`` > 0 the driver takes a snapshot
        (``snapshot_data()`` serializes the state machine as of the applied index)
        every that many applied entries and compacts the log, keeping
        ``snapshot_keep`` entries so that slightly slow followers need no snapshot."""
        self.node = node
        self.storage = storage
        self.transport = transport
        self.apply = apply
        self.on_conf_change = on_conf_change
        self.on_snapshot = on_snapshot
        self.tick_interval = tick_interval
        self.snapshot_data = snapshot_data
        self.snapshot_every = snapshot_every
        self.snapshot_keep = snapshot_keep
        self.snapshots_taken = 0
        self.snapshots_installed = 0
        self.applied = node.raft.log.applied
        self._inbox: "queue.Queue[Tuple]" = queue.Queue()
        self._reads: Dict[bytes, Callable[[int], None]] = {}
        self._waiting_reads: List[Tuple[int, Callable[[int], None]]] = []
        self._status: Optional[Status] = None
        self._status_lock = threading.Lock()
        self._stop = threading.Event()
        self.error: Optional[BaseException] = None
        transport.on_unreachable = lambda peer: self._inbox.put(("unreachable", peer))
        transport.on_snapshot_status = lambda peer, ok: self._inbox.put(("snap", peer, ok))
        transport.on_peer_closed = lambda peer: self._inbox.put(("closed", peer))
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"raft-node-{node.id}")

    # ---- API (any thread) --------------------------------------------------------------

    def start(self) -> "NodeDriver":
        """Start the driver thread; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the loop (the transport is the caller's to close)."""
        self._stop.set()
        self._inbox.put(("wake",))
        self._thread.join(timeout=5)

    def deliver(self, m: Message) -> None:
        """Hand a message received from the network (transport callback)."""
        self._inbox.put(("msg", m))

    def propose(self, data: bytes) -> None:
        """Propose data; it is applied on every member if committed. Fire and forget:
        a proposal may be dropped (no leader), so callers retry on a timeout."""
        self._inbox.put(("propose", data))

    def propose_conf_change(self, cc: ConfChange) -> None:
        """Propose a membership change (fire and forget, like propose)."""
        self._inbox.put(("conf", cc))

    def read_index(self, ctx: bytes, callback: Callable[[int], None]) -> None:
        """Ask for a linearizable read point; callback(index) runs on the driver
        thread once index is applied. Unanswered when there is no leader or quorum."""
        self._inbox.put(("read", ctx, callback))

    def transfer_leader(self, transferee: int) -> None:
        """Ask for leadership to move to transferee (only a leader acts on it)."""
        self._inbox.put(("transfer", transferee))

    def campaign(self) -> None:
        """Start an election now."""
        self._inbox.put(("campaign",))

    def status(self) -> Optional[Status]:
        """The node's status as of the end of the last loop iteration."""
        with self._status_lock:
            return self._status

    # ---- the loop (driver thread) --------------------------------------------------------

    def _run(self) -> None:
        next_tick = time.monotonic() + self.tick_interval
        try:
            while not self._stop.is_set():
                timeout = max(0.0, next_tick - time.monotonic())
                self._drain_inbox(timeout)
                now = time.monotonic()
                if now >= next_tick:
                    self.node.tick()
                    next_tick = max(next_tick + self.tick_interval, now)
                self._handle_ready()
                self._publish_status()
        except BaseException as e:  # surfaced to tests/operators via .error
            self.error = e
            log.exception("raft node %d stopped", self.node.id)

    def _drain_inbox(self, timeout: float) -> None:
        """Handle everything queued (waiting up to timeout for the first item); the
        proposals among them go to Raft as one batch."""
        batch: List[bytes] = []
        try:
            item = self._inbox.get(timeout=timeout)
            while True:
                if item[0] == "propose":
                    batch.append(item[1])
                else:
                    self._handle(item)
                item = self._inbox.get_nowait()
        except queue.Empty:
            pass
        if batch:
            try:
                self.node.propose_batch(batch)
            except ProposalDroppedError as e:
                log.debug("raft node %d: %d proposals dropped: %s", self.node.id, len(batch), e)

    def _handle(self, item: Tuple) -> None:
        kind = item[0]
        n = self.node
        try:
            if kind == "msg":
                n.step(item[1])
            elif kind == "conf":
                n.propose_conf_change(item[1])
            elif kind == "read":
                self._reads[item[1]] = item[2]
                n.read_index(item[1])
            elif kind == "transfer":
                n.transfer_leader(item[1])
            elif kind == "campaign":
                n.campaign()
            elif kind == "unreachable":
                n.report_unreachable(item[1])
            elif kind == "snap":
                n.report_snapshot(item[1], item[2])
            elif kind == "closed":
                n.report_leader_lost(item[1])
        except (ProposalDroppedError, StepPeerNotFoundError) as e:
            log.debug("raft node %d: %s", n.id, e)

    def _handle_ready(self) -> None:
        n = self.node
        while n.has_ready():
            rd = n.ready()
            self.storage.save(rd.hard_state, rd.entries, rd.snapshot,  # 1. persist
                              sync=rd.must_sync)
            self.transport.send(rd.messages)                           # 2. speak
            if rd.snapshot is not None:                                 # 3. apply
                if self.on_snapshot is not None:
                    self.on_snapshot(rd.snapshot)
                self.snapshots_installed += 1
                self.applied = rd.snapshot.metadata.index
            self._apply_entries(rd.committed_entries)
            for rs in rd.read_states:
                cb = self._reads.pop(rs.request_ctx, None)
                if cb is not None:
                    self._waiting_reads.append((rs.index, cb))
            n.advance(rd)
            self._release_reads()
            self._maybe_snapshot()

    def _maybe_snapshot(self) -> None:
        """Snapshot the state machine and compact the log every snapshot_every entries.
        The membership is Raft's current one, which is the one at the applied index
        because conf changes take effect when applied."""
        if not self.snapshot_every or self.snapshot_data is None:
            return
        snap_index = self.storage.snapshot().metadata.index
        if self.applied - snap_index < self.snapshot_every:
            return
        conf = self.node.raft.prs.conf_state()
        self.storage.create_snapshot(self.applied, conf, self.snapshot_data())
        self.snapshots_taken += 1
        compact_to = self.applied - self.snapshot_keep
        if compact_to >= self.storage.first_index():
            self.storage.compact(compact_to)

    def _apply_entries(self, entries: List[Entry]) -> None:
        """Apply one Ready's committed entries in order (a subclass may group them)."""
        for e in entries:
            self._apply_entry(e)

    def _apply_entry(self, e: Entry) -> None:
        if e.type == EntryType.CONF_CHANGE:
            cc = ConfChange.decode(e.data)
            try:
                cs = self.node.apply_conf_change(cc)
            except RaftError as err:
                log.warning("raft node %d: conf change %s ignored: %s", self.node.id, cc, err)
            else:
                self._conf_changed(e, cc, cs)
        elif e.data:
            self.apply(e)
        self.applied = e.index

    def _conf_changed(self, e: Entry, cc: ConfChange, cs: ConfState) -> None:
        """A conf change entry was applied to Raft (a subclass may want its index)."""
        if self.on_conf_change is not None:
            self.on_conf_change(cc, cs)

    def _release_reads(self) -> None:
        if not self._waiting_reads:
            return
        still = []
        for index, cb in self._waiting_reads:
            if index <= self.applied:
                cb(index)
            else:
                still.append((index, cb))
        self._waiting_reads = still

    def _publish_status(self) -> None:
        st = self.node.status()
        with self._status_lock:
            self._status = st
