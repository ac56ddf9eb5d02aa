"""Real printer servers for the backend tests: OctoPrint (PyPI, its virtual printer) and
Moonraker + Klipper (PyPI Moonraker, Klipper's linux-process MCU built from the vendored source by
tests/klipper_sim.sh). Both are run as external programs on loopback only.

Where they come from (CI installs both; see .ci/run):
- OctoPrint: `LANQUEUE_OCTOPRINT` (the `octoprint` program), else /opt/lanqueue-venvs/octoprint.
- Klipper: `KLIPPER_TARBALL` or the vendored archive in ../shared/vendor/ (built once into
  `LANQUEUE_KLIPPER_CACHE`, default ~/.cache/lanqueue-klipper).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
OCTOPRINT_KEY = "LANQUEUEOCTOPRINTTESTKEY0123456"
OCTOPRINT_VENV = Path("/opt/lanqueue-venvs/octoprint")


def octoprint_program() -> str | None:
    explicit = os.environ.get("LANQUEUE_OCTOPRINT")
    if explicit:
        return explicit if Path(explicit).exists() else None
    candidate = OCTOPRINT_VENV / "bin" / "octoprint"
    return str(candidate) if candidate.exists() else shutil.which("octoprint")


def klipper_tarball() -> str | None:
    explicit = os.environ.get("KLIPPER_TARBALL")
    if explicit and Path(explicit).exists():
        return explicit
    for base in (HERE.parent.parent / "shared" / "vendor", Path("/work/shared/vendor")):
        found = sorted(base.glob("klipper-*-src.tar.gz")) if base.is_dir() else []
        if found:
            return str(found[-1])
    return None


def klipper_cache() -> Path:
    return Path(os.environ.get("LANQUEUE_KLIPPER_CACHE") or Path.home() / ".cache" / "lanqueue-klipper")


def _wait(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready after {timeout:.0f} s")


_OCTOPRINT_CONFIG = """\
server:
  firstRun: false
  onlineCheck: {enabled: false}
  pluginBlacklist: {enabled: false}
  ignoreIncompleteStartup: true
accessControl: {enabled: true}
serial:
  port: VIRTUAL
  baudrate: 115200
  autoconnect: true
  additionalPorts: []
plugins:
  virtual_printer:
    enabled: true
    throttle: 0.002
  tracking: {enabled: false}
  announcements: {enabled: false}
  softwareupdate: {check_providers: {}}
  errortracking: {enabled: false}
  gcodeviewer: {enabled: false}
"""


class OctoPrintServer:
    """One real OctoPrint on 127.0.0.1 with its virtual printer; `kill`/`start` for the tests that
    make the printer disappear and come back."""

    def __init__(self, program: str, port: int, base: Path) -> None:
        self.program, self.port, self.base = program, port, base
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def prepare(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "config.yaml").write_text(_OCTOPRINT_CONFIG)
        subprocess.run([self.program, "-b", str(self.base), "user", "add", "--password", "lanqueue-test",
                        "--admin", "admin"], check=True, capture_output=True, timeout=120)
        users = self.base / "users.yaml"
        text = users.read_text()
        users.write_text(text.replace("apikey: null", f"apikey: {OCTOPRINT_KEY}")
                         if "apikey: null" in text else text.replace("admin:\n", f"admin:\n  apikey: {OCTOPRINT_KEY}\n", 1))

    def start(self, timeout: float = 60.0) -> None:
        with open(self.base / "serve.log", "ab") as log:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(
                [self.program, "serve", "--iknowwhatimdoing", "-b", str(self.base), "--host", "127.0.0.1",
                 "--port", str(self.port)], stdout=log, stderr=subprocess.STDOUT)
        headers = {"X-Api-Key": OCTOPRINT_KEY}

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"OctoPrint exited; see {self.base / 'serve.log'}")
            r = requests.get(self.url + "/api/connection", headers=headers, timeout=2)
            return r.ok and r.json()["current"]["state"] == "Operational"

        _wait(ready, timeout, "OctoPrint")

    def api(self, method: str, path: str, **kw) -> requests.Response:
        return requests.request(method, self.url + path, headers={"X-Api-Key": OCTOPRINT_KEY}, timeout=10, **kw)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def freeze(self) -> None:
        """OctoPrint (and the virtual printer inside it) stops answering, keeping its state."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class MoonrakerServer:
    """Real Moonraker + klippy + Klipper's linux-process MCU, through tests/klipper_sim.sh."""

    SCRIPT = HERE / "klipper_sim.sh"

    def __init__(self, port: int, cache: Path) -> None:
        self.port, self.cache = port, cache
        # Unix socket paths are limited to ~108 bytes: a short run dir of its own
        self.rundir = Path(tempfile.mkdtemp(prefix="lqk", dir="/tmp"))
        self.url = f"http://127.0.0.1:{port}"

    @staticmethod
    def build(cache: Path, tarball: str) -> None:
        env = {**os.environ, "KLIPPER_TARBALL": tarball}
        subprocess.run(["bash", str(MoonrakerServer.SCRIPT), "build", str(cache)], env=env, check=True,
                       capture_output=True, timeout=900)

    def start(self, env: dict[str, str] | None = None) -> None:
        """`env`: extra settings for klipper_sim.sh (e.g. SPOOLMAN_URL)."""
        subprocess.run(["bash", str(self.SCRIPT), "start", str(self.port), str(self.rundir), str(self.cache)],
                       check=True, capture_output=True, timeout=120, env={**os.environ, **(env or {})})

    def kill(self) -> None:
        """The whole printer goes away at once (power cut): SIGKILL to MCU, klippy, Moonraker."""
        for name in ("moonraker", "klippy", "mcu"):
            pid_file = self.rundir / "run" / f"{name}.pid"
            if pid_file.exists():
                try:
                    os.kill(int(pid_file.read_text()), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        time.sleep(0.2)

    def _moonraker_pid(self) -> int:
        return int((self.rundir / "run" / "moonraker.pid").read_text())

    def freeze(self) -> None:
        """Moonraker stops answering; Klipper behind it keeps printing (a network outage)."""
        os.kill(self._moonraker_pid(), signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self._moonraker_pid(), signal.SIGCONT)

    def stop(self) -> None:
        subprocess.run(["bash", str(self.SCRIPT), "stop", str(self.rundir)], capture_output=True, timeout=60, check=False)

    def api(self, method: str, path: str, **kw) -> requests.Response:
        return requests.request(method, self.url + path, timeout=10, **kw)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.rundir, ignore_errors=True)
