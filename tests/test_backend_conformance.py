"""One conformance suite for every printer backend, through a real `lanqueue serve` process.

Each backend is a `Harness`: the real printer server (or the serial virtual printer as its own
process on a pty), the `--printer` URL and secret the node gets, a G-code file that prints for
about N seconds there, and the printer-side actions the suite needs (fail a print, cancel at the
printer's own screen/API, vanish, come back). Adding a backend is one entry in HARNESSES.

The steps run in order on one node per backend, and after each one the counts that `state/get`
and `history/get` show are checked: a copy counts once, when the printer reports it finished;
a failed, cancelled or lost print never counts; every end is recorded exactly once.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from backend_servers import (
    OCTOPRINT_KEY,
    MoonrakerServer,
    OctoPrintServer,
    klipper_cache,
    klipper_tarball,
    octoprint_program,
)
from bambu_rig import BambuHarness
from conftest import API_KEY, CP, NodeProcess, free_port
from prusalink_rig import PrusaLinkHarness

pytestmark = pytest.mark.slow

NO_WAIT = {  # no "wait for a person" between prints
    "scripts": {"clear": "M117 lanqueue clear"},
    "preprocessors": {},
    "events": {"continuousprint_success": [{"script": "clear", "preprocessor": ""}]},
}


class Harness:
    """A printer for the suite; subclasses fill in what differs per backend."""

    name = ""
    url = ""
    key: str | None = None

    def start(self, tmp: Path) -> None: ...

    def close(self) -> None: ...

    def gcode(self, seconds: float) -> str:
        raise NotImplementedError

    def failing_gcode(self) -> str:
        """A file that makes the printer fail partway (default: a long file; `fail_now` fails it)."""
        return self.gcode(8)

    def before_failure(self) -> None: ...

    def fail_now(self) -> None: ...

    def after_failure(self) -> None: ...

    cancel_at_printer: Callable[[], None] | None = None

    def uploads(self) -> dict[str, float] | None:
        """Files on the printer named `lq-...` with their upload time; None where the node
        streams the file itself (nothing is uploaded)."""
        return None

    # the printer's host stops answering for a while but keeps its print (a network outage);
    # None where that cannot happen (a serial cable is there or it is not)
    freeze: Callable[[], None] | None = None
    thaw: Callable[[], None] | None = None

    def go_away(self) -> None:
        raise NotImplementedError

    def come_back(self) -> None:
        raise NotImplementedError


class SerialHarness(Harness):
    """`lanqueue virtual-printer` as its own process on a pty, reached as serial://LINK; the
    link is re-pointed when the printer process is replaced (like /dev/serial/by-id/)."""

    name = "serial"

    def start(self, tmp: Path) -> None:
        self.link = tmp / "ttyLQ"
        self.url = f"serial://{self.link}"
        self.proc: subprocess.Popen | None = None
        self._spawn([])

    def _spawn(self, extra: list[str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "lanqueue.cli", "virtual-printer", "--speed", "1", *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        path = self.proc.stdout.readline().strip()
        assert path, "the virtual printer printed no path"
        tmp_link = self.link.with_suffix(".new")
        tmp_link.unlink(missing_ok=True)
        tmp_link.symlink_to(os.path.realpath(path))
        tmp_link.replace(self.link)

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        self._kill()

    def gcode(self, seconds: float) -> str:
        steps = max(1, int(seconds / 0.1))
        return "M117 start\n" + "G4 P100\n" * steps + "M117 end\n"

    def before_failure(self) -> None:
        self._kill()
        self._spawn(["--thermal-runaway-after", "40"])  # the firmware halts 40 commands in

    def after_failure(self) -> None:
        self._kill()
        self._spawn([])

    def go_away(self) -> None:
        self._kill()  # the USB cable is pulled: the port vanishes

    def come_back(self) -> None:
        self._spawn([])


class OctoPrintHarness(Harness):
    name = "octoprint"
    key = OCTOPRINT_KEY

    def start(self, tmp: Path) -> None:
        program = octoprint_program()
        if program is None:
            pytest.skip("OctoPrint is not installed: python3 -m venv /opt/lanqueue-venvs/octoprint && "
                        "/opt/lanqueue-venvs/octoprint/bin/pip install octoprint==1.11.8 (or set LANQUEUE_OCTOPRINT)")
        self.server = OctoPrintServer(program, free_port(), tmp / "octoprint")
        self.server.prepare()
        self.server.start()
        self.url = f"octoprint://127.0.0.1:{self.server.port}"

    def close(self) -> None:
        self.server.stop()

    def gcode(self, seconds: float) -> str:
        # the virtual printer simulates a dwell by sleeping: G4 P100 is 0.1 s
        return "M117 start\n" + "G4 P100\n" * max(1, int(seconds / 0.1)) + "M117 end\n"

    def fail_now(self) -> None:
        r = self.server.api("POST", "/api/printer/command", json={"commands": ["!!DEBUG:mintemp_error"]})
        assert r.status_code == 204, r.text

    def after_failure(self) -> None:
        self._reconnect()

    def _reconnect(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            state = self.server.api("GET", "/api/connection").json()["current"]["state"]
            if state == "Operational":
                return
            if state.startswith(("Offline", "Error", "Closed")):
                self.server.api("POST", "/api/connection", json={"command": "connect", "port": "VIRTUAL"})
            time.sleep(0.5)
        raise AssertionError("OctoPrint did not reconnect to its printer")

    def _cancel(self) -> None:
        r = self.server.api("POST", "/api/job", json={"command": "cancel"})
        assert r.status_code == 204, r.text

    cancel_at_printer = property(lambda self: self._cancel)  # type: ignore[assignment]
    freeze = property(lambda self: self.server.freeze)  # type: ignore[assignment]
    thaw = property(lambda self: self.server.thaw)  # type: ignore[assignment]

    def uploads(self) -> dict[str, float] | None:
        files = self.server.api("GET", "/api/files/local").json()["files"]
        return {f["name"]: f["date"] for f in files if f["name"].startswith("lq-")}

    def go_away(self) -> None:
        self.server.kill()

    def come_back(self) -> None:
        self.server.start()


class MoonrakerHarness(Harness):
    name = "moonraker"

    def start(self, tmp: Path) -> None:
        tarball = klipper_tarball()
        if tarball is None:
            pytest.skip("Klipper source missing: set KLIPPER_TARBALL to klipper-<rev>-src.tar.gz "
                        "(the project keeps one in ../shared/vendor/)")
        if not all(shutil.which(tool) for tool in ("gcc", "make", "curl", "bc")):
            pytest.skip("building Klipper needs gcc, make, curl and bc (apt-get install build-essential curl bc)")
        cache = klipper_cache()
        MoonrakerServer.build(cache, tarball)
        self.server = MoonrakerServer(free_port(), cache)
        self.server.start()
        self.url = f"moonraker://127.0.0.1:{self.server.port}"

    def close(self) -> None:
        self.server.cleanup()

    def gcode(self, seconds: float) -> str:
        # Klipper runs a dwell in the motion queue: G4 then M400 holds the file that long
        return "M117 start\n" + "G4 P200\nM400\n" * max(1, int(seconds / 0.2)) + "M117 end\n"

    def failing_gcode(self) -> str:
        # out of range for [extruder] max_temp: Klipper stops the print with an error
        return self.gcode(1.5) + "M104 S999\n" + self.gcode(5)

    def _cancel(self) -> None:
        assert self.server.api("POST", "/printer/print/cancel").ok

    cancel_at_printer = property(lambda self: self._cancel)  # type: ignore[assignment]
    # only Moonraker stops answering: Klipper keeps printing, as behind a network outage
    freeze = property(lambda self: self.server.freeze)  # type: ignore[assignment]
    thaw = property(lambda self: self.server.thaw)  # type: ignore[assignment]

    def uploads(self) -> dict[str, float] | None:
        files = self.server.api("GET", "/server/files/list").json()["result"]
        return {f["path"]: f["modified"] for f in files if f["path"].startswith("lq-")}

    def go_away(self) -> None:
        self.server.kill()

    def come_back(self) -> None:
        self.server.start()


HARNESSES: dict[str, Callable[[], Harness]] = {
    "serial": SerialHarness,
    "octoprint": OctoPrintHarness,
    "moonraker": MoonrakerHarness,
    "prusalink": PrusaLinkHarness,
    "bambu": BambuHarness,
}


# --------------------------------------------------------------------------- the node side


class Rig:
    """A harness and the real node process driving it, with the client calls the steps use."""

    def __init__(self, harness: Harness, node: NodeProcess) -> None:
        self.harness, self.node = harness, node
        self.http = requests.Session()
        self.http.headers["X-Api-Key"] = API_KEY

    def get(self, path: str) -> object:
        r = self.http.get(self.node.url + path, timeout=10)
        assert r.ok, r.text
        return r.json()

    def post(self, path: str, **kw) -> requests.Response:
        r = self.http.post(self.node.url + path, timeout=60, **kw)
        assert r.status_code < 300, f"{path}: {r.status_code} {r.text}"
        return r

    def upload(self, name: str, text: str) -> None:
        self.post("/api/files/local", files={"file": (name, text.encode())})

    def add_job(self, path: str, count: int = 1) -> int:
        r = self.post(CP + "/set/add", data={"path": path, "count": str(count), "jobName": path, "jobDraft": "false"})
        return int(r.json()["job_id"])

    def state(self) -> dict:
        return self.get(CP + "/state/get")  # type: ignore[return-value]

    def job(self, job_id: int) -> dict:
        for q in self.state()["queues"]:
            for j in q["jobs"]:
                if j["id"] == job_id:
                    return j
        raise AssertionError(f"job {job_id} not in state/get")

    def runs(self, path: str) -> list[str]:
        """Results of the finished runs of `path`, oldest first."""
        runs = self.get(CP + "/history/get")
        return [r["result"] for r in reversed(runs) if r["set_path"] == path and r["end"] is not None]  # type: ignore[arg-type]

    def activate(self, active: bool = True) -> None:
        self.post(CP + "/set_active", data={"active": "true" if active else "false"})

    def printer_state(self) -> str:
        return self.state()["printer"]["state"]

    def wait(self, predicate: Callable[[], object], timeout: float = 60.0, what: str = "") -> object:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"not reached in {timeout:.0f} s: {what}; state/get: {json.dumps(self.state())[:1500]}")

    def printing(self, job_id: int) -> bool:
        """The printer prints this job's set (not the end of the one before)."""
        set_id = self.job(job_id)["sets"][0]["id"]
        active = [q.get("active_set") for q in self.state()["queues"]]
        return set_id in active and self.printer_state() == "Printing"

    def start_job(self, path: str, text: str, count: int = 1) -> int:
        """Upload, queue and activate once the printer is idle; returns once it prints the job."""
        self.wait_ready()
        self.upload(path, text)
        job = self.add_job(path, count)
        self.activate()
        self.wait(lambda: self.printing(job), 60, f"printing {path}")
        return job

    def wait_ready(self, timeout: float = 60.0) -> None:
        self.wait(lambda: self.printer_state() == "Operational", timeout, "printer operational")

    def counts(self, job_id: int) -> tuple[int, int]:
        """(copies done, copies left) of the job's only set."""
        s = self.job(job_id)["sets"][0]
        return s["count"] - s["remaining"], s["remaining"]


def write_node_config(harness: Harness, path: Path) -> Path:
    """The node's config file: the printer's secret, and what else the harness names (the
    PrusaLink user, the Bambu serial number), never on the command line."""
    lines = [("printer_key", harness.key)] if harness.key else []
    lines += list(getattr(harness, "config", ()))
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in lines))
    return path


@pytest.fixture(scope="module", params=list(HARNESSES))
def rig(request, tmp_path_factory):
    harness = HARNESSES[request.param]()
    tmp = tmp_path_factory.mktemp(request.param)
    harness.start(tmp)
    config = write_node_config(harness, tmp / "node.toml")
    node = NodeProcess(tmp / "node", free_port(), ["--printer", harness.url, "--config", str(config)])
    try:
        node.start()
        r = Rig(harness, node)
        r.wait_ready()
        r.post(CP + "/automation/edit", data={"json": json.dumps(NO_WAIT)})
        r.post(CP + "/driver/edit", data={"json": json.dumps({"max_retries": 0})})
        yield r
    finally:
        node.stop()
        harness.close()


# --------------------------------------------------------------------------- the steps


def test_node_names_the_backend_it_drives(rig):
    printer = rig.state()["printer"]
    assert printer["backend"] == rig.harness.name
    assert printer["target"]
    if rig.harness.key:  # the secret is in no answer
        assert rig.harness.key not in json.dumps(rig.state())


def test_print_to_completion_counts_each_copy_once(rig):
    rig.upload("done.gcode", rig.harness.gcode(0.5))
    job = rig.add_job("done.gcode", count=2)
    rig.activate()
    rig.wait(lambda: rig.counts(job) == (2, 0), 90, "two copies printed")
    time.sleep(1.0)  # a late duplicate end would show here
    assert rig.counts(job) == (2, 0)
    assert rig.runs("done.gcode") == ["success", "success"]
    rig.wait(lambda: not rig.state()["active"] or rig.state()["status"] != "Printing", 30, "driver idle")
    uploads = rig.harness.uploads()
    if uploads is not None:  # the second copy found the bytes on the printer: one upload, by hash
        done = [name for name in uploads if name.endswith("-done.gcode")]
        assert len(done) == 1, uploads
        before = uploads[done[0]]
        job = rig.add_job("done.gcode", count=1)
        rig.wait(lambda: rig.counts(job) == (1, 0), 90, "a third copy printed")
        assert rig.harness.uploads() == uploads, "a file the printer has was not sent again"
        assert uploads[done[0]] == before


def test_pause_and_resume_then_it_counts(rig):
    job = rig.start_job("pause.gcode", rig.harness.gcode(6))
    rig.post("/api/job", json={"command": "pause", "action": "pause"})
    rig.wait(lambda: rig.printer_state() == "Paused", 30, "paused")
    time.sleep(1.0)
    assert rig.counts(job) == (0, 1), "a paused print does not count"
    rig.post("/api/job", json={"command": "pause", "action": "resume"})
    rig.wait(lambda: rig.counts(job) == (1, 0), 90, "resumed print finished and counted")
    assert rig.runs("pause.gcode") == ["success"]


def _cancel_step(rig, name: str, cancel: Callable[[], None]) -> None:
    job = rig.start_job(name, rig.harness.gcode(10))
    time.sleep(0.5)
    cancel()
    rig.wait(lambda: rig.runs(name) == ["aborted"], 60, "cancelled print recorded as aborted")
    time.sleep(1.0)
    assert rig.runs(name) == ["aborted"]
    assert rig.counts(job) == (0, 1)
    rig.activate(False)
    rig.post(CP + "/job/rm", data={"queue": "local", "job_ids": str(job)})
    rig.wait_ready()


def test_cancel_through_the_node_never_counts(rig):
    _cancel_step(rig, "cancel.gcode", lambda: rig.post("/api/job", json={"command": "cancel"}))


def test_cancel_at_the_printer_never_counts(rig):
    if rig.harness.cancel_at_printer is None:
        pytest.skip(f"{rig.harness.name}: the printer has no screen or API of its own to cancel from")
    _cancel_step(rig, "screen.gcode", rig.harness.cancel_at_printer)


def test_failure_on_the_printer_never_counts(rig):
    rig.harness.before_failure()
    rig.wait_ready()
    job = rig.start_job("fail.gcode", rig.harness.failing_gcode())
    rig.harness.fail_now()
    rig.wait(lambda: rig.runs("fail.gcode") == ["failure"], 60, "failure recorded")
    time.sleep(1.0)
    assert rig.runs("fail.gcode") == ["failure"]
    assert rig.counts(job) == (0, 1)
    rig.activate(False)
    rig.post(CP + "/job/rm", data={"queue": "local", "job_ids": str(job)})
    rig.harness.after_failure()
    rig.wait_ready()


def test_printer_vanishes_mid_print_and_comes_back(rig):
    job = rig.start_job("vanish.gcode", rig.harness.gcode(6))
    time.sleep(0.5)
    rig.harness.go_away()
    rig.wait(lambda: rig.printer_state() not in ("Printing", "Operational", "Paused"), 30, "node sees the printer gone")
    assert rig.counts(job) == (0, 1)
    # a serial port that vanished ends the print at once; a network printer may still be printing
    # behind a broken link, so its end is decided when it answers again
    rig.harness.come_back()
    rig.wait(lambda: rig.runs("vanish.gcode"), 60, "the lost print ended")
    assert rig.runs("vanish.gcode") in (["failure"], ["aborted"]), "a lost print is never a success"
    assert rig.counts(job) == (0, 1)
    rig.wait_ready(90)
    rig.activate()
    rig.wait(lambda: rig.counts(job) == (1, 0), 90, "the copy printed after the printer came back")
    time.sleep(1.0)
    runs = rig.runs("vanish.gcode")
    assert runs.count("success") == 1 and len(runs) == 2, runs


def test_link_lost_while_printing_the_print_goes_on_and_counts_once(rig):
    if rig.harness.freeze is None or rig.harness.thaw is None:
        pytest.skip(f"{rig.harness.name}: no link that can drop while the printer keeps printing")
    job = rig.start_job("outage.gcode", rig.harness.gcode(6))
    rig.harness.freeze()
    try:
        rig.wait(lambda: rig.printer_state() == "Offline", 30, "node sees the printer unreachable")
        assert rig.runs("outage.gcode") == [] and rig.counts(job) == (0, 1), "unreachable is not ended"
    finally:
        rig.harness.thaw()
    rig.wait(lambda: rig.counts(job) == (1, 0), 90, "the print that went on counted when seen finished")
    time.sleep(1.0)
    assert rig.runs("outage.gcode") == ["success"]
