"""PrinterService: what the node, the queue driver and the API use to run one printer.

It joins the pure protocol core (protocol.py) to the serial link (transport.py): bytes in ->
`receive_data` -> events to listeners; after every input it writes whatever `next_line()` allows.
A timer ticks the core for timeouts. The service never gives up on the port: it reconnects
forever with backoff and reports what happened through `state`, `error` and events.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import SplitResult

from ..errors import Conflict, NotFound, Unavailable
from .backend import BackendSettings, Capabilities, PrintProgress, ScriptSupport
from .events import (
    LocalProtocolError,
    PrinterEvent,
    PrinterState,
    RemoteProtocolError,
    ScriptDone,
    SdFilesListed,
    StateChanged,
)
from .protocol import FirmwareProtocol, Timeouts
from .stream import GcodeFile
from .transport import SerialLink

if TYPE_CHECKING:
    from .virtual import VirtualMarlin
    from .virtual_pty import VirtualPrinterPty

__all__ = ["PrinterService", "PrintProgress"]

_LOG = logging.getLogger(__name__)
TICK = 0.05


class PrinterService:
    """One printer: connection, printing, scripts, pause/resume/cancel, emergency stop.

    `port` is a device path, `socket://host:port`, or "virtual" (an in-process virtual Marlin on
    a pty, reached through the same serial transport as a real printer). This is the serial
    backend of the printer interface (backend.py): the host streams the file line by line, so
    "upload" is a no-op and scripts are G-code commands.
    """

    script_support: ClassVar[ScriptSupport] = ScriptSupport(gcode=True, waits=("M109", "M190", "M400", "G4"))

    @classmethod
    def from_url(cls, scheme: str, url: SplitResult, settings: BackendSettings) -> PrinterService:
        """`virtual`, `serial:///dev/ttyACM0` (or the bare path) or `socket://host:port`."""
        port = "virtual" if scheme == "virtual" else url.geturl() if scheme == "socket" else url.path
        return cls(
            port,
            settings.baudrate,
            virtual_speed=settings.virtual_speed,
            sd_dir=settings.data_dir / "virtual-sd" if settings.data_dir is not None else None,
        )

    def __init__(
        self,
        port: str,
        baudrate: int = 115200,
        *,
        virtual_speed: float = 1.0,
        sd_dir: Path | None = None,
        cancel_script: str | None = None,
        pipelined: bool = False,
        timeouts: Timeouts | None = None,
        reconnect_delay: float = 0.5,
        max_reconnect_delay: float = 10.0,
        virtual_model: VirtualMarlin | None = None,
    ) -> None:
        self.port = port
        self.baudrate = baudrate
        self.virtual_speed = virtual_speed
        self.sd_dir = sd_dir
        self.pipelined = pipelined
        self.core = FirmwareProtocol(cancel_script=cancel_script, pipelined=pipelined, timeouts=timeouts)
        self.virtual: VirtualPrinterPty | None = None
        self._virtual_model = virtual_model
        self._reconnect_delay = reconnect_delay
        self._max_reconnect_delay = max_reconnect_delay
        self._listeners: list[Callable[[PrinterEvent], None]] = []
        self._link: SerialLink | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self._wakeup: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scripts: dict[int, asyncio.Future[bool]] = {}
        self._tokens = itertools.count(1)
        self._closed = False

    # ------------------------------------------------------------------ public state
    @property
    def kind(self) -> str:
        return "virtual" if self.port == "virtual" else "socket" if self.port.startswith("socket://") else "serial"

    @property
    def target(self) -> str:
        return self.port

    @property
    def capabilities(self) -> Capabilities:
        """Marlin over serial reports no tool count or bed through this driver: the defaults."""
        return Capabilities(model=self.core.firmware_name or None)

    @property
    def state(self) -> PrinterState:
        return self.core.state

    @property
    def error(self) -> str | None:
        return self.core.error

    @property
    def temperatures(self) -> dict[str, tuple[float, float | None]]:
        return dict(self.core.temperatures)

    @property
    def firmware_name(self) -> str:
        return self.core.firmware_name

    @property
    def sd_files(self) -> list[tuple[str, int]]:
        return list(self.core.sd_files)

    def progress(self) -> PrintProgress | None:
        return self.core.progress(self._now())

    def add_listener(self, callback: Callable[[PrinterEvent], None]) -> Callable[[], None]:
        """Call `callback` with every event, in order, on the loop; returns the unsubscribe function."""
        self._listeners.append(callback)

        def remove() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return remove

    # ------------------------------------------------------------------ lifecycle
    async def async_start(self) -> None:
        """Return at once; the port is opened (and reopened) in the background."""
        self._loop = asyncio.get_running_loop()
        url = self.port
        if url == "virtual":  # loaded only here: a node on a real printer never holds the model
            from .virtual import VirtualMarlin
            from .virtual_pty import VirtualPrinterPty

            if self.sd_dir is not None:
                self.sd_dir.mkdir(parents=True, exist_ok=True)  # the virtual card, ready for files
            model = self._virtual_model or VirtualMarlin(speed=self.virtual_speed, sd_dir=self.sd_dir)
            self.virtual = VirtualPrinterPty(model)
            await self.virtual.start()
            url = self.virtual.path
        self._link = SerialLink(
            url,
            self.baudrate,
            on_open=self._on_open,
            on_data=self._on_data,
            on_close=self._on_close,
            on_open_failed=self._on_open_failed,
            initial_delay=self._reconnect_delay,
            max_delay=self._max_reconnect_delay,
        )
        self._link.start()
        self._ticker = self._loop.call_later(TICK, self._on_tick)

    async def async_close(self) -> None:
        """Stop everything; idempotent."""
        if self._closed:
            return
        self._closed = True
        for timer in (self._ticker, self._wakeup):
            if timer is not None:
                timer.cancel()
        if self._link is not None:
            await self._link.close()
        self._dispatch(self.core.connection_lost(None, self._now()))
        if self.virtual is not None:
            await self.virtual.close()

    async def __aenter__(self) -> PrinterService:
        await self.async_start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.async_close()

    def _now(self) -> float:
        return self._loop.time() if self._loop is not None else 0.0

    # ------------------------------------------------------------------ link callbacks
    def _on_open(self) -> None:
        self._dispatch(self.core.connection_made(self._now()))
        self._pump()

    def _on_data(self, data: bytes) -> None:
        core = self.core
        try:
            events = core.receive_data(data, self._loop.time())  # type: ignore[union-attr]
        except RemoteProtocolError as e:
            events = core.abort(f"Protocol error: {e}")
        if events:
            self._dispatch(events)
        self._pump()

    def _on_close(self, reason: str | None) -> None:
        self._dispatch(self.core.connection_lost(reason, self._now()))

    def _on_open_failed(self, reason: str) -> None:
        """Report a port that cannot be opened once (not on every retry)."""
        if self.core.error == reason:
            return
        events = self.core.connection_lost(reason, self._now())
        self.core.error = reason
        if not any(isinstance(e, StateChanged) for e in events):
            events.append(StateChanged(self.core.state, reason))
        self._dispatch(events)

    def _on_tick(self) -> None:
        if self._closed:
            return
        self._ticker = self._loop.call_later(TICK, self._on_tick)  # type: ignore[union-attr]
        if self._link is not None and self._link.is_open:
            self._dispatch(self.core.tick(self._now()))
            self._pump()

    def _on_wakeup(self) -> None:
        self._wakeup = None
        if not self._closed and self._link is not None and self._link.is_open:
            self._dispatch(self.core.tick(self._now()))
            self._pump()

    def _pump(self) -> None:
        """Write every line the core allows now (one in classic mode, a window when pipelined)."""
        core = self.core
        line = core.next_line()
        if line is not None and self._link is not None:
            write = self._link.write
            nxt = core.next_line()
            if nxt is None:
                write(line)
            else:
                chunks = [line, nxt]
                while (nxt := core.next_line()) is not None:
                    chunks.append(nxt)
                write(b"".join(chunks))
        wakeup = core.wakeup_at
        if wakeup is not None and self._loop is not None and self._wakeup is None:
            self._wakeup = self._loop.call_at(wakeup, self._on_wakeup)
        if core.wants_close and self._link is not None:
            core.wants_close = False
            self._link.drop()

    def _dispatch(self, events: list[PrinterEvent]) -> None:
        for event in events:
            if isinstance(event, ScriptDone):
                fut = self._scripts.pop(event.token, None)
                if fut is not None and not fut.done():
                    fut.set_result(event.ok)
            if isinstance(event, StateChanged):
                _LOG.info("printer %s: %s%s", self.port, event.state.text, f" ({event.error})" if event.error else "")
            for listener in list(self._listeners):
                try:
                    listener(event)
                except Exception:  # a broken listener must not break the print
                    _LOG.exception("printer listener failed on %r", event)

    # ------------------------------------------------------------------ commands
    def _call(self, fn: Callable[[], list[PrinterEvent]]) -> None:
        try:
            events = fn()
        except LocalProtocolError as e:
            raise Conflict(str(e)) from None
        self._dispatch(events)
        self._pump()

    def _require_connected(self) -> None:
        if not self.core.state.is_connected:
            raise Unavailable(f"The printer is not connected ({self.core.state.text})")

    async def async_upload(self, path: Path, name: str) -> str:
        """The host streams files from its own store: nothing to upload."""
        if not Path(path).is_file():
            raise NotFound(f"No such file: {path}")
        return str(path)

    async def async_print_file(self, path: Path, name: str) -> None:
        """Start streaming `path`; returns once started. Conflict unless Operational."""
        if self.core.state is not PrinterState.OPERATIONAL:
            raise Conflict(f"Cannot start a print while the printer is {self.core.state.text}")
        try:
            source = GcodeFile(Path(path))
        except FileNotFoundError:
            raise NotFound(f"No such file: {path}") from None
        try:
            self._call(lambda: self.core.start_print(source, str(path), name, self._now()))
        except Exception:
            source.close()
            raise

    async def async_print_sd_file(self, filename: str) -> None:
        """Print a file from the printer's own SD card."""
        self._call(lambda: self.core.start_sd_print(filename, self._now()))

    async def async_list_sd_files(self, timeout: float = 10.0) -> list[tuple[str, int]]:
        self._require_connected()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_event(event: PrinterEvent) -> None:
            if isinstance(event, SdFilesListed) and not done.done():
                done.set_result(None)

        remove = self.add_listener(on_event)
        try:
            self._call(self.core.list_sd_files)
            await asyncio.wait_for(done, timeout)
        finally:
            remove()
        return self.sd_files

    async def async_run_script(self, gcode: str) -> None:
        """Send a script when no print runs; return once its every line is acknowledged."""
        self._require_connected()
        if self.core.state.is_printing:
            raise Conflict(f"Cannot run a script while the printer is {self.core.state.text}")
        token = next(self._tokens)
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._scripts[token] = fut
        try:
            self._call(lambda: self.core.run_script(gcode.splitlines(), token))
        except Exception:
            self._scripts.pop(token, None)
            raise
        if not await fut:
            raise Unavailable(f"The printer went away before the script finished: {self.core.error}")

    async def async_send_commands(self, lines: list[str]) -> None:
        """Queue commands (terminal, API); allowed while printing, sent between file lines."""
        self._require_connected()
        self._call(lambda: self.core.send_commands(lines))

    async def async_pause(self) -> None:
        self._call(self.core.pause)

    async def async_resume(self) -> None:
        self._call(self.core.resume)

    async def async_cancel(self) -> None:
        self._call(self.core.cancel)

    async def async_emergency_stop(self) -> None:
        """M112 now, ahead of anything queued; then the port is closed and reopened (board reset)."""
        if self._link is None or not self._link.is_open:
            raise Unavailable("The printer is not connected")
        self._call(self.core.emergency_stop)

    async def async_connect(self) -> None:
        if self._link is not None:
            self._link.set_wanted(True)

    async def async_disconnect(self) -> None:
        if self._link is not None:
            self._link.set_wanted(False)
