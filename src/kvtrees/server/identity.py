"""The member's identity in etcd's terms: cluster id, member id, raft term.

A kvtrees server is a one-member cluster without Raft. etcd derives both ids from a hash
of the member's name and URLs; we do the same once, at the first start, and keep them in
`<data-dir>/member.json` so they survive restarts (clients cache the member id). etcd's
term grows by one at every start (each start is an election); so does ours, which keeps
`raft_term` meaningful to clients that compare it across restarts.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

MEMBER_FILE = "member.json"


@dataclass
class Identity:
    cluster_id: int
    member_id: int
    raft_term: int
    name: str = "default"
    client_urls: list = field(default_factory=list)
    peer_urls: list = field(default_factory=list)


def _id_from(*parts: str) -> int:
    """A non-zero 64-bit id from a SHA-1 of parts (as etcd's types.ID from sha1)."""
    digest = hashlib.sha1("\x00".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") or 1


def load(data_dir: str, name: str, client_urls: list, peer_urls: list) -> Identity:
    """Read (or create) member.json in data_dir and count this start as a new term.
    O(1); the file is replaced atomically (write + fsync + rename)."""
    path = os.path.join(data_dir, MEMBER_FILE)
    try:
        with open(path) as f:
            saved = json.load(f)
    except FileNotFoundError:
        member = _id_from("member", name, *peer_urls, *client_urls, os.urandom(8).hex())
        saved = {"cluster_id": _id_from("cluster", str(member)), "member_id": member,
                 "raft_term": 1}
    saved["raft_term"] = int(saved.get("raft_term", 1)) + 1
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(saved, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return Identity(int(saved["cluster_id"]), int(saved["member_id"]),
                    int(saved["raft_term"]), name, list(client_urls), list(peer_urls))
