"""Real PrusaLink 0.8.1 (from PyPI, in a venv of its own) driving the firmware stand-in
(prusalink_printer.py) on a pty, for tests.

    rig = PrusaLinkRig.start(tmp_path)       # needs root, iproute2 and the PrusaLink venv
    rig.url, rig.user, rig.password           # http://127.0.0.1:PORT, digest credentials
    rig.screen("cancel")                       # Stop pressed on the printer's own screen
    rig.network_down(); rig.network_up()       # PrusaLink unreachable, printing on; back

Why namespaces: PrusaLink announces itself by multicast DNS on every interface and ignores
storage under /tmp. It runs in a network namespace of its own with only loopback up (nothing it
sends leaves it) and a private mount namespace (`ip netns exec` gives one) in which the test's
data folder is bind-mounted at /mnt. The test reaches it through a small forwarder
(`python3 prusalink_rig.py forward ...`): it listens on 127.0.0.1 here and opens each onward
connection inside the namespace (setns), so no interface is added to the test's own namespace.

Where PrusaLink comes from: $LANQUEUE_PRUSALINK (the `prusalink` program), else
/opt/lanqueue-venvs/prusalink/bin/prusalink (what .ci/run makes), else `prusalink` on PATH.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mosquitto import free_port

__all__ = ["PrusaLinkRig", "prusalink_program", "prusalink_unavailable"]

HERE = Path(__file__).resolve().parent
VENV_PROGRAM = "/opt/lanqueue-venvs/prusalink/bin/prusalink"
INSTALL = ("apt-get install libcap-dev libturbojpeg0 && python3 -m venv /opt/lanqueue-venvs/prusalink "
           "&& /opt/lanqueue-venvs/prusalink/bin/pip install prusalink==0.8.1 (as .ci/run does)")
USER, PASSWORD, API_KEY = "maker", "printer-pass", "lq-test-api-key"
PORT_IN_NS = 8080


def prusalink_program() -> str | None:
    env = os.environ.get("LANQUEUE_PRUSALINK")
    if env:
        return env if os.access(env, os.X_OK) else None
    if os.access(VENV_PROGRAM, os.X_OK):
        return VENV_PROGRAM
    return shutil.which("prusalink")


def prusalink_unavailable() -> str | None:
    """Why real PrusaLink cannot run here (a reason for pytest.skip), or None."""
    if os.geteuid() != 0:
        return "needs root (PrusaLink runs in its own network and mount namespace)"
    if shutil.which("ip") is None:
        return "needs iproute2 (`ip`): apt-get install iproute2"
    if prusalink_program() is None:
        return f"needs PrusaLink 0.8.1: {INSTALL}"
    return None


def _config(data: Path) -> None:
    (data / "prusalink.ini").write_text(
        "[daemon]\ndata_dir = /mnt\npid_file = /mnt/prusalink.pid\n\n"
        f"[http]\naddress = 127.0.0.1\nport = {PORT_IN_NS}\n\n"
        "[printer]\nport = /mnt/ttyPrusa\nsettings = /mnt/prusa_printer_settings.ini\n"
    )
    digest = hashlib.md5(f"{USER}:Administrator:{PASSWORD}".encode()).hexdigest()
    (data / "prusa_printer_settings.ini").write_text(
        "[printer]\ntype = MK3S\nname = lanqueue-test\nlocation = loopback\n\n"
        "[service::connect]\nhostname = 127.0.0.1\ntls = False\nport = 9\ntoken = \n\n"
        f"[service::local]\nenable = 1\nusername = {USER}\ndigest = {digest}\napi_key = {API_KEY}\n"
    )


@dataclass
class PrusaLinkRig:
    dir: Path
    ns: str
    port: int
    procs: dict[str, subprocess.Popen[Any]] = field(default_factory=dict)

    user = USER
    password = PASSWORD
    api_key = API_KEY

    @classmethod
    def start(cls, dir: Path, *, wait: float = 60.0) -> PrusaLinkRig:
        data = dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        _config(data)
        rig = cls(dir, f"lq-pl-{os.getpid()}-{secrets.token_hex(3)}", free_port())
        subprocess.run(["ip", "netns", "add", rig.ns], check=True, capture_output=True)
        try:
            subprocess.run(["ip", "-n", rig.ns, "link", "set", "lo", "up"], check=True, capture_output=True)
            rig.power_on()
            rig.network_up()
            rig.wait_idle(wait)
        except BaseException:
            rig.close()
            raise
        return rig

    @property
    def url(self) -> str:
        return f"prusalink://127.0.0.1:{self.port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def settings(self, **kw: Any) -> Any:
        from lanqueue.printer.backend import BackendSettings

        kw.setdefault("reconnect_delay", 0.1)
        kw.setdefault("max_reconnect_delay", 0.5)
        return BackendSettings(user=USER, key=PASSWORD, **kw)

    def _popen(self, name: str, args: list[str], **kw: Any) -> subprocess.Popen[Any]:
        log = open(self.dir / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(args, stdout=kw.pop("stdout", log), stderr=log, **kw)
        log.close()
        self.procs[name] = proc
        return proc

    def power_on(self) -> None:
        """The printer (firmware stand-in on its pty) and PrusaLink beside it."""
        data = self.dir / "data"
        fw = self._popen("printer", [sys.executable, str(HERE / "prusalink_printer.py"),
                                     str(data / "ttyPrusa"), str(self.dir / "serial.log")],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert fw.stdout is not None
        if fw.stdout.readline().strip() != "ready":
            raise RuntimeError("the firmware stand-in did not start")
        program = prusalink_program()
        assert program is not None
        script = f'mount --bind "{data}" /mnt && exec "{program}" -f -i -c /mnt/prusalink.ini'
        self._popen("prusalink", ["ip", "netns", "exec", self.ns, "sh", "-c", script],
                    stdin=subprocess.DEVNULL)

    def power_cut(self) -> None:
        for name in ("prusalink", "printer"):
            self._stop(name)

    def network_down(self) -> None:
        """PrusaLink becomes unreachable (it and the printer carry on)."""
        self._stop("forward")

    def network_up(self) -> None:
        self._popen("forward", [sys.executable, __file__, "forward", str(self.port), self.ns, str(PORT_IN_NS)],
                    stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("the forwarder did not listen")

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Until PrusaLink says the printer is IDLE (about 9 s after it starts)."""
        import requests
        from requests.auth import HTTPDigestAuth

        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.procs["prusalink"].poll() is not None:
                raise RuntimeError(f"PrusaLink exited: {self.log_tail('prusalink')}")
            try:
                r = requests.get(self.http + "/api/v1/status", auth=HTTPDigestAuth(USER, PASSWORD), timeout=2)
                last = r.text
                if r.ok and r.json().get("printer", {}).get("state") == "IDLE":
                    return
            except (requests.RequestException, ValueError) as e:
                last = repr(e)
            time.sleep(0.3)
        raise RuntimeError(f"PrusaLink not IDLE after {timeout} s: {last} {self.log_tail('prusalink')}")

    def screen(self, word: str) -> None:
        """Something done at the printer's own screen: cancel, pause, resume, fail."""
        fw = self.procs["printer"]
        assert fw.stdin is not None
        fw.stdin.write(word + "\n")
        fw.stdin.flush()

    def log_tail(self, name: str, n: int = 3000) -> str:
        path = self.dir / f"{name}.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""

    def _stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def close(self) -> None:
        for name in ("forward", "prusalink", "printer"):
            self._stop(name)
        subprocess.run(["ip", "netns", "del", self.ns], check=False, capture_output=True)


# --------------------------------------------------------------------------- the forwarder


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def forward(listen_port: int, ns: str, target_port: int) -> None:
    """Accept on 127.0.0.1:listen_port here; connect each to 127.0.0.1:target_port in `ns`."""
    server = socket.create_server(("127.0.0.1", listen_port))  # in the caller's namespace
    libc = ctypes.CDLL(None, use_errno=True)
    with open(f"/var/run/netns/{ns}") as f:
        if libc.setns(f.fileno(), 0x40000000) != 0:  # CLONE_NEWNET: sockets made from now on
            raise OSError(ctypes.get_errno(), "setns failed")
    while True:
        client, _ = server.accept()
        try:
            upstream = socket.create_connection(("127.0.0.1", target_port), timeout=5)
        except OSError:
            client.close()
            continue
        upstream.settimeout(None)
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pump, args=(a, b), daemon=True).start()


if __name__ == "__main__" and sys.argv[1:2] == ["forward"]:
    forward(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))


class PrusaLinkHarness:
    """PrusaLink as an entry of the backend conformance suite (its Harness shape)."""

    name = "prusalink"
    key = PASSWORD
    config = (("printer_user", USER),)  # more lines of the node's config file

    def start(self, tmp: Path) -> None:
        import pytest

        reason = prusalink_unavailable()
        if reason:
            pytest.skip(reason)
        self.rig = PrusaLinkRig.start(tmp / "prusalink")
        self.url = self.rig.url + "?lost_after=10"

    def close(self) -> None:
        self.rig.close()

    def gcode(self, seconds: float) -> str:
        steps = max(1, int(seconds / 0.1))
        body = "".join(f"G4 P100\nM73 P{i * 100 // steps} R1\n" for i in range(steps))
        return "M117 start\n" + body + "M117 end\n"

    def failing_gcode(self) -> str:
        return self.gcode(8)

    def before_failure(self) -> None: ...

    def fail_now(self) -> None:
        self.rig.screen("fail")

    def after_failure(self) -> None:
        self.rig.wait_idle()

    @property
    def cancel_at_printer(self) -> Callable[[], None]:
        return lambda: self.rig.screen("cancel")

    def uploads(self) -> dict[str, float]:
        folder = self.rig.dir / "data" / "PrusaLink gcodes"
        return {p.name: p.stat().st_mtime for p in folder.iterdir()
                if p.name.startswith("lq-") and not p.name.startswith("lq-script-")}

    @property
    def freeze(self) -> Callable[[], None]:
        return self.rig.network_down  # PrusaLink and the printer carry on, out of reach

    @property
    def thaw(self) -> Callable[[], None]:
        return self.rig.network_up

    def go_away(self) -> None:
        self.rig.power_cut()

    def come_back(self) -> None:
        self.rig.power_on()
        self.rig.wait_idle()
