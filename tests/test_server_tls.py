"""TLS through gRPC's server credentials, and --client-cert-auth (the client
certificate's CN is the user once auth is on). Certificates are made with openssl."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from server_fixtures import grpc, stubs

from kvtrees.server.proto import rpc_pb2 as pb

pytestmark = pytest.mark.skipif(not shutil.which("openssl"), reason="needs openssl")


def _cert(d, name, cn, ca=None, san=None):
    key, csr, crt = d / (name + ".key"), d / (name + ".csr"), d / (name + ".crt")
    subprocess.run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(csr), "-subj", "/CN=" + cn], check=True,
                   capture_output=True)
    ext = d / (name + ".ext")
    ext.write_text("subjectAltName=%s\n" % (san or "DNS:" + cn))
    args = ["openssl", "x509", "-req", "-in", str(csr), "-out", str(crt), "-days", "2",
            "-extfile", str(ext)]
    args += (["-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial"] if ca
             else ["-signkey", str(key)])
    subprocess.run(args, check=True, capture_output=True)
    return crt, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca_key = d / "ca.key"
    ca_crt = d / "ca.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(ca_key), "-out", str(ca_crt), "-days", "2", "-subj", "/CN=test-ca"],
                   check=True, capture_output=True)
    server = _cert(d, "server", "localhost", (ca_crt, ca_key), "IP:127.0.0.1,DNS:localhost")
    alice = _cert(d, "alice", "alice", (ca_crt, ca_key))
    return {"ca": ca_crt, "server": server, "alice": alice}


def _channel(addr, pki, client=None):
    creds = grpc.ssl_channel_credentials(
        root_certificates=pki["ca"].read_bytes(),
        private_key=client[1].read_bytes() if client else None,
        certificate_chain=client[0].read_bytes() if client else None)
    return grpc.secure_channel(addr, creds)


@pytest.mark.parametrize("engine", ["btree", "fractal"])
def test_tls_and_client_cert_auth(engine, tmp_path, pki):
    import kvtrees
    from conftest import require_engine
    require_engine(engine)
    crt, key = pki["server"]
    srv = kvtrees.serve(str(tmp_path / "db"), engine, "https://127.0.0.1:0",
                        cert_file=str(crt), key_file=str(key),
                        trusted_ca_file=str(pki["ca"]), client_cert_auth=True, bcrypt_cost=4)
    try:
        port = srv.address.rsplit(":", 1)[1]
        ch = _channel("127.0.0.1:" + port, pki, pki["alice"])
        rpc = stubs(ch)
        rpc.kv.Put(pb.PutRequest(key=b"k", value=b"tls"))
        assert rpc.kv.Range(pb.RangeRequest(key=b"k")).kvs[0].value == b"tls"
        rpc.auth.UserAdd(pb.AuthUserAddRequest(name="root", password="r"))
        rpc.auth.RoleAdd(pb.AuthRoleAddRequest(name="root"))
        rpc.auth.UserGrantRole(pb.AuthUserGrantRoleRequest(user="root", role="root"))
        rpc.auth.UserAdd(pb.AuthUserAddRequest(name="alice", password="a"))
        rpc.auth.AuthEnable(pb.AuthEnableRequest())
        with pytest.raises(grpc.RpcError) as ei:          # alice (by CN) has no roles
            rpc.kv.Range(pb.RangeRequest(key=b"k"))
        assert ei.value.code() == grpc.StatusCode.PERMISSION_DENIED
        plain = grpc.insecure_channel("127.0.0.1:" + port)
        with pytest.raises(grpc.RpcError):                # no TLS: refused
            stubs(plain).kv.Range(pb.RangeRequest(key=b"k"), timeout=3)
        plain.close()
        nocert = _channel("127.0.0.1:" + port, pki)
        with pytest.raises(grpc.RpcError):                # TLS without a client cert
            stubs(nocert).kv.Range(pb.RangeRequest(key=b"k"), timeout=3)
        nocert.close()
        tok = rpc.auth.Authenticate(pb.AuthenticateRequest(name="root", password="r")).token
        rpc.auth.AuthDisable(pb.AuthDisableRequest(), metadata=[("token", tok)])
        ch.close()
        srv.store.check()
    finally:
        srv.stop()
