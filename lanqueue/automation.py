"""Event scripts and their preprocessors: the data, its validation, and rendering an event.

A user's automation is three tables, in the shape of the original plugin's `automation/get`:
`scripts` (name -> G-code), `preprocessors` (name -> program) and `events` (event key -> ordered
attachments `{"script": name, "preprocessor": name or ""}`). When the driver reaches an event it
calls `async_render_event`; each attachment's preprocessor (if any) is evaluated by the engine in
`lanqueue.preprocess`, and its last value decides: truthy -> the script as is, false/None ->
skipped, a dict -> the script with its `{name}` placeholders filled. An error skips that one
script and is reported; the other attachments still run. `async_simulate` answers the original's
`automation/simulate` route with the same engine.

Defaults are safe for a printer without an automatic bed clearer: after a successful print the
`continuousprint_success` event renders `Bed clear wait`, whose only command is the host command
`@pause` (never sent to the printer): the driver holds the queue until a person confirms the bed
is clear. A user who replaces that event's scripts replaces the wait, as in the original.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from lanqueue.errors import BadRequest
from lanqueue.hostcmd import PAUSE_LINE
from lanqueue.preprocess import (
    DEFAULT_TIME_LIMIT,
    Evaluation,
    Evaluator,
    async_evaluate,
    async_run,
)

__all__ = [
    "EVENTS",
    "HOST_PAUSE",
    "MAX_SCRIPT_CHARS",
    "MAX_PROGRAM_CHARS",
    "Attachment",
    "Automation",
    "Outcome",
    "RenderResult",
    "fill_placeholders",
    "standard_symbols",
    "async_render_event",
    "async_simulate",
    "async_evaluate",  # re-exported from lanqueue.preprocess, with Evaluator
    "Evaluator",
    "DEFAULT_TIME_LIMIT",
]

EVENTS: tuple[str, ...] = (
    "continuousprint_activate",
    "continuousprint_start_print",
    "continuousprint_success",
    "continuousprint_cancel",
    "continuousprint_cooldown",
    "continuousprint_finish",
    "continuousprint_awaiting_material",
    "continuousprint_deactivate",
)

HOST_PAUSE = PAUSE_LINE
"""A host command line (OctoPrint style): the driver waits for a person; never sent to the printer."""

# Bounds keep one automation/edit from filling the store or the worker's memory.
MAX_NAME_CHARS = 200
MAX_SCRIPT_CHARS = 100_000
MAX_PROGRAM_CHARS = 20_000
MAX_SCRIPTS = 200
MAX_PREPROCESSORS = 200
MAX_ATTACHMENTS = 50  # per event
MAX_SYMTABLE_ITEMS = 100

_PLACEHOLDER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class Attachment:
    """One script on an event, gated by a preprocessor ("" = always run)."""

    script: str
    preprocessor: str = ""

    def to_json(self) -> dict[str, str]:
        return {"script": self.script, "preprocessor": self.preprocessor}


@dataclass(frozen=True)
class Automation:
    """A validated automation; build it with `from_json` or `defaults`, store `to_json()`."""

    scripts: dict[str, str] = field(default_factory=dict)
    preprocessors: dict[str, str] = field(default_factory=dict)
    events: dict[str, tuple[Attachment, ...]] = field(
        default_factory=lambda: {event: () for event in EVENTS})

    @classmethod
    def from_json(cls, obj: Any) -> Automation:
        """Validate the `automation/get` shape; BadRequest says what is wrong and where.

        Missing tables are empty; every event is present afterwards, an unlisted one with
        no attachments, so `to_json()` always lists all of EVENTS.
        """
        top = _object(obj, "automation")
        unknown = set(top) - {"scripts", "preprocessors", "events"}
        if unknown:
            raise BadRequest(f"automation: unknown keys {sorted(unknown)}")
        scripts = _texts(top.get("scripts", {}), "scripts", MAX_SCRIPTS, MAX_SCRIPT_CHARS)
        programs = _texts(top.get("preprocessors", {}), "preprocessors", MAX_PREPROCESSORS,
                          MAX_PROGRAM_CHARS)
        events = _events(top.get("events", {}), scripts, programs)
        return cls(scripts, programs, events)

    def to_json(self) -> dict[str, Any]:
        """The `automation/get` answer; `from_json(to_json())` gives an equal Automation."""
        return {
            "scripts": dict(self.scripts),
            "preprocessors": dict(self.preprocessors),
            "events": {event: [a.to_json() for a in attachments]
                       for event, attachments in self.events.items()},
        }

    def attachments(self, event: str) -> tuple[Attachment, ...]:
        """The attachments of a known event, in order (empty when none)."""
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}")
        return self.events.get(event, ())

    @classmethod
    def defaults(cls) -> Automation:
        """The automation of a new node: safe without a bed clearer (see the module doc)."""
        return cls.from_json(DEFAULT_AUTOMATION)


DEFAULT_AUTOMATION: dict[str, Any] = {
    "scripts": {
        "Start print": (
            "; lanqueue: runs before each queued print. Add G-code here (e.g. a purge line).\n"
        ),
        "Bed clear wait": (
            "; Default bed clearing: wait for a person. @pause is a host command, not G-code:\n"
            "; the driver holds the queue until someone clears the bed and resumes.\n"
            "; Replace this script with your bed clearing G-code to run unattended.\n"
            f"{HOST_PAUSE}\n"
        ),
        "Bed off for cooldown": "M140 S0 ; bed heater off so the part releases\n",
        "Finish": "M104 S0 ; hotend off\nM140 S0 ; bed off\nM84 ; motors off\n",
        "Cancel": "M104 S0 ; hotend off\nM140 S0 ; bed off\nM106 S0 ; fan off\nM84 ; motors off\n",
    },
    "preprocessors": {
        "Managed cooldown": (
            "# Last value true -> run the script: only while the bed is still warm.\n"
            "# current['bed_temp'] is the measured bed temperature in C (None if unknown).\n"
            "bed = current.get('bed_temp')\n"
            "bed is not None and bed > 35\n"
        ),
    },
    "events": {
        "continuousprint_start_print": [{"script": "Start print", "preprocessor": ""}],
        "continuousprint_success": [{"script": "Bed clear wait", "preprocessor": ""}],
        "continuousprint_cooldown": [
            {"script": "Bed off for cooldown", "preprocessor": "Managed cooldown"}],
        "continuousprint_finish": [{"script": "Finish", "preprocessor": ""}],
        "continuousprint_cancel": [{"script": "Cancel", "preprocessor": ""}],
    },
}


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"{where}: expected an object, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{where}: a name must be a non-empty string, got {_kind(value)}")
    if len(value) > MAX_NAME_CHARS:
        raise BadRequest(f"{where}: name longer than {MAX_NAME_CHARS} characters")
    return value


def _texts(value: Any, where: str, max_items: int, max_chars: int) -> dict[str, str]:
    table = _object(value, where)
    if len(table) > max_items:
        raise BadRequest(f"{where}: more than {max_items} entries")
    texts: dict[str, str] = {}
    for name, text in table.items():
        _name(name, where)
        if not isinstance(text, str):
            raise BadRequest(f"{where}[{name!r}]: expected a string, got {_kind(text)}")
        if len(text) > max_chars:
            raise BadRequest(f"{where}[{name!r}]: longer than {max_chars} characters")
        texts[name] = text
    return texts


def _events(value: Any, scripts: Mapping[str, str],
            programs: Mapping[str, str]) -> dict[str, tuple[Attachment, ...]]:
    table = _object(value, "events")
    events: dict[str, tuple[Attachment, ...]] = {event: () for event in EVENTS}
    for event, attachments in table.items():
        if event not in EVENTS:
            raise BadRequest(f"events: unknown event {event!r} (known: {', '.join(EVENTS)})")
        if not isinstance(attachments, list):
            raise BadRequest(f"events[{event!r}]: expected a list, got {_kind(attachments)}")
        if len(attachments) > MAX_ATTACHMENTS:
            raise BadRequest(f"events[{event!r}]: more than {MAX_ATTACHMENTS} attachments")
        events[event] = tuple(_attachment(item, f"events[{event!r}][{i}]", scripts, programs)
                              for i, item in enumerate(attachments))
    return events


def _attachment(value: Any, where: str, scripts: Mapping[str, str],
                programs: Mapping[str, str]) -> Attachment:
    item = _object(value, where)
    unknown = set(item) - {"script", "preprocessor"}
    if unknown:
        raise BadRequest(f"{where}: unknown keys {sorted(unknown)}")
    script = _name(item.get("script"), f"{where}.script")
    if script not in scripts:
        raise BadRequest(f"{where}: no script named {script!r}")
    preprocessor = item.get("preprocessor", "")
    if preprocessor is None or not isinstance(preprocessor, str):
        raise BadRequest(f"{where}.preprocessor: expected a string (\"\" for none), "
                         f"got {_kind(preprocessor)}")
    if preprocessor and preprocessor not in programs:
        raise BadRequest(f"{where}: no preprocessor named {preprocessor!r}")
    return Attachment(script, preprocessor)


def fill_placeholders(script: str, mapping: Mapping[str, str]) -> str:
    """Fill `{name}` placeholders from `mapping`; `{{` and `}}` are literal braces.

    Only plain names: no attributes, indexes, conversions or format specs, so a script cannot
    reach into objects. Raises ValueError with a message fit for the user.
    """
    parts: list[str] = []
    try:
        parsed = list(string.Formatter().parse(script))
    except ValueError as exc:
        raise ValueError(f"bad placeholder syntax in script: {exc}") from None
    for literal, name, spec, conversion in parsed:
        parts.append(literal)
        if name is None:
            continue
        if not _PLACEHOLDER.match(name) or spec or conversion:
            shown = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            raise ValueError(f"unsupported placeholder {{{shown}}}: only {{name}} is allowed")
        if name not in mapping:
            raise ValueError(f"no value for placeholder {{{name}}}")
        parts.append(str(mapping[name]))
    return "".join(parts)


def standard_symbols(*, current: Mapping[str, Any] | None = None, external: Any = None,
                     metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The symbols preprocessors see: `current` (path, materials, bed_temp, state),
    `external` (the last automation/external object) and `metadata` (file metadata)."""
    return {
        "current": dict(current or {}),
        "external": {} if external is None else external,
        "metadata": dict(metadata or {}),
    }


Status = Literal["ran", "skipped", "error"]


@dataclass(frozen=True)
class Outcome:
    """What happened to one attachment of an event."""

    script: str
    preprocessor: str
    status: Status
    message: str = ""
    stdout: str = ""
    stderr: str = ""


@dataclass(frozen=True)
class RenderResult:
    """The G-code of an event: the scripts that ran, joined by newlines, in attachment order."""

    event: str
    gcode: str
    outcomes: tuple[Outcome, ...]

    @property
    def ok(self) -> bool:
        """True when no attachment failed (the driver may ask for help otherwise)."""
        return all(o.status != "error" for o in self.outcomes)



def _apply(script: str, evaluation: Evaluation) -> tuple[Status, str, str]:
    """(status, rendered script or "", error message) for one evaluated attachment."""
    if evaluation.decision == "error":
        return "error", "", evaluation.message
    if evaluation.decision == "skip":
        return "skipped", "", ""
    if evaluation.decision == "fill":
        try:
            return "ran", fill_placeholders(script, evaluation.mapping or {}), ""
        except ValueError as exc:
            return "error", "", str(exc)
    return "ran", script, ""


async def async_render_event(automation: Automation, event: str, symbols: Mapping[str, Any], *,
                             time_limit: float = DEFAULT_TIME_LIMIT,
                             engine: Evaluator | None = None) -> RenderResult:
    """Evaluate the event's preprocessors off the event loop and build its G-code.

    `symbols` is laid over `standard_symbols()`. Pass the node's long-lived `engine`;
    without one a worker process is started for this call only.
    """
    attachments = automation.attachments(event)
    programs = [automation.preprocessors.get(a.preprocessor, "") for a in attachments]
    run = await async_run({**standard_symbols(), **symbols}, programs,
                          time_limit=time_limit, engine=engine)
    outcomes: list[Outcome] = []
    ran: list[str] = []
    for attachment, evaluation in zip(attachments, run.evaluations):
        status, text, message = _apply(automation.scripts[attachment.script], evaluation)
        if status == "ran":
            ran.append(text)
        outcomes.append(Outcome(attachment.script, attachment.preprocessor, status, message,
                                evaluation.stdout, evaluation.stderr))
    return RenderResult(event, "\n".join(ran), tuple(outcomes))


def _simulation_pairs(value: Any) -> list[tuple[str, str]]:
    """`automation/simulate`'s `automation`: a list of [script body, preprocessor body or null]."""
    if not isinstance(value, list):
        raise BadRequest(f"automation: expected a list of [script, preprocessor], got {_kind(value)}")
    if len(value) > MAX_ATTACHMENTS:
        raise BadRequest(f"automation: more than {MAX_ATTACHMENTS} entries")
    pairs = []
    for i, item in enumerate(value):
        if isinstance(item, dict):  # tolerated: {"script": ..., "preprocessor": ...}
            item = [item.get("script"), item.get("preprocessor")]
        if not isinstance(item, list) or len(item) != 2:
            raise BadRequest(f"automation[{i}]: expected [script, preprocessor]")
        script, program = item[0], "" if item[1] is None else item[1]
        if not isinstance(script, str) or not isinstance(program, str):
            raise BadRequest(f"automation[{i}]: script and preprocessor must be strings")
        if len(script) > MAX_SCRIPT_CHARS or len(program) > MAX_PROGRAM_CHARS:
            raise BadRequest(f"automation[{i}]: script or preprocessor too long")
        pairs.append((script, program))
    return pairs


def _simulation_symtable(value: Any) -> dict[str, Any]:
    table = _object(value, "symtable")
    if len(table) > MAX_SYMTABLE_ITEMS:
        raise BadRequest(f"symtable: more than {MAX_SYMTABLE_ITEMS} symbols")
    for name in table:
        if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
            raise BadRequest(f"symtable: {name!r} is not a usable symbol name")
    return table


async def async_simulate(symtable: Any, attachments: Any, *,
                         time_limit: float = DEFAULT_TIME_LIMIT,
                         engine: Evaluator | None = None) -> dict[str, Any]:
    """Answer `automation/simulate`: `{"gcode", "symtable_diff", "stdout", "stderr"}`.

    `attachments` holds script and preprocessor BODIES, as the original's web page sends them.
    Errors (preprocessor or placeholder) are reported in `stderr` and skip their script;
    `symtable_diff` maps each symbol the programs added or changed to its repr.
    """
    pairs = _simulation_pairs(attachments)
    symbols = {**standard_symbols(), **_simulation_symtable(symtable)}
    run = await async_run(symbols, [program for _, program in pairs],
                          time_limit=time_limit, engine=engine)
    ran: list[str] = []
    stdout: list[str] = []
    stderr: list[str] = []
    for (script, _), evaluation in zip(pairs, run.evaluations):
        status, text, message = _apply(script, evaluation)
        stdout.append(evaluation.stdout)
        stderr.append(evaluation.stderr)
        if status == "ran":
            ran.append(text)
        elif status == "error" and message not in evaluation.stderr:
            stderr.append(message + "\n")
    return {"gcode": "\n".join(ran), "symtable_diff": run.symtable_diff,
            "stdout": "".join(stdout), "stderr": "".join(stderr)}
