"""The Moonraker backend: a Klipper printer behind Moonraker (`moonraker://HOST:PORT`).

Live state comes from Moonraker's websocket (JSON-RPC 2.0 on `/websocket`): after
`server.connection.identify` the backend subscribes with `printer.objects.subscribe` to
`print_stats`, `virtual_sdcard`, `webhooks`, the heaters and `toolhead`, and then gets
`notify_status_update` with only what changed. Control is plain HTTP: upload
(`/server/files/upload`), `/printer/print/start|pause|resume|cancel`, and scripts through
`/printer/gcode/script`, which answers only once Klipper has run the whole script, so every
wait (M109, M190, G4, M400, TEMPERATURE_WAIT) works. With Moonraker's Spoolman link, the active
spool's material and colour are the tool's loaded filament (read on connect and when
`notify_active_spool_set` says it changed).

Why the end of our print is reported once and right: a print ends when a `print_stats` change
shows our file complete, cancelled or error after Klipper accepted the start (changes that came
before still describe the previous print). A very short print may never be seen printing, and
the same file may be printed twice in a row, so `total_duration` is subscribed too: it restarts
at every start, so each new print changes `print_stats`. When the link was
down, the backend asks `/server/history/list` on reconnect for our job's status instead;
a job that is neither running nor recorded as completed was lost (Klipper shut down, power
cut): failed, never done.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, quote

import aiohttp

from ..errors import Conflict, NotFound, Unavailable
from .backend import (
    BackendBase,
    BackendSettings,
    Capabilities,
    Filament,
    ScriptSupport,
    hashed_name,
    sha256_file,
)
from .events import PrinterState

__all__ = ["MoonrakerBackend", "outcome_of_history", "state_of"]

_LOG = logging.getLogger(__name__)

HTTP_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=None)
HEARTBEAT = 5.0
SUBSCRIBE = {
    # total_duration restarts at every start: a new print always changes print_stats, even one
    # too short for any update to show it printing, or the same file printed again
    "print_stats": ["state", "filename", "message", "total_duration"],
    "virtual_sdcard": ["progress"],
    "webhooks": ["state", "state_message"],
    "extruder": ["temperature", "target"],
    "heater_bed": ["temperature", "target"],
    "toolhead": ["extruder"],
    "configfile": ["settings"],
}

# print_stats.state -> our state, while klippy is ready
_PRINT_STATES = {
    "standby": PrinterState.OPERATIONAL,
    "complete": PrinterState.OPERATIONAL,
    "cancelled": PrinterState.OPERATIONAL,
    "error": PrinterState.OPERATIONAL,  # the failed print is over; the printer takes a new one
    "printing": PrinterState.PRINTING,
    "paused": PrinterState.PAUSED,
}
# print_stats.state after ours -> how it ended
_ENDS = {"complete": "done", "cancelled": "cancelled", "error": "failed", "standby": "failed"}
# history job status -> how it ended
_HISTORY = {"completed": "done", "cancelled": "cancelled"}


def state_of(klippy: str, print_state: str) -> PrinterState:
    """Our state for webhooks.state and print_stats.state."""
    if klippy == "ready":
        return _PRINT_STATES.get(print_state, PrinterState.OPERATIONAL)
    if klippy in ("shutdown", "error"):
        return PrinterState.ERROR
    return PrinterState.CONNECTING


def outcome_of_history(status: str) -> str:
    return _HISTORY.get(status, "failed")


class MoonrakerBackend(BackendBase):
    kind = "moonraker"
    script_support = ScriptSupport(gcode=True, waits=("M109", "M190", "M400", "G4", "TEMPERATURE_WAIT"))

    def __init__(self, base_url: str, target: str, settings: BackendSettings) -> None:
        super().__init__(target, settings)
        self.base_url = base_url.rstrip("/")
        self._http: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._remote: str | None = None
        self._started_wall = 0.0
        self._seen_ours = False  # print_stats showed our file printing since we started it
        self._status: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self._filaments: tuple[Filament, ...] = ()  # from the Spoolman link, when there is one
        self._side_tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def from_url(cls, scheme: str, url: SplitResult, settings: BackendSettings) -> MoonrakerBackend:
        host = url.hostname or ""
        port = url.port or 7125
        netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return cls(f"http://{netloc}{url.path}", netloc, settings)

    # --- life
    async def async_start(self) -> None:
        self._loop = asyncio.get_running_loop()
        headers = {"X-Api-Key": self.settings.key} if self.settings.key else {}
        self._http = aiohttp.ClientSession(headers=headers, timeout=HTTP_TIMEOUT)
        self._set_state(PrinterState.CONNECTING)
        self._task = asyncio.create_task(self._keep_connected(self._session), name="moonraker")

    async def async_close(self) -> None:
        for task in list(self._side_tasks):
            task.cancel()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._http is not None:
            await self._http.close()
            self._http = None
        self._set_state(PrinterState.OFFLINE)

    # --- HTTP
    async def _request(self, method: str, path: str, timeout: float = 30.0, **kw: Any) -> tuple[int, Any]:
        if self._http is None:
            raise Unavailable("the Moonraker backend is not started")
        try:
            async with self._http.request(method, self.base_url + path, timeout=aiohttp.ClientTimeout(
                    total=timeout, sock_connect=5), **kw) as resp:
                text = await resp.text()
                try:
                    body = json.loads(text) if text else None
                except json.JSONDecodeError:
                    body = text
                return resp.status, body
        except (TimeoutError, aiohttp.ClientError) as e:
            raise Unavailable(f"Moonraker at {self.target} cannot be reached: {e or type(e).__name__}") from None

    async def _checked(self, method: str, path: str, timeout: float = 30.0, **kw: Any) -> Any:
        status, body = await self._request(method, path, timeout, **kw)
        if status >= 400:
            message = _error_text(body)
            if status == 404:
                raise NotFound(f"Moonraker: {message}")
            if status in (400, 409):
                raise Conflict(f"Moonraker refused: {message}")
            raise Unavailable(f"Moonraker answered {status}: {message}")
        return body.get("result") if isinstance(body, dict) else body

    # --- one connected session
    async def _session(self) -> None:
        assert self._http is not None
        ws_url = self.base_url.replace("http://", "ws://", 1) + "/websocket"
        async with self._http.ws_connect(ws_url, heartbeat=HEARTBEAT) as ws:
            await self._rpc(ws, "server.connection.identify", {
                "client_name": "lanqueue", "version": "1", "type": "other", "url": "https://example.invalid"})
            reader = asyncio.create_task(self._read(ws))
            try:
                await self._subscribe(ws)
                await reader
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)

    async def _subscribe(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Subscribe once klippy is ready (it may be starting); a new klippy means a new subscribe."""
        while True:
            info = await self._checked("GET", "/server/info")
            if info.get("klippy_state") == "ready":
                break
            self._set_state(state_of(str(info.get("klippy_state")), ""), info.get("klippy_state"))
            await asyncio.sleep(0.5)
        self._status = {}
        await ws.send_json({"jsonrpc": "2.0", "method": "printer.objects.subscribe",
                            "params": {"objects": SUBSCRIBE}, "id": next(self._ids)})
        await self._reconcile()
        await self._read_spool()

    async def _read_spool(self) -> None:
        """The filament on the tool, from Moonraker's Spoolman link (its active spool), if it has
        one: the material and colour feed the queue's material matching."""
        status, body = await self._request("GET", "/server/spoolman/spool_id")
        spool_id = (body.get("result") or {}).get("spool_id") if status == 200 and isinstance(body, dict) else None
        filaments: tuple[Filament, ...] = ()
        if spool_id is not None:
            status, body = await self._request("POST", "/server/spoolman/proxy", json={
                "request_method": "GET", "path": f"/v1/spool/{int(spool_id)}", "use_v2_response": True})
            spool = ((body.get("result") or {}).get("response") or {}) if isinstance(body, dict) else {}
            filament = spool.get("filament") or {}
            if filament.get("material"):
                colour = filament.get("color_hex")
                filaments = (Filament(0, str(filament["material"]), f"#{colour}" if colour else None),)
        self._filaments = filaments
        self._capabilities = replace(self._capabilities, filaments=filaments)

    async def _rpc(self, ws: aiohttp.ClientWebSocketResponse, method: str, params: Mapping[str, Any]) -> Any:
        ident = next(self._ids)
        await ws.send_json({"jsonrpc": "2.0", "method": method, "params": params, "id": ident})
        async with asyncio.timeout(10):
            async for msg in ws:
                data = json.loads(msg.data)
                if data.get("id") == ident:
                    return data.get("result")
        raise ConnectionError("Moonraker closed the websocket")

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            if isinstance(data.get("result"), dict) and "status" in data["result"]:
                self._apply(data["result"]["status"])  # the subscribe answer: the full state
            method = data.get("method")
            if method == "notify_status_update":
                self._apply(data["params"][0])
            elif method == "notify_history_changed":
                self._on_history(data["params"][0])
            elif method == "notify_active_spool_set":
                self._spawn(self._read_spool())
            elif method == "notify_klippy_ready":
                self._spawn_resubscribe(ws)
            elif method in ("notify_klippy_shutdown", "notify_klippy_disconnected"):
                self._set_state(PrinterState.ERROR if method.endswith("shutdown") else PrinterState.CONNECTING,
                                "Klipper " + method.rsplit("_", 1)[1])
                if self.ends.open:
                    self._ended("failed", "Klipper " + method.rsplit("_", 1)[1] + " during the print")

    def _on_history(self, change: Mapping[str, Any]) -> None:
        """Moonraker's own record of a finished job: the end even when the print was too short
        for any status update to show it printing (or the same file printed twice in a row)."""
        job = change.get("job") or {}
        if change.get("action") != "finished" or not self.ends.open or job.get("filename") != self._remote:
            return
        if float(job.get("start_time") or 0) >= self._started_wall - 2:
            self._ended(outcome_of_history(str(job.get("status"))), f"Klipper: {job.get('status')}")

    def _spawn_resubscribe(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._spawn(self._subscribe(ws))

    def _spawn(self, coro: Any) -> None:
        """A side task of the session (its failure only logged: the next reconnect redoes it)."""
        task = asyncio.create_task(coro)
        self._side_tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._side_tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                _LOG.warning("moonraker %s: %s", self.target, t.exception())

        task.add_done_callback(done)

    def _apply(self, changes: Mapping[str, Any]) -> None:
        for name, fields in changes.items():
            if isinstance(fields, dict):
                self._status.setdefault(name, {}).update(fields)
        st = self._status
        klippy = str(st.get("webhooks", {}).get("state", "ready"))
        ps = st.get("print_stats", {})
        print_state, filename = str(ps.get("state", "")), ps.get("filename")
        if self.ends.open and filename == self._remote and "print_stats" in changes:
            if print_state in ("printing", "paused"):
                if print_state == "paused" and self._state is PrinterState.PRINTING:
                    self._paused()
                elif print_state == "printing" and self._state is PrinterState.PAUSED:
                    self._resumed()
                self._seen_ours = True
            elif self._seen_ours and print_state in _ENDS:
                self._ended(_ENDS[print_state], str(ps.get("message") or "Klipper reported an error"))
        new = state_of(klippy, print_state)
        self._set_state(new, st.get("webhooks", {}).get("state_message") if new is PrinterState.ERROR else None)
        progress = st.get("virtual_sdcard", {}).get("progress")
        if self.ends.open and progress is not None:
            self._done_fraction = float(progress)
        self._set_temperatures({
            key: (float(st[obj].get("temperature") or 0.0), st[obj].get("target"))
            for key, obj in (("tool0", "extruder"), ("bed", "heater_bed")) if obj in st
        })
        if "configfile" in changes:
            self._capabilities = replace(_capabilities(st["configfile"].get("settings") or {}),
                                         filaments=self._filaments)

    async def _reconcile(self) -> None:
        """After a (re)connect: did the print we started end while we could not hear it?"""
        if not self.ends.open or self._remote is None:
            return
        ps = (await self._checked("GET", "/printer/objects/query?print_stats=state,filename"))["status"]["print_stats"]
        if ps.get("filename") == self._remote and ps.get("state") in ("printing", "paused"):
            return
        history = await self._checked("GET", "/server/history/list?limit=10&order=desc")
        for job in history.get("jobs", []):
            recent = float(job.get("start_time", 0)) >= self._started_wall - 2
            if job.get("filename") == self._remote and recent and job.get("status") != "in_progress":
                self._ended(outcome_of_history(str(job.get("status"))), f"Klipper: {job.get('status')}")
                return
        if ps.get("filename") == self._remote and self._seen_ours and ps.get("state") in _ENDS:
            self._ended(_ENDS[str(ps["state"])], "Klipper reported an error")
            return
        self._ended("failed", "the print was lost on the printer (Klipper restarted or lost power)")

    # --- commands
    async def async_upload(self, path: Path, name: str) -> str:
        digest = await asyncio.get_running_loop().run_in_executor(None, sha256_file, Path(path))
        remote = hashed_name(name, digest)
        status, body = await self._request("GET", "/server/files/metadata?filename=" + quote(remote))
        if status == 200 and isinstance(body, dict) and body["result"].get("size") == Path(path).stat().st_size:
            return remote
        f = await asyncio.get_running_loop().run_in_executor(None, open, path, "rb")
        with f:
            form = aiohttp.FormData()
            form.add_field("file", f, filename=remote, content_type="application/octet-stream")
            await self._checked("POST", "/server/files/upload", timeout=600, data=form)
        return remote

    async def async_print_file(self, path: Path, name: str) -> None:
        await self._await_operational()
        remote = await self.async_upload(path, name)
        self._require_operational()
        self._remote, self._started_wall, self._seen_ours = remote, time.time(), False
        self._started(str(path), name, Path(path).stat().st_size)
        try:
            await self._checked("POST", "/printer/print/start?filename=" + quote(remote))
        except Exception:
            self.ends.end("failed", self._now())  # never started: no end to report
            self._remote = None
            raise
        # Klipper answers the start once the print is under way: every print_stats change from
        # now on is about this print (one that is over already shows as complete)
        self._seen_ours = True

    async def async_pause(self) -> None:
        await self._checked("POST", "/printer/print/pause")

    async def async_resume(self) -> None:
        await self._checked("POST", "/printer/print/resume")

    async def async_cancel(self) -> None:
        await self._checked("POST", "/printer/print/cancel")

    async def async_run_script(self, gcode: str, timeout: float = 3600.0) -> None:
        if not self._state.is_connected:
            raise Unavailable(f"The printer is not connected ({self._state.text})")
        # G4 and moves return before they run; M400 makes the answer wait for the last of them
        await self._checked("POST", "/printer/gcode/script", timeout=timeout, json={"script": gcode + "\nM400"})

    async def async_send_commands(self, lines: list[str]) -> None:
        await self.async_run_script("\n".join(lines))


def _error_text(body: Any) -> str:
    if isinstance(body, dict):
        err = body.get("error")
        return str(err.get("message") if isinstance(err, dict) else err or body)
    return str(body)[:200]


def _capabilities(settings: Mapping[str, Any]) -> Capabilities:
    """Extruder count and nozzle from Klipper's config; bed size from the steppers' ranges."""
    extruders = sorted(k for k in settings if k == "extruder" or (k.startswith("extruder") and k[8:].isdigit()))
    nozzle = (settings.get("extruder") or {}).get("nozzle_diameter")
    axes = []
    for axis in ("stepper_x", "stepper_y", "stepper_z"):
        s = settings.get(axis) or {}
        if "position_max" in s:
            axes.append(float(s["position_max"]) - float(s.get("position_min", 0)))
    bed = (axes[0], axes[1], axes[2]) if len(axes) == 3 else None
    return Capabilities(tools=max(1, len(extruders)), nozzle_diameter=float(nozzle) if nozzle else None,
                        bed_size=bed, model="Klipper")
