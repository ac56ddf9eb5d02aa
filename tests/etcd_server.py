"""Real etcd servers for tests: Debian's `etcd-server`, one member or a cluster, on loopback.

Each member listens on two free loopback ports (client, peer) and keeps its data in the test's
temporary folder. `EtcdCluster.kill(i)` / `start(i)` stop and restart one member (SIGKILL), and
`leader()` names the current leader, for tests about etcd's own faults.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


def need_etcd() -> str:
    if not os.path.exists(ETCD):
        pytest.skip("needs etcd (Debian: apt-get install etcd-server)")
    return ETCD


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    host: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = None
    tls: tuple[Path, Path] | None = None  # (certificate, key) for the client port

    @property
    def client_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"


@dataclass
class EtcdCluster:
    members: list[Member]
    log_dir: Path
    netns: list[str | None] = field(default_factory=list)

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    def _cmd(self, i: int, state: str) -> list[str]:
        m = self.members[i]
        initial = ",".join(f"{x.name}={x.peer_url}" for x in self.members)
        cmd = [
            need_etcd(), "--name", m.name, "--data-dir", str(m.data_dir),
            "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
            "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
            "--initial-cluster", initial, "--initial-cluster-state", state,
            "--initial-cluster-token", "lanqueue-test",
            "--heartbeat-interval", "100", "--election-timeout", "1000",
            *(["--cert-file", str(m.tls[0]), "--key-file", str(m.tls[1])] if m.tls else []),
            "--logger", "zap", "--log-outputs", str(self.log_dir / f"{m.name}.log"),
        ]
        ns = self.netns[i] if i < len(self.netns) else None
        return (["ip", "netns", "exec", ns] + cmd) if ns else cmd

    def start(self, i: int, state: str = "new") -> None:
        self.members[i].proc = subprocess.Popen(self._cmd(i, state), stdout=subprocess.DEVNULL,
                                                stderr=subprocess.DEVNULL)

    def kill(self, i: int) -> None:
        proc = self.members[i].proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(5)
        self.members[i].proc = None

    def stop(self) -> None:
        for i in range(len(self.members)):
            self.kill(i)

    def status(self, i: int) -> dict[str, object] | None:
        try:
            req = urllib.request.Request(self.members[i].client_url + "/v3/maintenance/status", data=b"{}",
                                         method="POST")
            context = ssl._create_unverified_context() if self.members[i].tls else None  # a probe only
            with urllib.request.urlopen(req, timeout=1, context=context) as resp:
                result: dict[str, object] = json.loads(resp.read())
                return result
        except OSError:
            return None

    def leader(self) -> int | None:
        """Index of the member that is leader, as the live members report it."""
        for i in range(len(self.members)):
            st = self.status(i)
            if st and st.get("leader") == st.get("header", {}).get("member_id"):  # type: ignore[union-attr]
                return i
        return None

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.leader() is not None:
                return
            time.sleep(0.1)
        raise RuntimeError(f"etcd did not elect a leader within {timeout} s (logs in {self.log_dir})")


def make_tls(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 made with openssl: (ca, cert, key)."""
    tmp.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (tmp / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
        "-subj", "/CN=lanqueue test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    ext = tmp / "san.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(cert),
        "-days", "2", "-extfile", str(ext))
    return ca, cert, key


def start_cluster(tmp: Path, size: int = 1, *, hosts: list[str] | None = None,
                  netns: list[str | None] | None = None, tls: tuple[Path, Path] | None = None) -> EtcdCluster:
    need_etcd()
    members = []
    for i in range(size):
        host = hosts[i] if hosts else "127.0.0.1"
        members.append(Member(f"m{i}", free_port() if not hosts else 2379, free_port() if not hosts else 2380,
                              tmp / f"etcd-m{i}", host, tls=tls))
    tmp.mkdir(parents=True, exist_ok=True)
    cluster = EtcdCluster(members, tmp, netns or [])
    for i in range(size):
        cluster.start(i)
    cluster.wait_ready()
    return cluster


def enable_auth(cluster: EtcdCluster, user: str, password: str) -> None:
    """Create root (needed to enable auth) and `user` with read-write on everything, then enable auth."""
    ctl = shutil.which("etcdctl")
    if ctl is None:
        pytest.skip("needs etcdctl (Debian: apt-get install etcd-client)")
    env = dict(os.environ, ETCDCTL_API="3")
    ep = ["--endpoints", ",".join(cluster.endpoints)]
    for args in (["user", "add", "root:" + password + "-root"], ["user", "add", f"{user}:{password}"],
                 ["role", "add", "farm"], ["role", "grant-permission", "farm", "--prefix=true", "readwrite", "/lanqueue/"],
                 ["user", "grant-role", user, "farm"], ["user", "grant-role", "root", "root"],
                 ["auth", "enable"]):
        subprocess.run([ctl, *ep, *args], check=True, env=env, capture_output=True, timeout=10)
