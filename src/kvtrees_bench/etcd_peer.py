"""A local etcd 3.4 as the reference for the store's put throughput (issue 4).

Starts `etcd` (Debian's etcd-server) on 127.0.0.1 only, with a temporary data dir and
non-default ports, runs `etcdctl check perf --load=<l>` and a concurrent put client (N
threads, each with its own keep-alive HTTP connection to etcd's v3 JSON gateway, which
serves the same KV.Put as gRPC), then stops etcd and deletes its data. Every loop is
bounded; nothing leaves loopback.
"""
from __future__ import annotations

import base64
import http.client
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from typing import List

HOST = "127.0.0.1"
CLIENT_PORT = 23790
PEER_PORT = 23800


class LocalEtcd:
    def __init__(self, data_dir: str):
        self.data_dir = data_dir
        self.proc = None
        self.log = open(os.path.join(os.path.dirname(data_dir), "etcd.log"), "wb")

    def start(self) -> None:
        url_c = "http://%s:%d" % (HOST, CLIENT_PORT)
        url_p = "http://%s:%d" % (HOST, PEER_PORT)
        exe = shutil.which("etcd")
        if exe is None:
            raise RuntimeError("etcd not installed: apt-get install etcd-server etcd-client")
        self.proc = subprocess.Popen(
            [exe, "--name", "bench", "--data-dir", self.data_dir,
             "--listen-client-urls", url_c, "--advertise-client-urls", url_c,
             "--listen-peer-urls", url_p, "--initial-advertise-peer-urls", url_p,
             "--initial-cluster", "bench=" + url_p, "--listen-metrics-urls", "",
             "--log-level", "warn", "--logger", "zap"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("etcd exited with %s" % self.proc.returncode)
            try:
                post(http.client.HTTPConnection(HOST, CLIENT_PORT, timeout=2), "/v3/kv/range",
                     {"key": b64(b"probe")})
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("etcd did not come up within 20 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def post(conn: http.client.HTTPConnection, path: str, body: dict) -> dict:
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        raise RuntimeError("etcd %s: HTTP %d %s" % (path, r.status, data[:200]))
    return json.loads(data)


def http_puts(threads: int, puts: int, value_size: int) -> dict:
    value = b64(os.urandom(value_size))
    start = threading.Barrier(threads + 1)
    errors: List[BaseException] = []

    def writer(tid: int) -> None:
        conn = http.client.HTTPConnection(HOST, CLIENT_PORT, timeout=30)
        bodies = [json.dumps({"key": b64(b"/bench/t%02d/%08d" % (tid, i)), "value": value})
                  for i in range(puts)]
        hdr = {"Content-Type": "application/json"}
        start.wait()
        try:
            for body in bodies:
                conn.request("POST", "/v3/kv/put", body, hdr)
                r = conn.getresponse()
                r.read()
                if r.status != 200:
                    raise RuntimeError("put: HTTP %d" % r.status)
        except BaseException as e:
            errors.append(e)
        finally:
            conn.close()
    ths = [threading.Thread(target=writer, args=(i,)) for i in range(threads)]
    for th in ths:
        th.start()
    start.wait()
    t0 = time.perf_counter()
    for th in ths:
        th.join()
    dt = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return {"target": "etcd-http", "threads": threads, "puts": threads * puts,
            "value_size": value_size, "seconds": round(dt, 3),
            "ops_per_s": round(threads * puts / dt, 1)}


def check_perf(load: str) -> dict:
    exe = shutil.which("etcdctl")
    if exe is None:
        raise RuntimeError("etcdctl not installed")
    env = dict(os.environ, ETCDCTL_API="3")
    p = subprocess.run([exe, "--endpoints", "%s:%d" % (HOST, CLIENT_PORT), "check", "perf",
                        "--load", load], capture_output=True, text=True, timeout=180, env=env)
    out = p.stdout + p.stderr
    m = re.search(r"Throughput (?:is|too low:) (\d+) writes/s", out)
    return {"target": "etcdctl check perf --load=%s" % load,
            "ops_per_s": int(m.group(1)) if m else None,
            "output": [ln for ln in out.splitlines() if ln.strip() and "%" not in ln][-8:]}


def cmd_etcd(a) -> dict:
    root = tempfile.mkdtemp(prefix="etcd-bench-")
    etcd = LocalEtcd(os.path.join(root, "data"))
    rows = []
    try:
        etcd.start()
        rows.append(http_puts(a.threads, a.puts, a.value_size))
        rows.append(http_puts(a.threads, a.puts, a.value_size))
        for load in [x for x in a.check_perf.split(",") if x]:
            rows.append(check_perf(load))
    finally:
        etcd.stop()
        shutil.rmtree(root, ignore_errors=True)
    for r in rows:
        print(json.dumps(r))
    return {"rows": rows}
