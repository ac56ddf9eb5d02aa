"""The OctoPrint backend: a printer that already has OctoPrint (`octoprint://HOST:PORT`).

Control goes through OctoPrint's REST API with the `X-Api-Key` header; live state comes from its
push socket (`/sockjs/websocket`, SockJS's raw websocket transport: plain JSON messages), which
sends `current` (state flags, job, progress, temperatures, terminal log) about twice a second and
`event` messages (PrintStarted, PrintDone, PrintFailed, PrintCancelled...).

Why the end of a print is still right after a reconnect: events sent while the socket was down
are gone, so on every (re)connect the backend asks `GET /api/job`. If OctoPrint still prints our
file, nothing ended; if not, the file's own print record (`prints.last` of
`GET /api/files/local/NAME`, written by OctoPrint when a print ends) says success or failure;
no record since our start means the print was lost (OctoPrint restarted): failed, never done.

Scripts are G-code commands (`POST /api/printer/command`); OctoPrint sends them in order, one
per `ok`, so once it logs `Send:` for a marker command after an `M400`, the script has run.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, quote

import aiohttp

from ..errors import Conflict, NotFound, Unavailable
from .backend import (
    BackendBase,
    BackendSettings,
    Capabilities,
    ScriptSupport,
    UnknownBackend,
    hashed_name,
    sha256_file,
)
from .events import PrinterState

__all__ = ["OctoPrintBackend", "outcome_of_event", "state_of"]

_LOG = logging.getLogger(__name__)

HTTP_TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=5)
HEARTBEAT = 5.0  # websocket ping; a silent OctoPrint is noticed within about two of these

# OctoPrint's state flags -> our state; the first flag set wins (order matters: paused before
# printing, because OctoPrint sets `printing` false while paused but `pausing` with printing).
_FLAGS: tuple[tuple[str, PrinterState], ...] = (
    ("cancelling", PrinterState.CANCELLING),
    ("pausing", PrinterState.PAUSING),
    ("paused", PrinterState.PAUSED),
    ("printing", PrinterState.PRINTING),
    ("error", PrinterState.ERROR),
    ("ready", PrinterState.OPERATIONAL),
    ("operational", PrinterState.CONNECTING),  # operational but not ready: finishing something
)

# OctoPrint event -> how a print ended
_END_EVENTS = {"PrintDone": "done", "PrintCancelled": "cancelled", "PrintFailed": "failed"}


def state_of(flags: Mapping[str, Any]) -> PrinterState:
    """Our state for OctoPrint's `state.flags` object."""
    for flag, state in _FLAGS:
        if flags.get(flag):
            return state
    return PrinterState.OFFLINE


def outcome_of_event(kind: str, payload: Mapping[str, Any]) -> str | None:
    """"done" / "failed" / "cancelled" for an event that ends a print, else None."""
    outcome = _END_EVENTS.get(kind)
    if outcome == "failed" and payload.get("reason") == "cancelled":
        return "cancelled"
    return outcome


class OctoPrintBackend(BackendBase):
    kind = "octoprint"
    script_support = ScriptSupport(gcode=True, waits=("M109", "M190", "M400", "G4"))

    def __init__(self, base_url: str, target: str, settings: BackendSettings) -> None:
        super().__init__(target, settings)
        if not settings.key:
            raise UnknownBackend("octoprint needs its API key: printer_key in the config file or LANQUEUE_PRINTER_KEY")
        self.base_url = base_url.rstrip("/")
        self._http: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._remote: str | None = None  # OctoPrint's path of the file we print
        self._started_wall = 0.0
        self._op_started = False  # OctoPrint's PrintStarted for our print was seen
        self._markers = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[None]] = {}

    @classmethod
    def from_url(cls, scheme: str, url: SplitResult, settings: BackendSettings) -> OctoPrintBackend:
        host = url.hostname or ""
        port = url.port or 80
        netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return cls(f"http://{netloc}{url.path}", netloc, settings)

    # --- life
    async def async_start(self) -> None:
        self._loop = asyncio.get_running_loop()
        headers = {"X-Api-Key": self.settings.key or ""}
        self._http = aiohttp.ClientSession(headers=headers, timeout=HTTP_TIMEOUT)
        self._set_state(PrinterState.CONNECTING)
        self._task = asyncio.create_task(self._keep_connected(self._session), name="octoprint")

    async def async_close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._http is not None:
            await self._http.close()
            self._http = None
        self._set_state(PrinterState.OFFLINE)

    # --- HTTP
    async def _request(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        if self._http is None:
            raise Unavailable("the OctoPrint backend is not started")
        try:
            async with self._http.request(method, self.base_url + path, **kw) as resp:
                text = await resp.text()
                body = json.loads(text) if text and resp.content_type == "application/json" else text
                return resp.status, body
        except (TimeoutError, aiohttp.ClientError, json.JSONDecodeError) as e:
            raise Unavailable(f"OctoPrint at {self.target} cannot be reached: {e or type(e).__name__}") from None

    async def _checked(self, method: str, path: str, **kw: Any) -> Any:
        status, body = await self._request(method, path, **kw)
        if status == 409:
            raise Conflict(f"OctoPrint refused: {_error_text(body)}")
        if status == 404:
            raise NotFound(f"OctoPrint: {_error_text(body)}")
        if status >= 400:
            raise Unavailable(f"OctoPrint answered {status}: {_error_text(body)}")
        return body

    # --- one connected session
    async def _session(self) -> None:
        assert self._http is not None
        login = await self._checked("POST", "/api/login", json={"passive": True})
        profile = await self._request("GET", "/api/printerprofiles")
        self._capabilities = _capabilities(profile[1]) if profile[0] == 200 else Capabilities()
        ws_url = self.base_url.replace("http://", "ws://", 1) + "/sockjs/websocket"
        async with self._http.ws_connect(ws_url, heartbeat=HEARTBEAT) as ws:
            await ws.send_json({"auth": f"{login['name']}:{login['session']}"})
            await self._reconcile()
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    break
                self._on_message(json.loads(msg.data))

    async def _reconcile(self) -> None:
        """After a (re)connect: did the print we started end while we could not hear it?"""
        job = await self._checked("GET", "/api/job")
        if not self.ends.open or self._remote is None:
            return
        file_path = ((job.get("job") or {}).get("file") or {}).get("path")
        state = str(job.get("state", ""))
        if file_path == self._remote and state.startswith(("Printing", "Paused", "Pausing", "Cancelling")):
            self._op_started = True  # still ours, still going (its PrintStarted may have been missed)
            return
        status, info = await self._request("GET", "/api/files/local/" + quote(self._remote))
        last = ((info.get("prints") or {}).get("last") or {}) if status == 200 and isinstance(info, dict) else {}
        if last and float(last.get("date", 0)) >= self._started_wall - 1:
            self._ended("done" if last.get("success") else "failed", "OctoPrint recorded a failed print")
        else:
            self._ended("failed", "the print was lost on the printer (OctoPrint restarted or disconnected it)")

    def _on_message(self, message: Mapping[str, Any]) -> None:
        current = message.get("current") or message.get("history")
        if isinstance(current, dict):
            self._on_current(current)
        event = message.get("event")
        if isinstance(event, dict):
            self._on_event(str(event.get("type")), event.get("payload") or {})

    def _on_current(self, current: Mapping[str, Any]) -> None:
        state = current.get("state") or {}
        new = state_of(state.get("flags") or {})
        self._set_state(new, state.get("error") or None if new is PrinterState.ERROR else None)
        temps = current.get("temps") or []
        if temps:
            last = temps[-1]
            self._set_temperatures({
                k: (float(v.get("actual") or 0.0), v.get("target"))
                for k, v in last.items() if isinstance(v, dict) and k.startswith(("tool", "bed", "chamber"))
            })
        completion = (current.get("progress") or {}).get("completion")
        if self.ends.open and completion is not None:
            self._done_fraction = float(completion) / 100.0
        for line in current.get("logs") or ():
            for marker, fut in list(self._waiting.items()):
                if marker in line and line.startswith("Send:") and not fut.done():
                    fut.set_result(None)

    def _on_event(self, kind: str, payload: Mapping[str, Any]) -> None:
        ours = self._remote is not None and payload.get("path") == self._remote
        if kind == "PrintStarted" and ours:
            self._op_started = True
        # an end event of the previous print of the same file (PrintFailed follows
        # PrintCancelled) must not end the next one: only ends after its PrintStarted count
        ours = ours and self._op_started
        if kind == "PrintPaused" and ours:
            self._paused()
        elif kind == "PrintResumed" and ours:
            self._resumed()
        elif ours and (outcome := outcome_of_event(kind, payload)) is not None:
            self._ended(outcome, str(payload.get("error") or payload.get("reason") or ""))
        elif kind in ("Disconnected", "Error") and self.ends.open:
            self._ended("failed", str(payload.get("error") or f"OctoPrint: {kind}"))

    # --- commands
    async def async_upload(self, path: Path, name: str) -> str:
        digest = await asyncio.get_running_loop().run_in_executor(None, sha256_file, Path(path))
        remote = hashed_name(name, digest)
        status, info = await self._request("GET", "/api/files/local/" + quote(remote))
        if status == 200 and isinstance(info, dict) and info.get("size") == Path(path).stat().st_size:
            return remote  # OctoPrint has these bytes already
        f = await asyncio.get_running_loop().run_in_executor(None, open, path, "rb")
        with f:
            form = aiohttp.FormData()
            form.add_field("file", f, filename=remote, content_type="application/octet-stream")
            await self._checked("POST", "/api/files/local", data=form)
        return remote

    async def async_print_file(self, path: Path, name: str) -> None:
        await self._await_operational()
        remote = await self.async_upload(path, name)
        self._require_operational()
        self._remote, self._started_wall, self._op_started = remote, time.time(), False
        self._started(str(path), name, Path(path).stat().st_size)
        try:
            await self._checked("POST", "/api/files/local/" + quote(remote), json={"command": "select", "print": True})
        except Exception:
            self.ends.end("failed", self._now())  # never started: no end to report
            self._remote = None
            raise

    async def async_pause(self) -> None:
        await self._checked("POST", "/api/job", json={"command": "pause", "action": "pause"})

    async def async_resume(self) -> None:
        await self._checked("POST", "/api/job", json={"command": "pause", "action": "resume"})

    async def async_cancel(self) -> None:
        await self._checked("POST", "/api/job", json={"command": "cancel"})

    async def async_send_commands(self, lines: list[str]) -> None:
        await self._checked("POST", "/api/printer/command", json={"commands": lines})

    async def async_run_script(self, gcode: str, timeout: float = 600.0) -> None:
        if not self._state.is_connected:
            raise Unavailable(f"The printer is not connected ({self._state.text})")
        lines = [ln for ln in (x.split(";", 1)[0].strip() for x in gcode.splitlines()) if ln]
        marker = f"lanqueue-script-{id(self):x}-{next(self._markers)}"
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[marker] = fut
        try:
            await self.async_send_commands([*lines, "M400", f"M118 {marker}"])
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise Unavailable(f"OctoPrint did not run the script within {timeout:.0f} s") from None
        finally:
            self._waiting.pop(marker, None)


def _error_text(body: Any) -> str:
    if isinstance(body, dict):
        return str(body.get("error") or body)
    return str(body)[:200]


def _capabilities(profiles: Any) -> Capabilities:
    """The current printer profile: extruder count, nozzle, build volume."""
    for profile in (profiles.get("profiles") or {}).values() if isinstance(profiles, dict) else ():
        if not profile.get("current"):
            continue
        volume = profile.get("volume") or {}
        extruder = profile.get("extruder") or {}
        try:
            bed = (float(volume["width"]), float(volume["depth"]), float(volume["height"]))
        except (KeyError, TypeError, ValueError):
            bed = None
        return Capabilities(
            tools=int(extruder.get("count") or 1),
            nozzle_diameter=float(extruder["nozzleDiameter"]) if extruder.get("nozzleDiameter") else None,
            bed_size=bed,
            model=str(profile.get("model") or profile.get("name") or "") or None,
        )
    return Capabilities()
