"""Point reads of keys that stress an engine's in-node search, read cold (nothing
cached, so the fractal tree searches basement and segment blobs in place in the read
map, native/fractal/README.md) and with mmap=False (pread, nodes loaded): keys with a
long shared prefix, keys whose 8 bytes after the node's shared prefix tie, keys of
varying length, empty, page-straddling and out-of-line values, and absent keys just
around present ones (one byte shorter, one byte longer, below and above all)."""

from __future__ import annotations

import random

import pytest

KiB = 1024


def keys_and_values(rnd: random.Random) -> dict:
    model = {}
    for i in range(1500):                          # long shared prefix
        model[b"prefix-" * 3 + b"%06d" % i] = b""
    for i in range(1200):                          # 4 keys per word after the prefix
        model[b"P%08d-tail-%d" % (i // 4, i % 4)] = b"t%d" % i
    for i in range(800):                           # lengths 6..22
        model[b"%05d" % i + b"x" * (i % 17)] = b"l%d" % i
    for key in list(model):
        r = rnd.random()
        if r < 0.05:
            model[key] = rnd.randbytes(3000)       # straddles a page in place
        elif r < 0.07:
            model[key] = rnd.randbytes(70 * KiB)   # out of line
        elif r < 0.5:
            model[key] = rnd.randbytes(rnd.randrange(0, 120))
    return model


def absent_around(model: dict) -> list:
    out = [b"\x00", b"\xff" * 24, b"prefix-", b"prefix-" * 3, b"P", b"P0000", b"0"]
    for key in sorted(model)[::7]:
        out += [key + b"\x00", key[:-1], key + b"\xff", key[:-1] + bytes([key[-1] ^ 1])]
    return [k for k in out if k not in model]


def open_cold(open_eng, engine_name, mmap, basement):
    if engine_name == "fractal":
        return open_eng(mmap=mmap, cache_size=4096 * KiB, node_size=1024 * KiB,
                        basement_size=basement)
    return open_eng(mmap=mmap, cache_size=1024 * KiB)


def read_back(eng, model: dict, absent: list) -> None:
    for key, v in model.items():
        assert eng.get(key) == v, key
    for key in absent:
        assert eng.get(key) is None, key


@pytest.mark.parametrize("basement", [4 * KiB, 64 * KiB])
@pytest.mark.parametrize("mmap", [True, False])
def test_point_reads_cold(open_eng, engine_name, mmap, basement):
    rnd = random.Random(12)
    model = keys_and_values(rnd)
    absent = absent_around(model)
    eng = open_cold(open_eng, engine_name, mmap, basement)
    items = list(model.items())
    rnd.shuffle(items)
    for i in range(0, len(items), 500):
        eng.put_many(items[i:i + 500])
    eng.checkpoint()
    eng.close()
    eng = open_cold(open_eng, engine_name, mmap, basement)
    read_back(eng, model, absent)
    for key in rnd.sample(sorted(model), 600):     # buffered messages over the blobs
        if rnd.random() < 0.5:
            del model[key]
            absent.append(key)
            eng.delete(key)
        else:
            model[key] = rnd.randbytes(rnd.randrange(0, 50))
            eng.put(key, model[key])
    read_back(eng, model, absent)
    eng.checkpoint()
    eng.close()
    eng = open_cold(open_eng, engine_name, mmap, basement)
    read_back(eng, model, absent)
    assert list(eng.items()) == sorted(model.items())
    eng.check()

