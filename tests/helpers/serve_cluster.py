"""A cluster of `kvtrees serve` processes on loopback for the cluster server and
multi-process tests (and bench/cluster_bench.py): members n1..nN, each with its own
data directory, client port and peer port on 127.0.0.1; ``close()`` kills every
process it started."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Dict, List, Optional

from helpers.ports import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class ServeCluster:
    def __init__(self, base, engine: str = "btree", n: int = 3, heartbeat_ms: int = 50,
                 election_ms: int = 500, extra: Optional[List[str]] = None,
                 token: str = "kvtrees-test") -> None:
        self.base, self.engine = str(base), engine
        self.heartbeat_ms, self.election_ms = heartbeat_ms, election_ms
        self.extra = list(extra or [])
        self.token = token
        self.client: Dict[str, str] = {}
        self.peer: Dict[str, str] = {}
        self.procs: Dict[str, subprocess.Popen] = {}
        for i in range(n):
            self._ports("n%d" % (i + 1))
        self.initial = self.initial_cluster(self.peer)

    def _ports(self, name: str) -> None:
        self.client[name] = "127.0.0.1:%d" % free_port()
        self.peer[name] = "http://127.0.0.1:%d" % free_port()

    @staticmethod
    def initial_cluster(peer: Dict[str, str]) -> str:
        return ",".join("%s=%s" % kv for kv in peer.items())

    def start_all(self) -> "ServeCluster":
        for name in list(self.peer):
            self.start(name)
        for name in list(self.peer):
            self.wait_serving(name)
        return self

    def start(self, name: str, state: str = "new", initial: Optional[str] = None) -> None:
        env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
        cmd = [sys.executable, "-m", "kvtrees", "serve",
               "--data-dir", os.path.join(self.base, name), "--engine", self.engine,
               "--name", name, "--listen-client-urls", "http://" + self.client[name],
               "--listen-peer-urls", self.peer[name],
               "--initial-advertise-peer-urls", self.peer[name],
               "--initial-cluster", initial or self.initial,
               "--initial-cluster-state", state, "--initial-cluster-token", self.token,
               "--heartbeat-interval", str(self.heartbeat_ms),
               "--election-timeout", str(self.election_ms), "--log-level", "warn"]
        log = open(os.path.join(self.base, name + ".log"), "ab")
        self.procs[name] = subprocess.Popen(cmd + self.extra, stdout=log, stderr=log,
                                            env=env, start_new_session=True)
        log.close()

    def wait_serving(self, name: str, timeout: float = 20.0) -> None:
        host, port = self.client[name].rsplit(":", 1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                raise AssertionError("%s exited: %s" % (name, self.log(name)))
            try:
                socket.create_connection((host, int(port)), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("%s not serving after %ss" % (name, timeout))

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        p = self.procs.pop(name)
        try:
            os.killpg(p.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()

    def stop(self, name: str) -> None:
        self.kill(name, signal.SIGTERM)

    def log(self, name: str) -> str:
        with open(os.path.join(self.base, name + ".log"), "rb") as f:
            return f.read()[-3000:].decode(errors="replace")

    def endpoints(self, names=None) -> str:
        return ",".join(self.client[n] for n in (names or self.procs))

    def statuses(self, timeout: float = 3.0) -> Dict[str, dict]:
        """etcdctl endpoint status of every running member (json), by name."""
        out = {}
        for name in self.procs:
            r = etcdctl(self.client[name], "endpoint", "status", "-w", "json",
                        timeout=timeout)
            if r.returncode == 0:
                out[name] = json.loads(r.stdout)[0]["Status"]
        return out

    def leader(self, timeout: float = 20.0) -> str:
        """The name of the member that all running members agree leads."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.statuses()
            leads = {s.get("leader", 0) for s in st.values()}
            if len(st) == len(self.procs) and len(leads) == 1 and 0 not in leads:
                lead = leads.pop()
                for name, s in st.items():
                    if s["header"]["member_id"] == lead:
                        return name
            time.sleep(0.1)
        raise AssertionError("no agreed leader in %ss" % timeout)

    def check_stores(self) -> None:
        """Stop every member (SIGTERM) and check() each store left on disk."""
        from kvtrees.cluster import open_cluster_store
        for name, p in self.procs.items():       # all at once: each takes a moment
            os.killpg(p.pid, signal.SIGTERM)
        for name in list(self.procs):
            self.stop(name)
        for name in sorted(os.listdir(self.base)):
            d = os.path.join(self.base, name)
            if os.path.isdir(os.path.join(d, "raft")):
                s = open_cluster_store(d, self.engine)
                try:
                    s.check()
                finally:
                    s.close()

    def close(self) -> None:
        for name in list(self.procs):
            self.kill(name)


def etcdctl(endpoints: str, *args, timeout: float = 15.0) -> subprocess.CompletedProcess:
    env = dict(os.environ, ETCDCTL_API="3")
    return subprocess.run(["etcdctl", "--endpoints=" + endpoints, "--command-timeout=5s",
                           "--dial-timeout=2s"] + list(args), capture_output=True,
                          text=True, timeout=timeout, env=env)
