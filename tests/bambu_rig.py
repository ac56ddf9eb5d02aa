"""A Bambu Lab printer for tests: a real mosquitto with TLS and a password (the printer's own
broker), a real implicit-FTPS server, and the printer stand-in (bambu_printer.py) as a process.

    rig = BambuRig.start(tmp_path)
    backend = BambuBackend.from_url("bambu", urlsplit(rig.url), rig.settings())
    rig.screen("cancel")        # stop pressed on the printer's screen
    rig.power_cut(); rig.power_on()     # printer (and its broker) gone; back, idle
    rig.network_down(); rig.network_up()  # broker unreachable while the printer keeps printing
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mosquitto import (
    Broker,
    free_port,
    make_cert,
    mosquitto_unavailable,
    start_mosquitto,
)

__all__ = ["BambuHarness", "BambuRig", "bambu_unavailable"]

HERE = Path(__file__).resolve().parent
SERIAL = "01P00A000000001"
CODE = "12345678"


def bambu_unavailable() -> str | None:
    """Why the Bambu rig cannot run here (a reason for pytest.skip), or None."""
    reason = mosquitto_unavailable(tls=True)
    if reason:
        return reason
    for module, package in (("aiomqtt", "aiomqtt"), ("pyftpdlib", "pyftpdlib"), ("OpenSSL", "pyOpenSSL")):
        try:
            __import__(module)
        except ImportError:
            return f"needs {package}: pip install -e '.[test]'"
    return None


@dataclass
class BambuRig:
    dir: Path
    broker: Broker
    ftp_port: int
    start_lag: float
    lines_per_second: float
    proc: subprocess.Popen[Any] | None = None
    cert: Path = field(default_factory=Path)
    key: Path = field(default_factory=Path)

    @classmethod
    def start(cls, dir: Path, *, start_lag: float = 1.5, lines_per_second: float = 100.0) -> BambuRig:
        dir.mkdir(parents=True, exist_ok=True)
        broker = start_mosquitto(dir / "broker", tls=True, users={"bblp": CODE})
        cert, key = make_cert(dir / "broker", "mosquitto")  # one printer, one certificate
        (dir / "sdcard").mkdir(exist_ok=True)
        rig = cls(dir, broker, free_port(), start_lag, lines_per_second, cert=cert, key=key)
        rig.power_on(broker_too=False)
        return rig

    @property
    def url(self) -> str:
        return f"bambu://127.0.0.1:{self.broker.port}?ftp_port={self.ftp_port}&cafile={self.broker.cafile}"

    def settings(self, **kw: Any) -> Any:
        from lanqueue.printer.backend import BackendSettings

        kw.setdefault("reconnect_delay", 0.1)
        kw.setdefault("max_reconnect_delay", 0.5)
        kw.setdefault("key", CODE)
        kw.setdefault("serial", SERIAL)
        return BackendSettings(**kw)

    @property
    def sdcard(self) -> Path:
        return self.dir / "sdcard"

    def power_on(self, *, broker_too: bool = True) -> None:
        """Boot the printer: its broker, its FTPS server, its firmware (idle, nothing printing)."""
        if broker_too:
            self.broker.start()
        log = open(self.dir / "printer.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "bambu_printer.py"), "--serial", SERIAL,
             "--mqtt-port", str(self.broker.port), "--ftp-port", str(self.ftp_port),
             "--cafile", str(self.broker.cafile), "--cert", str(self.cert), "--key", str(self.key),
             "--sdcard", str(self.sdcard), "--access-code", CODE,
             "--start-lag", str(self.start_lag), "--lines-per-second", str(self.lines_per_second)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
        )
        log.close()
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the printer stand-in did not start: {self.log_tail()}")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.ftp_port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("the printer's FTPS server is not listening")

    def power_cut(self) -> None:
        """The printer loses power: firmware, FTPS and its broker all gone at once."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
        self.broker.stop()

    def network_down(self) -> None:
        """The printer drops off the network but keeps printing (its broker is unreachable)."""
        self.broker.stop()

    def network_up(self) -> None:
        self.broker.start()

    def screen(self, word: str) -> None:
        """Something done at the printer's own screen: fail, cancel, pause, resume."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(word + "\n")
        self.proc.stdin.flush()

    def log_tail(self, n: int = 3000) -> str:
        path = self.dir / "printer.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""

    def close(self) -> None:
        self.power_cut()

    def env(self) -> dict[str, str]:
        """Secrets for a node process, the way a user gives them (environment, not flags)."""
        return {**os.environ, "LANQUEUE_PRINTER_KEY": CODE, "LANQUEUE_PRINTER_SERIAL": SERIAL}


class BambuHarness:
    """The Bambu printer as an entry of the backend conformance suite (its Harness shape)."""

    name = "bambu"
    key = CODE
    config = (("printer_serial", SERIAL),)  # more lines of the node's config file

    def start(self, tmp: Path) -> None:
        import pytest

        reason = bambu_unavailable()
        if reason:
            pytest.skip(reason)
        self.rig = BambuRig.start(tmp / "bambu", start_lag=1.0)
        self.url = self.rig.url + "&lost_after=10"

    def close(self) -> None:
        self.rig.close()

    def gcode(self, seconds: float) -> str:
        return "M117 start\n" + "G4 P100\n" * max(1, int(seconds / 0.1)) + "M117 end\n"

    def failing_gcode(self) -> str:
        return self.gcode(8)

    def before_failure(self) -> None: ...

    def fail_now(self) -> None:
        self.rig.screen("fail")

    def after_failure(self) -> None: ...

    @property
    def cancel_at_printer(self) -> Callable[[], None]:
        return lambda: self.rig.screen("cancel")

    def uploads(self) -> dict[str, float]:
        """Print files on the printer's card (a G-code file arrives wrapped as NAME.3mf)."""
        return {p.name.removesuffix(".3mf"): p.stat().st_mtime for p in self.rig.sdcard.iterdir()
                if p.name.startswith("lq-") and not p.name.startswith("lq-script-")}

    @property
    def freeze(self) -> Callable[[], None]:
        return self.rig.network_down  # the printer prints on, out of reach

    @property
    def thaw(self) -> Callable[[], None]:
        return self.rig.network_up

    def go_away(self) -> None:
        self.rig.power_cut()

    def come_back(self) -> None:
        self.rig.power_on()
