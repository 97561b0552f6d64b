"""A real etcd 3.4 (Debian etcd-server) on free loopback ports, for side-by-side
comparisons; and etcdctl helpers with output normalisation."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from server_fixtures import free_port

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"
CMD_TIMEOUT = 20


def have_etcdctl() -> bool:
    return os.access(ETCDCTL, os.X_OK)


def have_etcd() -> bool:
    return os.access(ETCD, os.X_OK)


class EtcdProcess:
    """etcd on 127.0.0.1 with a temporary data dir; stop() kills it."""

    def __init__(self, data_dir: str, name: str = "default"):
        self.client_port, self.peer_port = free_port(), free_port()
        self.address = "127.0.0.1:%d" % self.client_port
        peer = "http://127.0.0.1:%d" % self.peer_port
        client = "http://" + self.address
        os.makedirs(os.path.dirname(data_dir), exist_ok=True)
        self.log = open(os.path.join(os.path.dirname(data_dir), "etcd.log"), "wb")
        self.proc = subprocess.Popen(
            [ETCD, "--name", name, "--data-dir", data_dir, "--listen-client-urls", client,
             "--advertise-client-urls", client, "--listen-peer-urls", peer,
             "--initial-advertise-peer-urls", peer, "--initial-cluster", "%s=%s" % (name, peer),
             "--log-level", "error", "--logger", "zap"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 20
        while True:
            r = etcdctl(self.address, "endpoint", "health", timeout=5)
            if r.returncode == 0:
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail("etcd did not start (exit %s)" % self.proc.poll())
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()


def etcdctl(endpoint: str, *args, stdin: str = None, timeout: float = CMD_TIMEOUT,
            env: dict = None) -> subprocess.CompletedProcess:
    e = dict(os.environ, ETCDCTL_API="3")
    e.update(env or {})
    return subprocess.run([ETCDCTL, "--endpoints=" + endpoint, "--command-timeout=5s",
                           "--dial-timeout=3s"] + list(args), input=stdin,
                          capture_output=True, text=True, timeout=timeout, env=e)


def background(endpoint: str, *args) -> subprocess.Popen:
    return subprocess.Popen([ETCDCTL, "--endpoints=" + endpoint] + list(args),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, ETCDCTL_API="3"), start_new_session=True)


def stop_background(p: subprocess.Popen, sig=signal.SIGINT) -> tuple:
    try:
        os.killpg(p.pid, sig)
    except ProcessLookupError:
        pass
    try:
        out, err = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
    return out, err


class Normaliser:
    """Replaces what legitimately differs between two fresh servers: their ids, terms,
    lease ids (random), endpoints, versions, sizes, timings and raft indexes."""

    def __init__(self):
        self.leases: dict = {}

    def lease(self, text: str) -> str:
        """Call with lease ids (hex, as printed) in order of appearance."""
        return self.leases.setdefault(text, "LEASE%d" % len(self.leases))

    def __call__(self, text: str, endpoint: str) -> str:
        t = text.replace(endpoint, "ENDPOINT")
        for hexid, name in self.leases.items():
            t = t.replace(hexid, name).replace(str(int(hexid, 16)), name)
        t = re.sub(r'"(cluster_id|member_id|raft_term|leader|raftIndex|raftTerm|'
                   r'raftAppliedIndex|dbSize|dbSizeInUse)":\d+', r'"\1":N', t)
        t = re.sub(r'"version":"[^"]*"', '"version":V', t)
        t = re.sub(r'"ID":\d+', '"ID":N', t)
        t = re.sub(r'"peerURLs":\[[^]]*\],', '', t)    # kvtrees has no peer listener
        t = re.sub(r"took = [\d.]+\w+", "took = T", t)
        t = re.sub(r"\{\"level\".*\n", "", t)                     # client-side warn logs
        return t
