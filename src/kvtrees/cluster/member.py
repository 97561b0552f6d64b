"""One member of a kvtrees cluster: FileLogStorage + Transport + NodeDriver +
ClusterStore, wired together; bootstrapped from --initial-cluster or restarted from
its data directory.

Layout of a member's data directory: the store's engine files, and ``raft/`` with the
Raft log (raft.log, raft.snap). A directory with a Raft log is restarted from it (the
initial-cluster settings are then ignored, as etcd does)."""

from __future__ import annotations

import json
import logging
import os
import random
import threading
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import kvtrees
from ..raft import Config, RawNode, StateType
from ..raft.driver import NodeDriver
from ..raft.filelog import FileLogStorage
from ..raft.transport import Transport
from ..raft.types import ConfChange, ConfChangeType, Entry, EntryType, HardState
from ..store import STORE_OPTIONS
from . import peers, snapshot
from .requests import MemberAttrRequest
from .store import ClusterStore

log = logging.getLogger(__name__)
RAFT_DIR = "raft"
# Raft ticks per heartbeat interval: the election timeout's random part is drawn in
# ticks, so with one tick per heartbeat (100 ms) two followers drew the same tick one
# time in ten and split the vote, which cost a further 1-2 s election timeout (the
# 1.6-2.2 s failovers of bench/CLUSTER_RESULTS.md); at 10 ms two draws rarely meet.
TICKS_PER_HEARTBEAT = 10


def open_cluster_store(path: str, engine: Optional[str] = None, request_timeout: float = 5.0,
                       **options) -> ClusterStore:
    """kvtrees.open() for a replicated store. The engine does not fsync its commits:
    the Raft log is the durable record and a restart re-applies what the engine lost
    (the applied index travels in the same batches); the engine is synced before the
    Raft log is compacted (snapshot.dump)."""
    store_opts = {k: options.pop(k) for k in STORE_OPTIONS if k in options}
    options["sync"] = "none"
    eng = kvtrees.open_engine(path, engine=engine, **options)
    try:
        name = getattr(eng, "engine", None) or getattr(eng, "engine_name", None) or \
            engine or "btree"
        snap_opts = dict(options)

        def factory(dest):
            return kvtrees.open_engine(dest, engine=name, **snap_opts)
        return ClusterStore(eng, engine_name=name, engine_factory=factory,
                            request_timeout=request_timeout, **store_opts)
    except BaseException:
        eng.close()
        raise


def member_context(name: str, peer_urls: Sequence[str], cluster_id: int = 0) -> bytes:
    """A conf change's context: who the member is, where its peers reach it, and the
    cluster's id (recorded by the first change that carries one)."""
    return json.dumps({"name": name, "peer_urls": list(peer_urls),
                       "cluster_id": cluster_id}).encode()


class ClusterDriver(NodeDriver):
    """A NodeDriver that hands conf changes to the store with their log index and
    reports leadership changes."""

    def __init__(self, *args, on_conf_change_at: Callable = None,
                 on_leadership: Callable[[bool], None] = None,
                 apply_many: Callable = None, on_lead_change: Callable = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.apply_many = apply_many or (lambda es: [self.apply(e) for e in es])
        self.on_lead_change = on_lead_change
        self._lead = 0
        self.on_conf_change_at = on_conf_change_at
        self.on_leadership = on_leadership
        self._leader = False

    def _apply_entries(self, entries) -> None:
        """Runs of data entries go to the store together (it applies runs of plain puts
        as one batch); conf changes and empty entries one by one, in order."""
        run = []
        for e in entries:
            if e.type == EntryType.NORMAL and e.data:
                run.append(e)
                continue
            if run:
                self.apply_many(run)
                self.applied = run[-1].index
                run = []
            self._apply_entry(e)
        if run:
            self.apply_many(run)
            self.applied = run[-1].index

    def _conf_changed(self, e: Entry, cc, cs) -> None:
        if self.on_conf_change_at is not None:
            self.on_conf_change_at(e.index, cc, cs)

    def _publish_status(self) -> None:
        super()._publish_status()
        if self._status.lead != self._lead:
            self._lead = self._status.lead
            if self.on_lead_change is not None:
                self.on_lead_change(self._lead)
        leader = self._status.state == StateType.LEADER
        if leader != self._leader:
            self._leader = leader
            if self.on_leadership is not None:
                self.on_leadership(leader)


class ClusterMember:
    """A running cluster member. ``initial_cluster``: [(name, [peer urls])] (etcd's
    --initial-cluster, parsed by peers.parse_initial_cluster)."""

    def __init__(self, data_dir: str, name: str, initial_cluster, peer_urls: Sequence[str],
                 listen_peer_url: Optional[str] = None, state: str = "new",
                 token: str = "etcd-cluster", heartbeat_ms: int = 100,
                 election_ms: int = 1000, engine: Optional[str] = None,
                 snapshot_every: int = 10000, snapshot_keep: int = 5000,
                 request_timeout: float = 5.0, **store_options) -> None:
        if state not in ("new", "existing"):
            raise ValueError("--initial-cluster-state must be new or existing")
        if heartbeat_ms <= 0 or election_ms < 2 * heartbeat_ms:
            raise ValueError("--election-timeout must be at least twice "
                             "--heartbeat-interval")
        if isinstance(initial_cluster, str):
            initial_cluster = peers.parse_initial_cluster(initial_cluster)
        self.name, self.token = name, token
        self.peer_urls = list(peer_urls)
        self.id = peers.member_id(token, self.peer_urls)
        self.data_dir = os.fspath(data_dir)
        self.heartbeat = heartbeat_ms / 1000.0
        self.election = election_ms / 1000.0
        self.client_urls: List[str] = []
        # set once this member applied its own removal (kvtrees serve then exits)
        self.removed = threading.Event()
        raft_dir = os.path.join(self.data_dir, RAFT_DIR)
        os.makedirs(self.data_dir, exist_ok=True)
        self.storage = FileLogStorage(raft_dir)
        # an empty log (a first start, or one that failed before bootstrapping) starts
        # from the flags; anything else is a restart
        fresh = self.storage.last_index() == 0 and self.storage.snapshot().is_empty()
        initial = [(n, list(u), peers.member_id(token, u)) for n, u in initial_cluster]
        try:
            if fresh and state == "new":
                self._bootstrap(initial)
            self.store = open_cluster_store(self.data_dir, engine, request_timeout,
                                            **store_options)
        except BaseException:
            self.storage.close()
            raise
        try:
            self._start(initial, listen_peer_url or self.peer_urls[0], snapshot_every,
                        snapshot_keep)
        except BaseException:
            self.store.close()
            self.storage.close()
            raise

    # ---- start ---------------------------------------------------------------------

    def _bootstrap(self, initial) -> None:
        ids = [i for _, _, i in initial]
        if self.id not in ids:
            raise ValueError("--initial-cluster does not list this member's peer URLs %s"
                             % ",".join(self.peer_urls))
        if len(set(ids)) != len(ids):
            raise ValueError("--initial-cluster lists the same peer URLs twice")
        cid = peers.cluster_id(self.token, ids)
        ents = [Entry(term=1, index=k + 1, type=EntryType.CONF_CHANGE,
                      data=ConfChange(ConfChangeType.ADD_NODE, i,
                                      member_context(n, u, cid)).encode())
                for k, (n, u, i) in enumerate(sorted(initial, key=lambda m: m[2]))]
        self.storage.append(ents)
        self.storage.set_hard_state(HardState(term=1, vote=0, commit=len(ents)))

    def _start(self, initial, listen_url: str, snapshot_every: int,
               snapshot_keep: int) -> None:
        store, storage = self.store, self.storage
        snap = storage.snapshot()
        if store._eng.get(snapshot.INSTALLING) is not None or (
                not snap.is_empty() and store.applied_index < storage.first_index() - 1):
            log.info("member %x: store at %d behind the log's snapshot %d: installing it",
                     self.id, store.applied_index, snap.metadata.index)
            store.install_snapshot(snap.data, snap.metadata.index)
        self._peer_addrs: Dict[int, Tuple[str, int]] = {}
        self._member_ids: frozenset = frozenset()
        self.transport = Transport(self.id, on_message=self._deliver,
                                   listen=peers.parse_peer_url(listen_url))
        self._initial = {i: u for _, u, i in initial}
        store.on_members_changed = self._members_changed
        self._members_changed(store.members)
        tick = self.heartbeat / TICKS_PER_HEARTBEAT
        election_tick = max(2, round(self.election / tick))
        node = RawNode(Config(id=self.id, storage=storage, election_tick=election_tick,
                              heartbeat_tick=TICKS_PER_HEARTBEAT, rng=random.Random()))
        self.driver = ClusterDriver(
            node, storage, self.transport, apply=store.apply_entry,
            tick_interval=tick,
            on_snapshot=lambda s: store.install_snapshot(s.data, s.metadata.index),
            snapshot_data=store.snapshot_data, snapshot_every=snapshot_every,
            snapshot_keep=snapshot_keep, on_conf_change_at=self._conf_change,
            on_leadership=store.leadership_changed, apply_many=store.apply_entries,
            on_lead_change=store.lead_changed)
        store.attach(self.driver, self.id, self.election)
        self._stop = threading.Event()
        self.driver.start()

    def _deliver(self, m) -> None:
        """A message from a peer (receiver thread). One from a node that is not in the
        member table (removed, or never added) is dropped, as etcd's peers refuse a
        removed member: a removed member that missed its own removal then finds no
        leader (its clients hear "no leader" and go elsewhere) instead of having its
        proposals forwarded and applied while it waits for them in vain."""
        d = getattr(self, "driver", None)
        ids = self._member_ids
        if d is not None and (not ids or m.frm in ids):
            d.deliver(m)

    # ---- membership ----------------------------------------------------------------

    def _conf_change(self, index: int, cc: ConfChange, cs) -> None:
        key = "%x" % cc.node_id
        ctx = json.loads(cc.context.decode() or "{}") if cc.context else {}

        def change(members: dict) -> None:
            if cc.type == ConfChangeType.REMOVE_NODE:
                members.pop(key, None)
                return
            m = members.get(key)
            if m is None:
                m = members[key] = {"name": ctx.get("name", ""),
                                    "peer_urls": ctx.get("peer_urls", []),
                                    "client_urls": []}
            m["learner"] = cc.type == ConfChangeType.ADD_LEARNER
        self.store.apply_conf_change(index, change, int(ctx.get("cluster_id", 0)))
        if cc.type == ConfChangeType.REMOVE_NODE:
            self._drop_peer(cc.node_id)
            if cc.node_id == self.id:
                log.warning("member %x: removed from the cluster", self.id)
                self.removed.set()
        elif cc.node_id != self.id:
            urls = ctx.get("peer_urls") or []
            if urls:
                self._set_peer(cc.node_id, urls[0])

    def _members_changed(self, members: dict) -> None:
        """Point the transport at every member's first peer URL."""
        known = {int(k, 16): m.get("peer_urls") or [] for k, m in members.items()}
        self._member_ids = frozenset(known)
        for i, urls in list(self._initial.items()) + list(known.items()):
            if i != self.id and urls:
                self._set_peer(i, urls[0])

    def _set_peer(self, i: int, url: str) -> None:
        addr = peers.parse_peer_url(url)
        if self._peer_addrs.get(i) != addr:
            self._peer_addrs[i] = addr
            self.transport.add_peer(i, addr)

    def _drop_peer(self, i: int) -> None:
        if i != self.id and self._peer_addrs.pop(i, None) is not None:
            self.transport.remove_peer(i)

    def publish(self, client_urls: Sequence[str]) -> None:
        """Publish this member's name and client URLs through the log (etcd's member
        attributes), in the background until it is applied or the member stops."""
        self.client_urls = list(client_urls)

        def run() -> None:
            while not self._stop.is_set():
                try:
                    self.store.propose_and_wait(
                        MemberAttrRequest(self.id, self.name, tuple(self.client_urls)))
                    return
                except Exception as e:   # no leader yet, or stopping: try again
                    log.debug("member %x: publish: %s", self.id, e)
                    self._stop.wait(0.2)
        threading.Thread(target=run, daemon=True, name="kvtrees-publish").start()

    # ---- status --------------------------------------------------------------------

    def status(self):
        """The Raft status (term, lead, commit, applied, progress). O(members)."""
        return self.driver.status()

    def close(self) -> None:
        """Stop Raft, the transport and the store. Idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        self.driver.stop()
        self.transport.close()
        self.store.close()
        self.storage.close()
