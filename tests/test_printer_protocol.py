"""The firmware protocol core without I/O: tables of bytes <-> events, timeouts by passing `now`,
a fuzz property, and a seeded simulation against the virtual Marlin model (no pty, virtual time).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lanqueue.printer import (
    ActionRequested,
    Faults,
    FirmwareInfo,
    FirmwareProtocol,
    LocalProtocolError,
    PrintCancelled,
    PrintDone,
    PrinterEvent,
    PrinterState,
    PrintFailed,
    PrintPaused,
    PrintResumed,
    PrintStarted,
    RemoteProtocolError,
    ScriptDone,
    StateChanged,
    TemperaturesChanged,
    Timeouts,
    VirtualMarlin,
)
from lanqueue.printer.gcode import checksum, format_line, parse_resend, parse_temperatures
from lanqueue.printer.protocol import MAX_LINE

T = Timeouts(handshake=1.0, communication=5.0, communication_busy=2.0, long_command=100.0, resend_grace=0.1)
M115_REPLY = (
    b"FIRMWARE_NAME:Marlin 2.1.2 SOURCE_CODE_URL:github.com/MarlinFirmware/Marlin PROTOCOL_VERSION:1.0\n"
    b"Cap:AUTOREPORT_TEMP:1\nCap:EMERGENCY_PARSER:1\nCap:BUSY_PROTOCOL:1\nok\n"
)


class ListSource:
    """A CommandSource over a list, for the core tests."""

    def __init__(self, commands: list[str]) -> None:
        self.commands = list(commands)
        self.size = sum(len(c) + 1 for c in commands)
        self.position = 0
        self.lines = 0
        self.exhausted = False
        self._i = 0

    def next_command(self) -> str | None:
        if self._i >= len(self.commands):
            self.exhausted = True
            return None
        command = self.commands[self._i]
        self._i += 1
        self.position += len(command) + 1
        self.lines += 1
        return command

    def close(self) -> None:
        self.exhausted = True


def operational(caps: bytes = M115_REPLY, **kwargs: object) -> FirmwareProtocol:
    """A core that went through the handshake at time 0 (its M155/M105 already written)."""
    core = FirmwareProtocol(timeouts=T, **kwargs)  # type: ignore[arg-type]
    core.connection_made(0.0)
    assert core.next_line() == b"N0 M110 N0*125\n"
    core.receive_data(b"ok\n", 0.0)
    assert core.next_line() == b"N1 M115*39\n"
    core.receive_data(caps, 0.0)
    assert core.state is PrinterState.OPERATIONAL
    first = core.next_line()
    assert first is not None
    core.receive_data(b"ok\n", 0.0)
    return core


# ---------------------------------------------------------------------- gcode helpers
@pytest.mark.parametrize(
    ("number", "command", "expected"),
    [(0, "M110 N0", 125), (1, "G28", 18), (3186, "M105", 27), (123, "G1 X1", 97)],
)
def test_checksums_match_marlin(number: int, command: str, expected: int) -> None:
    assert checksum(b"N%d %s" % (number, command.encode())) == expected
    assert format_line(number, command) == b"N%d %s*%d\n" % (number, command.encode(), expected)


@given(st.binary(max_size=200))
def test_fast_checksum_is_a_plain_xor(data: bytes) -> None:
    x = 0
    for b in data:
        x ^= b
    assert checksum(data) == x


@pytest.mark.parametrize(
    ("line", "n"),
    [("Resend: 3185", 3185), ("Resend:5", 5), ("rs N2", 2), ("rs N:7", 7), ("resend: N12", 12), ("ok", None)],
)
def test_resend_requests(line: str, n: int | None) -> None:
    assert parse_resend(line) == n


@pytest.mark.parametrize(
    ("line", "temps"),
    [
        ("ok T:210.0 /210.0 B:60.0 /60.0 @:0 B@:0", {"tool0": (210.0, 210.0), "bed": (60.0, 60.0)}),
        (" T:201.2 E:0 W:?", {"tool0": (201.2, None)}),
        ("T0:20.0 /0.0 T1:21.5 /200.0 B:22.0 /0.0 C:30.1", {
            "tool0": (20.0, 0.0), "tool1": (21.5, 200.0), "bed": (22.0, 0.0), "chamber": (30.1, None)}),
        ("T:25 /0 B:-3.5 /0", {"tool0": (25.0, 0.0), "bed": (-3.5, 0.0)}),
    ],
)
def test_temperature_reports(line: str, temps: dict[str, tuple[float, float | None]]) -> None:
    assert parse_temperatures(line) == temps


# ---------------------------------------------------------------------- handshake
def test_handshake_reads_capabilities_and_turns_on_autoreport() -> None:
    core = FirmwareProtocol(timeouts=T)
    assert core.connection_made(0.0) == [StateChanged(PrinterState.CONNECTING)]
    assert core.next_line() == b"N0 M110 N0*125\n"
    assert core.next_line() is None  # one line in flight
    assert core.receive_data(b"ok\n", 0.0) == []
    assert core.next_line() == b"N1 M115*39\n"
    events = core.receive_data(M115_REPLY, 0.0)
    assert events == [
        FirmwareInfo("Marlin 2.1.2", {"AUTOREPORT_TEMP": True, "EMERGENCY_PARSER": True, "BUSY_PROTOCOL": True}),
        StateChanged(PrinterState.OPERATIONAL),
    ]
    assert core.next_line() == b"N2 M155 S2*97\n"


def test_handshake_without_autoreport_polls_m105() -> None:
    core = operational(caps=b"FIRMWARE_NAME:Marlin\nok\n")
    assert core.next_line() is None
    core.tick(T.temperature_interval + 0.01)
    assert core.next_line() == format_line(3, "M105")


def test_handshake_retries_then_gives_up() -> None:
    core = FirmwareProtocol(timeouts=T)
    core.connection_made(0.0)
    sent = [core.next_line()]
    now = 0.0
    for _ in range(T.handshake_tries + 1):
        now += T.handshake + 0.1
        core.tick(now)
        sent.append(core.next_line())
    assert sent[:T.handshake_tries] == [b"N0 M110 N0*125\n"] * T.handshake_tries
    assert core.state is PrinterState.ERROR
    assert core.error is not None and "handshake" in core.error
    assert core.wants_close


def test_start_during_handshake_restarts_it() -> None:
    core = FirmwareProtocol(timeouts=T)
    core.connection_made(0.0)
    core.next_line()
    core.receive_data(b"start\necho:Marlin 2.1.2\n", 0.1)
    assert core.next_line() == b"N0 M110 N0*125\n"


# ---------------------------------------------------------------------- replies -> events
REPLIES: list[tuple[bytes, list[PrinterEvent]]] = [
    (b"ok T:210.0 /215.0 B:60.0 /60.0 @:0\n", [TemperaturesChanged({"tool0": (210.0, 215.0), "bed": (60.0, 60.0)})]),
    (b"T:21.00 /0.00 B:20.00 /0.00 @:0 B@:0\n", [TemperaturesChanged({"tool0": (21.0, 0.0), "bed": (20.0, 0.0)})]),
    (b"echo:busy: processing\n", []),
    (b"busy: processing\n", []),
    (b"wait\n", []),
    (b"echo:Unknown command: \"X\"\n", []),
    (b"Error:checksum mismatch, Last Line: 3\n", []),
    (b"//action:pause\n", [ActionRequested("pause")]),
    (b"//action:sd_inserted\n", [ActionRequested("sd_inserted")]),
    (
        b"Error:Thermal Runaway, system stopped! Heater_ID: 0\nError:Printer halted. kill() called!\n",
        [StateChanged(PrinterState.ERROR, "Printer halted: Thermal Runaway, system stopped! Heater_ID: 0")],
    ),
    (b"Error:MAXTEMP triggered, system stopped!\n", [StateChanged(PrinterState.ERROR, "Printer halted: MAXTEMP triggered, system stopped!")]),
    (b"!! Printer halted\n", [StateChanged(PrinterState.ERROR, "Printer halted: Printer halted")]),
    (b"start\n", [StateChanged(PrinterState.CONNECTING)]),
    (b"Begin file list\nA.GCO 120\nB.GCO 33\nEnd file list\n", [__import__("lanqueue.printer").printer.SdFilesListed((("A.GCO", 120), ("B.GCO", 33)))]),
]


@pytest.mark.parametrize(("data", "expected"), REPLIES)
@pytest.mark.parametrize("split", [False, True], ids=["whole", "byte-by-byte"])
def test_replies_to_events(data: bytes, expected: list[PrinterEvent], split: bool) -> None:
    core = operational()
    events: list[PrinterEvent] = []
    if split:
        for i in range(len(data)):
            events += core.receive_data(data[i : i + 1], 1.0)
    else:
        events = core.receive_data(data, 1.0)
    assert events == expected


def test_endless_line_is_a_remote_error() -> None:
    core = operational()
    with pytest.raises(RemoteProtocolError):
        core.receive_data(b"x" * (MAX_LINE + 1), 1.0)


@given(st.lists(st.binary(max_size=64), max_size=20))
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_any_bytes_give_events_or_a_remote_error(chunks: list[bytes]) -> None:
    """Fed whole or one byte at a time, arbitrary bytes give the same events or a RemoteProtocolError."""
    data = b"".join(chunks)
    results = []
    for pieces in ([data], [data[i : i + 1] for i in range(len(data))]):
        core = operational()
        core.start_print(ListSource(["G1 X1"] * 5), "f", "f", 0.0)
        events: list[PrinterEvent] = []
        try:
            for piece in pieces:
                events += core.receive_data(piece, 1.0)
                while core.next_line() is not None:
                    pass
            events += core.tick(2.0)
        except RemoteProtocolError:
            events = ["remote error"]  # type: ignore[list-item]
        assert all(isinstance(e, PrinterEvent) for e in events) or events == ["remote error"]
        results.append(events)
    assert results[0] == results[1]


# ---------------------------------------------------------------------- resends and timeouts
def test_resend_serves_the_same_bytes_from_history() -> None:
    core = operational()
    core.send_commands(["G1 X1", "G1 X2", "G1 X3"])
    first = core.next_line()
    core.receive_data(b"ok\n", 1.0)
    second = core.next_line()
    core.receive_data(b"ok\n", 1.0)
    third = core.next_line()
    assert (first, second, third) == (format_line(3, "G1 X1"), format_line(4, "G1 X2"), format_line(5, "G1 X3"))
    core.receive_data(b"Error:Line Number is not Last Line Number+1, Last Line: 3\nResend: 4\nok\n", 1.0)
    assert core.next_line() == second
    assert core.next_line() is None
    core.receive_data(b"ok\n", 1.0)
    assert core.next_line() == third


def test_missing_ok_after_resend_does_not_stall() -> None:
    core = operational()
    core.send_commands(["G1 X1"])
    line = core.next_line()
    core.receive_data(b"Error:checksum mismatch, Last Line: 2\nResend: 3\n", 1.0)
    assert core.next_line() is None  # waiting briefly for the ok that usually follows
    core.tick(1.0 + T.resend_grace + 0.01)
    assert core.next_line() == line
    # Learnt: later resend requests are served at once.
    core.receive_data(b"Error:checksum mismatch, Last Line: 2\nResend: 3\n", 2.0)
    assert core.next_line() == line


def test_resend_older_than_history_fails_the_print() -> None:
    core = operational(history_size=4)
    core.start_print(ListSource([f"G1 X{i}" for i in range(10)]), "p", "p", 0.0)
    for _ in range(8):
        assert core.next_line() is not None
        core.receive_data(b"ok\n", 1.0)
    events = core.receive_data(b"Resend: 3\n", 1.0)
    assert isinstance(events[0], PrintFailed) and "history" in events[0].reason
    assert core.state is PrinterState.ERROR


def test_silence_is_poked_with_m105_and_repeated_silence_means_gone() -> None:
    core = operational()
    core.send_commands(["G1 X1"])
    core.next_line()
    assert core.tick(1.0 + T.communication - 1) == []
    core.tick(1.0 + T.communication + 0.1)
    assert core.next_line() == format_line(4, "M105")  # numbered: a lost line gets re-requested
    now = 1.0 + T.communication + 0.1
    for _ in range(T.max_pokes):
        now += T.communication + 0.1
        events = core.tick(now)
        core.next_line()
    assert core.state is PrinterState.ERROR
    assert events[-1] == StateChanged(PrinterState.ERROR, core.error)
    assert core.error is not None and "stopped responding" in core.error


def test_long_commands_are_allowed_their_time() -> None:
    core = operational(caps=b"FIRMWARE_NAME:Marlin\nCap:AUTOREPORT_TEMP:1\nok\n")
    core.send_commands(["G28"])
    core.next_line()
    core.tick(1.0 + T.communication * 3)
    assert core.next_line() is None  # no poke yet
    core.tick(1.0 + T.long_command + 1)
    assert core.next_line() == format_line(4, "M105")


def test_busy_keepalives_hold_off_the_poke() -> None:
    core = operational()
    core.send_commands(["M400"])
    core.next_line()
    now = 1.0
    for _ in range(20):
        now += T.communication_busy * 0.9
        core.receive_data(b"echo:busy: processing\n", now)
        core.tick(now)
        assert core.next_line() is None
    core.tick(now + T.communication_busy + 0.1)
    assert core.next_line() == format_line(4, "M105")


def test_temperature_reports_do_not_hide_a_lost_ok() -> None:
    core = operational()
    core.send_commands(["G1 X1"])
    core.next_line()
    now = 1.0
    while now < 1.0 + T.communication + 1:
        now += 1.0
        core.receive_data(b"T:21.00 /0.00 B:20.00 /0.00\n", now)
        core.tick(now)
    assert core.next_line() == format_line(4, "M105")


# ---------------------------------------------------------------------- print control
def test_print_pause_resume_finish() -> None:
    core = operational()
    events = core.start_print(ListSource(["G28", "G1 X1", "G1 X2"]), "/f.gcode", "f", 1.0)
    assert events == [StateChanged(PrinterState.PRINTING), PrintStarted("/f.gcode", "f", "local")]
    assert core.next_line() == format_line(3, "G28")
    assert core.pause() == [StateChanged(PrinterState.PAUSING)]
    assert core.next_line() is None  # nothing new after pause
    assert core.receive_data(b"ok\n", 2.0) == [StateChanged(PrinterState.PAUSED), PrintPaused("/f.gcode", "f")]
    core.send_commands(["M114"])  # allowed while paused
    assert core.next_line() == format_line(4, "M114")
    core.receive_data(b"ok\n", 2.0)
    assert core.resume() == [StateChanged(PrinterState.PRINTING), PrintResumed("/f.gcode", "f")]
    assert core.next_line() == format_line(5, "G1 X1")
    core.receive_data(b"ok\n", 3.0)
    assert core.next_line() == format_line(6, "G1 X2")
    events = core.receive_data(b"ok\n", 4.0)
    assert events == [PrintDone("/f.gcode", "f", 3.0), StateChanged(PrinterState.OPERATIONAL)]


def test_cancel_breaks_heating_and_runs_the_cancel_script() -> None:
    core = operational(cancel_script="M104 S0\nM140 S0 ; bed\n\nM84")
    core.start_print(ListSource(["M109 S200", "G1 X1"]), "p", "p", 0.0)
    core.next_line()
    assert core.cancel() == [StateChanged(PrinterState.CANCELLING)]
    assert core.next_line() == b"M108\n"  # emergency parser: acted on at once
    sent = []
    for _ in range(3):
        core.receive_data(b"ok\n", 1.0)
        sent.append(core.next_line())
    assert sent == [format_line(4, "M104 S0"), format_line(5, "M140 S0"), format_line(6, "M84")]
    assert core.receive_data(b"ok\n", 1.0) == [PrintCancelled("p", "p"), StateChanged(PrinterState.OPERATIONAL)]


def test_emergency_stop_jumps_the_queue() -> None:
    core = operational()
    core.start_print(ListSource(["G1 X1"] * 10), "p", "p", 0.0)
    core.next_line()  # a line in flight: no credit left
    events = core.emergency_stop()
    assert events == [PrintFailed("p", "p", "Emergency stop (M112)"), StateChanged(PrinterState.ERROR, "Emergency stop (M112)")]
    assert core.next_line() == b"M112\n"
    assert core.next_line() is None
    assert core.wants_close


def test_action_commands_from_the_printer_screen() -> None:
    core = operational()
    core.start_print(ListSource(["G1 X1"] * 10), "p", "p", 0.0)
    core.next_line()
    events = core.receive_data(b"//action:pause\n", 1.0)
    assert events == [ActionRequested("pause"), StateChanged(PrinterState.PAUSING)]
    core.receive_data(b"ok\n", 1.0)
    assert core.state is PrinterState.PAUSED
    events = core.receive_data(b"//action:resume\n", 1.0)
    assert events[:2] == [ActionRequested("resume"), StateChanged(PrinterState.PRINTING)]
    events = core.receive_data(b"//action:cancel\n", 1.0)
    assert events == [ActionRequested("cancel"), StateChanged(PrinterState.CANCELLING)]


def test_reset_mid_print_fails_it_and_reconnects() -> None:
    core = operational()
    core.start_print(ListSource(["G1 X1"] * 10), "p", "p", 0.0)
    core.next_line()
    events = core.receive_data(b"start\n", 1.0)
    assert isinstance(events[0], PrintFailed) and "reset" in events[0].reason
    assert events[1] == StateChanged(PrinterState.CONNECTING)
    assert core.next_line() == b"N0 M110 N0*125\n"


def test_scripts_report_when_acknowledged_and_fail_on_disconnect() -> None:
    core = operational()
    assert core.run_script(["G28", "; only a comment", "G1 Z10"], token=7) == []
    core.next_line()
    assert core.receive_data(b"ok\n", 1.0) == []
    core.next_line()
    assert core.receive_data(b"ok\n", 1.0) == [ScriptDone(7)]
    core.run_script(["G28"], token=8)
    core.next_line()
    events = core.connection_lost("unplugged", 2.0)
    assert ScriptDone(8, ok=False) in events
    assert events[-1] == StateChanged(PrinterState.OFFLINE, "unplugged")


def test_m110_in_a_file_keeps_line_numbers_in_step() -> None:
    core = operational()
    core.start_print(ListSource(["G1 X1", "M110 N0", "G1 X2"]), "p", "p", 0.0)
    sent = []
    for _ in range(3):
        sent.append(core.next_line())
        core.receive_data(b"ok\n", 1.0)
    assert sent == [format_line(3, "G1 X1"), format_line(4, "M110 N4"), format_line(5, "G1 X2")]


def test_misuse_is_a_local_error() -> None:
    core = FirmwareProtocol(timeouts=T)
    with pytest.raises(LocalProtocolError):
        core.start_print(ListSource([]), "p", "p", 0.0)
    core = operational()
    with pytest.raises(LocalProtocolError):
        core.pause()
    core.start_print(ListSource(["G1"]), "p", "p", 0.0)
    with pytest.raises(LocalProtocolError):
        core.run_script(["G28"], 1)
    with pytest.raises(LocalProtocolError):
        core.start_print(ListSource([]), "p", "p", 0.0)


# ---------------------------------------------------------------------- simulation
def simulate(core: FirmwareProtocol, vm: VirtualMarlin, commands: list[str], limit: float = 600.0) -> list[PrinterEvent]:
    """Run host core and firmware model against each other in virtual time until the print ends."""
    now = 0.0
    events = core.connection_made(now)
    vm.power_on(now)
    started = False
    while now < limit:
        while (line := core.next_line()) is not None:
            vm.receive(line, now)
        out = vm.take_output()
        if out:
            events += core.receive_data(out, now)
            continue
        if not started and core.state is PrinterState.OPERATIONAL:
            events += core.start_print(ListSource(commands), "sim", "sim", now)
            started = True
            continue
        if started and not core.state.is_printing:
            return events
        now += 0.01
        vm.tick(now)
        events += core.tick(now)
    raise AssertionError(f"simulation did not finish: {core.state}")


@given(
    seed=st.integers(0, 2**32 - 1),
    corrupt=st.sampled_from([0.0, 0.02, 0.1, 0.3]),
    drop=st.sampled_from([0.0, 0.02, 0.1]),
    lost_ok=st.sampled_from([0.0, 0.02, 0.1]),
    no_ok_after_resend=st.booleans(),
    storm=st.sampled_from([0.0, 0.01, 0.05]),
    storm_length=st.sampled_from([3, 8, 20]),
    busy=st.sampled_from([0.0, 0.02]),
    pipelined=st.booleans(),
)
@settings(max_examples=200, deadline=None)
def test_simulated_faults_never_lose_or_repeat_a_line(
    seed: int, corrupt: float, drop: float, lost_ok: float, no_ok_after_resend: bool, storm: float,
    storm_length: int, busy: float, pipelined: bool,
) -> None:
    """Up to 30 % corrupted lines, 10 % lost lines and lost oks: still every line exactly once."""
    faults = Faults(
        seed=seed, corrupt_rate=corrupt, drop_rate=drop, lost_ok_rate=lost_ok,
        no_ok_after_resend=no_ok_after_resend, storm_rate=storm, storm_length=storm_length,
        busy_rate=busy, busy_time=3.0,
    )
    vm = VirtualMarlin(speed=1000.0, faults=faults)
    core = FirmwareProtocol(timeouts=Timeouts(communication=0.5, communication_busy=0.5, resend_grace=0.05), pipelined=pipelined)
    commands = [f"G1 X{i % 10} Y{i % 7} F6000" for i in range(200)]
    events = simulate(core, vm, commands, limit=3000.0)
    assert [e for e in events if isinstance(e, (PrintDone, PrintFailed))][-1].__class__ is PrintDone
    assert [c for c in vm.executed if c.split()[0] not in ("M105", "M110", "M115", "M155")] == commands
    assert vm.overflows == 0


# ---------------------------------------------------------------------- stateful property
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule  # noqa: E402


class CoreMachine(RuleBasedStateMachine):
    """Random sequences of commands and replies keep the core consistent and never crash it."""

    def __init__(self) -> None:
        super().__init__()
        self.core = operational()
        self.now = 1.0
        self.events: list[PrinterEvent] = []

    def _do(self, fn, *args) -> None:  # type: ignore[no-untyped-def]
        try:
            self.events += fn(*args)
        except LocalProtocolError:
            pass
        while self.core.next_line() is not None:
            pass

    @rule(n=st.integers(1, 30))
    def start_print(self, n: int) -> None:
        self._do(self.core.start_print, ListSource([f"G1 X{i}" for i in range(n)]), "p", "p", self.now)

    @rule()
    def pause(self) -> None:
        self._do(self.core.pause)

    @rule()
    def resume(self) -> None:
        self._do(self.core.resume)

    @rule()
    def cancel(self) -> None:
        self._do(self.core.cancel)

    @rule()
    def emergency_stop(self) -> None:
        self._do(self.core.emergency_stop)

    @rule(lines=st.lists(st.sampled_from(["M117 hi", "G28", "M105", "; c", "M112"]), max_size=3))
    def send_commands(self, lines: list[str]) -> None:
        self._do(self.core.send_commands, lines)

    @rule(reply=st.sampled_from([
        b"ok\n", b"ok\n", b"ok\n", b"ok T:20 /0 B:20 /0\n", b"echo:busy: processing\n", b"start\n",
        b"//action:pause\n", b"//action:resume\n", b"//action:cancel\n", b"Error:MAXTEMP triggered\n",
        b"Error:checksum mismatch, Last Line: 3\n", b"wait\n",
        b"FIRMWARE_NAME:Marlin\nCap:AUTOREPORT_TEMP:1\nok\n",
    ]))
    def reply(self, reply: bytes) -> None:
        self._do(self.core.receive_data, reply, self.now)

    @rule(offset=st.integers(0, 12))
    def resend(self, offset: int) -> None:
        n = max(0, self.core.window.last_n - offset)
        self._do(self.core.receive_data, b"Resend: %d\n" % n, self.now)

    @rule(dt=st.sampled_from([0.01, 0.5, 3.0, 50.0]))
    def tick(self, dt: float) -> None:
        self.now += dt
        self._do(self.core.tick, self.now)

    @rule()
    def reconnect(self) -> None:
        """Unplug, plug back and complete the handshake (the way out of Error)."""
        self._do(self.core.connection_lost, "unplugged", self.now)
        self._do(self.core.connection_made, self.now)
        self._do(self.core.receive_data, b"ok\n", self.now)
        self._do(self.core.receive_data, M115_REPLY, self.now)
        assert self.core.state is PrinterState.OPERATIONAL

    @invariant()
    def job_matches_state(self) -> None:
        assert (self.core.job is not None) == self.core.state.is_printing

    @invariant()
    def window_is_respected(self) -> None:
        w = self.core.window
        assert len(w.in_flight) <= w.max_lines
        assert w.in_flight_bytes == sum(entry[1] for entry in w.in_flight)

    @invariant()
    def every_print_ends_once(self) -> None:
        started = sum(isinstance(e, PrintStarted) for e in self.events)
        ended = sum(isinstance(e, (PrintDone, PrintFailed, PrintCancelled)) for e in self.events)
        assert ended == started - (1 if self.core.job is not None else 0)

    @invariant()
    def error_state_has_a_reason(self) -> None:
        if self.core.state is PrinterState.ERROR:
            assert self.core.error


CoreMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
test_core_state_machine = CoreMachine.TestCase
