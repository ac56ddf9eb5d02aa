"""`lanqueue farm FILE` (this module: farmfile.py): one full node per printer, from one computer.

Network printers (OctoPrint, Moonraker, PrusaLink, Bambu) need no computer of their own, so one
machine can run a node for each. The farm file is TOML; `[defaults]` applies to every printer,
each `[[printer]]` entry is one node and takes any `lanqueue serve` option:

    [defaults]
    lan = ["farm=a-long-shared-secret"]

    [[printer]]
    name = "voron"                       # the node's name, also its mDNS name
    printer = "moonraker://10.0.0.21:7125"
    port = 5001                          # default: 5000 + position in the file

    [[printer]]
    name = "mk4"
    printer = "prusalink://10.0.0.22"
    printer_user = "maker"
    printer_key = "..."                  # secrets stay in this file (keep it private)

Each node runs as its own `lanqueue serve` process with its own data dir (default: a folder
named after the printer beside the farm file), API port and name; options reach it through a
config file written into that data dir with mode 0600, so secrets never appear on a command line.
SIGTERM or Ctrl-C stops every node (SIGTERM, a grace period, then SIGKILL).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import OPTIONS, ConfigError

__all__ = ["FarmNode", "load_farm", "run_farm"]

STOP_GRACE = 15.0
BASE_PORT = 5000
_KNOWN = {o.name for o in OPTIONS}


@dataclass(frozen=True)
class FarmNode:
    """One node of the farm: its name, data dir and the serve options written to its config."""

    name: str
    data_dir: Path
    options: dict[str, Any]

    @property
    def port(self) -> int:
        return int(self.options["port"])


def load_farm(path: Path) -> list[FarmNode]:
    """Read and check the farm file; every mistake is a ConfigError naming the entry."""
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"cannot read farm file {path}: {e}") from None
    extra = set(doc) - {"defaults", "printer"}
    if extra:
        raise ConfigError(f"farm file {path}: unknown section(s) {', '.join(sorted(extra))}; use [defaults] and [[printer]]")
    defaults = _options(doc.get("defaults", {}), "[defaults]")
    entries = doc.get("printer", [])
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"farm file {path}: no [[printer]] entries")
    nodes: list[FarmNode] = []
    for i, entry in enumerate(entries):
        where = f"[[printer]] #{i + 1}"
        opts = {**defaults, **_options(entry, where)}
        name = opts.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"farm file {path}: {where} needs a name")
        if "printer" not in opts:
            raise ConfigError(f"farm file {path}: printer {name!r} needs a printer URL")
        opts.setdefault("port", BASE_PORT + 1 + i)
        data_dir = Path(str(opts.pop("data_dir", path.parent / _slug(name)))).expanduser()
        if not data_dir.is_absolute():
            data_dir = path.parent / data_dir
        nodes.append(FarmNode(name, data_dir, opts))
    _unique(path, "name", [n.name for n in nodes])
    _unique(path, "port", [n.port for n in nodes])
    _unique(path, "data_dir", [str(n.data_dir) for n in nodes])
    return nodes


def _options(table: Any, where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table of serve options")
    out = {k.replace("-", "_"): v for k, v in table.items()}
    unknown = set(out) - _KNOWN
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {', '.join(sorted(unknown))}")
    return out


def _unique(path: Path, what: str, values: list[Any]) -> None:
    seen = set()
    for v in values:
        if v in seen:
            raise ConfigError(f"farm file {path}: two printers have the same {what} {v!r}")
        seen.add(v)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name).strip("_") or "printer"


def _toml_value(value: Any) -> str:
    """JSON strings, numbers, booleans and lists are valid TOML values as they are written."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)


def write_node_config(node: FarmNode) -> Path:
    """The node's options as a private TOML file in its data dir (secrets included)."""
    node.data_dir.mkdir(parents=True, exist_ok=True)
    target = node.data_dir / "farm-node.toml"
    text = "".join(f"{k} = {_toml_value(v)}\n" for k, v in sorted(node.options.items()))
    text += f"data_dir = {_toml_value(str(node.data_dir))}\n"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return target


def run_farm(path: Path) -> int:
    """Start every node, wait until told to stop (or every node ended), stop them all."""
    nodes = load_farm(path)
    procs: list[tuple[FarmNode, subprocess.Popen[bytes]]] = []
    stopping = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for node in nodes:
            config = write_node_config(node)
            cmd = [sys.executable, "-m", "lanqueue.cli", "serve", "--config", str(config)]
            # the farm runs no threads, so preexec_fn is safe here
            procs.append((node, subprocess.Popen(cmd, preexec_fn=_die_with_parent)))  # noqa: PLW1509
            print(f"lanqueue farm: {node.name}: {node.options['printer']} on port {node.port}", flush=True)
        while not stopping and any(p.poll() is None for _, p in procs):
            time.sleep(0.2)
        for node, p in procs:
            if p.poll() is not None and not stopping:
                print(f"lanqueue farm: {node.name} exited with status {p.returncode}", flush=True)
    finally:
        _stop_all([p for _, p in procs])
        for s, handler in old.items():
            signal.signal(s, handler)
    return 0 if stopping else 1


def _die_with_parent() -> None:
    """In the child: a SIGTERM when the farm process dies, however it dies (Linux prctl), so a
    killed farm leaves no node running on its own."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the farm's own SIGTERM handling still applies
        pass


def _stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + STOP_GRACE
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
