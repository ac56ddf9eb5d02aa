"""The one printer interface the queue driver, the API and the node use, whatever the printer is.

A backend is a Marlin printer on a serial port (service.py, also the built-in virtual printer),
an OctoPrint server, a Moonraker (Klipper) server, PrusaLink or a Bambu Lab printer in LAN mode.
They all report the same states and events (events.py), so the driver's guarantees hold for every
one of them:

- the end of every print started through a backend is reported exactly once, as `PrintDone`,
  `PrintFailed` or `PrintCancelled` (`PrintEnds` below is the single place that enforces it);
- a print the printer loses on its side (power cut, cancel on its own screen, a reconnect that
  finds it idle without a record of success) ends failed or cancelled, never done;
- `state` is `OPERATIONAL` only when a new print may start.

Why event scripts have two shapes: OctoPrint and Moonraker take G-code commands, so scripts run
as commands; PrusaLink and Bambu do not, so there a script is uploaded and printed as a small
file. `ScriptSupport` says which one a backend does, and which waits work there (docs/printers.md).

`open_backend(url, settings)` maps the `--printer` URL's scheme to a backend class, importing it
only when used, so a node driving a serial printer never loads an MQTT or websocket client.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Protocol, runtime_checkable
from urllib.parse import SplitResult, urlsplit

from ..errors import Conflict, Unavailable
from .events import (
    PrintCancelled,
    PrintDone,
    PrinterEvent,
    PrinterState,
    PrintFailed,
    PrintPaused,
    PrintProgress,
    PrintResumed,
    PrintStarted,
    StateChanged,
    TemperaturesChanged,
)

__all__ = [
    "BACKENDS",
    "BackendBase",
    "BackendSettings",
    "Capabilities",
    "Filament",
    "PrintEnds",
    "PrintProgress",
    "PrinterBackend",
    "ScriptSupport",
    "UnknownBackend",
    "hashed_name",
    "open_backend",
    "parse_printer_url",
    "sha256_file",
]

_LOG = logging.getLogger(__name__)

Temperatures = dict[str, tuple[float, float | None]]
Listener = Callable[[PrinterEvent], None]


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class Filament:
    """What is loaded on one tool (or AMS/MMU slot): type as the printer names it ("PLA"), and
    colour as #RRGGBB when the printer knows it."""

    tool: int
    type: str | None = None
    colour: str | None = None


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What the printer reports about itself; None where it does not say."""

    tools: int = 1
    nozzle_diameter: float | None = None
    bed_size: tuple[float, float, float] | None = None  # x, y, z in mm
    filaments: tuple[Filament, ...] = ()
    model: str | None = None

    def materials(self) -> list[str | None]:
        """Per tool, the material name the queue's matching compares with a set's materials
        ("PLA" or "PLA_#FF0000"-style names are matched by model.py; here: type, else None)."""
        by_tool: dict[int, str | None] = {f.tool: f.type for f in self.filaments}
        return [by_tool.get(i) for i in range(self.tools)] if by_tool else []

    def to_json(self) -> dict[str, Any]:
        return {
            "tools": self.tools,
            "nozzle_diameter": self.nozzle_diameter,
            "bed_size": list(self.bed_size) if self.bed_size else None,
            "filaments": [{"tool": f.tool, "type": f.type, "colour": f.colour} for f in self.filaments],
            "model": self.model,
        }


@dataclass(frozen=True, slots=True)
class ScriptSupport:
    """How event scripts run on a backend.

    `gcode`: scripts are sent as commands (else printed as a generated file).
    `waits`: the waiting commands that hold the script until done (M109, M190, G4, M400...).
    `pause`: `@pause` lines (wait for a person) work; the driver implements them itself on every
    backend by splitting the script, so this is True everywhere today."""

    gcode: bool
    waits: tuple[str, ...] = ()
    pause: bool = True


@dataclass(frozen=True, slots=True)
class BackendSettings:
    """Everything a backend may need besides its URL; secrets come from the config file or the
    environment (`printer_key`, `printer_user`, `printer_serial`), never only from flags."""

    key: str | None = None  # OctoPrint API key, Moonraker API key, PrusaLink password, Bambu access code
    user: str | None = None  # PrusaLink user name
    serial: str | None = None  # Bambu serial number
    baudrate: int = 115200
    virtual_speed: float = 1.0
    data_dir: Path | None = None  # the node's data dir (virtual SD card, generated script files)
    reconnect_delay: float = 0.5
    max_reconnect_delay: float = 5.0


# --------------------------------------------------------------------------- the interface


@runtime_checkable
class PrinterBackend(Protocol):
    """What every printer offers the node. Events go to listeners in order, on the loop."""

    kind: str  # "serial", "virtual", "octoprint", "moonraker", "prusalink", "bambu"
    script_support: ScriptSupport

    @property
    def target(self) -> str:
        """Which printer, for people: a device path or host:port, never a secret."""
        ...

    @property
    def state(self) -> PrinterState: ...

    @property
    def error(self) -> str | None: ...

    @property
    def temperatures(self) -> Temperatures: ...

    @property
    def capabilities(self) -> Capabilities: ...

    def progress(self) -> PrintProgress | None: ...

    def add_listener(self, callback: Listener) -> Callable[[], None]: ...

    async def async_start(self) -> None:
        """Return at once; connect (and reconnect) in the background."""

    async def async_close(self) -> None: ...

    async def async_upload(self, path: Path, name: str) -> str:
        """Put the file on the printer unless it already has these bytes; returns the printer's
        name for it."""

    async def async_print_file(self, path: Path, name: str) -> None:
        """Upload if needed and start; return once the printer accepted the start. `Conflict`
        unless OPERATIONAL, `Unavailable` when the printer cannot be reached."""

    async def async_pause(self) -> None: ...

    async def async_resume(self) -> None: ...

    async def async_cancel(self) -> None: ...

    async def async_run_script(self, gcode: str) -> None:
        """Run an event script; return when the printer has done it."""

    async def async_send_commands(self, lines: list[str]) -> None: ...

    async def async_connect(self) -> None: ...

    async def async_disconnect(self) -> None: ...


# --------------------------------------------------------------------------- end of prints


class PrintEnds:
    """The one place where "the end of a print is reported exactly once" is kept.

    A backend calls `started` when the printer accepted a start and `end` whenever something
    says the print ended (a push event, a poll, a reconnect finding the printer idle); only the
    first `end` after a `started` yields an event, every later one yields nothing."""

    def __init__(self) -> None:
        self.path: str | None = None
        self.name: str | None = None
        self.started_at = 0.0

    @property
    def open(self) -> bool:
        return self.name is not None

    def started(self, path: str, name: str, now: float) -> PrintStarted:
        self.path, self.name, self.started_at = path, name, now
        return PrintStarted(path, name)

    def end(self, outcome: str, now: float, reason: str = "") -> PrinterEvent | None:
        """outcome: "done", "failed" or "cancelled"; None if this print already ended."""
        if self.name is None or self.path is None:
            return None
        path, name = self.path, self.name
        self.path = self.name = None
        if outcome == "done":
            return PrintDone(path, name, now - self.started_at)
        if outcome == "cancelled":
            return PrintCancelled(path, name)
        return PrintFailed(path, name, reason or "the print failed on the printer")


# --------------------------------------------------------------------------- shared base


class BackendBase:
    """What network backends share: listeners, state, temperatures, progress, end tracking.

    Subclasses feed what they learn through `_set_state`, `_set_temperatures`, `_paused`,
    `_resumed`, `_started` and `_ended`; those emit events only on real changes."""

    kind: ClassVar[str] = ""
    script_support: ClassVar[ScriptSupport] = ScriptSupport(gcode=True)

    def __init__(self, target: str, settings: BackendSettings) -> None:
        self._target = target
        self.settings = settings
        self._state = PrinterState.OFFLINE
        self._error: str | None = None
        self._temps: Temperatures = {}
        self._capabilities = Capabilities()
        self._listeners: list[Listener] = []
        self.ends = PrintEnds()
        self._done_fraction: float | None = None
        self._size = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- the interface's read side
    @property
    def target(self) -> str:
        return self._target

    @property
    def state(self) -> PrinterState:
        return self._state

    @property
    def error(self) -> str | None:
        return self._error

    @property
    def temperatures(self) -> Temperatures:
        return dict(self._temps)

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    def progress(self) -> PrintProgress | None:
        if not self.ends.open:
            return None
        elapsed = self._now() - self.ends.started_at
        frac = self._done_fraction
        done = int(self._size * frac) if frac is not None else 0
        remaining = elapsed * (1 - frac) / frac if frac else None
        return PrintProgress(self.ends.path or "", self.ends.name or "", done, self._size, 0, elapsed, remaining)

    def add_listener(self, callback: Listener) -> Callable[[], None]:
        self._listeners.append(callback)

        def remove() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return remove

    async def async_run_script(self, gcode: str) -> None:
        raise NotImplementedError  # each backend says how its printer takes a script

    async def async_send_commands(self, lines: list[str]) -> None:
        await self.async_run_script("\n".join(lines))

    async def async_connect(self) -> None:
        """Network backends are always connected when they can be."""

    async def async_disconnect(self) -> None:
        """Network backends keep their connection; the printer stays with its own host."""

    # --- for subclasses
    def _now(self) -> float:
        return self._loop.time() if self._loop is not None else 0.0

    def _emit(self, event: PrinterEvent | None) -> None:
        if event is None:
            return
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # noqa: BLE001 - a broken listener must not break the backend
                _LOG.exception("printer listener failed on %r", event)

    def _set_state(self, state: PrinterState, error: str | None = None) -> None:
        if state is self._state and error == self._error:
            return
        self._state, self._error = state, error
        _LOG.info("printer %s %s: %s%s", self.kind, self._target, state.text, f" ({error})" if error else "")
        self._emit(StateChanged(state, error))

    def _set_temperatures(self, temps: Temperatures) -> None:
        if temps and temps != self._temps:
            self._temps = dict(temps)
            self._emit(TemperaturesChanged(dict(temps)))

    def _started(self, path: str, name: str, size: int) -> None:
        self._size, self._done_fraction = size, 0.0
        self._emit(self.ends.started(path, name, self._now()))

    def _paused(self) -> None:
        if self.ends.open:
            self._emit(PrintPaused(self.ends.path or "", self.ends.name or ""))

    def _resumed(self) -> None:
        if self.ends.open:
            self._emit(PrintResumed(self.ends.path or "", self.ends.name or ""))

    def _ended(self, outcome: str, reason: str = "") -> None:
        self._done_fraction = None
        self._emit(self.ends.end(outcome, self._now(), reason))

    async def _keep_connected(self, session_once: Callable[[], Any]) -> None:
        """Run one connected session after another for the backend's whole life: a session ends
        when the printer or the network goes away; then wait (growing to a limit) and retry.
        Every failure shows as OFFLINE with the reason, once."""
        delay = self.settings.reconnect_delay
        while True:
            started = self._now()
            try:
                await session_once()
                reason = "the printer closed the connection"
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - any failure of the link is a reason to retry
                reason = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            self._set_state(PrinterState.OFFLINE, reason)
            if self._now() - started > 10 * delay:
                delay = self.settings.reconnect_delay  # it was up for a while: retry quickly
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.settings.max_reconnect_delay)

    async def _await_operational(self, timeout: float = 10.0) -> None:
        """A remote printer's state lags its own end-of-print event by up to a second or two
        (OctoPrint sends PrintDone while its flags still say printing): a start right after an
        end waits for OPERATIONAL a little before it is refused."""
        deadline = self._now() + timeout
        while self._state is not PrinterState.OPERATIONAL and self._state.is_connected and self._now() < deadline:
            await asyncio.sleep(0.1)
        self._require_operational()

    def _require_operational(self) -> None:
        if self._state is not PrinterState.OPERATIONAL:
            if not self._state.is_connected:
                raise Unavailable(f"The printer is not connected ({self._state.text})")
            raise Conflict(f"Cannot start a print while the printer is {self._state.text}")


# --------------------------------------------------------------------------- files


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def hashed_name(name: str, sha256: str, *, max_len: int = 64) -> str:
    """The printer-side file name: content hash first, so "does the printer have these bytes"
    is a name lookup on every backend, then the readable name (shortened, safe characters)."""
    base = PurePosixPath(name).name
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in base) or "print.gcode"
    if not stem.lower().endswith((".gcode", ".gco", ".g", ".bgcode", ".3mf")):
        stem += ".gcode"
    prefix = f"lq-{sha256[:12]}-"
    keep = max_len - len(prefix)
    if len(stem) > keep:
        suffix = PurePosixPath(stem).suffix
        stem = stem[: keep - len(suffix)] + suffix
    return prefix + stem


# --------------------------------------------------------------------------- the factory


class UnknownBackend(ValueError):
    """The `--printer` value names no backend (the command line reports it, status 2)."""


# scheme -> "module:Class", imported when used
BACKENDS: dict[str, str] = {
    "serial": "lanqueue.printer.service:PrinterService",
    "virtual": "lanqueue.printer.service:PrinterService",
    "socket": "lanqueue.printer.service:PrinterService",
    "octoprint": "lanqueue.printer.octoprint:OctoPrintBackend",
    "moonraker": "lanqueue.printer.moonraker:MoonrakerBackend",
    "prusalink": "lanqueue.printer.prusalink:PrusaLinkBackend",
    "bambu": "lanqueue.printer.bambu:BambuBackend",
}


def parse_printer_url(url: str) -> tuple[str, SplitResult]:
    """`virtual`, a bare device path, or SCHEME://... -> (scheme, split URL)."""
    url = url.strip()
    if url == "virtual" or url == "virtual://":
        return "virtual", urlsplit("virtual://")
    if "://" not in url:
        if not url:
            raise UnknownBackend("--printer is empty")
        return "serial", urlsplit("serial://" + url)  # a bare path: serial:///dev/ttyACM0
    split = urlsplit(url)
    scheme = split.scheme.lower()
    if scheme not in BACKENDS:
        raise UnknownBackend(f"unknown printer kind {scheme!r} in {url!r}; use one of {', '.join(sorted(BACKENDS))}")
    if scheme in ("octoprint", "moonraker", "prusalink", "bambu") and not split.hostname:
        raise UnknownBackend(f"{url!r} names no host; write {scheme}://HOST[:PORT]")
    if split.password:
        raise UnknownBackend("put the printer's secret in the config file or LANQUEUE_PRINTER_KEY, not in the URL")
    return scheme, split


def open_backend(url: str, settings: BackendSettings) -> PrinterBackend:
    """Build the backend for a `--printer` URL (not started)."""
    scheme, split = parse_printer_url(url)
    module_name, _, cls_name = BACKENDS[scheme].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UnknownBackend(f"the {scheme} backend is not available here: {e}") from None
    cls = getattr(module, cls_name)
    backend: PrinterBackend = cls.from_url(scheme, split, settings)
    return backend
