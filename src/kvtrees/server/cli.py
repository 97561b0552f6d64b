"""`kvtrees serve`: etcd's flag names wherever etcd has the same setting."""
from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
import threading
from typing import List, Optional

from .. import errors as kerr
from ..limits import ENGINES

_SIZE = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """"64MiB", "512k", "1G", "1048576" -> bytes."""
    m = re.fullmatch(r"\s*(\d+)\s*([kmgt]?)(i?b)?\s*", str(text), re.I)
    if not m:
        raise argparse.ArgumentTypeError("bad size %r (try 64MiB)" % text)
    return int(m.group(1)) * _SIZE[m.group(2).lower()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kvtrees serve",
                                description="Serve etcd's v3 gRPC API over a kvtrees store.")
    a = p.add_argument
    a("--data-dir", required=True, help="store directory (created if missing)")
    a("--engine", choices=ENGINES, default=None,
      help="engine for a new directory (default: the directory's own, else btree)")
    a("--name", default="default", help="member name")
    a("--listen-client-urls", default="http://127.0.0.1:2379",
      help="comma-separated URLs to serve clients on")
    a("--advertise-client-urls", default=None, help="URLs to tell clients (member list)")
    a("--quota-backend-bytes", type=int, default=2 * 1024 ** 3,
      help="raise the NOSPACE alarm past this size (0: etcd's default, 2 GiB)")
    a("--max-request-bytes", type=int, default=1572864)
    a("--max-txn-ops", type=int, default=128)
    a("--auto-compaction-mode", choices=("periodic", "revision"), default="periodic")
    a("--auto-compaction-retention", default="0",
      help="periodic: duration (1h, 30m) or hours; revision: revisions to keep; 0: off")
    a("--cert-file"), a("--key-file"), a("--trusted-ca-file")
    a("--client-cert-auth", action="store_true",
      help="require client certificates; the certificate's CN is the user")
    a("--cache-size", type=parse_size, default=None, help="page/node cache, e.g. 256MiB")
    a("--sync", choices=("commit", "interval", "none"), default=None)
    a("--log-level", default="info", choices=("debug", "info", "warn", "error"))
    # a Raft member (docs/RAFT.md): etcd's clustering flags
    a("--initial-cluster", default=None,
      help="NAME=PEER_URL,... of the founding members (with it: a Raft member)")
    a("--initial-cluster-state", choices=("new", "existing"), default="new",
      help="new: found the cluster; existing: join one (after MemberAdd)")
    a("--initial-cluster-token", default="etcd-cluster",
      help="the cluster's token (member ids derive from it; a joining member needs the "
           "cluster's)")
    a("--listen-peer-urls", default=None, help="URL to listen on for peers")
    a("--initial-advertise-peer-urls", default=None,
      help="this member's peer URLs (default: --listen-peer-urls)")
    a("--heartbeat-interval", type=int, default=100, help="milliseconds (etcd's default)")
    a("--election-timeout", type=int, default=1000, help="milliseconds (etcd's default)")
    a("--snapshot-count", type=int, default=10000,
      help="applied entries between Raft snapshots (the log is compacted after one)")
    return p


def cluster_options(args) -> "dict | None":
    """ClusterMember settings from the clustering flags; None without --initial-cluster
    (a single-member server)."""
    if not args.initial_cluster:
        return None
    peer = args.initial_advertise_peer_urls or args.listen_peer_urls
    if not peer:
        raise ValueError("--initial-cluster needs --listen-peer-urls or "
                         "--initial-advertise-peer-urls")
    peer_urls = [u.strip() for u in peer.split(",") if u.strip()]
    listen = (args.listen_peer_urls or peer_urls[0]).split(",")[0].strip()
    return dict(initial_cluster=args.initial_cluster, peer_urls=peer_urls,
                listen_peer_url=listen, state=args.initial_cluster_state,
                token=args.initial_cluster_token, heartbeat_ms=args.heartbeat_interval,
                election_ms=args.election_timeout, snapshot_every=args.snapshot_count,
                snapshot_keep=max(1, min(5000, args.snapshot_count // 2)))


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper().replace("WARN", "WARNING"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .server import serve
    quota = args.quota_backend_bytes or 2 * 1024 ** 3
    try:
        srv = serve(args.data_dir, args.engine, args.listen_client_urls, name=args.name,
                    advertise_client_urls=(args.advertise_client_urls.split(",")
                                           if args.advertise_client_urls else None),
                    quota_backend_bytes=quota, max_request_bytes=args.max_request_bytes,
                    max_txn_ops=args.max_txn_ops,
                    auto_compaction_mode=args.auto_compaction_mode,
                    auto_compaction_retention=args.auto_compaction_retention,
                    cert_file=args.cert_file, key_file=args.key_file,
                    trusted_ca_file=args.trusted_ca_file,
                    client_cert_auth=args.client_cert_auth, cache_size=args.cache_size,
                    sync=args.sync, cluster=cluster_options(args))
    except (kerr.LockedError, kerr.CorruptionError, kerr.EngineMismatchError,
            kerr.StorageError, OSError, ValueError) as e:
        print("kvtrees serve: %s" % e, file=sys.stderr)
        return 1
    done = threading.Event()

    def on_signal(signum, frame):
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print("kvtrees serve: listening on %s (%s engine, data dir %s)"
          % (", ".join(srv.addresses), srv.store.status().engine, args.data_dir), flush=True)
    removed = srv.cluster.removed if srv.cluster is not None else threading.Event()
    while not done.wait(0.5):
        if removed.is_set():
            print("kvtrees serve: this member was removed from the cluster", flush=True)
            break
    srv.stop()
    print("kvtrees serve: stopped", flush=True)
    return 0
