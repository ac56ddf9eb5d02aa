"""Printer backends (issue 12): start latency per backend, and a node's cost while it waits.

For each backend (serial virtual printer on a pty, real OctoPrint, real Moonraker+Klipper, real
PrusaLink with its firmware stand-in, the Bambu stand-in behind real mosquitto and FTPS; the
same servers the conformance tests run, see docs/printers.md) a `lanqueue serve` process drives
the printer, and two figures are taken from outside the node:

- ready -> printing: a job is queued, the node inactive and the printer idle; from sending
  `set_active` to `state/get` showing the printer's own state as Printing (for a network backend
  that is the printer's push message, after upload and start);
- node cost while printing: the node's CPU time (utime+stime from /proc) over a window while
  its printer prints a long file, as % of one core, and its resident memory.

Target: under 1 % of a core for a network backend while its printer prints.

    python bench/backend_bench.py [--cycles 5] [--window 8] [--backends serial,octoprint,moonraker]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from benchlib import pct  # noqa: E402
from conftest import CP, NodeProcess, free_port  # noqa: E402
from test_backend_conformance import HARNESSES, NO_WAIT, Rig, write_node_config  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(name: str, cycles: int, window: float) -> dict[str, float] | str:
    harness = HARNESSES[name]()
    tmp = Path(tempfile.mkdtemp(prefix=f"lqbench-{name}-"))
    try:
        harness.start(tmp)
    except BaseException as e:  # noqa: BLE001 - pytest.skip: the server is not installed here
        return f"skipped: {e}"
    config = write_node_config(harness, tmp / "node.toml")
    node = NodeProcess(tmp / "node", free_port(), ["--printer", harness.url, "--config", str(config),
                                                   "--log-level", "WARNING"])
    try:
        node.start()
        rig = Rig(harness, node)
        rig.wait_ready()
        rig.post(CP + "/automation/edit", data={"json": json.dumps(NO_WAIT)})
        latencies = []
        for i in range(cycles):
            rig.activate(False)
            rig.wait_ready()
            rig.upload(f"b{i}.gcode", harness.gcode(3))  # longer than a polled backend's poll
            job = rig.add_job(f"b{i}.gcode")
            t0 = time.monotonic()
            rig.activate()
            rig.wait(lambda job=job: rig.printing(job), 60, "printing")
            latencies.append(time.monotonic() - t0)
            rig.wait(lambda job=job: rig.counts(job) == (1, 0), 60, "done")
        rig.activate(False)
        rig.wait_ready()
        job = rig.start_job("long.gcode", harness.gcode(window + 6))
        time.sleep(1.0)  # past the start's own work
        assert node.proc is not None
        pid = node.proc.pid
        c0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(window)
        c1, t1 = cpu_seconds(pid), time.monotonic()
        rss = rss_mib(pid)
        still = rig.printer_state() == "Printing"
        return {
            "p50": pct(latencies, 0.5) * 1000, "max": max(latencies) * 1000,
            "cpu": (c1 - c0) / (t1 - t0) * 100, "rss": rss, "printing": float(still),
        }
    finally:
        node.stop()
        harness.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=5)
    ap.add_argument("--window", type=float, default=8.0, help="seconds of CPU sampling while printing")
    ap.add_argument("--backends", default=",".join(HARNESSES))
    args = ap.parse_args()
    print(f"{'backend':<10} {'ready->printing p50':>19} {'max':>8} {'node CPU':>9} {'x target':>9} {'RSS':>8}")
    for name in args.backends.split(","):
        r = measure(name, args.cycles, args.window)
        if isinstance(r, str):
            print(f"{name:<10} {r}")
            continue
        note = "" if r["printing"] else "  (print ended inside the window)"
        print(f"{name:<10} {r['p50']:>16.0f} ms {r['max']:>5.0f} ms {r['cpu']:>8.2f}% {r['cpu'] / 1.0:>8.2f}x "
              f"{r['rss']:>5.0f} MiB{note}")
    print("x target = node CPU / 1 % of a core (the target for a network backend while its printer prints)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
