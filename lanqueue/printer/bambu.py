"""Bambu Lab printers in LAN mode: MQTT reports and commands over TLS, files by implicit FTPS.

The printer runs its own MQTT broker (TLS on 8883, user `bblp`, the LAN access code as
password): it publishes its state on `device/SERIAL/report` and takes commands on
`device/SERIAL/request`. Files go to its SD card by FTPS with TLS from the first byte (port
990). A print is started with a `print.project_file` request naming a `.3mf` on the card; a
plain G-code file is wrapped in a minimal `.gcode.3mf` (the plate's G-code and its MD5).

Why aiomqtt: it is the maintained asyncio wrapper of paho-mqtt (the best kept Python MQTT
client), so the reports arrive on the node's loop as an async iterator, with no thread of ours
and no MQTT code of our own. It is a dependency of lanqueue (the MQTT notifications use it
too); this module is imported only when a node drives a Bambu printer.

How the reports are read (`BambuTracker`, pure, no I/O): reports are partial (P1 printers send
only what changed; `pushall` asks for everything), so they are merged into one status. The
state lags a few seconds behind a start, and the previous print's FINISH stays on the printer
meanwhile, so each start carries its own `subtask_name` (the job's name and a token): a start
counts as accepted when a report names that subtask, and only reports that name it can end it.
A print that is open when the printer reports IDLE or another subtask was lost on the
printer's side (a power cut, a reboot): it ends as failed, never done. A FAILED state whose
error is Bambu's "task cancelled" code (the stop button on the screen) ends as cancelled.

Event scripts: the API takes no arbitrary G-code from us (firmware since 2025 refuses unsigned
G-code commands outside Developer Mode), so a script is printed as a small generated file and
waited for. Waits inside it are the printer's own (M109, M190, G4, M400); `M400 U1` pauses the
printer until it is resumed, which is the one wait for a person this firmware has.
"""

from __future__ import annotations

import asyncio
import ftplib
import hashlib
import io
import json
import logging
import secrets
import socket
import ssl
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult

import aiomqtt

from ..errors import Conflict, Unavailable
from .backend import (
    BackendSettings,
    Capabilities,
    Filament,
    ScriptSupport,
    UnknownBackend,
    hashed_name,
    sha256_file,
)
from .events import PrinterState
from .remote import Outcome, RemoteBackend, url_options

__all__ = ["BambuBackend", "BambuTracker", "gcode_3mf"]

_LOG = logging.getLogger(__name__)

CANCELLED_ERROR = 50348044  # 0x0300400C, "the task was cancelled": stop on the screen or by us
ACTIVE = ("PREPARE", "SLICING", "RUNNING", "PAUSE")
STATES = {
    "IDLE": PrinterState.OPERATIONAL,
    "FINISH": PrinterState.OPERATIONAL,
    "FAILED": PrinterState.OPERATIONAL,
    "PREPARE": PrinterState.PRINTING,
    "SLICING": PrinterState.PRINTING,
    "RUNNING": PrinterState.PRINTING,
    "PAUSE": PrinterState.PAUSED,
}
PLATE = "Metadata/plate_1.gcode"
LOST = "the printer is idle: the print was lost on its side (a power cut or a restart)"
# gcode_state -> how a print we follow ended (FAILED is judged by its error code: `_failure`)
ENDS = {"FINISH": Outcome("done"), "IDLE": Outcome("failed", LOST)}


# --------------------------------------------------------------------------- pure core


class BambuTracker:
    """Merges partial reports and says what they mean for the print we started, if any."""

    def __init__(self) -> None:
        self.status: dict[str, Any] = {}
        self.subtask: str | None = None  # the subtask of the print (or script) we started
        self.confirmed = False
        self.cancel_requested = False

    def expect(self, subtask: str) -> None:
        """We asked the printer to start `subtask`; reports before it shows up are stale."""
        self.subtask, self.confirmed, self.cancel_requested = subtask, False, False

    def forget(self) -> None:
        self.subtask, self.confirmed, self.cancel_requested = None, False, False

    @property
    def gcode_state(self) -> str:
        return str(self.status.get("gcode_state", ""))

    def printer_state(self) -> PrinterState:
        return STATES.get(self.gcode_state, PrinterState.OPERATIONAL)

    def feed(self, report: dict[str, Any]) -> list[Outcome]:
        """One report's `print` object in; what it changed for our print out."""
        before = self.gcode_state
        self.status.update(report)
        if self.subtask is None:
            return []
        ours = self.status.get("subtask_name") == self.subtask
        state = self.gcode_state
        if not self.confirmed:
            if ours and state in ACTIVE + ("FINISH", "FAILED"):
                self.confirmed = True
                return [Outcome("started"), *self._after_start(state)]
            return []
        if not ours:
            if state == "IDLE" or not self.status.get("subtask_name"):
                return self._end(Outcome("failed", LOST))
            return self._end(Outcome("failed", "the printer dropped the print (it now reports another one)"))
        if state == before:
            return []
        if state == "PAUSE":
            return [Outcome("paused")]
        if state == "RUNNING" and before == "PAUSE":
            return [Outcome("resumed")]
        return self._after_start(state)

    def _after_start(self, state: str) -> list[Outcome]:
        if state == "FAILED":
            return self._end(self._failure())
        end = ENDS.get(state)
        return self._end(end) if end is not None else []

    def _failure(self) -> Outcome:
        code = int(self.status.get("print_error") or 0)
        if code == CANCELLED_ERROR or self.cancel_requested:
            return Outcome("cancelled")
        return Outcome("failed", f"the printer reported error {code:#010x}" if code else "the printer reported a failure")

    def _end(self, outcome: Outcome) -> list[Outcome]:
        self.forget()
        return [outcome]

    def capabilities(self) -> Capabilities:
        trays: list[Filament] = []
        ams = self.status.get("ams") or {}
        for unit in ams.get("ams") or []:
            for tray in unit.get("tray") or []:
                try:
                    tool = int(unit.get("id", 0)) * 4 + int(tray.get("id", 0))
                except (TypeError, ValueError):
                    continue
                kind = str(tray.get("tray_type") or "") or None
                colour = str(tray.get("tray_color") or "")
                trays.append(Filament(tool, kind, f"#{colour[:6].upper()}" if len(colour) >= 6 else None))
        try:
            nozzle: float | None = float(self.status["nozzle_diameter"])
        except (KeyError, TypeError, ValueError):
            nozzle = None
        return Capabilities(tools=max(1, len(trays)), nozzle_diameter=nozzle, filaments=tuple(trays))

    def temperatures(self) -> dict[str, tuple[float, float | None]]:
        out: dict[str, tuple[float, float | None]] = {}
        for key, name in (("nozzle", "tool0"), ("bed", "bed")):
            if f"{key}_temper" in self.status:
                target = self.status.get(f"{key}_target_temper")
                out[name] = (float(self.status[f"{key}_temper"]), float(target) if target is not None else None)
        return out

    def fraction(self) -> float | None:
        pct = self.status.get("mc_percent")
        return float(pct) / 100 if isinstance(pct, int | float) else None


def gcode_3mf(gcode: bytes) -> bytes:
    """A minimal project file holding one plate's G-code (fixed timestamps: same bytes in,
    same bytes out, so the content-hash name of the upload is stable)."""
    buf = io.BytesIO()
    stamp = (2020, 1, 1, 0, 0, 0)
    types = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="gcode" ContentType="text/x.gcode"/></Types>\n'
    )
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in (
            ("[Content_Types].xml", types.encode()),
            (PLATE, gcode),
            (PLATE + ".md5", hashlib.md5(gcode).hexdigest().upper().encode()),
        ):
            z.writestr(zipfile.ZipInfo(name, stamp), data)
    return buf.getvalue()


# --------------------------------------------------------------------------- FTPS


class _ImplicitFTPS(ftplib.FTP_TLS):
    """FTP_TLS with TLS from the first byte (ftplib only does AUTH TLS on a plain socket).
    Data connections reuse the control connection's TLS session, as the printers expect."""

    def connect(self, host: str = "", port: int = 0, timeout: float = -999, source_address: Any = None) -> str:
        self.host, self.port = host, port
        if timeout != -999:
            self.timeout = timeout
        sock = socket.create_connection((host, port), self.timeout)
        self.af = sock.family
        self.sock = self.context.wrap_socket(sock, server_hostname=host)
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        return self.welcome

    def ntransfercmd(self, cmd: str, rest: Any = None) -> tuple[socket.socket, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:  # type: ignore[attr-defined]
            session = getattr(self.sock, "session", None)
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=session)
        return conn, size


# --------------------------------------------------------------------------- the backend


class BambuBackend(RemoteBackend):
    """A Bambu Lab printer in LAN mode (`bambu://HOST[:MQTT_PORT]?ftp_port=990&cafile=...&lost_after=120`)."""

    kind = "bambu"
    script_support = ScriptSupport(gcode=False, waits=("M109", "M190", "G4", "M400", "M400 U1"))
    start_timeout = 30.0  # the state lags a few seconds behind a start
    command_timeout = 15.0
    silence = 10.0  # ask for a full report after this long without one; gone after twice that

    def __init__(
        self, host: str, settings: BackendSettings, *, mqtt_port: int = 8883, ftp_port: int = 990,
        cafile: str | None = None, lost_after: float = 120.0,
    ) -> None:
        super().__init__(f"{host}:{mqtt_port}", settings, lost_after=lost_after)
        if not settings.serial or not settings.key:
            raise UnknownBackend("a Bambu printer needs its serial number and LAN access code: "
                                 "printer_serial and printer_key in the config file or environment")
        self.host, self.mqtt_port, self.ftp_port = host, mqtt_port, ftp_port
        self.serial, self.code = settings.serial, settings.key
        self.cafile = cafile
        self.tracker = BambuTracker()
        self._client: aiomqtt.Client | None = None
        self._pending: tuple[str, str, int] | None = None  # (printer file, name, size) until confirmed

    @classmethod
    def from_url(cls, scheme: str, split: SplitResult, settings: BackendSettings) -> BambuBackend:
        opts = url_options(split, {"ftp_port": 990, "lost_after": 120.0}, texts=("cafile",))
        cafile = opts.get("cafile")
        return cls(
            split.hostname or "", settings, mqtt_port=split.port or 8883, ftp_port=int(opts["ftp_port"]),
            cafile=str(cafile) if cafile else None, lost_after=float(opts["lost_after"]),
        )

    # --- lifecycle
    async def async_start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._task is None:
            self._set_state(PrinterState.CONNECTING)
            self._task = asyncio.create_task(self._run(), name=f"bambu {self.target}")

    async def async_close(self) -> None:
        await self._close_task()
        self._set_state(PrinterState.OFFLINE)

    def _tls(self) -> ssl.SSLContext:
        """The printer's certificate is signed by Bambu's own CA for its serial, not its
        address: verified against `cafile` when one is given, otherwise not verified."""
        ctx = ssl.create_default_context(cafile=self.cafile) if self.cafile else ssl.create_default_context()
        ctx.check_hostname = False
        if not self.cafile:
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    async def _run(self) -> None:
        delay = self.settings.reconnect_delay
        while True:
            try:
                async with aiomqtt.Client(
                    self.host, self.mqtt_port, username="bblp", password=self.code,
                    tls_context=self._tls(), keepalive=10, timeout=10,
                ) as client:
                    self._client = client
                    delay = self.settings.reconnect_delay
                    await self._session(client)
            except (aiomqtt.MqttError, OSError, TimeoutError) as e:
                _LOG.info("bambu %s: %s", self.target, e)
            finally:
                self._client = None
            self._unreachable("the printer cannot be reached", self.tracker.forget)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.settings.max_reconnect_delay)

    async def _session(self, client: aiomqtt.Client) -> None:
        await client.subscribe(f"device/{self.serial}/report")
        await self._request({"pushing": {"sequence_id": "0", "command": "pushall"}})
        asked = False
        messages = aiter(client.messages)
        while True:
            try:
                message = await asyncio.wait_for(anext(messages), self.silence)
            except TimeoutError:
                if asked:
                    raise TimeoutError("the printer stopped answering") from None
                asked = True
                await self._request({"pushing": {"sequence_id": "0", "command": "pushall"}})
                continue
            asked = False
            self._reached()
            self._on_report(message.payload)

    def _on_report(self, payload: Any) -> None:
        try:
            report = json.loads(payload)
        except (TypeError, ValueError):
            return
        part = report.get("print") if isinstance(report, dict) else None
        if not isinstance(part, dict):
            return
        for outcome in self.tracker.feed(part):
            if outcome.kind == "started" and self._pending is not None:
                self._started(*self._pending)
                self._pending = None
            self._apply(outcome)
        self._set_temperatures(self.tracker.temperatures())
        self._capabilities = self.tracker.capabilities()
        if self.ends.open:
            self._done_fraction = self.tracker.fraction()
        self._set_state(self.tracker.printer_state())
        self._changed.set()

    async def _request(self, payload: dict[str, Any]) -> None:
        if self._client is None:
            raise Unavailable(f"The printer at {self.target} cannot be reached")
        await self._client.publish(f"device/{self.serial}/request", json.dumps(payload))

    # --- files
    def _ftps_upload(self, data: bytes, name: str) -> None:
        ftp = _ImplicitFTPS(context=self._tls(), timeout=30)
        try:
            ftp.connect(self.host, self.ftp_port)
            ftp.login("bblp", self.code)
            ftp.prot_p()
            ftp.voidcmd("TYPE I")  # SIZE is refused in ASCII mode
            try:
                if ftp.size(name) == len(data):
                    return  # the card has these bytes under their hash name already
            except ftplib.error_perm:
                pass
            ftp.storbinary(f"STOR {name}", io.BytesIO(data))
        finally:
            try:
                if ftp.sock is not None:
                    ftp.quit()
            except (OSError, EOFError, ftplib.Error):
                pass
            ftp.close()

    async def _upload_bytes(self, data: bytes, remote: str) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(None, self._ftps_upload, data, remote)
        except (OSError, EOFError, ftplib.Error) as e:
            raise Unavailable(f"Upload to the printer at {self.target} failed: {e}") from None

    def _project(self, path: Path, name: str) -> tuple[bytes, str]:
        raw = path.read_bytes()
        if name.lower().endswith(".3mf"):
            return raw, hashed_name(name, hashlib.sha256(raw).hexdigest())
        return gcode_3mf(raw), hashed_name(name, sha256_file(path)) + ".3mf"

    async def async_upload(self, path: Path, name: str) -> str:
        data, remote = await asyncio.get_running_loop().run_in_executor(None, self._project, path, name)
        await self._upload_bytes(data, remote)
        return remote

    # --- printing
    async def _start(self, remote: str, subtask: str) -> None:
        """Ask for the print and wait until a report names its subtask (the state lags)."""
        self.tracker.expect(subtask)
        await self._request({"print": {
            "sequence_id": "0", "command": "project_file", "param": PLATE,
            "url": f"file:///sdcard/{remote}", "subtask_name": subtask, "use_ams": False,
            "timelapse": False, "bed_leveling": False, "flow_cali": False, "vibration_cali": False,
            "layer_inspect": False,
        }})
        await self._wait(lambda: self.tracker.confirmed or self.tracker.subtask != subtask,
                         self.start_timeout, "start the print")

    async def async_print_file(self, path: Path, name: str) -> None:
        self._require_operational()
        remote = await self.async_upload(path, name)
        self._pending = (remote, name, path.stat().st_size)
        try:
            await self._start(remote, f"{Path(name).stem} [{secrets.token_hex(3)}]")
        except Unavailable:
            self.tracker.forget()
            raise
        finally:
            self._pending = None

    async def async_pause(self) -> None:
        if self._state is not PrinterState.PRINTING:
            raise Conflict(f"Nothing to pause: the printer is {self._state.text}")
        await self._request({"print": {"sequence_id": "0", "command": "pause"}})
        await self._wait(lambda: self._state is not PrinterState.PRINTING, self.command_timeout, "pause")

    async def async_resume(self) -> None:
        if self._state is not PrinterState.PAUSED:
            raise Conflict(f"Nothing to resume: the printer is {self._state.text}")
        await self._request({"print": {"sequence_id": "0", "command": "resume"}})
        await self._wait(lambda: self._state is not PrinterState.PAUSED, self.command_timeout, "resume")

    async def async_cancel(self) -> None:
        if not self.ends.open:
            return
        self.tracker.cancel_requested = True
        await self._request({"print": {"sequence_id": "0", "command": "stop"}})
        await self._wait(lambda: not self.ends.open, self.command_timeout, "stop")

    async def async_run_script(self, gcode: str) -> None:
        """Print the script as a small file and wait for its end (no print events: it is no job)."""

        async def start(name: str, data: bytes) -> None:
            await self._upload_bytes(gcode_3mf(data), name + ".3mf")
            await self._start(name + ".3mf", f"script [{secrets.token_hex(3)}]")

        await self._print_script(gcode, start, self.tracker.forget)
