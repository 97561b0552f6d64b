"""Write a bbolt (etcd-io/bbolt, format version 2) database file: the format of etcd's
backend and of its snapshots, so `etcdctl snapshot status|restore` read what the
Snapshot RPC streams.

Layout written: pages 0 and 1 are the two meta pages, page 2 an empty freelist, then
for each bucket a B+tree of leaf pages (and branch pages above them when one leaf is
not enough), then the root bucket's leaf naming the buckets. Pages are page_size bytes;
a node bigger than a page spans contiguous overflow pages, as bbolt allows.
O(total bytes); everything is built in memory one bucket at a time.
"""
from __future__ import annotations

import struct
from typing import BinaryIO

MAGIC = 0xED0CDAED
VERSION = 2
PAGE_HEADER = 16          # id u64, flags u16, count u16, overflow u32
ELEMENT = 16              # leaf: flags, pos, ksize, vsize (u32 each); branch: pos, ksize, pgid
BRANCH, LEAF, META, FREELIST = 0x01, 0x02, 0x04, 0x10
BUCKET_LEAF = 0x01
MAX_ELEMENTS = 0xFFFF     # count is a u16


def _fnv64a(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


class _Pages:
    """Assigns page ids and collects page images."""

    def __init__(self, page_size: int, first_id: int):
        self.size = page_size
        self.next = first_id
        self.images: list = []

    def add(self, flags: int, count: int, body: bytes) -> int:
        n = -(-(PAGE_HEADER + len(body)) // self.size)
        pid = self.next
        self.next += n
        img = struct.pack("<QHHI", pid, flags, count, n - 1) + body
        self.images.append(img.ljust(n * self.size, b"\x00"))
        return pid


def _leaf_body(items: list, flags: int = 0) -> bytes:
    heads, data = [], []
    off = ELEMENT * len(items)
    for i, (k, v) in enumerate(items):
        heads.append(struct.pack("<IIII", flags, off - ELEMENT * i, len(k), len(v)))
        data.append(k + v)
        off += len(k) + len(v)
    return b"".join(heads) + b"".join(data)


def _branch_body(children: list) -> bytes:
    heads, data = [], []
    off = ELEMENT * len(children)
    for i, (k, pid) in enumerate(children):
        heads.append(struct.pack("<IIQ", off - ELEMENT * i, len(k), pid))
        data.append(k)
        off += len(k)
    return b"".join(heads) + b"".join(data)


def _chunks(items: list, budget: int, weight) -> list:
    """Split items into runs of at most `budget` bytes (by weight) and MAX_ELEMENTS."""
    runs, cur, size = [], [], 0
    for it in items:
        w = weight(it)
        if cur and (size + w > budget or len(cur) >= MAX_ELEMENTS):
            runs.append(cur)
            cur, size = [], 0
        cur.append(it)
        size += w
    if cur or not runs:
        runs.append(cur)
    return runs


def _tree(pages: _Pages, items: list) -> int:
    """Write a bucket's B+tree; returns its root page id."""
    budget = pages.size - PAGE_HEADER
    level = []
    for run in _chunks(items, budget, lambda kv: ELEMENT + len(kv[0]) + len(kv[1])):
        level.append((run[0][0] if run else b"", pages.add(LEAF, len(run), _leaf_body(run))))
    while len(level) > 1:
        nxt = []
        for run in _chunks(level, budget, lambda c: ELEMENT + len(c[0])):
            nxt.append((run[0][0], pages.add(BRANCH, len(run), _branch_body(run))))
        level = nxt
    return level[0][1]


def _meta(page_size: int, pid: int, root: int, freelist: int, high: int, txid: int) -> bytes:
    m = struct.pack("<IIII", MAGIC, VERSION, page_size, 0) + struct.pack("<QQ", root, 0)
    m += struct.pack("<QQQ", freelist, high, txid)
    m += struct.pack("<Q", _fnv64a(m))
    page = struct.pack("<QHHI", pid, META, 0, 0) + m
    return page.ljust(page_size, b"\x00")


def write(out: BinaryIO, buckets: dict, page_size: int = 4096, txid: int = 2) -> int:
    """Write buckets ({name: iterable of (key, value)}, keys unique) as a bbolt file to
    out; returns the bytes written."""
    pages = _Pages(page_size, 3)
    roots = []
    for name in sorted(buckets):
        items = sorted((bytes(k), bytes(v)) for k, v in buckets[name])
        roots.append((bytes(name), struct.pack("<QQ", _tree(pages, items), 0)))
    root = pages.add(LEAF, len(roots), _leaf_body(roots, BUCKET_LEAF))
    high = pages.next
    written = 0
    for txid_i, pid in ((txid - 1, 0), (txid, 1)):
        written += out.write(_meta(page_size, pid, root, 2, high, txid_i))
    written += out.write(struct.pack("<QHHI", 2, FREELIST, 0, 0).ljust(page_size, b"\x00"))
    for img in pages.images:
        written += out.write(img)
    return written


