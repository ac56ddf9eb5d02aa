"""A real MQTT broker for tests: Debian's mosquitto 2.0, on loopback, optionally with TLS.

    broker = start_mosquitto(tmp_path, tls=True, users={"bblp": "12345678"})
    ...  # connect to broker.host:broker.port, trusting broker.cafile
    broker.stop(); broker.start()      # the broker going away and coming back, same port
    broker.close()

Used by the notification tests (plain MQTT, anonymous) and the Bambu Lab printer tests (TLS on
a self-signed certificate made here, a password file, user `bblp` with the access code as
password, as a Bambu printer's own broker has). The broker listens on 127.0.0.1 only and keeps
nothing on disk (`persistence false`), so a restart is a clean broker, as a rebooted printer is.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

__all__ = ["Broker", "free_port", "make_cert", "mosquitto_unavailable", "start_mosquitto"]


def mosquitto_unavailable(*, tls: bool = False) -> str | None:
    """Why a broker cannot be started here (a reason for pytest.skip), or None."""
    if shutil.which("mosquitto") is None:
        return "needs Debian's mosquitto: apt-get install mosquitto"
    if shutil.which("mosquitto_passwd") is None:
        return "needs mosquitto_passwd: apt-get install mosquitto"
    if tls and shutil.which("openssl") is None:
        return "needs openssl to make a test certificate: apt-get install openssl"
    return None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS's choice)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def make_cert(dir: Path, name: str = "server", host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate for `host` (as IP subjectAltName), valid a day: (cert, key)."""
    cert, key = dir / f"{name}.crt", dir / f"{name}.key"
    if not cert.exists():
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", f"/CN={host}", "-addext", f"subjectAltName=IP:{host}",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )
    return cert, key


@dataclass
class Broker:
    """A running mosquitto; `stop`/`start` take it away and bring it back on the same port."""

    dir: Path
    port: int
    host: str = "127.0.0.1"
    cafile: Path | None = None
    users: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[Any] | None = None

    @property
    def tls(self) -> bool:
        return self.cafile is not None

    def start(self, timeout: float = 10.0) -> None:
        """Start the broker and wait until it accepts connections."""
        if self.proc is not None and self.proc.poll() is None:
            return
        log = open(self.dir / "mosquitto.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            ["mosquitto", "-c", str(self.dir / "mosquitto.conf")],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log_tail()}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"mosquitto not listening after {timeout} s: {self.log_tail()}")

    def stop(self) -> None:
        """Stop the broker (every client is disconnected); `start` brings it back."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    close = stop

    def log_tail(self, n: int = 2000) -> str:
        path = self.dir / "mosquitto.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _config(broker: Broker, cert: Path | None, key: Path | None) -> str:
    lines = [
        "per_listener_settings true",
        "persistence false",
        "log_dest stdout",
        "log_type error",
        "log_type warning",
        "log_type notice",
    ]
    if os.geteuid() == 0:
        # As root mosquitto drops to the `mosquitto` user, who cannot enter pytest's 0700
        # temporary folders; the test's own files stay the test's.
        lines.append("user root")
    lines.append(f"listener {broker.port} {broker.host}")
    if cert is not None and key is not None:
        lines += [f"certfile {cert}", f"keyfile {key}"]
    if broker.users:
        lines += ["allow_anonymous false", f"password_file {broker.dir / 'passwd'}"]
    else:
        lines.append("allow_anonymous true")
    return "\n".join(lines) + "\n"


def _password_file(path: Path, users: dict[str, str]) -> None:
    path.unlink(missing_ok=True)
    for i, (user, password) in enumerate(users.items()):
        flags = ["-c"] if i == 0 else []
        subprocess.run(
            ["mosquitto_passwd", *flags, "-b", str(path), user, password],
            check=True, capture_output=True,
        )
    path.chmod(0o600)


def start_mosquitto(
    dir: Path,
    *,
    tls: bool = False,
    users: dict[str, str] | None = None,
    port: int | None = None,
    host: str = "127.0.0.1",
) -> Broker:
    """Write a config into `dir` and start mosquitto on `host:port` (a free port by default).

    `tls` makes a self-signed certificate (`broker.cafile` is what clients trust); `users`
    (name -> password) turns anonymous access off.
    """
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    broker = Broker(dir=dir, port=port or free_port(host), host=host, users=dict(users or {}))
    cert = key = None
    if tls:
        cert, key = make_cert(dir, "mosquitto", host)
        broker.cafile = cert
    if broker.users:
        _password_file(dir / "passwd", broker.users)
    (dir / "mosquitto.conf").write_text(_config(broker, cert, key))
    broker.start()
    return broker
