"""The server's lifecycle: open the store, bind, serve, drain and close.

    srv = kvtrees.serve(data_dir, engine="btree", listen="127.0.0.1:0")
    srv.address          # "127.0.0.1:PORT" actually bound
    srv.stop()           # stop accepting, end streams, close the store

Streams (watch, keep-alive, observe, a waiting lock or campaign) each hold one worker
thread; the number of RPCs in flight is capped (Limits.max_concurrent_rpcs), beyond it
gRPC answers RESOURCE_EXHAUSTED instead of queueing without bound.
"""
from __future__ import annotations

import logging
import os
import threading
from concurrent import futures
from typing import Optional
from urllib.parse import urlparse

import grpc

from .. import store as kstore
from . import identity
from .auth import AuthStore
from .auth_service import AuthService
from .cluster import ClusterService
from .compactor import Compactor, parse_retention
from .election import ElectionService
from .kv import KVService
from .lease import LeaseService
from .limits import Limits
from .lock import LockService
from .maintenance import MaintenanceService
from .member import Member
from .proto import rpc_pb2_grpc, v3election_pb2_grpc, v3lock_pb2_grpc
from .watch import PROGRESS_NOTIFY_INTERVAL, WatchService

_log = logging.getLogger("kvtrees.server")
DEFAULT_QUOTA = 2 * 1024 ** 3        # etcd's default --quota-backend-bytes (2 GiB)


def parse_listen(url: str) -> tuple:
    """"http://127.0.0.1:2379" / "https://..." / "127.0.0.1:2379" -> (host:port, tls)."""
    if "://" not in url:
        return url, False
    u = urlparse(url)
    if u.scheme not in ("http", "https", "unix", "unixs") or not u.hostname or u.port is None:
        raise ValueError("listen URL %r is not http(s)://HOST:PORT" % url)
    host = "[%s]" % u.hostname if ":" in u.hostname else u.hostname
    return "%s:%d" % (host, u.port), u.scheme in ("https", "unixs")


def _read(path: Optional[str]) -> Optional[bytes]:
    if not path:
        return None
    with open(path, "rb") as f:
        return f.read()


class Server:
    """A running kvtrees server (use serve())."""

    def __init__(self, data_dir: str, engine: Optional[str] = None,
                 listen: str = "127.0.0.1:2379", *, name: str = "default",
                 advertise_client_urls: Optional[list] = None,
                 quota_backend_bytes: int = DEFAULT_QUOTA,
                 max_request_bytes: int = 1572864, max_txn_ops: int = 128,
                 auto_compaction_mode: str = "periodic",
                 auto_compaction_retention: str = "0",
                 cert_file: Optional[str] = None, key_file: Optional[str] = None,
                 trusted_ca_file: Optional[str] = None, client_cert_auth: bool = False,
                 cache_size: Optional[int] = None, sync: Optional[str] = None,
                 bcrypt_cost: int = 10,
                 progress_notify_interval: float = PROGRESS_NOTIFY_INTERVAL,
                 limits: Optional[Limits] = None, cluster: Optional[dict] = None,
                 **store_options):
        self.data_dir = os.fspath(data_dir)
        self.limits = limits or Limits()
        self.limits.max_request_bytes = max_request_bytes
        self.limits.max_txn_ops = max_txn_ops
        listens = [u.strip() for u in listen.split(",") if u.strip()] if isinstance(
            listen, str) else list(listen)
        self._binds = [parse_listen(u) for u in listens]
        retention = parse_retention(auto_compaction_mode, auto_compaction_retention)
        opts = dict(store_options)
        if cache_size is not None:
            opts["cache_size"] = cache_size
        if sync is not None:
            opts["sync"] = sync
        self._quota = quota_backend_bytes    # enforced by Member.check_writable
        # cluster: ClusterMember's settings (kvtrees.cluster.member) for a Raft member;
        # None: a single-member server over a plain store
        self.cluster = None
        if cluster is not None:
            from ..cluster.member import ClusterMember
            opts.pop("sync", None)            # the Raft log is the durable record
            self.cluster = ClusterMember(self.data_dir, name, engine=engine,
                                         **cluster, **opts)
            self.store = self.cluster.store
        else:
            self.store = kstore.open(self.data_dir, engine, **opts)
        try:
            self._start(name, advertise_client_urls, retention, auto_compaction_mode,
                        cert_file, key_file, trusted_ca_file, client_cert_auth,
                        bcrypt_cost, progress_notify_interval)
        except BaseException:
            self._close_store()
            raise

    def _start(self, name, advertise, retention, mode, cert_file, key_file, ca_file,
               client_cert_auth, bcrypt_cost, progress_interval) -> None:
        lim = self.limits
        self._grpc = grpc.server(
            futures.ThreadPoolExecutor(max_workers=lim.max_concurrent_rpcs,
                                       thread_name_prefix="kvtrees-rpc"),
            maximum_concurrent_rpcs=lim.max_concurrent_rpcs,
            options=[("grpc.max_receive_message_length", lim.grpc_max_receive()),
                     ("grpc.max_send_message_length", 2 ** 31 - 1),
                     ("grpc.so_reuseport", 0)])
        creds = None
        if any(tls for _, tls in self._binds) or cert_file:
            if not (cert_file and key_file):
                raise ValueError("https listen URLs need --cert-file and --key-file")
            creds = grpc.ssl_server_credentials(
                [(_read(key_file), _read(cert_file))], root_certificates=_read(ca_file),
                require_client_auth=client_cert_auth)
        bound = []
        for addr, _ in self._binds:
            port = (self._grpc.add_secure_port(addr, creds) if creds
                    else self._grpc.add_insecure_port(addr))
            if not port:
                raise OSError("cannot bind %s" % addr)
            bound.append("%s:%d" % (addr.rsplit(":", 1)[0], port))
        self.addresses = bound
        scheme = "https" if creds else "http"
        client_urls = list(advertise or ["%s://%s" % (scheme, a) for a in bound])
        if self.cluster is not None:
            from ..cluster.serving import ClusterIdentity
            ident = ClusterIdentity(self.cluster, client_urls)
            self.cluster.publish(client_urls)
        else:
            ident = identity.load(self.data_dir, name, client_urls, [])
        auth = AuthStore(self.data_dir, bcrypt_cost, client_cert_auth)
        self.member = Member(self.store, ident, self.limits, auth, self._quota)
        self.member.cluster = self.cluster
        self.watch = WatchService(self.member, progress_interval)
        m = self.member
        rpc_pb2_grpc.add_KVServicer_to_server(KVService(m), self._grpc)
        rpc_pb2_grpc.add_WatchServicer_to_server(self.watch, self._grpc)
        rpc_pb2_grpc.add_LeaseServicer_to_server(LeaseService(m), self._grpc)
        rpc_pb2_grpc.add_ClusterServicer_to_server(ClusterService(m), self._grpc)
        rpc_pb2_grpc.add_MaintenanceServicer_to_server(
            MaintenanceService(m, os.path.join(self.data_dir, "snapshot.tmp")), self._grpc)
        rpc_pb2_grpc.add_AuthServicer_to_server(AuthService(m), self._grpc)
        v3lock_pb2_grpc.add_LockServicer_to_server(LockService(m), self._grpc)
        v3election_pb2_grpc.add_ElectionServicer_to_server(ElectionService(m), self._grpc)
        self._compactor = Compactor(self.store, mode, retention)
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()
        self._grpc.start()
        self._compactor.start()
        _log.info("kvtrees serving on %s (%s engine)", ", ".join(bound),
                  self.store.status().engine)

    @property
    def address(self) -> str:
        """The first bound address, "HOST:PORT"."""
        return self.addresses[0]

    def stop(self, grace: Optional[float] = None) -> None:
        """Stop accepting RPCs, end open streams, wait up to grace seconds for unary
        calls in flight, then close the store. Idempotent."""
        with self._stop_lock:
            if self._stopped.is_set():
                return
            self.member.stopping.set()
            self.watch.close_all()
            self._grpc.stop(grace if grace is not None else 5).wait()
            self._compactor.stop()
            self._close_store()
            self._stopped.set()

    def _close_store(self) -> None:
        if self.cluster is not None:
            self.cluster.close()          # Raft, its transport, then the store
        else:
            self.store.close()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until stop() has finished; False on timeout."""
        return self._stopped.wait(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def serve(data_dir, engine: Optional[str] = None, listen: str = "127.0.0.1:2379",
          **options) -> Server:
    """Open the store in data_dir and serve etcd's v3 API on listen (comma-separated
    URLs or HOST:PORT; port 0 picks a free one). Returns the running Server."""
    return Server(data_dir, engine, listen, **options)
