"""What a Marlin firmware line means, as a small typed value (no state, no I/O).

`classify(line)` names the kind of one line the printer sent; the protocol core
(protocol.py) decides what to do with it from a table over (printer state, kind). Keeping the
two apart means the order in which prefixes are tested is written once, here, and the rules of
what each state listens to are a table rather than early returns spread through one function.

The order below matters and follows Marlin's habits: an `ok` may carry a temperature report
(`ok T:...`), `echo:busy:` is a keep-alive though it starts like chatter, a temperature report
is recognised by its `T:`/`B:` fields unless the line is one of the protocol's own messages.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

from .gcode import is_fatal_error, is_line_error, parse_resend

__all__ = ["Kind", "Reply", "classify", "ANSWERS_HOST", "LISTED"]


class Kind(enum.Enum):
    OK = "ok"  # a command is done (`ok`, `ok T:...`)
    ECHO = "echo"  # `echo:` chatter
    TEMPERATURES = "temperatures"  # an unsolicited report (autoreport, heat-up waits)
    ACTION = "action"  # `//action:NAME`, a host action
    COMMENT = "comment"  # other `//` lines and `wait`
    RESEND = "resend"  # `Resend: N` / `rs N`
    FATAL = "fatal"  # `Error:`/`!!`/`fatal:` that halts the firmware
    LINE_ERROR = "line error"  # a transmission error, followed by a resend request
    START = "start"  # the board (re)started
    BUSY = "busy"  # `echo:busy: processing`: the firmware speaks the busy protocol
    FIRMWARE = "firmware"  # `FIRMWARE_NAME:` (M115)
    CAPABILITY = "capability"  # `Cap:NAME:1` (M115)
    FILE_LIST_BEGIN = "file list begin"  # M20
    FILE_LIST_END = "file list end"
    SD_PROGRESS = "sd progress"  # `SD printing byte N/M` (M27)
    FILE_OPENED = "file opened"  # `File opened: NAME Size: N` (M23)
    SD_DONE = "sd done"  # `Done printing file`
    OTHER = "other"  # anything else (a file list entry while one is being listed)

    # Members are singletons: identity hashing is correct and keeps the per-line table lookup
    # in C (Enum's own __hash__ is Python code, run for every line of a print).
    __hash__ = object.__hash__


class Reply(NamedTuple):
    """One classified line: its kind, the text, and a resend request's line number."""

    kind: Kind
    line: str
    number: int | None = None


#: Kinds that answer the host: they reset the silence timer (chatter and reports do not, so
#: they cannot hide a lost `ok`).
ANSWERS_HOST = frozenset(Kind) - {Kind.OK, Kind.ECHO, Kind.TEMPERATURES, Kind.ACTION, Kind.COMMENT}
#: Kinds that are a file name while an M20 listing is open (Marlin prints names bare).
LISTED = frozenset({Kind.FIRMWARE, Kind.CAPABILITY, Kind.FILE_LIST_BEGIN, Kind.SD_PROGRESS,
                    Kind.FILE_OPENED, Kind.SD_DONE, Kind.OTHER})

_BARE_OK = Reply(Kind.OK, "ok")
_NOT_REPORTS = ("FIRMWARE_NAME:", "Cap:", "Error", "error", "!!", "fatal", "Resend", "rs", "File", "SD ")
_PREFIXES = (  # tested in order, after the cases above them in classify()
    ("FIRMWARE_NAME:", Kind.FIRMWARE),
    ("Cap:", Kind.CAPABILITY),
    ("Begin file list", Kind.FILE_LIST_BEGIN),
    ("End file list", Kind.FILE_LIST_END),
    ("SD printing byte", Kind.SD_PROGRESS),
    ("File opened:", Kind.FILE_OPENED),
    ("Done printing file", Kind.SD_DONE),
)


def classify(line: str) -> Reply:
    """The kind of one stripped line from the firmware."""
    if line == "ok":
        return _BARE_OK  # most lines of a print: no allocation
    if line[:2] == "ok" and line[2:3] == " ":
        return Reply(Kind.OK, line)
    first = line[:1]
    if first == "e" and line.startswith("echo:"):
        return Reply(Kind.BUSY if "busy:" in line else Kind.ECHO, line)
    if ("T:" in line or "B:" in line) and not line.startswith(_NOT_REPORTS):
        return Reply(Kind.TEMPERATURES, line)
    if first == "/" or line == "wait":
        return Reply(Kind.ACTION if line.startswith("//action:") else Kind.COMMENT, line)
    if first in ("R", "r") and line.startswith(("Resend", "rs")):
        return Reply(Kind.RESEND, line, parse_resend(line))
    if first in ("E", "e", "!", "f") and line.startswith(("Error", "error", "!!", "fatal")):
        if is_fatal_error(line):
            return Reply(Kind.FATAL, line)
        return Reply(Kind.LINE_ERROR if is_line_error(line) else Kind.OTHER, line)
    if line == "start":
        return Reply(Kind.START, line)
    if "busy:" in line:
        return Reply(Kind.BUSY, line)
    for prefix, kind in _PREFIXES:
        if line.startswith(prefix):
            return Reply(kind, line)
    return Reply(Kind.OTHER, line)
