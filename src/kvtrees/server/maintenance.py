"""etcd's Maintenance service: Status, Hash, HashKV, Snapshot, Defragment, Alarm,
MoveLeader."""
from __future__ import annotations

import hashlib
import os
import shutil
import struct
import tarfile
import tempfile

from . import bbolt, etcdfmt, rpcerrors
from .member import Member, handler, stream_handler
from .proto import rpc_pb2, rpc_pb2_grpc

SERVER_VERSION = "3.4.0"      # the etcd API version this server speaks (see docs/SERVER.md)
SNAPSHOT_CHUNK = 64 * 1024


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _lease_record(lid: int, ttl: int) -> bytes:
    """etcd's leasepb.Lease{ID: 1, TTL: 2} in protobuf encoding."""
    return b"\x08" + _varint(lid) + b"\x10" + _varint(ttl)


def alarm_text(member_id: int, alarm: int) -> str:
    """An alarm as etcd prints it in Status.errors (its protobuf text form)."""
    return "memberID:%d alarm:%s " % (member_id, rpc_pb2.AlarmType.Name(alarm))


class MaintenanceService(rpc_pb2_grpc.MaintenanceServicer):
    def __init__(self, member: Member, snapshot_dir: str):
        self.member = member
        self.store = member.store
        self.snapshot_dir = snapshot_dir

    @handler
    def Status(self, req, context):
        st = self.store.status()
        ident = self.member.ident
        cluster = getattr(self.member, "cluster", None)
        if cluster is not None:
            from ..cluster.serving import raft_status
            r = raft_status(cluster)
            return rpc_pb2.StatusResponse(
                header=self.member.header(st.revision), version=SERVER_VERSION,
                dbSize=st.db_size, dbSizeInUse=st.db_size, leader=r["leader"],
                raftIndex=r["raft_index"], raftAppliedIndex=r["raft_applied_index"],
                raftTerm=r["raft_term"], isLearner=r["is_learner"],
                errors=[alarm_text(m, a) for m, a in self.member.alarms()])
        return rpc_pb2.StatusResponse(
            header=self.member.header(st.revision), version=SERVER_VERSION,
            dbSize=st.db_size, dbSizeInUse=st.db_size, leader=ident.member_id,
            raftIndex=st.revision, raftAppliedIndex=st.revision, raftTerm=ident.raft_term,
            errors=[alarm_text(m, a) for m, a in self.member.alarms()])

    @handler
    def Hash(self, req, context):
        """O(versions stored)."""
        self.member.auth.check_admin(context)
        h, _, rev = self.store.hash_kv(0)
        return rpc_pb2.HashResponse(header=self.member.header(rev), hash=h)

    @handler
    def HashKV(self, req, context):
        """etcd's hash (CRC-32C over etcd's key bucket, rebuilt by etcdfmt): equal for
        equal histories on both engines and on etcd itself. O(versions stored)."""
        self.member.auth.check_admin(context)
        h, compact, _ = etcdfmt.hash_kv(self.store, req.revision if req.revision > 0 else 0)
        # etcd reports -1 for a store that was never compacted
        return rpc_pb2.HashKVResponse(header=self.member.header(), hash=h,
                                      compact_revision=compact or -1)

    @stream_handler
    def Snapshot(self, req, context):
        """A consistent snapshot, staged on disk then streamed. By default etcd's own
        format: a bbolt file with etcd's buckets rebuilt from the store (etcdfmt) and a
        trailing SHA-256, as etcd sends, so `etcdctl snapshot status|restore` work (a
        kvtrees snapshot restores into etcd). With request metadata
        `kvtrees-snapshot: native`: a tar of a kvtrees data directory (untar it and
        kvtrees.open() it). O(store size)."""
        self.member.auth.check_admin(context)
        native = ("kvtrees-snapshot", "native") in tuple(context.invocation_metadata() or ())
        os.makedirs(self.snapshot_dir, exist_ok=True)
        stage = tempfile.mkdtemp(prefix="snap-", dir=self.snapshot_dir)
        try:
            if native:
                path, rev = self._native_snapshot(stage)
            else:
                path, rev = self._etcd_snapshot(stage)
            yield from self._send_file(path, rev)
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def _native_snapshot(self, stage: str) -> tuple:
        rev = self.store.revision
        self.store.snapshot(os.path.join(stage, "db"))
        archive = os.path.join(stage, "snapshot.tar")
        with tarfile.open(archive, "w") as tar:
            tar.add(os.path.join(stage, "db"), arcname="kvtrees-snapshot")
        return archive, rev

    def _etcd_snapshot(self, stage: str) -> tuple:
        keys, rev, compact = etcdfmt.key_bucket(self.store)
        meta = [(b"consistent_index", struct.pack(">Q", rev))]
        if compact:
            meta += [(b"scheduledCompactRev", etcdfmt.rev_key(compact, 0)),
                     (b"finishedCompactRev", etcdfmt.rev_key(compact, 0))]
        leases = [(struct.pack(">Q", le.id), _lease_record(le.id, le.granted_ttl))
                  for le in self.store.leases()]
        path = os.path.join(stage, "snapshot.db")
        with open(path, "w+b") as f:
            bbolt.write(f, {b"key": keys, b"meta": meta, b"lease": leases,
                            b"cluster": [(b"clusterVersion", b"3.4.0")]})
            f.seek(0)
            digest = hashlib.sha256(f.read()).digest()
            f.write(digest)
        return path, rev

    def _send_file(self, path: str, rev: int):
        size = os.path.getsize(path)
        sent = 0
        with open(path, "rb") as f:
            while True:
                blob = f.read(SNAPSHOT_CHUNK)
                if not blob:
                    break
                sent += len(blob)
                yield rpc_pb2.SnapshotResponse(header=self.member.header(rev),
                                               remaining_bytes=size - sent, blob=blob)

    @handler
    def Defragment(self, req, context):
        """Store.defragment(): the B+tree rewrites its pages into the lowest free ones
        and trims the file (writes wait batch by batch, reads go on); Status's dbSize
        drops afterwards. O(n)."""
        self.member.auth.check_admin(context)
        self.store.defragment()
        return rpc_pb2.DefragmentResponse(header=self.member.header())

    @handler
    def Alarm(self, req, context):
        """As etcd: GET lists every raised alarm of the type (NONE: all); ACTIVATE and
        DEACTIVATE act on exactly (memberID, alarm) as given."""
        A = rpc_pb2.AlarmRequest
        if req.action == A.GET:
            self.member.auth.check_authenticated(context)
            alarms = self.member.alarms(req.alarm)
        elif req.action == A.ACTIVATE:
            self.member.auth.check_admin(context)
            if req.alarm == rpc_pb2.NONE:
                raise rpcerrors.RpcError(rpcerrors.C.INVALID_ARGUMENT,
                                         "etcdserver: no alarm type given")
            alarms = [self.member.raise_alarm(req.alarm, req.memberID)]
        elif req.action == A.DEACTIVATE:
            self.member.auth.check_admin(context)
            alarms = [(req.memberID, req.alarm)] if self.member.disarm(
                req.memberID, req.alarm) else []
        else:
            raise rpcerrors.RpcError(rpcerrors.C.INVALID_ARGUMENT,
                                     "etcdserver: unknown alarm action")
        return rpc_pb2.AlarmResponse(
            header=self.member.header(),
            alarms=[rpc_pb2.AlarmMember(memberID=m, alarm=a) for m, a in alarms])

    @handler
    def MoveLeader(self, req, context):
        """One member: it is the leader already; any other target is not a member.
        A Raft member: asked of the leader, answers once the target leads."""
        self.member.auth.check_admin(context)
        cluster = getattr(self.member, "cluster", None)
        if cluster is not None:
            from ..cluster.serving import move_leader
            move_leader(cluster, req.targetID)
            return rpc_pb2.MoveLeaderResponse(header=self.member.header())
        if req.targetID != self.member.ident.member_id:
            raise rpcerrors.BAD_LEADER_TRANSFEREE
        return rpc_pb2.MoveLeaderResponse(header=self.member.header())
