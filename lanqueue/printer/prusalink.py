"""PrusaLink (Prusa MK3/MK2.5 behind a Raspberry Pi, and the same API on MK4/XL/MINI): HTTP.

The v1 API: `GET /api/v1/status` (printer state, current job id, temperatures, progress),
`GET /api/v1/info` (nozzle diameter, serial), `PUT /api/v1/files/local/NAME` to upload,
`POST` on the same path to print it, `PUT /api/v1/job/ID/pause|resume`, `DELETE
/api/v1/job/ID` to stop. Authentication is HTTP digest (user and password, realm
"Administrator"; aiohttp's DigestAuthMiddleware) or an `X-Api-Key` when no user is configured.

PrusaLink has no push channel, so the state is polled (`poll_interval`, 1 s: one small GET,
well under 1 % of a core). What a status means for our print is decided by `PrusaLinkTracker`
(pure, no I/O): a print is ours while the status names its job id; when the status stops naming
it, the printer's state says how it ended: FINISHED -> done, STOPPED -> cancelled (by us or at
the printer's screen), anything else (ERROR, IDLE after a reboot, another job) -> failed. PrusaLink
keeps FINISHED/STOPPED for about 11 s after an end, so an outage longer than that across the end
of a print reads as a lost print: failed, never done (the driver's rule: no success unless the
printer said so).

Event scripts: PrusaLink takes no G-code commands over HTTP, so a script is uploaded as a small
file and printed; the firmware's own waits (M109, M190, G4, M400) hold it until done.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, quote

import aiohttp

from ..errors import Conflict, Unavailable
from .backend import (
    BackendSettings,
    Capabilities,
    ScriptSupport,
    hashed_name,
    sha256_file,
)
from .events import PrinterState
from .remote import Outcome, RemoteBackend, url_options

__all__ = ["PrusaLinkBackend", "PrusaLinkTracker"]

_LOG = logging.getLogger(__name__)

MAX_NAME = 52  # PrusaLink refuses longer file names
STATES = {
    "IDLE": PrinterState.OPERATIONAL,
    "READY": PrinterState.OPERATIONAL,
    "FINISHED": PrinterState.OPERATIONAL,
    "STOPPED": PrinterState.OPERATIONAL,
    "PRINTING": PrinterState.PRINTING,
    "PAUSED": PrinterState.PAUSED,
    "BUSY": PrinterState.CONNECTING,
    "ATTENTION": PrinterState.ERROR,
    "ERROR": PrinterState.ERROR,
}
ENDS = {"FINISHED": ("done", ""), "STOPPED": ("cancelled", "")}


class PrusaLinkTracker:
    """Follows one job id through the statuses polled from PrusaLink."""

    def __init__(self) -> None:
        self.status: dict[str, Any] = {}
        self.job_id: int | None = None
        self.cancel_requested = False

    @property
    def printer(self) -> dict[str, Any]:
        printer = self.status.get("printer")
        return printer if isinstance(printer, dict) else {}

    @property
    def state_text(self) -> str:
        return str(self.printer.get("state", ""))

    @property
    def current_job(self) -> int | None:
        job = self.status.get("job")
        return int(job["id"]) if isinstance(job, dict) and isinstance(job.get("id"), int) else None

    def printer_state(self) -> tuple[PrinterState, str | None]:
        text = self.state_text
        state = STATES.get(text, PrinterState.ERROR)
        if self.job_id is not None and text in ("ATTENTION", "BUSY"):
            return PrinterState.PAUSED, f"the printer needs attention ({text})"
        error = f"PrusaLink reports {text}" if state is PrinterState.ERROR else None
        return state, error

    def follow(self, job_id: int) -> None:
        self.job_id, self.cancel_requested = job_id, False

    def forget(self) -> None:
        self.job_id, self.cancel_requested = None, False

    def feed(self, status: dict[str, Any]) -> list[Outcome]:
        before = self.state_text
        self.status = status
        if self.job_id is None:
            return []
        text = self.state_text
        if self.current_job == self.job_id:
            if text == "PAUSED" and before != "PAUSED":
                return [Outcome("paused")]
            if text == "PRINTING" and before == "PAUSED":
                return [Outcome("resumed")]
            return []
        kind, reason = ENDS.get(text, ("failed", f"the print was lost on the printer (PrusaLink reports {text or 'nothing'})"))
        if kind == "cancelled" and not self.cancel_requested:
            reason = "stopped at the printer"
        self.forget()
        return [Outcome(kind, reason)]

    def temperatures(self) -> dict[str, tuple[float, float | None]]:
        p = self.printer
        out: dict[str, tuple[float, float | None]] = {}
        for key, name in (("nozzle", "tool0"), ("bed", "bed")):
            if isinstance(p.get(f"temp_{key}"), int | float):
                target = p.get(f"target_{key}")
                out[name] = (float(p[f"temp_{key}"]), float(target) if isinstance(target, int | float) else None)
        return out

    def fraction(self) -> float | None:
        job = self.status.get("job")
        progress = job.get("progress") if isinstance(job, dict) else None
        return float(progress) / 100 if isinstance(progress, int | float) else None


class PrusaLinkBackend(RemoteBackend):
    """A printer behind PrusaLink (`prusalink://HOST[:PORT][?lost_after=120]`; user and password from the
    settings, or the API key as `printer_key` without a user)."""

    kind = "prusalink"
    script_support = ScriptSupport(gcode=False, waits=("M109", "M190", "G4", "M400"))
    poll_interval = 1.0
    start_timeout = 30.0  # a start answers 404 just after the upload, 409 for ~11 s after an end
    command_timeout = 15.0

    def __init__(self, base: str, settings: BackendSettings, *, lost_after: float = 120.0) -> None:
        super().__init__(base.removeprefix("http://"), settings, lost_after=lost_after)
        self.base = base
        self.tracker = PrusaLinkTracker()
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_url(cls, scheme: str, split: SplitResult, settings: BackendSettings) -> PrusaLinkBackend:
        opts = url_options(split, {"lost_after": 120.0})
        return cls(f"http://{split.hostname}:{split.port or 80}", settings, lost_after=float(opts["lost_after"]))

    # --- lifecycle
    def _make_session(self) -> aiohttp.ClientSession:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=30)
        # a connection per request: PrusaLink's server may drop an idle kept-alive connection
        # just as the client reuses it, which would read as the printer being unreachable
        kw: dict[str, Any] = {"timeout": timeout, "connector": aiohttp.TCPConnector(force_close=True)}
        if self.settings.user:
            digest = aiohttp.DigestAuthMiddleware(self.settings.user, self.settings.key or "")
            return aiohttp.ClientSession(self.base, middlewares=(digest,), **kw)
        return aiohttp.ClientSession(self.base, headers={"X-Api-Key": self.settings.key or ""}, **kw)

    async def async_start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._task is None:
            self._session = self._make_session()
            self._set_state(PrinterState.CONNECTING)
            self._task = asyncio.create_task(self._run(), name=f"prusalink {self.target}")

    async def async_close(self) -> None:
        await self._close_task()
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._set_state(PrinterState.OFFLINE)

    async def _run(self) -> None:
        delay = self.settings.reconnect_delay
        info_read = False
        while True:
            try:
                if not info_read:
                    self._read_info(await self._get("/api/v1/info"))
                    info_read = True
                self._on_status(await self._get("/api/v1/status"))
                self._reached()
                delay = self.poll_interval
            except Unavailable as e:
                _LOG.info("prusalink %s: %s", self.target, e)
                self._unreachable(str(e), self.tracker.forget)
                info_read = False
                delay = min(max(delay, self.settings.reconnect_delay) * 2, self.settings.max_reconnect_delay)
            await asyncio.sleep(delay)

    # --- HTTP
    async def _call(self, method: str, path: str, *, ok: tuple[int, ...] = (200, 204), **kw: Any) -> tuple[int, Any]:
        if self._session is None:
            raise Unavailable(f"The printer at {self.target} is not started")
        try:
            async with self._session.request(method, path, **kw) as r:
                body = await r.json(content_type=None) if r.status == 200 else None
                if r.status not in ok:
                    text = "" if body is not None else (await r.text())[:200]
                    if r.status in (401, 403):
                        raise Unavailable(f"PrusaLink refused the login ({r.status})")
                    return r.status, text
                return r.status, body
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            raise Unavailable(f"The printer at {self.target} cannot be reached: {e}") from None

    async def _get(self, path: str) -> dict[str, Any]:
        status, body = await self._call("GET", path)
        if status != 200 or not isinstance(body, dict):
            raise Unavailable(f"PrusaLink answered {status} to {path}")
        return body

    def _read_info(self, info: dict[str, Any]) -> None:
        try:
            nozzle: float | None = float(info["nozzle_diameter"])
        except (KeyError, TypeError, ValueError):
            nozzle = None
        # PrusaLink 0.8's HTTP API names neither the model nor MMU slots and their filaments
        # (only its Connect telemetry does): one tool, its filament unknown
        self._capabilities = Capabilities(tools=1, nozzle_diameter=nozzle)

    def _on_status(self, status: dict[str, Any]) -> None:
        for outcome in self.tracker.feed(status):
            self._apply(outcome)
        self._set_temperatures(self.tracker.temperatures())
        if self.ends.open:
            self._done_fraction = self.tracker.fraction()
        self._set_state(*self.tracker.printer_state())
        self._changed.set()

    # --- files and printing
    def _file_path(self, remote: str) -> str:
        return "/api/v1/files/local/" + quote(remote)

    async def _upload_bytes(self, data: bytes, remote: str) -> None:
        status, body = await self._call("GET", self._file_path(remote), ok=(200, 404))
        if status == 200 and isinstance(body, dict) and body.get("size") == len(data):
            return  # already there under its hash name
        headers = {"Content-Type": "text/x.gcode", "Overwrite": "?1"}
        status, text = await self._call("PUT", self._file_path(remote), data=data, headers=headers, ok=(201, 204))
        if status not in (201, 204):
            raise Unavailable(f"PrusaLink refused the upload ({status}): {text}")

    async def async_upload(self, path: Path, name: str) -> str:
        loop = asyncio.get_running_loop()
        digest = await loop.run_in_executor(None, sha256_file, path)
        remote = hashed_name(name, digest, max_len=MAX_NAME)
        data = await loop.run_in_executor(None, path.read_bytes)
        await self._upload_bytes(data, remote)
        return remote

    async def _start(self, remote: str) -> tuple[int, dict[str, Any]]:
        """Start `remote`, retrying the 404/409 PrusaLink answers for a moment; the job id and
        the status that names it."""
        deadline = self._now() + self.start_timeout
        while True:
            status, text = await self._call(
                "POST", self._file_path(remote), headers={"Content-Length": "0"}, ok=(204,)
            )
            if status == 204:
                break
            if status not in (404, 409) or self._now() > deadline:
                raise Conflict(f"PrusaLink refused to start {remote} ({status}): {text}")
            await asyncio.sleep(0.3)
        while self._now() < deadline:  # the print has started: a failed poll must not lose it
            try:
                body = await self._get("/api/v1/status")
            except Unavailable:
                body = {}
            job = body.get("job")
            if isinstance(job, dict) and isinstance(job.get("id"), int):
                return int(job["id"]), body
            await asyncio.sleep(0.2)
        raise Unavailable("PrusaLink accepted the start but reports no job")

    async def async_print_file(self, path: Path, name: str) -> None:
        self._require_operational()
        remote = await self.async_upload(path, name)
        job_id, status = await self._start(remote)
        self.tracker.follow(job_id)
        self._started(remote, name, path.stat().st_size)
        self._on_status(status)  # PRINTING now, not at the next poll

    async def _job_command(self, method: str, suffix: str) -> None:
        job_id = self.tracker.job_id
        if job_id is None:
            raise Conflict("No print of ours is running on the printer")
        status, text = await self._call(method, f"/api/v1/job/{job_id}{suffix}", ok=(204,))
        if status != 204:
            raise Conflict(f"PrusaLink refused ({status}): {text}")

    async def async_pause(self) -> None:
        await self._job_command("PUT", "/pause")
        await self._wait(lambda: self._state is not PrinterState.PRINTING, self.command_timeout, "pause")

    async def async_resume(self) -> None:
        await self._job_command("PUT", "/resume")
        await self._wait(lambda: self._state is not PrinterState.PAUSED, self.command_timeout, "resume")

    async def async_cancel(self) -> None:
        if not self.ends.open or self.tracker.job_id is None:
            return
        self.tracker.cancel_requested = True
        await self._job_command("DELETE", "")
        await self._wait(lambda: not self.ends.open, self.command_timeout, "stop")

    async def async_run_script(self, gcode: str) -> None:
        """Print the script as a small file; wait for its end (no print events: it is no job)."""

        async def start(name: str, data: bytes) -> None:
            await self._upload_bytes(data, name)
            self.tracker.follow((await self._start(name))[0])

        await self._print_script(gcode, start, self.tracker.forget)
