"""Regenerate the protobuf/gRPC stubs beside the .proto files:

    python -m kvtrees.server.proto._generate            # rewrite the stubs in place
    python -m kvtrees.server.proto._generate --out DIR  # write them under DIR instead

Needs grpcio-tools (the `server` extra's build-time tool; the server itself only needs
grpcio and protobuf). tests/test_server_proto.py regenerates into a temporary directory
and compares, so a stale stub fails the suite.
"""
from __future__ import annotations

import argparse
import os
import sys

PROTOS = ("kv.proto", "auth.proto", "rpc.proto", "v3lock.proto", "v3election.proto")
HERE = os.path.dirname(os.path.abspath(__file__))
SRC_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))   # .../src
PKG_DIR = os.path.join("kvtrees", "server", "proto")


def generate(out_root: str = SRC_ROOT) -> list:
    """Run protoc (from grpcio-tools) over PROTOS; returns the paths written."""
    from grpc_tools import protoc   # build-time only
    import importlib.resources
    include = str(importlib.resources.files("grpc_tools") / "_proto")
    os.makedirs(os.path.join(out_root, PKG_DIR), exist_ok=True)
    args = ["protoc", "-I" + SRC_ROOT, "-I" + include, "--python_out=" + out_root,
            "--grpc_python_out=" + out_root]
    args += [os.path.join(PKG_DIR, p) for p in PROTOS]
    rc = protoc.main(args)
    if rc != 0:
        raise RuntimeError("protoc failed with exit code %d" % rc)
    return sorted(os.path.join(out_root, PKG_DIR, f)
                  for f in os.listdir(os.path.join(out_root, PKG_DIR))
                  if f.endswith(("_pb2.py", "_pb2_grpc.py")))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=SRC_ROOT, help="root to write kvtrees/server/proto/ under")
    args = ap.parse_args(argv)
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
