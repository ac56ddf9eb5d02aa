"""The farm view: what `/lanqueue/farm` costs with a big queue, and how soon a node switched off
is shown off.

    python bench/farm_bench.py                  # 10 and 1000 jobs, 3 nodes
    python bench/farm_bench.py --jobs 10,3000 --rounds 30

Real `lanqueue serve` processes (virtual printers) on loopback sharing the LAN queue `farm` with
static peers. Jobs go to node A's local queue (the sample PrusaSlicer file, so every job has an
estimate and the timeline computes an end for each). Figures:

- `/lanqueue/farm` on A: p50 / p95 latency and answer size (every card plus each queue's timeline),
  as-is and as a ratio to the first (baseline) job count; `state/get` alongside for scale;
- off after kill: node C is killed (SIGKILL) while A's farm view is watched; time until A's
  `/lanqueue/farm` shows C `off` (summary requests fail twice in a row, once a second).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import API_KEY, CP, NodeProcess  # noqa: E402 - after the path is set
from lan_helpers import cluster_ports, lan_args, peers_online, wait  # noqa: E402

H = {"X-Api-Key": API_KEY}
SAMPLE = ROOT / "lanqueue" / "samples" / "prusaslicer.gcode"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(session: requests.Session, url: str, rounds: int) -> tuple[float, float, int]:
    times, size = [], 0
    for _ in range(rounds):
        start = time.perf_counter()
        r = session.get(url, timeout=30)
        times.append(time.perf_counter() - start)
        r.raise_for_status()
        size = len(r.content)
    return 1000 * statistics.median(times), 1000 * pct(times, 0.95), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", default="10,1000", help="comma-separated job counts (the first is the baseline)")
    parser.add_argument("--rounds", type=int, default=20, help="requests measured per figure")
    args = parser.parse_args()
    counts = [int(x) for x in args.jobs.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        ports = cluster_ports(3)
        nodes = [NodeProcess(Path(tmp) / f"n{i}", p, lan_args(ports, p) + ["--name", name])
                 for i, (p, name) in enumerate(zip(ports, ("alpha", "beta", "gamma"), strict=True))]
        try:
            for n in nodes:
                n.start()
            a, _, c = nodes
            wait(lambda: all(peers_online(n, 2) for n in nodes), what="peers online")
            s = requests.Session()
            s.headers.update(H)
            s.post(a.url + "/api/files/local", files={"file": ("x.gcode", SAMPLE.read_bytes())}, timeout=30).raise_for_status()
            made, base = 0, None
            print(f"farm view, 3 nodes on loopback, {args.rounds} requests per figure")
            for count in counts:
                while made < count:
                    s.post(a.url + CP + "/set/add", data={"path": "x.gcode", "jobName": f"j{made}", "jobDraft": "false"},
                           timeout=30).raise_for_status()
                    made += 1
                wait(lambda: sum(x.get("farm_state") == "on" for x in s.get(a.url + "/lanqueue/farm").json()["cards"]) == 3,
                     what="every card on")
                farm = timed(s, a.url + "/lanqueue/farm", args.rounds)
                state = timed(s, a.url + CP + "/state/get", args.rounds)
                base = base or farm[0]
                print(f"  {count:5d} jobs: /lanqueue/farm p50 {farm[0]:.1f} ms, p95 {farm[1]:.1f} ms, {farm[2] / 1024:.0f} kB "
                      f"(x{farm[0] / base:.1f} of the {counts[0]}-job figure); state/get p50 {state[0]:.1f} ms, "
                      f"{state[2] / 1024:.0f} kB")
            c_id = requests.get(c.url + "/lanqueue/peers", headers=H, timeout=5).json()["node_id"]
            c.kill()
            start = time.monotonic()
            wait(lambda: any(x["node_id"] == c_id and x["farm_state"] == "off"
                             for x in s.get(a.url + "/lanqueue/farm").json()["cards"]), step=0.05, what="gamma off")
            print(f"  gamma killed -> shown off on alpha's farm view after {time.monotonic() - start:.2f} s")
        finally:
            for n in nodes:
                n.kill()


if __name__ == "__main__":
    main()
