"""PrinterService against the built-in virtual printer, over a real pty and the real transport."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from lanqueue.errors import Conflict, Unavailable
from lanqueue.printer import (
    ActionRequested,
    PrintCancelled,
    PrintDone,
    PrinterEvent,
    PrinterService,
    PrinterState,
    PrintFailed,
    PrintPaused,
    PrintResumed,
    PrintStarted,
    StateChanged,
    TemperaturesChanged,
    Timeouts,
)

PROTOCOL = {"M105", "M110", "M115", "M155"}
FAST = Timeouts(handshake=1.0, communication=1.0, communication_busy=1.0, resend_grace=0.05)



from printer_helpers import Recorder, no_leaked_tasks  # noqa: F401 - the fixture applies by import


def state_is(state: PrinterState) -> Callable[[PrinterEvent], bool]:
    return lambda e: isinstance(e, StateChanged) and e.state is state


def file_lines(executed: list[str]) -> list[str]:
    return [c for c in executed if c.split()[0] not in PROTOCOL]


async def started(service: PrinterService) -> Recorder:
    rec = Recorder()
    service.add_listener(rec)
    await service.async_start()
    if service.state is not PrinterState.OPERATIONAL:
        await rec.wait_for(state_is(PrinterState.OPERATIONAL))
    return rec


@pytest.fixture
async def fast_printer(tmp_path: Path) -> AsyncIterator[tuple[PrinterService, Recorder]]:
    service = PrinterService("virtual", virtual_speed=10_000, sd_dir=tmp_path, timeouts=FAST, reconnect_delay=0.05)
    rec = await started(service)
    yield service, rec
    await service.async_close()


@pytest.fixture(params=[False, True], ids=["classic", "pipelined"])
async def slow_printer(request: pytest.FixtureRequest) -> AsyncIterator[tuple[PrinterService, Recorder]]:
    """Moves take real time here (20 ms each), so a print is still running when a test acts."""
    service = PrinterService("virtual", virtual_speed=50, timeouts=FAST, reconnect_delay=0.05, pipelined=request.param)
    rec = await started(service)
    yield service, rec
    await service.async_close()


def moves(tmp_path: Path, count: int, name: str = "slow.gcode") -> tuple[Path, list[str]]:
    """Alternating 20 mm moves at 20 mm/s: one second each at real speed."""
    commands = ["G92 X0 Y0"] + [f"G1 X{20 if i % 2 == 0 else 0} F1200" for i in range(count)]
    path = tmp_path / name
    path.write_text("; slow part\n" + "\n".join(commands) + "\n")
    return path, commands


async def test_connects_and_reports_state_and_temperatures(fast_printer: tuple[PrinterService, Recorder]) -> None:
    service, rec = fast_printer
    assert service.state is PrinterState.OPERATIONAL and service.state.text == "Operational"
    assert "Marlin" in service.firmware_name
    await rec.wait_for(lambda e: isinstance(e, TemperaturesChanged))
    assert set(service.temperatures) >= {"tool0", "bed"}
    assert [s.text for s in PrinterState] == [
        "Offline", "Connecting", "Operational", "Printing", "Pausing", "Paused", "Cancelling", "Error"]


async def test_run_script_returns_when_acknowledged(fast_printer: tuple[PrinterService, Recorder]) -> None:
    service, rec = fast_printer
    assert service.virtual is not None
    await service.async_run_script("M140 S60 ; bed\nM104 S200\n\nM109 S200 ; wait for the hotend")
    assert file_lines(service.virtual.model.executed)[-3:] == ["M140 S60", "M104 S200", "M109 S200"]
    # M109 returned only once the hotend was there; the next report shows it.
    n = len(rec.events)
    event = await rec.wait_for(lambda e: isinstance(e, TemperaturesChanged), start=n)
    assert isinstance(event, TemperaturesChanged)
    actual, target = event.temps["tool0"]
    assert target == 200.0 and abs(actual - 200.0) <= 1.5


async def test_direct_print_sends_only_the_file_and_reports_progress(
    fast_printer: tuple[PrinterService, Recorder], tmp_path: Path
) -> None:
    service, rec = fast_printer
    assert service.virtual is not None
    path = tmp_path / "cube.gcode"
    commands = [f"G1 X{i % 50} Y{i % 30} F6000" for i in range(3000)]
    path.write_text(";FLAVOR:Marlin\n" + "\n".join(c + " ; c" for c in commands) + "\n")
    before = len(service.virtual.model.executed)
    await service.async_print_file(path, "cube.gcode")
    assert service.state is PrinterState.PRINTING
    progress = service.progress()
    assert progress is not None and progress.name == "cube.gcode" and progress.bytes_total == path.stat().st_size
    with pytest.raises(Conflict):
        await service.async_print_file(path, "again")
    with pytest.raises(Conflict):
        await service.async_run_script("G28")
    done = await rec.wait_for(lambda e: isinstance(e, (PrintDone, PrintFailed)))
    assert isinstance(done, PrintDone) and done.name == "cube.gcode" and done.elapsed > 0
    assert file_lines(service.virtual.model.executed[before:]) == commands
    assert service.progress() is None
    kinds = [type(e) for e in rec.events if not isinstance(e, TemperaturesChanged)]
    assert kinds[-4:] == [StateChanged, PrintStarted, PrintDone, StateChanged]


async def test_commands_interleave_with_a_running_print(fast_printer: tuple[PrinterService, Recorder], tmp_path: Path) -> None:
    service, rec = fast_printer
    assert service.virtual is not None
    path = tmp_path / "p.gcode"
    commands = [f"G1 X{i % 50} F6000" for i in range(2000)]
    path.write_text("\n".join(commands) + "\n")
    before = len(service.virtual.model.executed)
    await service.async_print_file(path, "p")
    await service.async_send_commands(["M117 hello ; from the terminal", "M106 S128"])
    await rec.wait_for(lambda e: isinstance(e, PrintDone))
    executed = file_lines(service.virtual.model.executed[before:])
    assert [c for c in executed if not c.startswith("G1")] == ["M117 hello", "M106 S128"]
    assert [c for c in executed if c.startswith("G1")] == commands


async def test_offline_printer_is_unavailable_and_reconnects(fast_printer: tuple[PrinterService, Recorder]) -> None:
    service, rec = fast_printer
    n = len(rec.events)
    await service.async_disconnect()
    await rec.wait_for(state_is(PrinterState.OFFLINE), start=n)
    with pytest.raises(Unavailable):
        await service.async_run_script("G28")
    with pytest.raises(Unavailable):
        await service.async_send_commands(["M105"])
    with pytest.raises(Unavailable):
        await service.async_emergency_stop()
    with pytest.raises(Conflict):
        await service.async_pause()
    n = len(rec.events)
    await service.async_connect()
    await rec.wait_for(state_is(PrinterState.OPERATIONAL), start=n)
    await service.async_run_script("M117 back")


async def test_pause_and_resume_act_within_one_round_trip(slow_printer: tuple[PrinterService, Recorder], tmp_path: Path) -> None:
    service, rec = slow_printer
    assert service.virtual is not None
    model = service.virtual.model
    path, commands = moves(tmp_path, 80)
    before = len(model.executed)
    await service.async_print_file(path, "slow")
    while len(file_lines(model.executed[before:])) < 25:
        await asyncio.sleep(0.01)
    await service.async_pause()
    at_pause = len(file_lines(model.executed[before:]))
    assert service.state in (PrinterState.PAUSING, PrinterState.PAUSED)
    await rec.wait_for(lambda e: isinstance(e, PrintPaused))
    after = len(file_lines(model.executed[before:]))
    # Only what was already in flight ran: one line (classic) or the pipelined window.
    assert after - at_pause <= (8 if service.pipelined else 1)
    await asyncio.sleep(0.3)
    assert len(file_lines(model.executed[before:])) == after  # nothing runs while paused
    await service.async_resume()
    await rec.wait_for(lambda e: isinstance(e, PrintResumed))
    done = await rec.wait_for(lambda e: isinstance(e, (PrintDone, PrintFailed)))
    assert isinstance(done, PrintDone)
    assert file_lines(model.executed[before:]) == commands


async def test_cancel_stops_feeding_and_runs_the_cancel_script(
    slow_printer: tuple[PrinterService, Recorder], tmp_path: Path
) -> None:
    service, rec = slow_printer
    assert service.virtual is not None
    model = service.virtual.model
    path, commands = moves(tmp_path, 200)
    before = len(model.executed)
    await service.async_print_file(path, "slow")
    while len(file_lines(model.executed[before:])) < 25:
        await asyncio.sleep(0.01)
    await service.async_cancel()
    at_cancel = len(file_lines(model.executed[before:]))
    assert service.state is PrinterState.CANCELLING
    cancelled = await rec.wait_for(lambda e: isinstance(e, PrintCancelled))
    assert cancelled == PrintCancelled(str(path), "slow")
    assert service.state is PrinterState.OPERATIONAL
    executed = file_lines(model.executed[before:])
    assert executed[-4:] == ["M104 S0", "M140 S0", "M106 S0", "M84"]
    printed = [c for c in executed[:-4] if c != "M108"]
    assert printed == commands[: len(printed)]
    assert len(printed) - at_cancel <= (8 if service.pipelined else 1)


async def test_emergency_stop_is_immediate_even_during_a_long_wait(tmp_path: Path) -> None:
    service = PrinterService("virtual", virtual_speed=1, timeouts=FAST, reconnect_delay=0.05)
    rec = await started(service)
    try:
        assert service.virtual is not None
        model = service.virtual.model
        path = tmp_path / "dwell.gcode"
        path.write_text("G4 S1000\nG1 X10\n")
        await service.async_print_file(path, "dwell")
        while "G4 S1000" not in model.executed:
            await asyncio.sleep(0.01)
        n = len(rec.events)
        await service.async_emergency_stop()
        failed = await rec.wait_for(lambda e: isinstance(e, PrintFailed), start=n)
        assert isinstance(failed, PrintFailed) and "Emergency stop" in failed.reason
        assert service.state is PrinterState.ERROR
        while "M112" not in model.executed:
            await asyncio.sleep(0.01)
        assert model.executed[-2:] == ["G4 S1000", "M112"]  # jumped the dwell, nothing in between
        # The port is closed and reopened; the board resets and is usable again.
        await rec.wait_for(state_is(PrinterState.OPERATIONAL), start=n)
        assert service.error == "Emergency stop (M112)"
    finally:
        await service.async_close()


async def test_printer_screen_actions_pause_resume_and_cancel(
    slow_printer: tuple[PrinterService, Recorder], tmp_path: Path
) -> None:
    service, rec = slow_printer
    assert service.virtual is not None
    path, _ = moves(tmp_path, 200)
    await service.async_print_file(path, "slow")
    service.virtual.request_action("pause")
    await rec.wait_for(lambda e: isinstance(e, PrintPaused))
    assert ActionRequested("pause") in rec.events
    service.virtual.request_action("resume")
    await rec.wait_for(lambda e: isinstance(e, PrintResumed))
    assert service.state is PrinterState.PRINTING
    service.virtual.request_action("cancel")
    await rec.wait_for(lambda e: isinstance(e, PrintCancelled))
    assert service.state is PrinterState.OPERATIONAL


async def test_sd_card_list_and_print(fast_printer: tuple[PrinterService, Recorder], tmp_path: Path) -> None:
    service, rec = fast_printer
    assert service.virtual is not None
    commands = [f"G1 X{i} F3000" for i in range(50)]
    (tmp_path / "BENCHY.GCO").write_text("; sd file\n" + "\n".join(commands) + "\n")
    files = await service.async_list_sd_files()
    assert ("BENCHY.GCO", (tmp_path / "BENCHY.GCO").stat().st_size) in files
    await service.async_print_sd_file("BENCHY.GCO")
    assert service.state is PrinterState.PRINTING
    done = await rec.wait_for(lambda e: isinstance(e, (PrintDone, PrintFailed)))
    assert isinstance(done, PrintDone) and done.name == "BENCHY.GCO"
    assert service.virtual.model.sd_executed == commands


async def test_listeners_unsubscribe_and_a_broken_listener_is_contained(fast_printer: tuple[PrinterService, Recorder]) -> None:
    service, rec = fast_printer
    seen: list[PrinterEvent] = []

    def broken(event: PrinterEvent) -> None:
        raise RuntimeError("listener bug")

    remove_broken = service.add_listener(broken)
    remove = service.add_listener(seen.append)
    await service.async_run_script("M117 one")
    remove()
    remove_broken()
    count = len(seen)
    await service.async_send_commands(["M117 two"])
    await service.async_run_script("M117 three")
    assert len(seen) == count
    await service.async_close()
    await service.async_close()  # idempotent


async def test_virtual_printer_command_on_a_pty_in_another_process() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "lanqueue.printer", "--speed", "1000", "--corrupt-rate", "0.2", "--seed", "3"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        path = await asyncio.get_running_loop().run_in_executor(None, proc.stdout.readline)
        service = PrinterService(path.strip(), timeouts=FAST)
        await started(service)
        try:
            await service.async_run_script("G28\nM109 S210\n" + "\n".join(f"G1 X{i}" for i in range(50)))
            await service.async_run_script("M105")  # its ok carries the temperatures
            assert service.temperatures["tool0"][1] == 210.0
        finally:
            await service.async_close()
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


async def test_sd_print_pause_resume_cancel(tmp_path: Path) -> None:
    service = PrinterService("virtual", virtual_speed=50, sd_dir=tmp_path, timeouts=FAST, reconnect_delay=0.05)
    rec = await started(service)
    try:
        assert service.virtual is not None
        model = service.virtual.model
        commands = ["G92 X0"] + [f"G1 X{20 if i % 2 == 0 else 0} F1200" for i in range(300)]
        (tmp_path / "SLOW.GCO").write_text("\n".join(commands) + "\n")
        await service.async_print_sd_file("SLOW.GCO")
        while len(model.sd_executed) < 20:
            await asyncio.sleep(0.01)
        with pytest.raises(Conflict):
            await service.async_print_file(tmp_path / "SLOW.GCO", "again")
        await service.async_pause()
        await rec.wait_for(lambda e: isinstance(e, PrintPaused))
        assert "M25" in model.executed
        paused_at = len(model.sd_executed)
        await asyncio.sleep(0.2)
        assert len(model.sd_executed) == paused_at  # the card stopped feeding
        await service.async_resume()
        await rec.wait_for(lambda e: isinstance(e, PrintResumed))
        while len(model.sd_executed) <= paused_at:
            await asyncio.sleep(0.01)
        await service.async_cancel()
        cancelled = await rec.wait_for(lambda e: isinstance(e, PrintCancelled))
        assert cancelled == PrintCancelled("SLOW.GCO", "SLOW.GCO")
        assert "M524" in model.executed and model.executed[-4:] == ["M104 S0", "M140 S0", "M106 S0", "M84"]
        assert model.sd_executed == commands[: len(model.sd_executed)]
    finally:
        await service.async_close()


async def test_print_refused_while_not_operational(tmp_path: Path) -> None:
    service = PrinterService(str(tmp_path / "nothing-here"), timeouts=FAST)
    await service.async_start()
    try:
        path = tmp_path / "x.gcode"
        path.write_text("G28\n")
        with pytest.raises(Conflict):
            await service.async_print_file(path, "x")
    finally:
        await service.async_close()


async def test_temperatures_are_polled_when_the_firmware_cannot_autoreport() -> None:
    from lanqueue.printer import VirtualMarlin
    from lanqueue.printer.virtual import CAPABILITIES

    caps = {**CAPABILITIES, "AUTOREPORT_TEMP": 0}
    model = VirtualMarlin(speed=1000, capabilities=caps)
    service = PrinterService(
        "virtual", timeouts=Timeouts(temperature_interval=0.1, communication=1.0), virtual_model=model
    )
    rec = await started(service)
    try:
        await service.async_run_script("M104 S180")
        n = len(rec.events)
        event = await rec.wait_for(
            lambda e: isinstance(e, TemperaturesChanged) and e.temps["tool0"][1] == 180.0, start=n
        )
        assert isinstance(event, TemperaturesChanged)
        assert "M155" not in " ".join(model.executed) and model.executed.count("M105") >= 1
    finally:
        await service.async_close()


async def test_long_commands_get_their_time_without_busy_keepalives(tmp_path: Path) -> None:
    from lanqueue.printer import VirtualMarlin
    from lanqueue.printer.virtual import CAPABILITIES

    # No keep-alives and no temperature reports: the link is really silent while it homes.
    model = VirtualMarlin(speed=20, capabilities={**CAPABILITIES, "BUSY_PROTOCOL": 0, "AUTOREPORT_TEMP": 0})
    timeouts = Timeouts(communication=0.1, communication_busy=0.1, long_command=10.0, temperature_interval=100)
    service = PrinterService("virtual", timeouts=timeouts, virtual_model=model)
    rec = await started(service)
    try:
        path = tmp_path / "home.gcode"
        path.write_text("G28\nG4 S8\nG1 X5\n")  # homing 8 s + dwell 8 s: 0.4 s each at speed 20
        before = len(model.executed)
        await service.async_print_file(path, "home")
        done = await rec.wait_for(lambda e: isinstance(e, (PrintDone, PrintFailed)))
        assert isinstance(done, PrintDone)
        assert "M105" not in model.executed[before:]  # silent for longer than `communication`, never poked
        assert file_lines(model.executed)[-3:] == ["G28", "G4 S8", "G1 X5"]
    finally:
        await service.async_close()
