"""Peer URLs and member ids: etcd's --initial-cluster format, and ids derived from the
cluster token and a member's peer URLs (so an added member computes its own id)."""

from __future__ import annotations

import hashlib
from typing import List, Tuple
from urllib.parse import urlparse


def parse_initial_cluster(text: str) -> List[Tuple[str, List[str]]]:
    """"n1=http://a:1,n2=http://b:2,n1=http://a:3" -> [(name, [peer urls])] in first
    appearance order (a name may repeat to give several URLs, as in etcd)."""
    out: dict = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, url = part.partition("=")
        if not sep or not name or not url:
            raise ValueError("--initial-cluster: %r is not NAME=URL" % part)
        parse_peer_url(url)
        out.setdefault(name, []).append(url)
    if not out:
        raise ValueError("--initial-cluster names no member")
    return list(out.items())


def parse_peer_url(url: str) -> Tuple[str, int]:
    """"http://127.0.0.1:2380" -> ("127.0.0.1", 2380)."""
    u = urlparse(url.strip())
    if u.scheme not in ("http", "https") or not u.hostname or u.port is None:
        raise ValueError("peer URL %r is not http://HOST:PORT" % url)
    if u.scheme == "https":
        raise ValueError("peer URL %r: the peer transport has no TLS (use http)" % url)
    return u.hostname, u.port


def member_id(token: str, peer_urls: List[str]) -> int:
    """A member's 63-bit id from the cluster token and its peer URLs (etcd hashes the
    URLs and cluster name too). Never 0. O(1)."""
    raw = "\x00".join([token] + sorted(u.strip() for u in peer_urls)).encode()
    return int.from_bytes(hashlib.sha1(raw).digest()[:8], "big") >> 1 or 1


def cluster_id(token: str, member_ids: List[int]) -> int:
    """The cluster's id from its token and founding members. Never 0."""
    raw = "\x00".join([token] + ["%x" % m for m in sorted(member_ids)]).encode()
    return int.from_bytes(hashlib.sha1(raw).digest()[:8], "big") >> 1 or 1
