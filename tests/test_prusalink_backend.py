"""The PrusaLink backend: its status tracker as tables, then the backend against real PrusaLink
0.8.1 (in its own network and mount namespace) driving the Prusa firmware stand-in on a pty.

Pause/resume, cancel (by the node and on the printer's screen), a failure on the printer and a
power cut are exercised through a real node by tests/test_backend_conformance.py; here what it
does not see: known bytes not sent again, temperatures, an outage the print survives, scripts
as files, a wrong password. (Each print on PrusaLink costs its 11 s FINISHED pause: keep few.)"""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from printer_helpers import Recorder, no_leaked_tasks  # noqa: F401 - autouse fixture

from lanqueue.printer.backend import BackendSettings
from lanqueue.printer.events import (
    PrintCancelled,
    PrintDone,
    PrinterState,
    PrintFailed,
    PrintStarted,
    StateChanged,
)
from lanqueue.printer.prusalink import PrusaLinkBackend, PrusaLinkTracker

# --------------------------------------------------------------------------- the pure tracker


def st(state: str, job: int | None = None) -> dict:
    return {"printer": {"state": state}, **({"job": {"id": job, "progress": 10}} if job else {})}


@pytest.mark.parametrize(
    "statuses, kinds",
    [
        ([st("PRINTING", 7), st("PRINTING", 7), st("FINISHED")], ["done"]),
        ([st("PRINTING", 7), st("PAUSED", 7), st("PRINTING", 7), st("FINISHED")], ["paused", "resumed", "done"]),
        ([st("PRINTING", 7), st("STOPPED")], ["cancelled"]),
        ([st("PRINTING", 7), st("ERROR")], ["failed"]),
        # PrusaLink restarted (or FINISHED long gone): idle with no job -> lost, never done
        ([st("PRINTING", 7), st("IDLE")], ["failed"]),
        ([st("PRINTING", 7), st("PRINTING", 8)], ["failed"]),
        # the end is said once
        ([st("PRINTING", 7), st("FINISHED"), st("FINISHED"), st("IDLE")], ["done"]),
    ],
)
def test_tracker_reads_statuses(statuses, kinds):
    tracker = PrusaLinkTracker()
    tracker.follow(7)
    assert [o.kind for s in statuses for o in tracker.feed(s)] == kinds


def test_tracker_states_and_attention_while_printing():
    tracker = PrusaLinkTracker()
    tracker.feed(st("BUSY"))
    assert tracker.printer_state()[0] is PrinterState.CONNECTING  # no start while BUSY
    tracker.follow(3)
    tracker.feed({"printer": {"state": "ATTENTION"}, "job": {"id": 3}})
    assert tracker.printer_state()[0] is PrinterState.PAUSED


# --------------------------------------------------------------------------- real PrusaLink


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    from prusalink_rig import PrusaLinkRig, prusalink_unavailable

    reason = prusalink_unavailable()
    if reason:
        pytest.skip(reason)
    r = PrusaLinkRig.start(tmp_path_factory.mktemp("prusalink"))
    yield r
    r.close()


async def _started(rig, settings: BackendSettings | None = None):
    b = PrusaLinkBackend.from_url("prusalink", urlsplit(rig.url), settings or rig.settings())
    b.poll_interval = 0.3
    rec = Recorder()
    b.add_listener(rec)
    await b.async_start()
    return b, rec


@pytest.fixture
async def backend(rig):
    b, rec = await _started(rig)
    await rec.wait_for(lambda e: isinstance(e, StateChanged) and e.state is PrinterState.OPERATIONAL, 40)
    yield b, rec
    await b.async_cancel()
    await b.async_close()


def gcode(tmp_path: Path, lines: int = 300, name: str = "part.gcode") -> Path:
    path = tmp_path / name
    body = "".join(f"G1 X{i % 100} Y10\n" + (f"M73 P{i * 100 // lines} R1\n" if i % 50 == 0 else "")
                   for i in range(lines))
    path.write_text("M104 S215\nM140 S60\n" + body)
    return path


def ends(rec: Recorder) -> list:
    return [e for e in rec.events if isinstance(e, (PrintDone, PrintFailed, PrintCancelled))]


async def printing(rec: Recorder) -> None:
    await rec.wait_for(lambda e: isinstance(e, StateChanged) and e.state is PrinterState.PRINTING, 15)


@pytest.mark.slow
async def test_prints_to_the_end_once_and_skips_known_bytes(backend, rig, tmp_path):
    b, rec = backend
    assert b.capabilities.nozzle_diameter == 0.4
    path = gcode(tmp_path)
    await b.async_print_file(path, "part.gcode")
    await rec.wait_for(lambda e: isinstance(e, PrintDone), 30)
    for _ in range(50):  # the firmware reports temperatures once a second; PrusaLink passes them on
        if b.temperatures.get("tool0", (0, 0))[1] == 215.0:
            break
        await asyncio.sleep(0.1)
    assert b.temperatures["tool0"][1] == 215.0  # the target the file set, read back by PrusaLink
    stored = [p for p in (rig.dir / "data" / "PrusaLink gcodes").iterdir() if p.name.startswith("lq-")]
    assert len(stored) == 1
    mtime = stored[0].stat().st_mtime_ns
    await b.async_print_file(path, "part.gcode")
    await rec.wait_for(lambda e: isinstance(e, PrintDone), 30, start=rec.events.index(ends(rec)[0]) + 1)
    await asyncio.sleep(1.0)
    assert [type(e) for e in ends(rec)] == [PrintDone, PrintDone]
    assert [type(e) for e in rec.events if isinstance(e, PrintStarted)] == [PrintStarted, PrintStarted]
    assert stored[0].stat().st_mtime_ns == mtime  # not uploaded again


@pytest.mark.slow
async def test_unreachable_mid_print_and_back_ends_once(backend, rig, tmp_path):
    b, rec = backend
    await b.async_print_file(gcode(tmp_path, 1500), "part.gcode")
    await printing(rec)
    rig.network_down()
    await rec.wait_for(lambda e: isinstance(e, StateChanged) and e.state is PrinterState.OFFLINE, 10)
    assert ends(rec) == []
    await asyncio.sleep(1.0)
    rig.network_up()
    await rec.wait_for(lambda e: isinstance(e, PrintDone), 40)
    await asyncio.sleep(1.0)
    assert [type(e) for e in ends(rec)] == [PrintDone]


@pytest.mark.slow
async def test_event_script_is_printed_as_a_file(backend, rig):
    b, rec = backend
    await b.async_run_script("M400\nG4 P100\nG1 X5\n")
    assert not [e for e in rec.events if isinstance(e, (PrintStarted, PrintDone))]
    assert any(p.name.startswith("lq-script-") for p in (rig.dir / "data" / "PrusaLink gcodes").iterdir())
    assert b.state is not PrinterState.PRINTING


@pytest.mark.slow
async def test_wrong_password_is_offline_with_a_reason(rig):
    b, _ = await _started(rig, BackendSettings(user=rig.user, key="wrong", reconnect_delay=0.1))
    await asyncio.sleep(1.0)
    assert b.state is PrinterState.OFFLINE and b.error
    await b.async_close()
