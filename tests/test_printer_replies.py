"""Firmware lines classified into typed replies (printer/replies.py), and the (state, kind) table
of the protocol core that decides what each state listens to."""

from __future__ import annotations

import pytest

from lanqueue.printer.events import PrinterState
from lanqueue.printer.protocol import _TABLE, FirmwareProtocol
from lanqueue.printer.replies import ANSWERS_HOST, LISTED, Kind, classify


@pytest.mark.parametrize(("line", "kind"), [
    ("ok", Kind.OK),
    ("ok T:20.0 /0.0 B:20.0 /0.0", Kind.OK),
    ("okay", Kind.OTHER),
    ("echo:SD card ok", Kind.ECHO),
    ("echo:busy: processing", Kind.BUSY),
    (" T:20.00 /0.00 B:20.00 /0.00 @:0 B@:0", Kind.TEMPERATURES),
    ("T:210.0 E:0 W:?", Kind.TEMPERATURES),
    ("//action:pause", Kind.ACTION),
    ("// just a comment", Kind.COMMENT),
    ("wait", Kind.COMMENT),
    ("Resend: 5", Kind.RESEND),
    ("rs N7", Kind.RESEND),
    ("Error:Printer halted. kill() called!", Kind.FATAL),
    ("!! thermal runaway", Kind.FATAL),
    ("Error:checksum mismatch, Last Line: 4", Kind.LINE_ERROR),
    ("Error:Line Number is not Last Line Number+1, Last Line: 3", Kind.LINE_ERROR),
    ("start", Kind.START),
    ("FIRMWARE_NAME:Marlin 2.1.2 SOURCE_CODE_URL:x PROTOCOL_VERSION:1.0", Kind.FIRMWARE),
    ("Cap:AUTOREPORT_TEMP:1", Kind.CAPABILITY),
    ("Begin file list", Kind.FILE_LIST_BEGIN),
    ("End file list", Kind.FILE_LIST_END),
    ("SD printing byte 10/200", Kind.SD_PROGRESS),
    ("File opened: BENCHY.GCO Size: 1234", Kind.FILE_OPENED),
    ("Done printing file", Kind.SD_DONE),
    ("BENCHY.GCO 1234", Kind.OTHER),
    ("", Kind.OTHER),
])
def test_classify(line, kind):
    assert classify(line).kind is kind


def test_resend_carries_its_line_number():
    assert classify("Resend: 12").number == 12 and classify("rs N:3").number == 3
    assert classify("Resend: x").number is None


def test_the_table_listens_by_state():
    """Offline only a late `ok` counts; after a halt also `start`; a connected printer is heard
    in full; chatter and comments are never acted on."""
    kinds = {state: set(_TABLE[state]) for state in PrinterState}
    assert kinds[PrinterState.OFFLINE] == {Kind.OK}
    assert kinds[PrinterState.ERROR] == {Kind.OK, Kind.START}
    acted_on = set(Kind) - {Kind.ECHO, Kind.COMMENT}
    assert kinds[PrinterState.PRINTING] == kinds[PrinterState.OPERATIONAL] == acted_on
    assert Kind.OK not in ANSWERS_HOST and Kind.TEMPERATURES not in ANSWERS_HOST
    assert Kind.FILE_LIST_END not in LISTED and Kind.OTHER in LISTED


def test_a_file_list_takes_bare_names_until_its_end():
    core = FirmwareProtocol()
    core.connection_made(0.0)
    core.receive_data(b"Begin file list\n", 0.1)  # as the firmware answers M20
    core.receive_data(b"BENCHY.GCO 1234\nFIRMWARE_NAME:odd but a name 7\necho:chatter\n", 0.2)
    events = core.receive_data(b"End file list\n", 0.3)
    assert core.sd_files == [("BENCHY.GCO", 1234), ("FIRMWARE_NAME:odd", 0)]
    assert [type(e).__name__ for e in events] == ["SdFilesListed"]
