"""A virtual Marlin printer: the default printer of a node, and the other end of every test.

`VirtualMarlin` is the firmware model, pure like the host protocol: `receive(data, now)`,
`tick(now)`, `take_output()`, `next_deadline()`. It checks line numbers and checksums exactly as
Marlin does (a line runs only if its number is the last one plus one), queues up to `bufsize`
commands, answers `ok` when a command has run, takes the time moves and heaters need (divided by
`speed`), prints Marlin's messages and records every command it ran in `executed`, so tests can
compare what the printer did with what the file says.

`Faults` injects what real links and boards do, from a seeded random generator so a failing test
fails the same way again. The model does no I/O: `virtual_pty.py` serves it on a pseudo-terminal,
`virtual_cli.py` is `lanqueue virtual-printer`.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .gcode import command_code, parse_numbered, strip_comment

__all__ = ["VirtualMarlin", "Faults", "CAPABILITIES"]

RX_BUFFER_SIZE = 128
BUFSIZE = 4
PLANNER_SIZE = 16
KEEPALIVE = 2.0
CAPABILITIES = {
    "SERIAL_XON_XOFF": 0,
    "BINARY_FILE_TRANSFER": 0,
    "EEPROM": 0,
    "AUTOREPORT_TEMP": 1,
    "AUTOREPORT_SD_STATUS": 0,
    "BUSY_PROTOCOL": 1,
    "EMERGENCY_PARSER": 1,
    "HOST_ACTION_COMMANDS": 1,
    "PROMPT_SUPPORT": 0,
    "ADVANCED_OK": 0,
    "SDCARD": 1,
}


@dataclass
class Faults:
    """Fault injection; rates are per received line (corruption, loss) or per command (the rest).

    `*_after` values fire once, when that many commands of the current session have run.
    """

    seed: int = 0
    corrupt_rate: float = 0.0  # a byte of a received line flipped: checksum mismatch
    drop_rate: float = 0.0  # a received line lost on the wire: line number skipped
    lost_ok_rate: float = 0.0  # the ok after a command is never sent
    no_ok_after_resend: bool = False
    busy_rate: float = 0.0  # a command keeps the firmware busy for `busy_time`
    busy_time: float = 5.0
    storm_rate: float = 0.0  # starts `storm_length` consecutive rejected lines
    storm_length: int = 5
    reset_after: int | None = None
    thermal_runaway_after: int | None = None
    disconnect_after: int | None = None
    ignore_all_after: int | None = None  # the firmware goes silent (hung board)


class VirtualMarlin:
    """The firmware model. Not thread-safe; one instance per simulated board."""

    def __init__(
        self,
        *,
        speed: float = 1.0,
        sd_dir: Path | None = None,
        faults: Faults | None = None,
        capabilities: dict[str, int] | None = None,
        ok_after_resend: bool = True,
    ) -> None:
        self.speed = max(speed, 1e-6)
        # Keep-alives and reports follow the speed factor, but never flood the link.
        self._keepalive = max(KEEPALIVE / self.speed, 0.02)
        self.sd_dir = sd_dir
        self.faults = faults or Faults()
        self.capabilities = dict(CAPABILITIES if capabilities is None else capabilities)
        self.ok_after_resend = ok_after_resend and not self.faults.no_ok_after_resend
        self._rng = random.Random(self.faults.seed)
        self.executed: list[str] = []  # every command run, in order, over all sessions
        self.sd_executed: list[str] = []
        self.disconnect_requested = False
        self.rejected = 0  # lines refused (checksum, line number)
        self.overflows = 0  # bytes dropped because the receive buffer was full
        self._out: list[bytes] = []
        self._now = 0.0
        self.power_on(0.0)

    # ------------------------------------------------------------------ board life
    def power_on(self, now: float) -> None:
        """Reset: what a board does after power-up, a watchdog reset or DTR."""
        self._now = now
        self.killed = False
        self.silent = False
        self.session_executed = 0
        self._rx = bytearray()
        self._queue: deque[str] = deque()
        self._last_n = 0
        self._busy_until = now
        self._blocking: str | None = None
        self._planner: deque[float] = deque()
        self._next_keepalive = now + self._keepalive
        self.temps = {"T": [21.0, 0.0], "B": [21.0, 0.0]}
        self._last_temp_update = now
        self._autoreport_interval = 0.0
        self._next_autoreport = 0.0
        self._storm = 0
        self._sd_file: Path | None = None
        self._sd_handle: BinaryIO | None = None
        self._sd_printing = False
        self._sd_pos = 0
        self._sd_size = 0
        self.position = {"X": 0.0, "Y": 0.0, "Z": 0.0, "E": 0.0}
        self.feedrate = 3000.0
        self._emit("start", "echo:Marlin 2.1.2 (virtual)", "echo: Last Updated: 2026-01-01", "echo:SD card ok")

    def _emit(self, *lines: str) -> None:
        for line in lines:
            self._out.append(line.encode() + b"\n")

    def take_output(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

    def request_action(self, name: str) -> None:
        """A button on the printer's screen: `//action:<name>` to the host."""
        self._emit(f"//action:{name}")

    def kill(self, message: str) -> None:
        self._emit(f"Error:{message}", "Error:Printer halted. kill() called!")
        self.killed = True
        self._queue.clear()
        self._rx.clear()

    # ------------------------------------------------------------------ input
    def receive(self, data: bytes, now: float) -> None:
        """Bytes from the host land in the 128-byte receive buffer; overflowing bytes are lost."""
        self._now = now
        if self.killed or self.silent:
            return
        if b"M112" in data and self.capabilities.get("EMERGENCY_PARSER"):
            self.executed.append("M112")
            self.kill("Emergency stop (M112)")
            return
        if b"M108" in data and self.capabilities.get("EMERGENCY_PARSER") and self._blocking in ("M109", "M190"):
            self._blocking = None
            self._busy_until = now
        room = RX_BUFFER_SIZE - len(self._rx)
        if len(data) > room and self._blocked():
            self.overflows += len(data) - room
            data = data[:room]
        self._rx += data
        self.tick(now)

    def _blocked(self) -> bool:
        return len(self._queue) >= BUFSIZE

    def _read_lines(self) -> None:
        """Move complete lines from the receive buffer into the command queue, validating them."""
        rx = self._rx
        while len(self._queue) < BUFSIZE and not self.killed:
            i = rx.find(b"\n")
            if i < 0:
                if len(rx) > RX_BUFFER_SIZE:
                    del rx[:]  # garbage without newline: dropped, as an overrun would
                return
            raw = bytes(rx[:i]).strip(b"\r ")
            del rx[: i + 1]
            if raw:
                self._accept(raw)

    def _accept(self, raw: bytes) -> None:
        f = self.faults
        rng = self._rng
        if raw.startswith(b"N"):
            if f.drop_rate and rng.random() < f.drop_rate:
                return
            if self._storm > 0:
                self._storm -= 1
                raw = raw[:-1] + bytes([raw[-1] ^ 1])
            elif f.corrupt_rate and rng.random() < f.corrupt_rate:
                i = rng.randrange(len(raw))
                raw = raw[:i] + bytes([raw[i] ^ (1 << rng.randrange(7))]) + raw[i + 1 :]
            elif f.storm_rate and rng.random() < f.storm_rate:
                self._storm = f.storm_length - 1
                raw = raw[:-1] + bytes([raw[-1] ^ 1])
        number, command, ok = parse_numbered(raw)
        if number is not None:
            is_m110 = command.startswith(b"M110")
            if not ok:
                if b"*" in raw:
                    self._line_error("checksum mismatch")
                else:
                    self._line_error("No Checksum with line number")
                return
            if number != self._last_n + 1 and not is_m110:
                self._line_error("Line Number is not Last Line Number+1")
                return
            self._last_n = number
            if is_m110:
                value = _args(command.decode("ascii", "replace")).get("N")
                if value is not None:
                    self._last_n = int(value)
        elif not ok:
            self._line_error("No Line Number with checksum")
            return
        text = command.decode("ascii", "replace")
        text = strip_comment(text)
        if text:
            self._queue.append(text)

    def _line_error(self, message: str) -> None:
        """Marlin's flush_and_request_resend: report, drop the receive buffer, ask again."""
        self.rejected += 1
        self._emit(f"Error:{message}, Last Line: {self._last_n}")
        self._rx.clear()
        self._emit(f"Resend: {self._last_n + 1}")
        if self.ok_after_resend:
            self._emit("ok")

    # ------------------------------------------------------------------ time
    def next_deadline(self) -> float | None:
        if self.killed:
            return None
        times = [self._next_keepalive if self._blocking else None]
        if self._busy_until > self._now:
            times.append(self._busy_until)
        if self._autoreport_interval:
            times.append(self._next_autoreport)
        if self._planner:
            times.append(self._planner[0])
        if self.temps["T"][1] or self.temps["B"][1] or self.temps["T"][0] > 25 or self.temps["B"][0] > 25:
            times.append(self._now + max(0.5 / self.speed, 0.02))
        if self._sd_printing:
            times.append(self._now)
        real = [t for t in times if t is not None]
        return min(real) if real else None

    def tick(self, now: float) -> None:
        """Advance the model to `now`: heaters, planner, blocked commands, queue, autoreport."""
        self._now = now
        if self.killed or self.silent:
            return
        self._update_temps(now)
        planner = self._planner
        while planner and planner[0] <= now:
            planner.popleft()
        if self._autoreport_interval and now >= self._next_autoreport:
            self._next_autoreport = now + max(self._autoreport_interval / self.speed, 0.05)
            self._emit(self._temp_report())
        for _ in range(10000):
            if self.killed or self.silent:
                return
            if self._blocking is not None and not self._finish_blocking(now):
                if now >= self._next_keepalive:
                    self._next_keepalive = now + self._keepalive
                    if self._blocking in ("M109", "M190"):
                        # Marlin reports temperatures while it waits for a heater.
                        self._emit(f" T:{self.temps['T'][0]:.2f} E:0 B:{self.temps['B'][0]:.2f} W:?")
                    elif self.capabilities.get("BUSY_PROTOCOL"):
                        self._emit("echo:busy: processing")
                return
            self._read_lines()
            if not self._queue:
                if self._sd_printing and len(self._planner) < PLANNER_SIZE:
                    self._sd_step()
                    continue
                return
            if len(self._planner) >= PLANNER_SIZE and command_code(self._queue[0]) in ("G0", "G1", "G2", "G3"):
                return
            command = self._queue.popleft()
            self._execute(command, now)

    def _update_temps(self, now: float) -> None:
        dt = (now - self._last_temp_update) * self.speed
        self._last_temp_update = now
        if dt <= 0:
            return
        for key, rate in (("T", 4.0), ("B", 1.5)):
            actual, target = self.temps[key]
            goal = target if target > 0 else 21.0
            step = rate * dt
            if abs(goal - actual) <= step:
                actual = goal
            else:
                actual += step if goal > actual else -step
            self.temps[key][0] = actual

    def _temp_report(self) -> str:
        (t, tt), (b, bt) = self.temps["T"], self.temps["B"]
        return f"T:{t:.2f} /{tt:.2f} B:{b:.2f} /{bt:.2f} @:0 B@:0"

    def _finish_blocking(self, now: float) -> bool:
        """True once the blocking command finished (its ok is then sent)."""
        code = self._blocking
        if self._planner or now < self._busy_until:
            return False
        for wait_code, key in (("M109", "T"), ("M190", "B")):
            actual, target = self.temps[key]
            if code == wait_code and target > 0 and abs(actual - target) > 1:
                return False
        self._blocking = None
        self._done(code or "")
        return True

    def _done(self, code: str, extra: str = "") -> None:
        f = self.faults
        if f.lost_ok_rate and self._rng.random() < f.lost_ok_rate:
            return
        self._emit("ok" + extra)

    # ------------------------------------------------------------------ commands
    def _execute(self, command: str, now: float, from_sd: bool = False) -> None:
        code = command_code(command)
        (self.sd_executed if from_sd else self.executed).append(command)
        self.session_executed += 1
        if self._injected_fault(now):
            return
        handler = _COMMANDS.get(code)
        if handler is None:
            reply, block = "", None
            if code not in _ACCEPTED:
                self._emit(f'echo:Unknown command: "{command}"')
        else:
            reply, block = handler(self, code, command, _args(command), now)
        f = self.faults
        if f.busy_rate and self._rng.random() < f.busy_rate:
            block = (block or 0.0) + f.busy_time
        if block is not None:
            self._blocking = code
            self._busy_until = now + block / self.speed
            self._next_keepalive = now + self._keepalive
            return
        if not from_sd:
            self._done(code, reply)

    def _injected_fault(self, now: float) -> bool:
        """A one-time fault due at this command (counted per connection); True if one struck."""
        f = self.faults
        n = self.session_executed
        if f.thermal_runaway_after is not None and n == f.thermal_runaway_after:
            self.kill("Thermal Runaway, system stopped! Heater_ID: 0")
            return True
        if f.reset_after is not None and n == f.reset_after:
            f.reset_after = None
            self.power_on(now)
            return True
        if f.disconnect_after is not None and n == f.disconnect_after:
            f.disconnect_after = None
            self.disconnect_requested = True
            return True
        if f.ignore_all_after is not None and n >= f.ignore_all_after:
            self.silent = True
            return True
        return False

    # One method per command (or family): (text appended to the `ok`, seconds the command keeps
    # the firmware busy or None), so the dispatch is a table, not a chain of string tests.
    def _g_move(self, code: str, command: str, args: dict[str, float], now: float) -> _Result:
        self._move(args, now)
        return "", None

    def _g28(self, code: str, command: str, args: dict[str, float], now: float) -> _Result:
        for axis in "XYZ":
            self.position[axis] = 0.0
        return "", 8.0

    def _g29(self, code: str, command: str, args: dict[str, float], now: float) -> _Result:
        return "", 30.0

    def _g4(self, code: str, command: str, args: dict[str, float], now: float) -> _Result:
        return "", args.get("S", 0.0) + args.get("P", 0.0) / 1000

    def _m400(self, code: str, command: str, args: dict[str, float], now: float) -> _Result:
        return "", 0.0

    def _g92(self, code: str, command: str, args: dict[str, float], now: float) -> _Result:
        for axis, value in args.items():
            if axis in self.position:
                self.position[axis] = value
        return "", None

    def _heater(self, code: str, command: str, args: dict[str, float], now: float) -> _Result:
        """M104/M140 set a target; M109/M190 also wait for it."""
        self.temps["T" if code in ("M104", "M109") else "B"][1] = args.get("S", 0.0)
        return "", 0.0 if code in ("M109", "M190") else None

    def _m105(self, code: str, command: str, args: dict[str, float], now: float) -> _Result:
        return " " + self._temp_report(), None

    def _m155(self, code: str, command: str, args: dict[str, float], now: float) -> _Result:
        self._autoreport_interval = args.get("S", 0.0)
        self._next_autoreport = now
        return "", None

    def _m115(self, code: str, command: str, args: dict[str, float], now: float) -> _Result:
        self._emit(
            "FIRMWARE_NAME:Marlin 2.1.2 (virtual) SOURCE_CODE_URL:github.com/MarlinFirmware/Marlin "
            "PROTOCOL_VERSION:1.0 MACHINE_TYPE:lanqueue virtual EXTRUDER_COUNT:1"
        )
        self._emit(*(f"Cap:{k}:{v}" for k, v in self.capabilities.items()))
        return "", None

    def _m114(self, code: str, command: str, args: dict[str, float], now: float) -> _Result:
        p = self.position
        self._emit(f"X:{p['X']:.2f} Y:{p['Y']:.2f} Z:{p['Z']:.2f} E:{p['E']:.2f} Count X:0 Y:0 Z:0")
        return "", None

    def _sd(self, code: str, command: str, args: dict[str, float], now: float) -> _Result:
        self._sd_command(code, command, args)
        return "", None

    def _move(self, args: dict[str, float], now: float) -> None:
        if "F" in args:
            self.feedrate = args["F"]
        distance = 0.0
        for axis in "XYZ":
            if axis in args:
                distance += (args[axis] - self.position[axis]) ** 2
                self.position[axis] = args[axis]
        if "E" in args:
            self.position["E"] = args["E"]
        seconds = (distance**0.5) / max(self.feedrate / 60.0, 1e-3) / self.speed
        start = self._planner[-1] if self._planner else now
        self._planner.append(max(start, now) + seconds)

    def _sd_command(self, code: str, command: str, args: dict[str, float]) -> None:
        sd = self.sd_dir
        if sd is None or not sd.is_dir():
            self._emit("echo:No SD card")
            return
        if code == "M20":
            self._emit("Begin file list")
            for p in sorted(sd.iterdir()):
                if p.is_file():
                    self._emit(f"{p.name} {p.stat().st_size}")
            self._emit("End file list")
        elif code == "M23":
            name = command[3:].strip()
            path = sd / name
            if not path.is_file() or path.parent != sd:
                self._emit(f"open failed, File: {name}.")
                return
            self._sd_file = path
            self._sd_size = path.stat().st_size
            self._sd_pos = 0
            if self._sd_handle is not None:
                self._sd_handle.close()
            self._sd_handle = open(path, "rb")  # noqa: SIM115 - closed at end or abort
            self._emit(f"File opened: {name} Size: {self._sd_size}", "File selected")
        elif code == "M24":
            if self._sd_handle is not None:
                self._sd_printing = True
        elif code == "M25":
            self._sd_printing = False
        elif code == "M27":
            if self._sd_handle is not None:
                self._emit(f"SD printing byte {self._sd_pos}/{self._sd_size}")
            else:
                self._emit("Not SD printing")
        elif code == "M524":
            self._sd_stop()

    def _sd_stop(self) -> None:
        self._sd_printing = False
        if self._sd_handle is not None:
            self._sd_handle.close()
        self._sd_handle = None

    def _sd_step(self) -> None:
        handle = self._sd_handle
        assert handle is not None
        raw = handle.readline()
        if not raw:
            self._sd_stop()
            self._emit("Done printing file")
            return
        self._sd_pos += len(raw)
        text = strip_comment(raw.decode("ascii", "replace"))
        if text:
            self._execute(text, self._now, from_sd=True)


_Result = tuple[str, float | None]
_Command = Callable[[VirtualMarlin, str, str, dict[str, float], float], _Result]
_COMMANDS: dict[str, _Command] = {
    **dict.fromkeys(("G0", "G1", "G2", "G3"), VirtualMarlin._g_move),
    "G28": VirtualMarlin._g28,
    "G29": VirtualMarlin._g29,
    "G4": VirtualMarlin._g4,
    "M400": VirtualMarlin._m400,
    "G92": VirtualMarlin._g92,
    **dict.fromkeys(("M104", "M109", "M140", "M190"), VirtualMarlin._heater),
    "M105": VirtualMarlin._m105,
    "M155": VirtualMarlin._m155,
    "M115": VirtualMarlin._m115,
    "M114": VirtualMarlin._m114,
    **dict.fromkeys(("M20", "M21", "M23", "M24", "M25", "M27", "M524"), VirtualMarlin._sd),
}
#: Commands taken with a plain `ok` and no effect on the model.
_ACCEPTED = frozenset(("M110", "M106", "M107", "M84", "M18", "M82", "M83", "M117", "M220", "M221", "G90", "G91",
                       "G21", "M108", "M73", "M201", "M203", "M204", "M205", "M300", "M118"))


def _args(command: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for word in command.split()[1:]:
        if len(word) >= 2:
            try:
                out[word[0].upper()] = float(word[1:])
            except ValueError:
                pass
    return out
