"""Queues kept in etcd against LAN queues, measured in the same run on the same machine.

    python bench/etcd_bench.py                # 20 pickups, 1,000 jobs with 8 clients, 15 s idle
    python bench/etcd_bench.py --quick        # 5 pickups, 200 jobs, 5 s idle

A real etcd member (Debian's etcd-server) and real node processes with virtual printers on
loopback. Printed:
- submit -> printing: from the `set/add` request to `/api/job` saying Printing, on an idle node
  that shares both queues, p50/p95 per kind of queue;
- submissions per second with 8 clients (every one durable: fsynced in etcd, or at the LAN home);
- CPU and memory of an idle node holding the jobs (etcd: a watch and lease keep-alives only;
  LAN: heartbeats and anti-entropy with one peer).
Ratios compare the etcd queue with the LAN queue of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from benchlib import pct
from etcd_server import start_cluster
from lan_bench import CP, NO_WAIT, Node, cpu_window, next_port, wait_for

GCODE = ("M117 B\nG28\n" + "G1 X1 Y1 F6000\n" * 5).encode()


async def submit(node: Node, queue: str, path: str, name: str) -> str:
    form = {"path": path, "queue": queue, "jobDraft": "false", "count": "1", "jobName": name}
    return str((await node.call("POST", CP + "/set/add", data=form))["job_id"])


async def pickup(node: Node, queue: str, rounds: int) -> list[float]:
    """Seconds from set/add to the printer printing, one job at a time on an idle node."""
    out = []
    for i in range(rounds):
        await wait_for(lambda: _idle(node), 30, "idle printer", step=0.01)
        t0 = time.perf_counter()
        await submit(node, queue, "b.gcode", f"{queue}-pick-{i}")
        await wait_for(lambda: _printing(node), 30, "printing", step=0.002)
        out.append(time.perf_counter() - t0)
    return out


async def _idle(node: Node) -> bool:
    return (await node.printer_state()) == "Operational"


async def _printing(node: Node) -> bool:
    return (await node.printer_state()) == "Printing"


async def flood(node: Node, queue: str, jobs: int, clients: int) -> float:
    """Submissions per second with `clients` concurrent clients."""
    todo = iter(range(jobs))

    async def client() -> None:
        for i in todo:
            await submit(node, queue, "b.gcode", f"{queue}-flood-{i}")

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return jobs / (time.perf_counter() - t0)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="etcd-bench-"))
    etcd = start_cluster(tmp / "etcd")
    hosts = ",".join(e.removeprefix("http://") for e in etcd.endpoints)
    site = ["--lan", f"site=etcd://{hosts}"]
    farm = ["--lan", "farm=bench-farm-secret"]
    res: dict[str, Any] = {}
    nodes: list[Node] = []
    try:
        async with aiohttp.ClientSession() as session:
            # 1. one idle node sharing both queues: pickup latency, then submissions/s
            both = Node("both", next_port(), tmp / "both", [*site, *farm, "--virtual-speed", "1000"])
            nodes.append(both)
            both.start()
            both.session = session
            await both.wait_ready()
            await both.call("POST", CP + "/automation/edit", data={"json": json.dumps(NO_WAIT)})
            await both.upload("b.gcode", GCODE)
            await wait_for(lambda: _queue_ready(both), 30, "queues ready")
            await both.activate(True)
            for queue in ("site", "farm"):
                res[f"pickup_{queue}"] = await pickup(both, queue, args.pickups)
            await both.activate(False)
            for queue in ("site", "farm"):
                res[f"flood_{queue}"] = await flood(both, queue, args.jobs, 8)
            both.stop()
            # 2. idle cost: a node with only the etcd queue, a node with only the LAN queue (one peer)
            e = Node("etcd-only", next_port(), tmp / "e", site)
            lp = [next_port(), next_port()]
            l1 = Node("lan-only", lp[0], tmp / "l1", [*farm, "--peer", f"127.0.0.1:{lp[1]}"])
            l2 = Node("lan-peer", lp[1], tmp / "l2", [*farm, "--peer", f"127.0.0.1:{lp[0]}"])
            for n in (e, l1, l2):
                nodes.append(n)
                n.start()
                n.session = session
            for n in (e, l1, l2):
                await n.wait_ready()
            await asyncio.sleep(3)  # the etcd node loads every job; the LAN pair exchanges records
            (cpu_e, rss_e), (cpu_l, rss_l) = await cpu_window([e, l1], args.idle)
            res["idle"] = {"etcd": (cpu_e, rss_e), "lan": (cpu_l, rss_l)}
    finally:
        for n in nodes:
            n.stop()
        etcd.stop()
    return res


async def _queue_ready(node: Node) -> bool:
    state = await node.call("GET", CP + "/state/get")
    names = {q["name"]: q for q in state["queues"]}
    return "site" in names and "farm" in names and names["site"].get("link", {}).get("reachable", False)


def report(res: dict[str, Any]) -> str:
    lines = ["| what | etcd queue | LAN queue | etcd / LAN |", "|---|---|---|---|"]
    for q in (0.5, 0.95):
        e, lan = pct(res["pickup_site"], q) * 1000, pct(res["pickup_farm"], q) * 1000
        lines.append(f"| submit -> printing, p{int(q * 100)} | {e:.1f} ms | {lan:.1f} ms | x{e / lan:.2f} |")
    e, lan = res["flood_site"], res["flood_farm"]
    lines.append(f"| submissions/s, 8 clients | {e:.0f} | {lan:.0f} | x{e / lan:.2f} |")
    (ce, re_), (cl, rl) = res["idle"]["etcd"], res["idle"]["lan"]
    lines.append(f"| idle node CPU (% of a core) | {ce:.2f} | {cl:.2f} | x{ce / cl if cl else float('nan'):.2f} |")
    lines.append(f"| idle node RSS | {re_ / 1024:.0f} MiB | {rl / 1024:.0f} MiB | x{re_ / rl:.2f} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--pickups", type=int, default=None)
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--idle", type=float, default=None)
    ap.add_argument("--no-write", action="store_true", help="do not write bench/RESULTS-etcd.md")
    args = ap.parse_args()
    args.pickups = args.pickups or (5 if args.quick else 20)
    args.jobs = args.jobs or (200 if args.quick else 1000)
    args.idle = args.idle or (5.0 if args.quick else 15.0)
    res = asyncio.run(run(args))
    table = report(res)
    print(table)
    if not args.no_write:
        load = os.getloadavg()[0]
        (ROOT / "bench" / "RESULTS-etcd.md").write_text(
            f"# etcd queue against LAN queue (bench/etcd_bench.py{' --quick' if args.quick else ''})\n\n"
            f"{args.pickups} pickups, {args.jobs} jobs with 8 clients, {args.idle:.0f} s idle; one etcd member "
            f"and the nodes on this machine (2 shared cores, load average {load:.1f} at the end).\n\n{table}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
