"""The printer interface's pure parts: URL -> backend, exactly-once ends, state tables, names."""

from __future__ import annotations

import pytest

from lanqueue.config import ConfigError, resolve_options
from lanqueue.printer import PrinterService
from lanqueue.printer.backend import (
    BackendSettings,
    Capabilities,
    Filament,
    PrintEnds,
    PrinterBackend,
    UnknownBackend,
    hashed_name,
    open_backend,
    parse_printer_url,
)
from lanqueue.printer.events import PrintCancelled, PrintDone, PrinterState, PrintFailed
from lanqueue.printer.moonraker import MoonrakerBackend
from lanqueue.printer.moonraker import state_of as moonraker_state
from lanqueue.printer.octoprint import OctoPrintBackend, outcome_of_event
from lanqueue.printer.octoprint import state_of as octoprint_state


@pytest.mark.parametrize("url, kind, target", [
    ("virtual", "virtual", "virtual"),
    ("/dev/ttyACM0", "serial", "/dev/ttyACM0"),
    ("serial:///dev/ttyUSB1", "serial", "/dev/ttyUSB1"),
    ("socket://127.0.0.1:2000", "socket", "socket://127.0.0.1:2000"),
    ("octoprint://127.0.0.1:5000", "octoprint", "127.0.0.1:5000"),
    ("moonraker://[::1]:7125", "moonraker", "[::1]:7125"),
    ("moonraker://127.0.0.1", "moonraker", "127.0.0.1:7125"),
])
def test_each_url_opens_its_backend(url, kind, target):
    backend = open_backend(url, BackendSettings(key="k"))
    assert isinstance(backend, PrinterBackend)
    assert (backend.kind, backend.target) == (kind, target)


@pytest.mark.parametrize("url, message", [
    ("ftp://host", "unknown printer kind"),
    ("octoprint://", "names no host"),
    ("octoprint://user:secret@host:5000", "not in the URL"),
    ("", "empty"),
])
def test_bad_urls_say_why(url, message):
    with pytest.raises(UnknownBackend, match=message):
        parse_printer_url(url)


def test_a_bad_printer_url_is_a_config_error_before_anything_starts():
    with pytest.raises(ConfigError, match="unknown printer kind"):
        resolve_options(env={"LANQUEUE_PRINTER": "gopher://x"})


def test_secrets_come_from_the_environment_and_stay_out_of_reprs():
    opts = resolve_options(env={"LANQUEUE_PRINTER": "octoprint://127.0.0.1:5000", "LANQUEUE_PRINTER_KEY": "S3CRET"})
    assert opts.printer_key == "S3CRET"
    assert "S3CRET" not in repr(opts)


def test_octoprint_needs_its_key():
    with pytest.raises(UnknownBackend, match="API key"):
        open_backend("octoprint://127.0.0.1:5000", BackendSettings())


def test_serial_is_the_same_service_as_before():
    assert isinstance(open_backend("virtual", BackendSettings()), PrinterService)


def test_an_end_is_reported_once_whatever_reports_it_again():
    ends = PrintEnds()
    assert ends.end("done", 1.0) is None  # nothing started
    ends.started("/f.gcode", "f.gcode", 10.0)
    first = ends.end("cancelled", 12.0)
    assert first == PrintCancelled("/f.gcode", "f.gcode")
    assert ends.end("failed", 12.5) is None and ends.end("done", 13.0) is None
    ends.started("/g.gcode", "g.gcode", 20.0)
    done = ends.end("done", 25.0)
    assert isinstance(done, PrintDone) and done.elapsed == 5.0
    ends.started("/h.gcode", "h.gcode", 30.0)
    failed = ends.end("failed", 31.0, "MINTEMP")
    assert isinstance(failed, PrintFailed) and failed.reason == "MINTEMP"


@pytest.mark.parametrize("flags, state", [
    ({"operational": True, "ready": True}, PrinterState.OPERATIONAL),
    ({"operational": True, "printing": True}, PrinterState.PRINTING),
    ({"operational": True, "paused": True}, PrinterState.PAUSED),
    ({"operational": True, "printing": True, "pausing": True}, PrinterState.PAUSING),
    ({"operational": True, "printing": True, "cancelling": True}, PrinterState.CANCELLING),
    ({"error": True, "closedOrError": True}, PrinterState.ERROR),
    ({"operational": True}, PrinterState.CONNECTING),  # finishing: not ready for a new print
    ({}, PrinterState.OFFLINE),
])
def test_octoprint_flags(flags, state):
    assert octoprint_state(flags) is state


def test_octoprint_cancel_is_not_a_failure():
    assert outcome_of_event("PrintFailed", {"reason": "cancelled"}) == "cancelled"
    assert outcome_of_event("PrintFailed", {"reason": "error"}) == "failed"
    assert outcome_of_event("PrintDone", {}) == "done"
    assert outcome_of_event("PrintStarted", {}) is None


@pytest.mark.parametrize("klippy, print_state, state", [
    ("ready", "standby", PrinterState.OPERATIONAL),
    ("ready", "printing", PrinterState.PRINTING),
    ("ready", "paused", PrinterState.PAUSED),
    ("ready", "error", PrinterState.OPERATIONAL),
    ("shutdown", "printing", PrinterState.ERROR),
    ("startup", "", PrinterState.CONNECTING),
])
def test_moonraker_states(klippy, print_state, state):
    assert moonraker_state(klippy, print_state) is state


def test_hashed_names_differ_by_content_and_stay_short():
    a = hashed_name("parts/a b.gcode", "1" * 64)
    assert a == "lq-111111111111-a_b.gcode"
    assert hashed_name("parts/a b.gcode", "2" * 64) != a
    long = hashed_name("x" * 200 + ".gcode", "3" * 64)
    assert len(long) <= 64 and long.endswith(".gcode")
    assert hashed_name("part.3mf", "4" * 64).endswith(".3mf")


def test_reported_filaments_feed_material_matching():
    from lanqueue.driving import loaded_materials

    class Stub:  # only capabilities are read
        capabilities = Capabilities(tools=2, filaments=(Filament(1, "PETG", "#00FF00"),))

    assert loaded_materials(["PLA", "PLA"], Stub()) == ["PLA", "PETG"]  # type: ignore[arg-type]
    assert loaded_materials([], Stub()) == [None, "PETG"]  # type: ignore[arg-type]
    assert Capabilities().materials() == []


def test_network_backends_are_classes_of_the_interface():
    assert OctoPrintBackend.kind == "octoprint" and MoonrakerBackend.kind == "moonraker"
