"""Key, value and access-pattern generation for the benchmark.

Everything is generated before a timed phase starts, with the stdlib only (random,
struct, os.urandom), so the hot loops do no generation work and all engines and peers
see byte-identical inputs for the same --seed.
"""
from __future__ import annotations

import math
import os
import random
from typing import List

_MISSING_PAD = b"\x01"


class KeySpace:
    """Fixed-size keys for integer ids: big-endian id, then zero padding.

    Byte order follows id order, so "sequential" really is sequential for every engine.
    A missing key (readmissing) is a present key's id with its last pad byte set to 1:
    it sorts between two present keys, like db_bench's key + ".".

    >>> ks = KeySpace(16)
    >>> ks.key(1) < ks.missing(1) < ks.key(2)
    True
    """

    def __init__(self, key_size: int):
        if key_size < 1:
            raise ValueError("key size must be at least 1")
        self.key_size = key_size
        self.id_bytes = min(8, key_size)
        self.pad = b"\x00" * (key_size - self.id_bytes)
        self.max_ids = 256 ** self.id_bytes

    def key(self, i: int) -> bytes:
        return i.to_bytes(self.id_bytes, "big") + self.pad

    def keys(self, ids) -> List[bytes]:
        nb, pad = self.id_bytes, self.pad
        return [i.to_bytes(nb, "big") + pad for i in ids]

    def missing(self, i: int) -> bytes:
        if self.pad:
            return i.to_bytes(self.id_bytes, "big") + self.pad[:-1] + _MISSING_PAD
        return (i + self.max_ids // 2).to_bytes(self.id_bytes, "big")

    def check_capacity(self, n: int) -> None:
        limit = self.max_ids if self.pad else self.max_ids // 2
        if n > limit:
            raise ValueError(f"--key-size {self.key_size} cannot hold {n} distinct keys")


class ValuePool:
    """A small pool of distinct random values, cycled by index: values differ between
    neighbours (no trivial compression) without allocating one object per op."""

    def __init__(self, size: int, rng: random.Random, count: int = 1024):
        self.size = size
        self.values = [rng.randbytes(size) for _ in range(count)]

    def take(self, n: int, start: int = 0) -> List[bytes]:
        vals, m = self.values, len(self.values)
        return [vals[(start + i) % m] for i in range(n)]


class Zipfian:
    """YCSB's ZipfianGenerator (Gray et al., "Quickly generating billion-record
    synthetic databases"), theta 0.99: item 0 is the most popular.

    >>> z = Zipfian(1000, random.Random(1))
    >>> all(0 <= z.next() < 1000 for _ in range(100))
    True
    """

    _zeta_cache: dict = {}

    def __init__(self, items: int, rng: random.Random, theta: float = 0.99):
        if items < 1:
            raise ValueError("zipfian needs at least one item")
        self.items, self.rng, self.theta = items, rng, theta
        self.zetan = self._zeta(items, theta)
        zeta2 = self._zeta(2, theta)
        self.alpha = 1.0 / (1.0 - theta)
        self.eta = (1 - (2.0 / items) ** (1 - theta)) / (1 - zeta2 / self.zetan)
        self.half_pow = 1 + 0.5 ** theta

    @classmethod
    def _zeta(cls, n: int, theta: float) -> float:
        key = (n, theta)
        if key not in cls._zeta_cache:
            cls._zeta_cache[key] = math.fsum(1.0 / (i ** theta) for i in range(1, n + 1))
        return cls._zeta_cache[key]

    def next(self) -> int:
        u = self.rng.random()
        uz = u * self.zetan
        if uz < 1.0:
            return 0
        if uz < self.half_pow:
            return 1
        v = int(self.items * (self.eta * u - self.eta + 1) ** self.alpha)
        return min(v, self.items - 1)


_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3


def fnv64(x: int) -> int:
    """FNV-1a over the 8 bytes of x, as YCSB scrambles zipfian ranks."""
    h = _FNV_OFFSET
    for _ in range(8):
        h ^= x & 0xFF
        h = (h * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
        x >>= 8
    return h


def zipfian_ids(n_items: int, count: int, rng: random.Random) -> List[int]:
    """count ids in [0, n_items) with scrambled-zipfian popularity (hot keys spread out)."""
    z = Zipfian(n_items, rng)
    return [fnv64(z.next()) % n_items for _ in range(count)]


def uniform_ids(n_items: int, count: int, rng: random.Random) -> List[int]:
    r = rng.randrange
    return [r(n_items) for _ in range(count)]


def shuffled(n: int, rng: random.Random) -> List[int]:
    ids = list(range(n))
    rng.shuffle(ids)
    return ids


def random_bytes(n: int) -> bytes:
    return os.urandom(n)
