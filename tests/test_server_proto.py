"""The wire contract: our generated stubs are current, and our messages use etcd's
package, message, field names and numbers (checked against etcd's own .proto files
where a copy is at hand, and against hand-encoded bytes)."""
from __future__ import annotations

import os
import re

import pytest

pytest.importorskip("grpc")

from kvtrees.server.proto import kv_pb2, rpc_pb2  # noqa: E402

PE3_PROTO = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "thirdparty",
                         "python-etcd3", "etcd3", "proto")


# lines that name the generator's version, not what the .proto files say
_VERSION_LINE = re.compile(r"Protobuf Python Version|^\s+\d+,\s*$|GRPC_GENERATED_VERSION =")


def _content(path: str) -> list:
    with open(path) as f:
        return [line for line in f if not _VERSION_LINE.search(line)]


def test_stubs_are_current(tmp_path):
    pytest.importorskip("grpc_tools")
    from kvtrees.server.proto import _generate
    written = _generate.generate(str(tmp_path))
    assert len(written) == 10
    here = os.path.dirname(_generate.__file__)
    stale = [os.path.basename(p) for p in written
             if _content(p) != _content(os.path.join(here, os.path.basename(p)))]
    assert not stale, "regenerate: python -m kvtrees.server.proto._generate (%s)" % stale


def test_hand_encoded_bytes():
    # field 1 (key) bytes, 2 (range_end) bytes, 3 (limit) varint, 4 (revision) varint
    r = rpc_pb2.RangeRequest(key=b"a", range_end=b"b", limit=5, revision=7)
    assert r.SerializeToString() == b"\x0a\x01a\x12\x01b\x18\x05\x20\x07"
    # WatchResponse.events is field 11; Event.kv field 2; KeyValue.mod_revision field 3
    w = rpc_pb2.WatchResponse(events=[kv_pb2.Event(kv=kv_pb2.KeyValue(mod_revision=9))])
    assert w.SerializeToString() == b"\x5a\x04\x12\x02\x18\x09"
    c = rpc_pb2.Compare(range_end=b"z")                 # range_end is field 64
    assert c.SerializeToString() == b"\x82\x04\x01z"
    assert rpc_pb2.DESCRIPTOR.package == "etcdserverpb"
    assert rpc_pb2.DESCRIPTOR.services_by_name["KV"].full_name == "etcdserverpb.KV"


# protobuf field type -> wire type: what must agree for the bytes to be the same
# (etcd 3.4 turned some strings of 3.3 into bytes, which is wire-compatible)
_WIRE = {9: 2, 12: 2, 11: 2, 1: 1, 6: 1, 16: 1, 2: 5, 7: 5, 15: 5}


def _spec(f) -> tuple:
    return f.number, _WIRE.get(f.type, 0), f.label


def _fields(fdp) -> dict:
    out = {}
    for m in fdp.message_type:
        out[m.name] = {f.name: _spec(f) for f in m.field}
        for nested in m.nested_type:
            out[m.name + "." + nested.name] = {f.name: _spec(f) for f in nested.field}
    return out


def test_fields_match_etcds_own_protos(tmp_path):
    """Every message and field in python-etcd3's copy of etcd's protos has the same
    name, number, wire type and label in ours (ours, from etcd 3.4, may have more)."""
    pytest.importorskip("grpc_tools")
    if not os.path.isdir(PE3_PROTO):
        pytest.skip("no copy of python-etcd3 beside the project")
    from google.protobuf import descriptor_pb2
    from grpc_tools import protoc
    import importlib.resources
    include = str(importlib.resources.files("grpc_tools") / "_proto")
    out = tmp_path / "theirs.pb"
    assert protoc.main(["protoc", "-I" + PE3_PROTO, "-I" + include, "--include_imports",
                        "--descriptor_set_out=" + str(out), "rpc.proto"]) == 0
    theirs = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    ours = {}
    for mod in (rpc_pb2, kv_pb2):
        fdp = descriptor_pb2.FileDescriptorProto()
        mod.DESCRIPTOR.CopyToProto(fdp)
        ours.setdefault(fdp.package, {}).update(_fields(fdp))
    from kvtrees.server.proto import auth_pb2
    fdp = descriptor_pb2.FileDescriptorProto()
    auth_pb2.DESCRIPTOR.CopyToProto(fdp)
    ours.setdefault(fdp.package, {}).update(_fields(fdp))
    checked = 0
    for f in theirs.file:
        if f.package not in ours:
            continue
        for name, fields in _fields(f).items():
            assert name in ours[f.package], "missing message %s.%s" % (f.package, name)
            for fname, spec in fields.items():
                assert ours[f.package][name].get(fname) == spec, (name, fname)
                checked += 1
    assert checked > 150
