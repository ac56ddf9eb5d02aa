"""The Bambu Lab backend: its report tracker as tables, then the backend against a real
mosquitto (TLS, password), a real implicit-FTPS server and the printer stand-in process
(tests/bambu_printer.py, written from the public protocol notes: the one stand-in here)."""

from __future__ import annotations

import asyncio
import json
import zipfile
from io import BytesIO
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from printer_helpers import Recorder, no_leaked_tasks  # noqa: F401 - autouse fixture

from lanqueue.printer.bambu import CANCELLED_ERROR, BambuTracker, gcode_3mf
from lanqueue.printer.events import (
    PrintCancelled,
    PrintDone,
    PrinterState,
    PrintFailed,
    PrintPaused,
    PrintResumed,
    PrintStarted,
    StateChanged,
)

# --------------------------------------------------------------------------- the pure tracker

SUB = "part [abc123]"


def _run(reports: list[dict]) -> list[str]:
    tracker = BambuTracker()
    tracker.feed({"gcode_state": "FINISH", "subtask_name": "previous [000000]"})
    tracker.expect(SUB)
    return [o.kind for r in reports for o in tracker.feed(r)]


@pytest.mark.parametrize(
    "reports, kinds",
    [
        # the previous print's FINISH is still reported during the start lag: no end
        ([{"mc_percent": 100}, {"gcode_state": "FINISH"}], []),
        ([{"gcode_state": "PREPARE", "subtask_name": SUB}, {"gcode_state": "RUNNING"}, {"gcode_state": "FINISH"}],
         ["started", "done"]),
        # a print so short its start and end come in one report
        ([{"gcode_state": "FINISH", "subtask_name": SUB}], ["started", "done"]),
        ([{"gcode_state": "RUNNING", "subtask_name": SUB}, {"gcode_state": "PAUSE"}, {"gcode_state": "RUNNING"},
          {"gcode_state": "FINISH"}], ["started", "paused", "resumed", "done"]),
        ([{"gcode_state": "RUNNING", "subtask_name": SUB}, {"gcode_state": "FAILED", "print_error": CANCELLED_ERROR}],
         ["started", "cancelled"]),
        ([{"gcode_state": "RUNNING", "subtask_name": SUB}, {"gcode_state": "FAILED", "print_error": 1234}],
         ["started", "failed"]),
        # rebooted printer (power cut): idle, no subtask -> lost, never done
        ([{"gcode_state": "RUNNING", "subtask_name": SUB}, {"gcode_state": "IDLE", "subtask_name": ""}],
         ["started", "failed"]),
        ([{"gcode_state": "RUNNING", "subtask_name": SUB}, {"gcode_state": "FINISH", "subtask_name": "other"}],
         ["started", "failed"]),
        # ends once: later reports of the same end say nothing
        ([{"gcode_state": "RUNNING", "subtask_name": SUB}, {"gcode_state": "FINISH"}, {"gcode_state": "FINISH"},
          {"mc_percent": 100}], ["started", "done"]),
    ],
)
def test_tracker_reads_reports(reports, kinds):
    assert _run(reports) == kinds


def test_tracker_capabilities_from_ams():
    t = BambuTracker()
    t.feed({"nozzle_diameter": "0.6", "ams": {"ams": [
        {"id": "0", "tray": [{"id": "0", "tray_type": "PLA", "tray_color": "FF8000FF"}, {"id": "1", "tray_type": ""}]},
        {"id": "1", "tray": [{"id": "2", "tray_type": "PETG", "tray_color": "112233FF"}]},
    ]}})
    caps = t.capabilities()
    assert caps.nozzle_diameter == 0.6
    assert [(f.tool, f.type, f.colour) for f in caps.filaments] == [
        (0, "PLA", "#FF8000"), (1, None, None), (6, "PETG", "#112233")]


def test_project_file_is_stable_and_holds_the_gcode():
    a, b = gcode_3mf(b"G1 X1\n"), gcode_3mf(b"G1 X1\n")
    assert a == b and a != gcode_3mf(b"G1 X2\n")
    with zipfile.ZipFile(BytesIO(a)) as z:
        assert z.read("Metadata/plate_1.gcode") == b"G1 X1\n"


@pytest.mark.parametrize("query", ["lost_after=abc", "lost_after=-1", "lost_after=nan", "ftp_port=", "nope=1"])
def test_bad_url_options_are_refused_with_the_reason(query):
    from lanqueue.printer.backend import BackendSettings, UnknownBackend, open_backend

    with pytest.raises(UnknownBackend, match="option"):
        open_backend(f"bambu://printer.local?{query}", BackendSettings(key="12345678", serial="SN"))


def test_url_options_and_missing_secrets():
    from lanqueue.printer.backend import BackendSettings, UnknownBackend, open_backend

    b = open_backend("bambu://printer.local:1883?ftp_port=2121&lost_after=30&cafile=/ca.pem",
                     BackendSettings(key="12345678", serial="SN"))
    assert (b.kind, b.target, b.ftp_port, b.lost_after, b.cafile) == ("bambu", "printer.local:1883", 2121, 30.0, "/ca.pem")
    with pytest.raises(UnknownBackend, match="printer_serial"):
        open_backend("bambu://printer.local", BackendSettings(key="12345678"))


# --------------------------------------------------------------------------- the real rig


@pytest.fixture
def rig(tmp_path):
    from bambu_rig import BambuRig, bambu_unavailable

    reason = bambu_unavailable()
    if reason:
        pytest.skip(reason)
    r = BambuRig.start(tmp_path / "printer", start_lag=1.0, lines_per_second=100)
    yield r
    r.close()


@pytest.fixture
async def backend(rig):
    from lanqueue.printer.bambu import BambuBackend

    b = BambuBackend.from_url("bambu", urlsplit(rig.url), rig.settings())
    b.silence = 2.0
    rec = Recorder()
    b.add_listener(rec)
    await b.async_start()
    await rec.wait_for(lambda e: isinstance(e, StateChanged) and e.state is PrinterState.OPERATIONAL, 15)
    yield b, rec
    await b.async_close()


def gcode(tmp_path: Path, lines: int = 300, name: str = "part.gcode") -> Path:
    path = tmp_path / name
    path.write_text("M104 S215\nM140 S60\n" + "G1 X10 Y10\n" * lines)
    return path


def ends(rec: Recorder) -> list:
    return [e for e in rec.events if isinstance(e, (PrintDone, PrintFailed, PrintCancelled))]


@pytest.mark.slow
async def test_prints_to_the_end_once_and_reads_the_printer(backend, rig, tmp_path):
    b, rec = backend
    caps = b.capabilities
    assert caps.nozzle_diameter == 0.4
    assert [(f.type, f.colour) for f in caps.filaments][:2] == [("PLA", "#FF0000"), ("PETG", "#00AE42")]
    path = gcode(tmp_path)
    await b.async_print_file(path, "part.gcode")
    assert [type(e) for e in rec.events if isinstance(e, PrintStarted)] == [PrintStarted]
    await rec.wait_for(lambda e: isinstance(e, PrintDone), 20)
    assert b.temperatures["tool0"][1] is not None
    stored = list(rig.sdcard.iterdir())
    assert len(stored) == 1 and stored[0].name.endswith(".gcode.3mf")
    mtime = stored[0].stat().st_mtime_ns
    # the same bytes again: not uploaded again, printed again, ended again (once each)
    await b.async_print_file(path, "part.gcode")
    await rec.wait_for(lambda e: isinstance(e, PrintDone), 20, start=rec.events.index(ends(rec)[0]) + 1)
    await asyncio.sleep(1.5)
    assert [type(e) for e in ends(rec)] == [PrintDone, PrintDone]
    assert stored[0].stat().st_mtime_ns == mtime and len(list(rig.sdcard.iterdir())) == 1
    assert b.state is PrinterState.OPERATIONAL


@pytest.mark.slow
async def test_pause_resume_and_cancel(backend, rig, tmp_path):
    b, rec = backend
    await b.async_print_file(gcode(tmp_path, 2000), "long.gcode")
    await rec.wait_for(lambda e: isinstance(e, StateChanged) and e.state is PrinterState.PRINTING, 10)
    await b.async_pause()
    await rec.wait_for(lambda e: isinstance(e, PrintPaused), 5)
    await b.async_resume()
    await rec.wait_for(lambda e: isinstance(e, PrintResumed), 5)
    await b.async_cancel()
    await asyncio.sleep(1.5)
    assert [type(e) for e in ends(rec)] == [PrintCancelled]
    assert b.state is PrinterState.OPERATIONAL


@pytest.mark.slow
@pytest.mark.parametrize("word, kind", [("cancel", PrintCancelled), ("fail", PrintFailed)])
async def test_end_at_the_printers_screen(backend, rig, tmp_path, word, kind):
    b, rec = backend
    await b.async_print_file(gcode(tmp_path, 2000), "long.gcode")
    await rec.wait_for(lambda e: isinstance(e, StateChanged) and e.state is PrinterState.PRINTING, 10)
    rig.screen(word)
    await rec.wait_for(lambda e: isinstance(e, kind), 5)
    await asyncio.sleep(1.5)
    assert [type(e) for e in ends(rec)] == [kind]
    if kind is PrintFailed:
        assert "0x03008015" in ends(rec)[0].reason


@pytest.mark.slow
async def test_network_gone_mid_print_and_back_ends_once(backend, rig, tmp_path):
    b, rec = backend
    await b.async_print_file(gcode(tmp_path, 600), "part.gcode")
    await rec.wait_for(lambda e: isinstance(e, StateChanged) and e.state is PrinterState.PRINTING, 10)
    rig.network_down()
    await rec.wait_for(lambda e: isinstance(e, StateChanged) and e.state is PrinterState.OFFLINE, 15)
    assert ends(rec) == []
    await asyncio.sleep(1.0)
    rig.network_up()
    await rec.wait_for(lambda e: isinstance(e, PrintDone), 30)
    await asyncio.sleep(1.5)
    assert [type(e) for e in ends(rec)] == [PrintDone]


@pytest.mark.slow
async def test_power_cut_mid_print_is_never_a_success(backend, rig, tmp_path):
    b, rec = backend
    await b.async_print_file(gcode(tmp_path, 2000), "long.gcode")
    await rec.wait_for(lambda e: isinstance(e, StateChanged) and e.state is PrinterState.PRINTING, 10)
    rig.power_cut()
    await rec.wait_for(lambda e: isinstance(e, StateChanged) and e.state is PrinterState.OFFLINE, 15)
    rig.power_on()
    failed = await rec.wait_for(lambda e: isinstance(e, PrintFailed), 20)
    assert "lost" in failed.reason
    assert [type(e) for e in ends(rec)] == [PrintFailed]
    assert b.state is PrinterState.OPERATIONAL


@pytest.mark.slow
async def test_printer_that_stops_answering_is_offline(backend, rig, tmp_path):
    _, rec = backend
    rig.screen("quiet")  # the broker stays up, the printer says nothing: a pushall goes unanswered
    await rec.wait_for(lambda e: isinstance(e, StateChanged) and e.state is PrinterState.OFFLINE, 15)
    rig.screen("loud")
    await rec.wait_for(lambda e: isinstance(e, StateChanged) and e.state is PrinterState.OPERATIONAL, 15,
                       start=len(rec.events))


@pytest.mark.slow
async def test_event_script_is_printed_as_a_file_and_waited_for(backend, rig, tmp_path):
    b, rec = backend
    task = asyncio.create_task(b.async_run_script("M400 U1\nG1 X5\n"))
    await rec.wait_for(lambda e: isinstance(e, StateChanged) and e.state is PrinterState.PAUSED, 10)
    assert not task.done()  # M400 U1 waits for a person at the printer
    rig.screen("resume")
    await asyncio.wait_for(task, 10)
    assert not [e for e in rec.events if isinstance(e, (PrintStarted, PrintDone))]
    assert any(p.name.startswith("lq-script-") for p in rig.sdcard.iterdir())


@pytest.mark.slow
async def test_wrong_access_code_stays_offline(rig):
    from lanqueue.printer.bambu import BambuBackend

    b = BambuBackend.from_url("bambu", urlsplit(rig.url), rig.settings(key="wrong-code"))
    await b.async_start()
    await asyncio.sleep(1.0)
    assert b.state is PrinterState.OFFLINE and b.error
    await b.async_close()


@pytest.mark.slow
async def test_printer_out_of_reach_too_long_counts_the_print_lost(rig, tmp_path):
    from lanqueue.printer.bambu import BambuBackend

    b = BambuBackend.from_url("bambu", urlsplit(rig.url + "&lost_after=2"), rig.settings())
    rec = Recorder()
    b.add_listener(rec)
    await b.async_start()
    await rec.wait_for(lambda e: isinstance(e, StateChanged) and e.state is PrinterState.OPERATIONAL, 15)
    await b.async_print_file(gcode(tmp_path, 2000), "long.gcode")
    rig.power_cut()
    failed = await rec.wait_for(lambda e: isinstance(e, PrintFailed), 15)
    assert "out of reach" in failed.reason
    rig.power_on()
    await rec.wait_for(lambda e: isinstance(e, StateChanged) and e.state is PrinterState.OPERATIONAL, 15,
                       start=rec.events.index(failed))
    await asyncio.sleep(1.0)
    assert [type(e) for e in ends(rec)] == [PrintFailed]
    await b.async_close()


@pytest.mark.slow
def test_node_matches_jobs_to_the_ams_filaments(tmp_path):
    """Through a real node: the AMS trays show in state/get and decide what prints (tool 0 holds
    PLA here, so a set that needs PETG on tool 0 waits while one that needs PLA prints)."""
    from bambu_rig import BambuHarness
    from conftest import NodeProcess, free_port
    from test_backend_conformance import NO_WAIT, Rig, write_node_config

    harness = BambuHarness()
    harness.start(tmp_path)
    node = NodeProcess(tmp_path / "node", free_port(),
                       ["--printer", harness.url, "--config", str(write_node_config(harness, tmp_path / "n.toml"))])
    try:
        node.start()
        rig = Rig(harness, node)
        rig.wait_ready()
        caps = rig.state()["printer"]["capabilities"]
        assert [(f["type"], f["colour"]) for f in caps["filaments"]][:2] == [("PLA", "#FF0000"), ("PETG", "#00AE42")]
        rig.post("/plugin/continuousprint/automation/edit", data={"json": json.dumps(NO_WAIT)})
        for name in ("petg.gcode", "pla.gcode"):
            rig.upload(name, harness.gcode(0.3))
        petg = int(rig.post("/plugin/continuousprint/set/add", data={
            "path": "petg.gcode", "count": "1", "jobName": "petg", "jobDraft": "false", "materials": '["PETG"]'}).json()["job_id"])
        pla = int(rig.post("/plugin/continuousprint/set/add", data={
            "path": "pla.gcode", "count": "1", "jobName": "pla", "jobDraft": "false", "materials": '["PLA"]'}).json()["job_id"])
        rig.activate()
        rig.wait(lambda: rig.counts(pla) == (1, 0), 60, "the PLA job printed")
        assert rig.counts(petg) == (0, 1), "the PETG job needs PETG on tool 0: it waits"
    finally:
        node.stop()
        harness.close()
