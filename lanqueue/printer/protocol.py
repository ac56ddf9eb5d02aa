"""The host side of the Marlin serial protocol, without I/O (h11 style).

Feed what the printer sent with `receive_data(data, now)`, pull what to write with
`next_line()` until it returns None, and call `tick(now)` a few times a second for timeouts. Every
call returns the events it caused. Time only comes in as an argument, so a test can jump an hour.

Why a print never loses or repeats a line: every line carries a number and a checksum, and the
firmware executes a line only if its number is the last one plus one. The host keeps the last
`history_size` lines sent; a resend request rewinds to the requested number and sends the same
bytes again. The host's own bookkeeping (credits, `ok` counting) only decides *when* to send; a
wrong guess there (a lost `ok`, an `ok` missing after `Resend`) costs time, never correctness.

Flow control (numbering, history, credits, resend rewinds) lives in window.py; this module is
the printer's state machine around it: handshake, prints, pause/resume/cancel, emergency stop,
fatal errors, resets, host actions, temperatures and the SD card.

Silence while a line is in flight (longer for G28/G29/M109/M190/M400/G4 unless the firmware
speaks the busy protocol) is answered with a numbered `M105` poke that also assumes the `ok` was
lost; `max_pokes` pokes without any answer declare the printer gone.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from .events import (
    ActionRequested,
    FirmwareInfo,
    LocalProtocolError,
    PrintCancelled,
    PrintDone,
    PrinterEvent,
    PrinterState,
    PrintFailed,
    PrintPaused,
    PrintProgress,
    PrintResumed,
    PrintStarted,
    RemoteProtocolError,
    ScriptDone,
    SdFilesListed,
    StateChanged,
    TemperaturesChanged,
)
from .gcode import (
    command_code,
    parse_temperatures,
    strip_comment,
)
from .replies import ANSWERS_HOST, LISTED, Kind, Reply, classify
from .window import RESEND_TOO_OLD, LineWindow

__all__ = ["FirmwareProtocol", "Timeouts", "CommandSource", "JobInfo", "DEFAULT_CANCEL_SCRIPT"]

DEFAULT_CANCEL_SCRIPT = "M104 S0 ; hotend off\nM140 S0 ; bed off\nM106 S0 ; fan off\nM84 ; motors off"
MAX_LINE = 4096  # longest reply line accepted; more without a newline is a remote error
_S = PrinterState


class CommandSource(Protocol):
    """What a print streams from (GcodeFile, or a list in tests)."""

    size: int
    position: int
    lines: int
    exhausted: bool

    def next_command(self) -> str | None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds; defaults follow OctoPrint's, tests shorten them."""

    handshake: float = 3.0
    handshake_tries: int = 5
    communication: float = 30.0
    communication_busy: float = 3.0
    long_command: float = 300.0
    max_pokes: int = 5
    resend_grace: float = 0.1
    temperature_interval: float = 2.0
    sd_status_interval: float = 2.0


class Step(enum.Enum):
    """A protocol step that waits for the `ok` of the line that carries it."""

    M110 = "M110"  # line numbers reset: ask for the firmware's name and capabilities
    M115 = "M115"  # handshake done
    CANCEL = "cancel"  # the cancel script's last line: the print is cancelled
    SD_PAUSED = "sd paused"  # M25: an SD print is paused


@dataclass(frozen=True, slots=True)
class ScriptEnd:
    """The last line of a script run with `run_script(lines, token)`: ScriptDone(token) on its `ok`."""

    token: int


Tag = Step | ScriptEnd


@dataclass(slots=True)
class JobInfo:
    path: str
    name: str
    origin: str
    started: float
    source: CommandSource | None
    sd_done: int = 0
    sd_total: int = 0
    bytes_done: int = 0
    lines_done: int = 0


class FirmwareProtocol:
    """State machine of one connection to one printer; see the module docstring."""

    def __init__(
        self,
        *,
        cancel_script: str | None = None,
        pipelined: bool = False,
        rx_buffer_size: int = 127,
        max_in_flight: int = 8,
        history_size: int = 2000,
        timeouts: Timeouts | None = None,
    ) -> None:
        self.timeouts = timeouts or Timeouts()
        self.cancel_script = [
            c for c in (strip_comment(x) for x in (cancel_script or DEFAULT_CANCEL_SCRIPT).splitlines()) if c
        ]
        self.pipelined = pipelined
        self.window = LineWindow(
            pipelined=pipelined,
            rx_buffer_size=rx_buffer_size,
            max_in_flight=max_in_flight,
            history_size=history_size,
            resend_grace=self.timeouts.resend_grace,
        )
        self.state = _S.OFFLINE
        self._listening = _TABLE[_S.OFFLINE]  # this state's row of the reply table
        self.error: str | None = None
        self.firmware_name = ""
        self.capabilities: dict[str, bool] = {}
        self.temperatures: dict[str, tuple[float, float | None]] = {}
        self.job: JobInfo | None = None
        self.sd_files: list[tuple[str, int]] = []
        # True once the printer must be disconnected (fatal error, gone, emergency stop, action).
        self.wants_close = False
        self.resends = 0  # resend requests from the firmware, over the life of this object
        self._now = 0.0
        self._buf = bytearray()
        self._reset_link()

    # ------------------------------------------------------------------ link bookkeeping
    def _reset_link(self) -> None:
        self.window.reset()
        self._urgent: deque[bytes] = deque()
        self._commands: deque[tuple[str, Tag | None]] = deque()
        self._tags: deque[tuple[int, Tag]] = deque()  # line number -> what its `ok` completes
        self._pending: str | None = None
        self._last_heard = self._now
        self._pokes = 0
        self._busy_protocol = False
        self._hs_started = self._now
        self._hs_answered = False
        self._hs_tries = 0
        self._next_temp_poll = self._now
        self._next_sd_poll = self._now
        self._sd_listing: list[tuple[str, int]] | None = None
        self._autoreport = False
        self._skip_error = False

    def _set_state(self, state: PrinterState, events: list[PrinterEvent]) -> None:
        if state is not self.state:
            self.state = state
            self._listening = _TABLE[state]
            events.append(StateChanged(state, self.error if state in (_S.ERROR, _S.OFFLINE) else None))

    def _drop_pending_work(self, events: list[PrinterEvent]) -> None:
        """Fail every script still waiting, so no caller waits forever on a dead link."""
        for _, tag in (*self._tags, *self._commands):
            if isinstance(tag, ScriptEnd):
                events.append(ScriptDone(tag.token, ok=False))
        self._tags.clear()
        self._commands.clear()

    def _end_job(self, events: list[PrinterEvent], event: PrinterEvent | None) -> None:
        job = self.job
        if job is None:
            return
        self.job = None
        if job.source is not None:
            job.source.close()
        self._pending = None
        if event is not None:
            events.append(event)

    def _fail_job(self, reason: str, events: list[PrinterEvent]) -> None:
        if self.job is not None:
            self._end_job(events, PrintFailed(self.job.path, self.job.name, reason))

    # ------------------------------------------------------------------ connection
    def connection_made(self, now: float) -> list[PrinterEvent]:
        """The port is open: start the handshake (`M110 N0`, then `M115`)."""
        self._now = now
        self.wants_close = False
        self.window.ok_after_resend = None
        self._buf.clear()
        events: list[PrinterEvent] = []
        self._begin_handshake(events)
        return events

    def _begin_handshake(self, events: list[PrinterEvent]) -> None:
        tries = self._hs_tries
        self._reset_link()
        self._hs_tries = tries + 1
        self._set_state(_S.CONNECTING, events)
        self._commands.append(("M110 N0", Step.M110))

    def connection_lost(self, reason: str | None, now: float) -> list[PrinterEvent]:
        """The port closed (reason None: on purpose) or vanished: a print in progress fails."""
        self._now = now
        events: list[PrinterEvent] = []
        if self.state is not _S.ERROR:
            if self.job is not None:
                reason = reason or "Disconnected from the printer during the print"
                self._fail_job(reason, events)
            if reason is not None:
                self.error = reason
        self._drop_pending_work(events)
        self._reset_link()
        self._hs_tries = 0
        # An error state stays visible until the next connect attempt (sticky, as in h11).
        if self.state is not _S.ERROR:
            self._set_state(_S.OFFLINE, events)
        return events

    # ------------------------------------------------------------------ incoming bytes
    def receive_data(self, data: bytes, now: float | None = None) -> list[PrinterEvent]:
        """Bytes from the printer; complete lines are interpreted, a partial one is kept."""
        if now is not None:
            self._now = now
        buf = self._buf
        buf += data
        if b"\n" not in data:
            if len(buf) > MAX_LINE:
                buf.clear()
                raise RemoteProtocolError(f"printer sent more than {MAX_LINE} bytes without a newline")
            return []
        *lines, rest = buf.split(b"\n")
        self._buf = bytearray(rest)
        events: list[PrinterEvent] = []
        for raw in lines:
            if len(raw) > MAX_LINE:
                raise RemoteProtocolError(f"printer sent a line longer than {MAX_LINE} bytes")
            self._handle_line(raw.decode("latin-1").strip(), events)
        return events

    def _handle_line(self, line: str, events: list[PrinterEvent]) -> None:
        reply = classify(line)
        kind = reply.kind
        handler = self._listening.get(kind)
        if handler is None:
            return  # e.g. chatter, or anything but `ok` and `start` after a halt
        if kind in ANSWERS_HOST:
            # Silence is measured from the last line that answers the host: periodic
            # temperature reports or chatter must not hide a lost `ok`.
            self._heard()
            if self._sd_listing is not None and reply.kind in LISTED:
                self._on_listed_file(reply, events)
                return
        handler(self, reply, events)

    def _heard(self) -> None:
        self._last_heard = self._now
        self._pokes = 0
        self._hs_answered = True

    # ------------------------------------------------------------------ one handler per kind
    def _on_ok_reply(self, reply: Reply, events: list[PrinterEvent]) -> None:
        self._last_heard = self._now  # _heard(), inline: this runs for every line of a print
        self._pokes = 0
        self._hs_answered = True
        n = self.window.on_ok()
        if n is not None:
            self._acknowledged(n, events)
            self._check_progress(events)
        if "T:" in reply.line:
            self._on_temperatures(reply.line, events)

    def _on_report(self, reply: Reply, events: list[PrinterEvent]) -> None:
        # A heat-up wait (M109/M190) reports temperatures instead of busy keep-alives.
        if self.window.long_in_flight:
            self._last_heard = self._now
            self._pokes = 0
        self._on_temperatures(reply.line, events)

    def _on_action_reply(self, reply: Reply, events: list[PrinterEvent]) -> None:
        self._on_action(reply.line[len("//action:") :].strip(), events)

    def _on_resend_reply(self, reply: Reply, events: list[PrinterEvent]) -> None:
        if reply.number is not None:
            self._on_resend(reply.number, events)

    def _on_fatal_reply(self, reply: Reply, events: list[PrinterEvent]) -> None:
        self._fatal(reply.line, events)

    def _on_line_error(self, reply: Reply, events: list[PrinterEvent]) -> None:
        # "not Last Line Number+1" is caused by a later line than the one requested.
        self._skip_error = "Last Line Number" in reply.line

    def _on_start_reply(self, reply: Reply, events: list[PrinterEvent]) -> None:
        self._on_start(events)

    def _on_busy(self, reply: Reply, events: list[PrinterEvent]) -> None:
        self._busy_protocol = True

    def _on_firmware(self, reply: Reply, events: list[PrinterEvent]) -> None:
        rest = reply.line[len("FIRMWARE_NAME:") :]
        self.firmware_name = rest.split(" SOURCE_CODE_URL:")[0].split(" PROTOCOL_VERSION:")[0].strip()

    def _on_capability(self, reply: Reply, events: list[PrinterEvent]) -> None:
        name, _, value = reply.line[4:].partition(":")
        self.capabilities[name.strip()] = value.strip() == "1"

    def _on_file_list_begin(self, reply: Reply, events: list[PrinterEvent]) -> None:
        self._sd_listing = []

    def _on_file_list_end(self, reply: Reply, events: list[PrinterEvent]) -> None:
        if self._sd_listing is not None:
            self.sd_files = self._sd_listing
            self._sd_listing = None
            events.append(SdFilesListed(tuple(self.sd_files)))

    def _on_listed_file(self, reply: Reply, events: list[PrinterEvent]) -> None:
        assert self._sd_listing is not None
        if reply.line:
            name, _, size = reply.line.partition(" ")
            self._sd_listing.append((name, int(size) if size.strip().isdigit() else 0))

    def _on_sd_progress(self, reply: Reply, events: list[PrinterEvent]) -> None:
        done, _, total = reply.line[len("SD printing byte") :].strip().partition("/")
        if self.job is not None and self.job.origin == "sdcard" and done.isdigit() and total.isdigit():
            self.job.sd_done, self.job.sd_total = int(done), int(total)

    def _on_file_opened(self, reply: Reply, events: list[PrinterEvent]) -> None:
        if self.job is not None and "Size:" in reply.line:
            size = reply.line.rsplit("Size:", 1)[1].strip()
            if size.isdigit():
                self.job.sd_total = int(size)

    def _on_sd_done(self, reply: Reply, events: list[PrinterEvent]) -> None:
        if self.job is not None and self.job.origin == "sdcard":
            job = self.job
            self._end_job(events, PrintDone(job.path, job.name, self._now - job.started))
            self._set_state(_S.OPERATIONAL, events)

    def _ignore(self, reply: Reply, events: list[PrinterEvent]) -> None:
        """Heard (the silence timer restarts), nothing else: unknown lines, odd errors."""

    def _acknowledged(self, n: int, events: list[PrinterEvent]) -> None:
        """An ok for line n: the firmware works in order, so every line up to n is done."""
        tags = self._tags
        while tags and tags[0][0] <= n:
            _, tag = tags.popleft()
            if isinstance(tag, ScriptEnd):
                events.append(ScriptDone(tag.token))
            elif tag is Step.M110:
                self._commands.appendleft(("M115", Step.M115))
            elif tag is Step.M115:
                self._on_handshake_done(events)
            elif tag is Step.CANCEL:
                job = self.job
                self._end_job(events, PrintCancelled(job.path, job.name) if job else None)
                self._set_state(_S.OPERATIONAL, events)
            elif tag is Step.SD_PAUSED and self.state is _S.PAUSING:
                self._set_state(_S.PAUSED, events)
                if self.job is not None:
                    events.append(PrintPaused(self.job.path, self.job.name))

    def _on_handshake_done(self, events: list[PrinterEvent]) -> None:
        self._hs_tries = 0
        events.append(FirmwareInfo(self.firmware_name, dict(self.capabilities)))
        self._autoreport = self.capabilities.get("AUTOREPORT_TEMP", False)
        if self._autoreport:
            self._commands.append((f"M155 S{max(1, round(self.timeouts.temperature_interval))}", None))
        else:
            self._commands.append(("M105", None))
        self._next_temp_poll = self._now + self.timeouts.temperature_interval
        self._set_state(_S.OPERATIONAL, events)

    def _on_resend(self, n: int, events: list[PrinterEvent]) -> None:
        self.resends += 1
        echo_possible, self._skip_error = self._skip_error, False
        verdict = self.window.on_resend(
            n, self._now, echo_possible=echo_possible, connecting=self.state is _S.CONNECTING
        )
        if verdict == RESEND_TOO_OLD:
            self._fatal(f"Printer asked to resend line {n}, which is no longer in the history", events)

    def _on_temperatures(self, line: str, events: list[PrinterEvent]) -> None:
        temps = parse_temperatures(line)
        if temps:
            merged = {**self.temperatures, **temps}
            if merged != self.temperatures:
                self.temperatures = merged
                events.append(TemperaturesChanged(dict(merged)))

    def _on_start(self, events: list[PrinterEvent]) -> None:
        """The board reset: line numbers restart, a print in progress is lost."""
        if self.state is _S.CONNECTING:
            self._hs_tries = 0
            self._begin_handshake(events)
            return
        self._fail_job("The printer reset (firmware restarted) during the print", events)
        if self.state is not _S.ERROR:
            self.error = "The printer reset unexpectedly"
        self._drop_pending_work(events)
        self._hs_tries = 0
        self._begin_handshake(events)

    def _on_action(self, name: str, events: list[PrinterEvent]) -> None:
        events.append(ActionRequested(name))
        if name in ("pause", "paused") and self.state is _S.PRINTING:
            events.extend(self.pause())
        elif name in ("resume", "resumed") and self.state in (_S.PAUSED, _S.PAUSING):
            events.extend(self.resume())
        elif name == "cancel" and self.state.is_printing and self.state is not _S.CANCELLING:
            events.extend(self.cancel())
        elif name == "disconnect":
            self.wants_close = True

    def _fatal(self, reason: str, events: list[PrinterEvent]) -> None:
        """The firmware halted (or the link is unusable): end the print, wait for a reconnect."""
        if self.state is _S.ERROR:
            return
        text = reason
        for prefix in ("Error:", "error:", "!!"):
            if text.startswith(prefix):
                text = "Printer halted: " + text[len(prefix) :].strip()
        self.error = text
        self._fail_job(text, events)
        self._drop_pending_work(events)
        self._urgent.clear()
        self.window.reset()
        self.wants_close = True
        self._set_state(_S.ERROR, events)

    def abort(self, reason: str) -> list[PrinterEvent]:
        """The link is unusable (e.g. a RemoteProtocolError): end like a firmware halt."""
        events: list[PrinterEvent] = []
        self._fatal(reason, events)
        return events

    # ------------------------------------------------------------------ timers
    def tick(self, now: float) -> list[PrinterEvent]:
        """Timeouts, resend grace, temperature and SD polling."""
        self._now = now
        events: list[PrinterEvent] = []
        state = self.state
        t = self.timeouts
        self.window.tick(now)
        if state is _S.CONNECTING:
            if now - self._hs_started > t.handshake and now - self._last_heard > t.handshake / 2:
                if self._hs_answered:
                    self._hs_tries = 0  # it answers, only garbled: keep trying, that is no hang
                if self._hs_tries >= t.handshake_tries:
                    self._fatal("The printer did not answer the connection handshake (M110/M115)", events)
                else:
                    self._begin_handshake(events)
                    self._hs_started = now
            return events
        if not state.is_connected:
            return events
        silent = now - self._last_heard
        if self.window.in_flight or self.window.hold_until is not None:
            if self._busy_protocol:
                limit = t.communication_busy
            elif self.window.long_in_flight:
                limit = t.long_command
            else:
                limit = t.communication
        else:
            limit = t.communication
        if silent > limit:
            self._poke(events)
            if self.state is _S.ERROR:
                return events
        if not self._autoreport and now >= self._next_temp_poll:
            self._next_temp_poll = now + t.temperature_interval
            if not any(c[0] == "M105" for c in self._commands):
                self._commands.append(("M105", None))
        job = self.job
        if job is not None and job.origin == "sdcard" and now >= self._next_sd_poll:
            self._next_sd_poll = now + t.sd_status_interval
            if self.state is _S.PRINTING:
                self._commands.append(("M27", None))
        self._check_progress(events)
        return events

    def _poke(self, events: list[PrinterEvent]) -> None:
        self._pokes += 1
        if self._pokes > self.timeouts.max_pokes:
            self._fatal(f"The printer stopped responding ({self.timeouts.max_pokes} pokes unanswered)", events)
            return
        # Assume the ok got lost: free the credit; if the line itself got lost, the numbered
        # poke makes the firmware ask for it again.
        self.window.assume_oks_lost()
        self._commands.appendleft(("M105", None))
        self._last_heard = self._now

    @property
    def wakeup_at(self) -> float | None:
        """When tick() should run sooner than the regular ticker (end of a resend grace)."""
        return self.window.hold_until

    # ------------------------------------------------------------------ outgoing lines
    def next_line(self) -> bytes | None:
        """The next bytes to write, or None until an `ok`, a resend request or a tick."""
        if self._urgent:
            return self._urgent.popleft()
        state = self.state
        if state is _S.OFFLINE or state is _S.ERROR:
            return None
        window = self.window
        if window.resend_from is not None:
            return window.next_resend()
        if self._commands:
            command, tag = self._commands[0]
            if not window.has_room(command):
                return None
            self._commands.popleft()
            n, data = window.send(command)
            if tag is not None:
                self._tags.append((n, tag))
            return data
        job = self.job
        if state is not _S.PRINTING or job is None or job.source is None:
            return None
        pending = self._pending
        if pending is None:
            pending = self._pending = job.source.next_command()
            if pending is None:
                return None
        if not window.has_room(pending):
            return None
        self._pending = None
        job.lines_done += 1
        job.bytes_done = job.source.position
        return window.send(pending)[1]

    def _check_progress(self, events: list[PrinterEvent]) -> None:
        """Finish a print or a pause once everything sent is acknowledged."""
        state = self.state
        if state is not _S.PRINTING and state is not _S.PAUSING:
            return
        if not self.window.settled:
            return
        job = self.job
        if job is None or job.origin != "local":
            return
        if state is _S.PAUSING:
            self._set_state(_S.PAUSED, events)
            events.append(PrintPaused(job.path, job.name))
        elif self._commands:
            return
        else:
            source = job.source
            if self._pending is None and source is not None and not source.exhausted:
                self._pending = source.next_command()  # read ahead to learn whether it was the last
            if self._pending is not None:
                return
            self._end_job(events, PrintDone(job.path, job.name, self._now - job.started))
            self._set_state(_S.OPERATIONAL, events)

    # ------------------------------------------------------------------ commands
    def _require(self, *states: PrinterState) -> None:
        if self.state not in states:
            raise LocalProtocolError(f"not possible while the printer is {self.state.text}")

    def start_print(self, source: CommandSource, path: str, name: str, now: float) -> list[PrinterEvent]:
        """Stream `source`; only its commands and protocol commands reach the printer."""
        self._require(_S.OPERATIONAL)
        self._now = now
        self.error = None
        self.job = JobInfo(str(path), name, "local", now, source)
        events: list[PrinterEvent] = []
        self._set_state(_S.PRINTING, events)
        events.append(PrintStarted(str(path), name, "local"))
        return events

    def start_sd_print(self, filename: str, now: float) -> list[PrinterEvent]:
        """Print a file from the printer's SD card (`M23`, `M24`), polling progress with `M27`."""
        self._require(_S.OPERATIONAL)
        self._now = now
        self.error = None
        self.job = JobInfo(filename, filename, "sdcard", now, None)
        self._commands.append((f"M23 {filename}", None))
        self._commands.append(("M24", None))
        self._next_sd_poll = now + self.timeouts.sd_status_interval
        events: list[PrinterEvent] = []
        self._set_state(_S.PRINTING, events)
        events.append(PrintStarted(filename, filename, "sdcard"))
        return events

    def list_sd_files(self) -> list[PrinterEvent]:
        self._require(_S.OPERATIONAL, _S.PRINTING, _S.PAUSED, _S.PAUSING)
        self._commands.append(("M20", None))
        return []

    def pause(self) -> list[PrinterEvent]:
        """Stop feeding file lines; Paused once the lines already sent are acknowledged."""
        events: list[PrinterEvent] = []
        if self.state is not _S.PRINTING:
            raise LocalProtocolError(f"cannot pause while {self.state.text}")
        self._set_state(_S.PAUSING, events)
        if self.job is not None and self.job.origin == "sdcard":
            self._commands.append(("M25", Step.SD_PAUSED))
        else:
            self._check_progress(events)
        return events

    def resume(self) -> list[PrinterEvent]:
        if self.state not in (_S.PAUSED, _S.PAUSING):
            raise LocalProtocolError(f"cannot resume while {self.state.text}")
        events: list[PrinterEvent] = []
        self._set_state(_S.PRINTING, events)
        if self.job is not None:
            if self.job.origin == "sdcard":
                self._commands.append(("M24", None))
            events.append(PrintResumed(self.job.path, self.job.name))
        return events

    def cancel(self) -> list[PrinterEvent]:
        """Stop feeding, break a heat-up wait (M108), run the cancel script, then Operational."""
        if not self.state.is_printing or self.state is _S.CANCELLING:
            raise LocalProtocolError(f"cannot cancel while {self.state.text}")
        events: list[PrinterEvent] = []
        job = self.job
        assert job is not None
        if job.source is not None:
            job.source.close()
        self._pending = None
        if self.capabilities.get("EMERGENCY_PARSER"):
            self._urgent.append(b"M108\n")
        if job.origin == "sdcard":
            self._commands.append(("M524", None))
        script = self.cancel_script or ["M105"]
        for command in script[:-1]:
            self._commands.append((command, None))
        self._commands.append((script[-1], Step.CANCEL))
        self._set_state(_S.CANCELLING, events)
        return events

    def emergency_stop(self) -> list[PrinterEvent]:
        """`M112` at once, unnumbered, ahead of everything; the link is then closed."""
        events: list[PrinterEvent] = []
        self._urgent.clear()
        self._urgent.append(b"M112\n")
        self._fail_reason_then_error("Emergency stop (M112)", events)
        return events

    def _fail_reason_then_error(self, reason: str, events: list[PrinterEvent]) -> None:
        urgent = list(self._urgent)
        self._fatal(reason, events)
        self._urgent.extend(urgent)

    def send_commands(self, lines: Iterable[str]) -> list[PrinterEvent]:
        """User commands (terminal, API): queued ahead of file lines, allowed while printing."""
        self._require(_S.OPERATIONAL, _S.PRINTING, _S.PAUSING, _S.PAUSED, _S.CANCELLING)
        events: list[PrinterEvent] = []
        for raw in lines:
            command = strip_comment(raw)
            if not command:
                continue
            if command_code(command) == "M112":
                return events + self.emergency_stop()
            self._commands.append((command, None))
        return events

    def run_script(self, lines: Iterable[str], token: int) -> list[PrinterEvent]:
        """Send a script when no print runs; ScriptDone(token) once its last line is acknowledged."""
        self._require(_S.OPERATIONAL)
        commands = [c for c in (strip_comment(x) for x in lines) if c]
        if not commands:
            return [ScriptDone(token)]
        for command in commands[:-1]:
            self._commands.append((command, None))
        self._commands.append((commands[-1], ScriptEnd(token)))
        return []

    # ------------------------------------------------------------------ reporting
    def progress(self, now: float) -> PrintProgress | None:
        job = self.job
        if job is None:
            return None
        if job.origin == "sdcard":
            done, total = job.sd_done, job.sd_total
        else:
            done, total = job.bytes_done, (job.source.size if job.source else 0)
        elapsed = now - job.started
        remaining = elapsed * (total - done) / done if done > 0 and total >= done else None
        return PrintProgress(job.path, job.name, done, total, job.lines_done, elapsed, remaining)


# ---------------------------------------------------------------------- the reply table
_Handler = Callable[[FirmwareProtocol, Reply, list[PrinterEvent]], None]
_BY_KIND: dict[Kind, _Handler] = {
    Kind.OK: FirmwareProtocol._on_ok_reply,
    Kind.TEMPERATURES: FirmwareProtocol._on_report,
    Kind.ACTION: FirmwareProtocol._on_action_reply,
    Kind.RESEND: FirmwareProtocol._on_resend_reply,
    Kind.FATAL: FirmwareProtocol._on_fatal_reply,
    Kind.LINE_ERROR: FirmwareProtocol._on_line_error,
    Kind.START: FirmwareProtocol._on_start_reply,
    Kind.BUSY: FirmwareProtocol._on_busy,
    Kind.FIRMWARE: FirmwareProtocol._on_firmware,
    Kind.CAPABILITY: FirmwareProtocol._on_capability,
    Kind.FILE_LIST_BEGIN: FirmwareProtocol._on_file_list_begin,
    Kind.FILE_LIST_END: FirmwareProtocol._on_file_list_end,
    Kind.SD_PROGRESS: FirmwareProtocol._on_sd_progress,
    Kind.FILE_OPENED: FirmwareProtocol._on_file_opened,
    Kind.SD_DONE: FirmwareProtocol._on_sd_done,
    Kind.OTHER: FirmwareProtocol._ignore,
    # ECHO and COMMENT: no entry, nothing to do
}
#: What each state listens to: offline only an `ok` (a late one), after a halt also `start`
#: (nothing else the firmware says changes the verdict), otherwise everything.
_HEARD: dict[PrinterState, frozenset[Kind]] = {
    _S.OFFLINE: frozenset({Kind.OK}),
    _S.ERROR: frozenset({Kind.OK, Kind.START}),
}
#: state -> kind -> handler, for every (state, kind) pair that does something.
_TABLE: dict[PrinterState, dict[Kind, _Handler]] = {
    state: {kind: handler for kind, handler in _BY_KIND.items() if kind in _HEARD.get(state, frozenset(Kind))}
    for state in PrinterState
}
