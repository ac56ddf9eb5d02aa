"""The command line's client side: talks to a node over its HTTP API, never to its internals."""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

__all__ = ["run", "NodeClient", "ClientError"]

CP = "/plugin/continuousprint"


class ClientError(Exception):
    pass


class NodeClient:
    """A small async client of one node (also used by the demo and the tests)."""

    def __init__(self, session: aiohttp.ClientSession, url: str, key: str) -> None:
        self.session = session
        self.url = url.rstrip("/")
        self.headers = {"X-Api-Key": key}

    async def request(self, method: str, path: str, **kw: Any) -> Any:
        async with self.session.request(method, self.url + path, headers=self.headers, **kw) as resp:
            text = await resp.text()
            data = json.loads(text) if text and resp.content_type == "application/json" else text
            if resp.status >= 400:
                message = data.get("error") if isinstance(data, dict) else data
                raise ClientError(f"{method} {path}: {resp.status} {message}")
            return data

    async def state(self) -> dict[str, Any]:
        return await self.request("GET", CP + "/state/get")

    async def set_active(self, active: bool) -> dict[str, Any]:
        return await self.request("POST", CP + "/set_active", data={"active": "true" if active else "false"})

    async def upload(self, path: Path, progress: Progress | None = None) -> dict[str, Any]:
        size = path.stat().st_size
        task = progress.add_task(f"upload {path.name}", total=size) if progress else None

        async def chunks() -> AsyncIterator[bytes]:
            with open(path, "rb") as f:
                while block := f.read(1 << 16):
                    if progress is not None and task is not None:
                        progress.update(task, advance=len(block))
                    yield block

        with aiohttp.MultipartWriter("form-data") as mp:
            part = mp.append(chunks())
            part.set_content_disposition("form-data", name="file", filename=path.name)
        return await self.request("POST", "/api/files/local", data=mp)

    async def add(self, file_path: str, count: int, queue: str, job: str | None) -> dict[str, Any]:
        """Queue an uploaded file as a new, ready job printing `count` copies."""
        form = {"path": file_path, "count": str(count), "jobDraft": "false", "queue": queue}
        if job:
            form["jobName"] = job
        return await self.request("POST", CP + "/set/add", data=form)


async def run(command: str, url: str, key: str, args: argparse.Namespace) -> int:
    console = Console()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10)) as session:
        client = NodeClient(session, url, key)
        try:
            return await _dispatch(command, client, args, console)
        except ClientError as e:
            console.print(f"[red]error:[/red] {e}")
            return 1
        except aiohttp.ClientConnectionError as e:
            console.print(f"[red]cannot reach the node at {url}:[/red] {e}")
            return 1


async def _dispatch(command: str, client: NodeClient, args: argparse.Namespace, console: Console) -> int:
    if command == "add":
        if not args.file.is_file():
            console.print(f"[red]no such file:[/red] {args.file}")
            return 1
        with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                      TransferSpeedColumn(), console=console, transient=True) as progress:
            uploaded = await client.upload(args.file, progress)
        stored = uploaded["files"]["local"]["path"]
        added = await client.add(stored, args.count, args.queue, args.job)
        console.print(f"queued {stored} x{args.count} as job {added['job_id']} in {args.queue}")
        return 0
    if command in ("start", "stop"):
        state = await client.set_active(command == "start")
        console.print(f"{'managing' if state['active'] else 'not managing'}: {state['status']}")
        return 0
    if command == "continue":
        await client.request("POST", CP + "/runner/continue")
        console.print("continuing")
        return 0
    if command == "drain":
        result = await client.request("POST", "/lanqueue/lan/drain")
        console.print(f"handed over {result.get('moved', 0)} job(s) (their new home confirmed it)")
        if result.get("unconfirmed"):
            console.print(f"[yellow]{result['unconfirmed']} job(s) were given to a peer that did not answer:[/yellow] "
                          "it learns of them from the other nodes, or from this one when it runs again")
        if result.get("kept"):
            console.print(f"[red]{result['kept']} job(s) still have this node as home:[/red] "
                          "no live peer could take them")
            return 1
        return 0
    if command == "adopt":
        result = await client.request("POST", "/lanqueue/lan/adopt", data={"node": args.node})
        console.print(f"adopted {result.get('adopted', 0)} job(s)")
        return 0
    if command == "status":
        state = await client.state()
        if args.json:
            console.print_json(json.dumps(state))
            return 0
        _print_status(console, state, await _printer_or_none(client))
        _print_lan_standing(console, (await client.request("GET", "/lanqueue/peers")).get("lan_standing") or {})
        return 0
    raise ClientError(f"unknown command {command}")


def _print_lan_standing(console: Console, standing: dict[str, Any]) -> None:
    """What the node says about its own standing in each LAN queue (issue 11: a cloned card, a
    restored image, catching up after a restart)."""
    for name, st in sorted(standing.items()):
        if st.get("state") == "identity_clash":
            console.print(f"[red]LAN queue {name}: {st.get('detail')}[/red]")
        elif st.get("state") == "syncing":
            console.print(f"[yellow]LAN queue {name}: {st.get('detail')}[/yellow]")
        if st.get("rolled_back"):
            console.print(f"[red]LAN queue {name}: {st['rolled_back']}[/red] (see the conflicts on its jobs)")


async def _printer_or_none(client: NodeClient) -> dict[str, Any] | None:
    try:
        return await client.request("GET", "/api/job")
    except ClientError:
        return None


def _estimate(s: dict[str, Any]) -> str:
    """` (1h 05m, PLA)`: the slicer's time and filament of a set, when its file says."""
    meta = s.get("gcode") or {}
    parts = []
    seconds = meta.get("estimated_time_s")
    if isinstance(seconds, (int, float)):
        hours, minutes = divmod(int(seconds) // 60, 60)
        parts.append(f"{hours}h {minutes:02d}m" if hours else f"{minutes}m")
    types = [t for t in meta.get("filament_type") or [] if isinstance(t, str)]
    if types:
        parts.append("+".join(dict.fromkeys(types)))
    return f" ({', '.join(parts)})" if parts else ""


def _print_status(console: Console, state: dict[str, Any], job: dict[str, Any] | None) -> None:
    colour = {"NORMAL": "green", "NEEDS_ACTION": "yellow", "ERROR": "red"}.get(state["statusType"], "white")
    console.print(f"[bold]{'managing' if state['active'] else 'not managing'}[/bold] "
                  f"[{colour}]{state['status']}[/{colour}]  profile {state['profile']}")
    if not state["active"]:
        console.print("  `lanqueue start` starts managing the queue")
    elif state["statusType"] == "NEEDS_ACTION":
        console.print("  `lanqueue continue` once the bed is clear")
    drives = state.get("printer")
    if drives:
        console.print(f"drives: {drives['backend']} printer {drives['target']} ({drives['state']})")
    if job:
        progress = job.get("progress") or {}
        done = progress.get("completion")
        console.print(f"printer: {job.get('state')}"
                      + (f", {job['job']['file']['name']} {done:.0f}%" if done is not None else ""))
    for queue in state["queues"]:
        table = Table(title=f"queue {queue['name']}", title_justify="left")
        for col in ("id", "name", "runs left", "sets", "state"):
            table.add_column(col)
        for j in queue["jobs"]:
            sets = ", ".join(f"{s['path']} {s['remaining']}/{s['count']}{_estimate(s)}" for s in j["sets"])
            flags = []
            if j.get("draft"):
                flags.append("draft")
            if j.get("acquired"):
                flags.append(f"printing on {j.get('acquired_by_name') or j.get('acquired_by_') or 'this node'}")
            table.add_row(str(j["id"])[:8], j["name"], f"{j['remaining']}/{j['count']}", sets, ", ".join(flags))
        console.print(table)
        peers = queue.get("peers") or {}
        if isinstance(peers, dict) and peers:
            ptable = Table(title="peers", title_justify="left")
            for col in ("name", "status", "profile"):
                ptable.add_column(col)
            for p in peers.values():
                profile = p.get("profile")
                ptable.add_row(p.get("name", "?"), p.get("status", "?"), profile.get("name", "") if isinstance(profile, dict) else str(profile))
            console.print(ptable)
