"""The README's first command and docs/raspberry-pi.md, followed as written by a new user.

As root the test creates a system user (as the Pi guide does), copies the checkout to a folder
that user owns, installs into a clean venv with the user's own pip (packages from PyPI), runs
`lanqueue serve --config` (the unit's ExecStart; systemd itself is not started here), uses the
command line as the guide says, then runs the README's first command (venv, install, `lanqueue
demo`) from the folder that holds the checkout. The user and its files are removed at the end.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
USER_PATH = "/usr/local/bin:/usr/bin:/bin"
PYTHON = shutil.which("python3", path=USER_PATH) or ""  # the system's python3, as a new user types it


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "creates a user (useradd): run as root, as CI does"
    if shutil.which("useradd") is None or shutil.which("userdel") is None:
        return "needs useradd and userdel: apt-get install passwd"
    if not PYTHON:
        return f"needs the system's python3 (3.11+) on {USER_PATH}: apt-get install python3"
    probe = subprocess.run([PYTHON, "-c", "import ensurepip, sys, venv; assert sys.version_info >= (3, 11)"],
                           capture_output=True, check=False)
    if probe.returncode != 0:
        return "needs python3-venv: apt-get install python3-venv"
    return None


@pytest.fixture
def pi_user() -> Iterator[tuple[str, Path]]:
    why = _why_not()
    if why:
        pytest.skip(why)
    base = Path(tempfile.mkdtemp(prefix="lanqueue-install-"))
    base.chmod(0o755)  # the new user must reach its home below
    name = f"lq{secrets.token_hex(4)}"
    home = base / "lanqueue"
    groups = ["--groups", "dialout"] if subprocess.run(["getent", "group", "dialout"], capture_output=True,
                                                         check=False).returncode == 0 else []
    subprocess.run(["useradd", "--system", "--create-home", "--home-dir", str(home), *groups, name],
                   check=True, capture_output=True)
    try:
        yield name, home
    finally:
        subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True, check=False)
        subprocess.run(["userdel", name], capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)


def as_user(name: str, home: Path, cmd: list[str], **kw) -> subprocess.Popen[str]:
    entry = pwd.getpwnam(name)
    env = {"HOME": str(home), "PATH": USER_PATH, "LANG": "C.UTF-8",
           "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    if "PIP_INDEX_URL" in os.environ:  # a mirror the machine is configured to use
        env["PIP_INDEX_URL"] = os.environ["PIP_INDEX_URL"]
    return subprocess.Popen(cmd, user=entry.pw_uid, group=entry.pw_gid, extra_groups=[], env=env,
                            text=True, stdin=subprocess.DEVNULL, **kw)


def run_as(name: str, home: Path, cmd: list[str], timeout: float = 120, cwd: Path | None = None) -> tuple[int, str]:
    proc = as_user(name, home, cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=cwd)
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def copy_checkout(target: Path) -> None:
    """The committed tree when this is a git checkout (what a clone has), else the folder."""
    if (ROOT / ".git").exists():
        target.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    else:
        shutil.copytree(ROOT, target, ignore=shutil.ignore_patterns(".*", "*.egg-info", "__pycache__"))


def pip_install(name: str, home: Path, venv: Path, source: str, cwd: Path | None = None) -> None:
    code, out = run_as(name, home, [str(venv / "bin" / "pip"), "install", "-q", source], timeout=900, cwd=cwd)
    if code != 0 and any(s in out for s in ("NewConnectionError", "Temporary failure in name resolution",
                                             "No matching distribution found")):
        pytest.skip(f"pip cannot reach PyPI here:\n{out[-800:]}")
    assert code == 0, out


def wait_up(url: str, proc: subprocess.Popen[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, "exited"
        try:
            requests.get(url + "/api/version", timeout=1)
            return
        except requests.RequestException:
            assert time.monotonic() < deadline, f"no answer from {url}"
            time.sleep(0.2)


def test_raspberry_pi_guide_then_readme_first_command(pi_user: tuple[str, Path]) -> None:
    name, home = pi_user
    # step 1: a copy of the source the user owns, a venv, pip install
    src = home / "src"
    copy_checkout(src)
    subprocess.run(["chown", "-R", f"{name}:", str(src)], check=True)
    code, out = run_as(name, home, [PYTHON, "-m", "venv", str(home / "venv")])
    assert code == 0, out
    pip_install(name, home, home / "venv", str(src))
    lq = str(home / "venv" / "bin" / "lanqueue")
    # step 2: the config file, readable by the user only
    port = free_port()
    config = home / "lanqueue.toml"
    config.write_text(f'name = "mk3-left"\nprinter = "virtual"\nvirtual-speed = 50\nhost = "127.0.0.1"\n'
                      f'port = {port}\ndata-dir = "{home / "data"}"\nno-mdns = true\n')
    shutil.chown(config, name)
    config.chmod(0o600)
    # steps 3-4: the unit's ExecStart; its first lines carry the API key and the page's link
    node = as_user(name, home, [lq, "serve", "--config", str(config)], stdout=subprocess.PIPE,
                   stderr=subprocess.STDOUT, cwd=home)
    try:
        head = node.stdout.readline() + node.stdout.readline()  # type: ignore[union-attr]
        assert "API key" in head and f"http://localhost:{port}/?apikey=" in head, head
        wait_up(f"http://127.0.0.1:{port}", node)
        # step 5: the command line on the Pi, as the node's user with its config
        code, out = run_as(name, home, [lq, "samples", str(home / "samples")], cwd=home)
        assert code == 0, out
        code, out = run_as(name, home, [lq, "add", str(home / "samples" / "prusaslicer.gcode"), "--count", "2",
                                        "--config", str(config)], cwd=home)
        assert code == 0 and "queued prusaslicer.gcode x2" in out, out
        code, out = run_as(name, home, [lq, "status", "--config", str(config)], cwd=home)
        assert code == 0 and "prusaslicer.gcode" in out, out
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(30)
    # the README's first command, from the folder that holds the checkout (./src is not named
    # lanqueue here, so an empty ./lanqueue stands for a checkout's root seen from its parent)
    (home / "lanqueue").mkdir()
    shutil.chown(home / "lanqueue", name)
    base = free_port()
    readme = (f"cd src && {PYTHON} -m venv ~/.lanqueue && ~/.lanqueue/bin/pip install -q . && cd .. && "
              f"~/.lanqueue/bin/lanqueue demo --nodes 1 --base-port {base}")
    demo = as_user(name, home, ["sh", "-c", readme], cwd=home, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                   start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while True:
            assert demo.poll() is None, demo.stdout.read()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the demo's node did not answer"
            try:
                requests.get(f"http://127.0.0.1:{base}/api/version", timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.5)
        os.killpg(demo.pid, signal.SIGINT)
        out, _ = demo.communicate(timeout=60)
        assert "No module named" not in out and "Traceback" not in out, out
        assert f"127.0.0.1:{base}" in out
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
