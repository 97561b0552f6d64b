"""ClusterStore: the store replicated by Raft.

Every write is a request value (kvtrees.requests). On a ClusterStore the public write
methods do not apply it: they propose it (one log entry, kvtrees.cluster.codec) and wait
until this member has applied it, then return what the apply returned. Entries are
applied on the Raft driver's thread, in log order, on every member, through
Store.apply_at (effects and applied index in one engine batch), so every member goes
through the same revisions and has the same hash_kv.

Local, not replicated: physical compaction steps (each member compacts its own engine
after applying the compaction's target), the revision saved at close. Lease expiry is
the leader's decision alone: its lease clock proposes a LeaseRevoke; followers postpone
their clocks, and a new leader restarts every lease's countdown (etcd's Promote).
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import threading
import time
from typing import Any, Optional

from .. import mvcc
from ..errors import (ClosedError, CompactedError, FutureRevisionError, LeaseNotFoundError,
                      NoLeaderError, RequestTimeoutError, TooLargeError)
from ..lease import Lease
from ..requests import CompactStepRequest, LeaseGrantRequest, LeaseRevokeRequest, \
    SaveRevisionRequest, CompactRequest
from ..store import Store
from ..txn import to_lease_id
from . import snapshot
from .apply_group import apply_puts, groupable
from .codec import decode_entry, encode_entry
from .dedup import Dedup
from .reads import ReadIndexer
from .requests import LeaseRefreshRequest, MemberAttrRequest
from .waiters import Waiters

log = logging.getLogger(__name__)

META_MEMBERS = mvcc.META + b"cluster/members"
# requests each member applies to its own engine, outside the log
_LOCAL = (CompactStepRequest, SaveRevisionRequest)
# errors an apply may raise that are the request's answer, the same on every member
REQUEST_ERRORS = (LeaseNotFoundError, CompactedError, FutureRevisionError, TooLargeError,
                  ValueError, TypeError)


class ClusterStore(Store):
    """A Store whose writes go through Raft. Attach it to a running NodeDriver with
    attach() (kvtrees.cluster.member does this); until then writes raise
    NoLeaderError."""

    def __init__(self, engine, *, request_timeout: float = 5.0, **options) -> None:
        # set before Store.__init__ starts the lease clock, which may call back at once
        self.request_timeout = request_timeout
        self._waiters = Waiters()
        # unique across restarts of this member: the sequence starts at the clock
        self._seq = itertools.count(time.time_ns())
        self._driver = None
        self.member_id = 0
        self._retry = 1.0
        self._leader_wait = 3.0
        self._reads: Optional[ReadIndexer] = None
        self._was_leader = False
        self.on_members_changed = None     # callback(members) after a membership change
        super().__init__(engine, **options)
        self._dedup = Dedup()
        self._dedup.load(engine)
        self.members = self._load_members()

    # ---- wiring --------------------------------------------------------------------

    def attach(self, driver, member_id: int, election_timeout: float) -> None:
        """Serve writes and linearizable reads through driver (a NodeDriver whose apply
        callback is apply_entry). Re-proposes a request unanswered for two election
        timeouts (or at once when the leader changes), and waits up to three for a
        leader before answering NoLeaderError."""
        self._driver = driver
        self.member_id = member_id
        self._retry = max(0.2, 2 * election_timeout)
        self._leader_wait = max(0.5, 3 * election_timeout)
        self._reads = ReadIndexer(driver, self._retry, lambda: self.leader_id() != 0)

    def leader_id(self) -> int:
        """The leader this member knows of (0: none). O(1)."""
        st = self._driver.status() if self._driver is not None else None
        return st.lead if st is not None else 0

    def is_leader(self) -> bool:
        return self._driver is not None and self.leader_id() == self.member_id

    # ---- the proposal path ---------------------------------------------------------

    def apply(self, req):
        """Propose req and wait until this member applied it (its result, or its
        error). On the applying thread, and for local requests: apply here."""
        if self._applying == threading.get_ident() or type(req) in _LOCAL:
            return Store.apply(self, req)
        return self.propose_and_wait(req)

    def propose_and_wait(self, req, timeout: Optional[float] = None) -> Any:
        """One request through the log. NoLeaderError when no leader appears in time,
        RequestTimeoutError when it was not applied within timeout (it may be later).
        O(1) here plus the round trips of a commit."""
        self._check_open()
        driver = self._driver
        if driver is None:
            raise NoLeaderError("the member is not started")
        pid = (self.member_id, next(self._seq))
        data = encode_entry(pid[0], pid[1], req)
        w = self._waiters.register(pid)
        deadline = time.monotonic() + (timeout or self.request_timeout)
        try:
            while True:
                self._wait_leader(deadline)
                driver.propose(data)
                if w.wait(min(self._retry, max(0.0, deadline - time.monotonic()))):
                    return w.result()
                if time.monotonic() >= deadline:
                    raise RequestTimeoutError()
                if self._closed:
                    raise ClosedError("store is closed")
                # not applied after a retry period, or the leader changed: the proposal
                # may have been lost (dropped, or with the old leader); the dedup ring
                # applies it once if both copies commit
        finally:
            self._waiters.forget(pid)

    def _wait_leader(self, deadline: float) -> int:
        until = min(deadline, time.monotonic() + self._leader_wait)
        while True:
            lead = self.leader_id()
            if lead:
                return lead
            if self._closed:
                raise ClosedError("store is closed")
            if time.monotonic() >= until:
                raise NoLeaderError()
            time.sleep(0.01)

    def _propose_async(self, req) -> None:
        """Propose without waiting (the lease clock's revokes)."""
        if self._driver is not None:
            self._driver.propose(encode_entry(self.member_id, next(self._seq), req))

    # ---- applying (the driver thread) ----------------------------------------------

    def lead_changed(self, lead: int) -> None:
        """Driver thread: the known leader changed; waiting proposers propose again."""
        self._waiters.nudge_all()

    def apply_entries(self, entries) -> None:
        """The driver's apply for a run of data entries, in log order: runs of plain
        puts on distinct keys are applied as one engine batch (apply_group), anything
        else entry by entry."""
        run: list = []          # (index, pid, request)
        keys: set = set()
        pids: set = set()
        for e in entries:
            if e.index <= self._applied:
                continue
            pid, req = decode_entry(e.data)
            if groupable(req) and req.key not in keys and pid not in pids and \
                    not self._dedup.seen(pid):
                run.append((e.index, pid, req))
                keys.add(req.key)
                pids.add(pid)
                continue
            self._apply_run(run)
            run, keys, pids = [], set(), set()
            self._apply_decoded(e.index, pid, req)
        self._apply_run(run)

    def _apply_run(self, run: list) -> None:
        if not run:
            return
        if len(run) == 1:
            self._apply_decoded(*run[0])
            return
        dedup = self._dedup
        results = apply_puts(self, [(i, req, dedup.ops(i, pid)) for i, pid, req in run])
        me = self.member_id
        for (i, pid, _), res in zip(run, results):
            dedup.record(i, pid)
            if pid[0] == me:
                self._waiters.wake(pid, res, None)

    def apply_entry(self, e) -> None:
        """The NodeDriver's apply callback: one committed entry, in log order. Entries
        at or below applied_index were applied before a restart and are skipped; a
        proposal id seen in the dedup window is applied once."""
        if e.index <= self._applied:
            return
        pid, req = decode_entry(e.data)
        self._apply_decoded(e.index, pid, req)

    def _apply_decoded(self, index: int, pid, req) -> None:
        """One entry: applied once (dedup ring), its waiter woken with the outcome."""
        extra = self._dedup.ops(index, pid)
        result, error = None, None
        if self._dedup.seen(pid):
            self._stamp_only(index, extra)
        else:
            try:
                result = self.apply_at(index, req, extra)
            except REQUEST_ERRORS as exc:
                error = exc
        self._dedup.record(index, pid)
        if pid[0] == self.member_id:
            self._waiters.wake(pid, result, error)

    def _stamp_only(self, index: int, extra: dict) -> None:
        with self._writing():
            with self._eng.batch() as b:
                b.put(mvcc.META_APPLIED, mvcc.be64(index))
                for k, v in extra.items():
                    b.put(k, v)
            self._applied = index

    def cluster_id(self) -> int:
        """The cluster's id, as its founding conf changes recorded it (0: not known
        yet, a member that has not caught up). O(1)."""
        return self._cluster_id

    def apply_conf_change(self, index: int, members_change, cluster_id: int = 0) -> None:
        """A membership change applied by Raft at index: change the member table and
        record it (with the applied index), unless this index was applied before a
        restart (the table loaded from the engine has it already)."""
        if index > self._applied:
            table = copy.deepcopy(self.members)     # copy on write: readers iterate it
            members_change(table)
            self.members = table
            if cluster_id and not self._cluster_id:
                self._cluster_id = cluster_id
            self._save_members(index)
        cb = self.on_members_changed
        if cb is not None:
            cb(self.members)

    def _save_members(self, index: Optional[int]) -> None:
        with self._writing():
            with self._eng.batch() as b:
                b.put(META_MEMBERS, self._members_blob())
                if index is not None:
                    b.put(mvcc.META_APPLIED, mvcc.be64(index))
            if index is not None:
                self._applied = index

    def _members_blob(self) -> bytes:
        return json.dumps({"cluster_id": self._cluster_id, "members": self.members},
                          sort_keys=True).encode()

    def _load_members(self) -> dict:
        """The member table (hex id -> name, peer_urls, client_urls, learner) and the
        cluster id, from the engine."""
        raw = self._eng.get(META_MEMBERS)
        saved = json.loads(bytes(raw)) if raw is not None else {}
        self._cluster_id = int(saved.get("cluster_id", 0))
        return saved.get("members", {})

    def _apply_member_attr(self, req: MemberAttrRequest) -> None:
        with self._writing():
            table = copy.deepcopy(self.members)
            m = table.get("%x" % req.member_id)
            if m is None:
                raise ValueError("member %x not found" % req.member_id)
            m["name"], m["client_urls"] = req.name, list(req.client_urls)
            self.members = table
            with self._eng.batch() as b:
                b.put(META_MEMBERS, self._members_blob())
                self._stamp_batch(b)
        cb = self.on_members_changed
        if cb is not None:
            cb(self.members)

    def _apply_lease_refresh(self, req: LeaseRefreshRequest) -> int:
        with self._writing():
            self._check_open()
            if req.lease_id not in self._leases:
                raise LeaseNotFoundError("requested lease %#x not found" % req.lease_id)
            return self._leases.refresh(req.lease_id)

    def _apply_compact(self, req: CompactRequest) -> None:
        Store._apply_compact(self, req)
        # the old versions go on each member by itself, outside the log
        threading.Thread(target=self._compact_quietly, daemon=True,
                         name="kvtrees-compact").start()

    def _compact_quietly(self) -> None:
        try:
            self._finish_compaction()
        except ClosedError:
            pass
        except Exception:
            log.exception("physical compaction failed (resumed at the next open)")

    # ---- snapshots ----------------------------------------------------------------

    def snapshot_data(self) -> bytes:
        """The store as a Raft snapshot at its applied index (durable first)."""
        return snapshot.dump(self)

    def install_snapshot(self, data: bytes, index: int) -> None:
        """Replace the store by a leader's snapshot at index (driver thread). Watchers
        are cancelled (their history is gone); readers during the install may fail."""
        with self._wlock:
            self._core.close()
            snapshot.install(self, data, index)
            self._reload()
        log.info("installed a snapshot at index %d (%d bytes)", index, len(data))

    def _reload(self) -> None:
        """Rebuild every in-memory structure from the engine (after an install)."""
        from ..mvcc_core import PREV_UNKNOWN, open_core
        from ..watch_hub import WatchHub
        head = self._load_revision()
        self._core = open_core(self._eng, head, self._group_sync)
        self._native = self._core.native
        old_hub = self._hub
        self._hub = WatchHub(self._core.visible, self._replay, self._live, head + 1,
                             self._queue_limit, PREV_UNKNOWN)
        old_hub.close()
        self._compact_rev = self._meta_int(mvcc.META_COMPACT, 0)
        self._applied = self._meta_int(mvcc.META_APPLIED, 0)
        for lid in self._leases.ids():
            self._leases.remove(lid)
        self._load_leases()
        self._dedup.load(self._eng)
        self.members = self._load_members()
        cb = self.on_members_changed
        if cb is not None:
            cb(self.members)

    # ---- leases: the leader decides expiry ----------------------------------------

    def lease(self, ttl: int, lease_id: Optional[int] = None) -> Lease:
        granted = self._leases.effective_ttl(ttl)
        lid = to_lease_id(lease_id) if lease_id is not None else 0
        return self.apply(LeaseGrantRequest(lid or self._leases.new_id(), granted))

    def refresh_lease(self, lease_id) -> int:
        """A keep-alive goes through the log, so the leader's clock hears of it."""
        return self.apply(LeaseRefreshRequest(to_lease_id(lease_id)))

    def _expire_lease(self, lid: int) -> None:
        """The lease clock found lid expired: only the leader proposes its revoke."""
        if self._closed or lid not in self._leases:
            return
        if not self.is_leader():
            self._leases.postpone(lid)
            return
        self._propose_async(LeaseRevokeRequest(lid))
        self._leases.postpone(lid)     # asked again after a TTL if the revoke was lost

    def leadership_changed(self, leader: bool) -> None:
        """Driver thread: this member became (or stopped being) the leader. A new
        leader restarts every lease's countdown: it cannot know when the old leader
        last saw a keep-alive."""
        if leader and not self._was_leader:
            self._leases.postpone()
        self._was_leader = leader

    # ---- reads ---------------------------------------------------------------------

    def read_barrier(self) -> None:
        """Wait until this member has applied everything committed before the call
        (ReadIndex): a read after it is linearizable."""
        self._check_open()
        if self._reads is None:
            raise NoLeaderError("the member is not started")
        self._reads.wait(self.request_timeout)

    def get(self, key, revision=None, serializable=False):
        if not serializable:
            self.read_barrier()
        return Store.get(self, key, revision)

    def range(self, key, range_end=None, revision=None, limit=0, count_only=False,
              keys_only=False, sort_order=None, sort_target="key", min_mod_revision=None,
              max_mod_revision=None, min_create_revision=None, max_create_revision=None,
              serializable=False):
        if not serializable:
            self.read_barrier()
        return Store.range(self, key, range_end, revision, limit, count_only, keys_only,
                           sort_order, sort_target, min_mod_revision, max_mod_revision,
                           min_create_revision, max_create_revision)

    def _iter_range(self, *args, **kwargs):
        self.read_barrier()
        return Store._iter_range(self, *args, **kwargs)

    def close(self) -> None:
        self._waiters.fail_all(ClosedError("store is closed"))
        Store.close(self)


ClusterStore._appliers = dict(Store._appliers)
ClusterStore._appliers.update({
    LeaseRefreshRequest: ClusterStore._apply_lease_refresh,
    MemberAttrRequest: ClusterStore._apply_member_attr,
    CompactRequest: ClusterStore._apply_compact,
})
