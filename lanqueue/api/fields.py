"""Every request field the HTTP API reads, declared once: name, kind, bounds, required, meaning.

Three things are derived from these declarations and nothing else, so they cannot drift apart:
- reading a request (`Field.read`, over `forms.Form`): the bounds a handler enforces;
- the OpenAPI document (`Field.schema`, used by api/openapi.py): the bounds clients are told;
- the page's input limits (`page_limits`, served at /lanqueue/fields and applied by
  web/limits.js): the bounds a person typing is held to.

A field group (`SET`, `DRIVER`, ...) is a tuple of fields; `schema_of(group)` turns one into the
`properties` of an object schema.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import BadRequest
from .forms import MAX_COUNT, MAX_LIST, MAX_TEXT, Form

__all__ = [
    "Field",
    "Kind",
    "ACTIVE",
    "JOB_IMPORT",
    "SET",
    "SET_ADD",
    "JOB_EDIT",
    "JOB_ADD",
    "JOB_MV",
    "JOB_IDS",
    "QUEUE",
    "DRIVER",
    "MATERIALS",
    "UPLOAD",
    "ADOPT",
    "FARM_ACTION",
    "schema_of",
    "required_of",
    "page_limits",
    "by_name",
]

Kind = Literal["text", "integer", "number", "boolean", "strings", "ids"]
Schema = dict[str, Any]

MAX_ID = 2**62
MAX_NAME = MAX_TEXT  # a job's name
MAX_QUEUE_NAME = 100
MAX_PATH = 255
MAX_METADATA = 64 * 1024
MAX_TOOLS = 16
FARM_ACTIONS = ("continue", "pause", "resume", "cancel", "start", "stop")
STRATEGIES = ("IN_ORDER", "LEAST_MANUAL")


@dataclass(frozen=True)
class Field:
    """One request field. Bounds are inclusive; `max_length` bounds a text (or each item of a
    list of strings), `max_items` a list."""

    name: str
    kind: Kind
    description: str
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    max_length: int = MAX_TEXT
    max_items: int = MAX_LIST
    enum: tuple[str, ...] = ()
    nullable_items: bool = False

    def read(self, form: Form, default: Any = None) -> Any:
        """The field's clean value from `form`, or `default` when absent; BadRequest naming the
        field when it is out of its declared bounds or of the wrong kind."""
        name, required = self.name, self.required
        if self.kind == "text":
            value = form.text(name, default, required=required, max_len=self.max_length)
            if self.enum and value is not None and value not in self.enum:
                raise BadRequest(f"field {name!r} must be one of {', '.join(self.enum)}, not {value!r}")
            return value
        if self.kind == "boolean":
            return form.boolean(name, default, required=required)
        if self.kind == "integer":
            return form.integer(name, default, required=required, low=int(self._low()), high=int(self._high()))
        if self.kind == "number":
            return form.number(name, default, required=required, low=self._low(), high=self._high())
        if self.kind == "strings":
            items = form.string_list(name, allow_empty_items=self.nullable_items, max_len=self.max_length)
            if items is not None and len(items) > self.max_items:
                raise BadRequest(f"field {name!r} has more than {self.max_items} items")
            if items is None and required:
                raise BadRequest(f"field {name!r} is required")
            return default if items is None else items
        return form.id_list(name)  # ids

    def _low(self) -> float:
        return self.minimum if self.minimum is not None else 0

    def _high(self) -> float:
        return self.maximum if self.maximum is not None else MAX_COUNT

    def schema(self) -> Schema:
        """The field's OpenAPI 3.0 schema (the bounds `read` enforces)."""
        out: Schema
        if self.kind == "text":
            out = {"type": "string", "maxLength": self.max_length}
            if self.enum:
                out["enum"] = list(self.enum)
        elif self.kind in ("integer", "number"):
            out = {"type": self.kind, "minimum": _num(self._low(), self.kind), "maximum": _num(self._high(), self.kind)}
        elif self.kind == "boolean":
            out = {"type": "boolean"}
        elif self.kind == "strings":
            item: Schema = {"type": "string", "maxLength": self.max_length}
            if self.nullable_items:
                item["nullable"] = True
            out = {"type": "array", "items": item, "maxItems": self.max_items}
        else:
            out = {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": MAX_ID - 1},
                   "maxItems": self.max_items}
        out["description"] = self.description + _ENCODING.get(self.kind, "")
        return out

    def limits(self) -> dict[str, Any]:
        """The bounds as HTML input attributes (min, max, maxlength), for the page."""
        if self.kind in ("integer", "number"):
            return {"min": _num(self._low(), self.kind), "max": _num(self._high(), self.kind)}
        if self.kind in ("text", "strings"):
            return {"maxlength": self.max_length}
        return {}


_ENCODING = {
    "boolean": " (true/True/false/False, any case)",
    "strings": " Repeated fields, `name[]` fields, a JSON list string or comma-separated text.",
    "ids": " Sent as repeated `job_ids[]` fields, a JSON list string or comma-separated ids.",
}


def _num(value: float, kind: str) -> float | int:
    return int(value) if kind == "integer" else value


def schema_of(group: Iterable[Field]) -> dict[str, Schema]:
    return {f.name: f.schema() for f in group}


def required_of(group: Iterable[Field]) -> tuple[str, ...]:
    return tuple(f.name for f in group if f.required)


def by_name(group: Iterable[Field]) -> dict[str, Field]:
    return {f.name: f for f in group}


ACTIVE = Field("active", "boolean", "Manage the queue", required=True)

# --- a set of a job ----------------------------------------------------------------------------
SET_PATH = Field("path", "text", "File path in the file store (or on the SD card when sd is true)",
                 required=True, max_length=MAX_PATH)
SET: tuple[Field, ...] = (
    SET_PATH,
    Field("sd", "boolean", "The file is on the printer's SD card"),
    Field("count", "integer", "Copies per job run (default 1)"),
    Field("remaining", "integer", "Copies left in this run (default count; at most count)"),
    Field("completed", "integer", "Copies printed so far", maximum=1_000_000_000),
    Field("materials", "strings", "One material per tool, e.g. PLA_red_#ff0000; empty = any", nullable_items=True),
    Field("profiles", "strings", "Printer profile names; empty = any printer"),
    Field("metadata", "text", "Any JSON value, as JSON text", max_length=MAX_METADATA),
)
QUEUE_NAME = Field("queue", "text", "Queue (default local)", max_length=MAX_QUEUE_NAME)
SET_ADD: tuple[Field, ...] = (
    *SET,
    Field("job", "integer", "Id of an existing job; empty creates a job", minimum=1, maximum=MAX_ID),
    Field("jobName", "text", "Name of the new job (default: the file's name)", max_length=MAX_NAME),
    Field("jobDraft", "boolean", "The new job is a draft (default true)"),
    QUEUE_NAME,
)

# --- jobs --------------------------------------------------------------------------------------
JOB_NAME = Field("name", "text", "Job name", max_length=MAX_NAME)
JOB_EDIT: tuple[Field, ...] = (
    Field("name", "text", "New name", max_length=MAX_NAME),
    Field("count", "integer", "Job runs"),
    Field("remaining", "integer", "Runs left (at most count)"),
    Field("draft", "boolean", "Draft jobs are never printed"),
)
JOB_ADD: tuple[Field, ...] = (Field("name", "text", "Job name", required=True, max_length=MAX_NAME), QUEUE_NAME)
JOB_MV: tuple[Field, ...] = (
    Field("id", "text", "Job to move", required=True, max_length=100),
    Field("after_id", "text", "Job to put it after; empty = to the front", max_length=100),
    Field("src_queue", "text", "Queue the job is in (default local)", max_length=MAX_QUEUE_NAME),
    Field("dest_queue", "text", "Queue to move it to (default src_queue)", max_length=MAX_QUEUE_NAME),
)
JOB_IDS = Field("job_ids", "ids", "The jobs.")
JOB_IMPORT: tuple[Field, ...] = (
    Field("queue", "text", "Queue (default local)", max_length=MAX_QUEUE_NAME),
    Field("path", "text", "Path of the .gjob", required=True, max_length=MAX_PATH),
)

# --- queues ------------------------------------------------------------------------------------
QUEUE: tuple[Field, ...] = (
    Field("name", "text", "Queue name (not `archive`)", required=True, max_length=MAX_QUEUE_NAME),
    Field("strategy", "text", "How jobs are picked", enum=STRATEGIES),
    Field("addr", "text", "Sync address of a LAN queue"),
    Field("secret", "text", "Shared secret of a LAN queue (at least 8 characters)"),
)

# --- the driver (api/automation.py; runner.DriverSettings holds the values) --------------------
DRIVER: tuple[Field, ...] = (
    Field("max_retries", "integer", "Retries of a failed print", maximum=100),
    Field("cooldown", "boolean", "Wait for the bed to cool before clearing it"),
    Field("cooldown_below", "number", "Bed temperature to wait for, °C", maximum=150.0),
    Field("cooldown_timeout", "number", "Stop waiting for the bed after this many seconds", maximum=24 * 3600.0),
    Field("recheck_every", "number", "Seconds between looks at the queues while idle", minimum=0.5, maximum=3600.0),
)
MATERIALS = Field("materials", "strings", "One entry per tool (at most 16); empty = unknown",
                  nullable_items=True, max_items=MAX_TOOLS)

# --- an upload (api/files.py reads these from the multipart body) -------------------------------
UPLOAD: tuple[Field, ...] = (
    Field("path", "text", "Folder to put the file in", max_length=MAX_PATH),
    Field("filename", "text", "Name to use when the file part has none", max_length=MAX_PATH),
    Field("select", "boolean", "Select the file for a direct print"),
    Field("print", "boolean", "Queue the file as a new ready job in the local queue"),
)

# --- LAN and farm ------------------------------------------------------------------------------
ADOPT: tuple[Field, ...] = (Field("node", "text", "Id or name of the node that is gone", required=True, max_length=200),)
FARM_ACTION: tuple[Field, ...] = (
    Field("node", "text", "Node id of the printer's node", required=True, max_length=200),
    Field("action", "text", "What to do", required=True, enum=FARM_ACTIONS),
)

#: The page's inputs, by the id the page gives them (web/limits.js applies these).
PAGE_INPUTS: dict[str, Field] = {
    "add-name": by_name(SET_ADD)["jobName"],
    "add-count": by_name(SET)["count"],
    "job-name": JOB_NAME,
    "job-count": by_name(JOB_EDIT)["count"],
    "set-count": by_name(SET)["count"],
    "join-name": QUEUE[0],
    "join-secret": QUEUE[3],
    "mat-input": MATERIALS,
    "drv-retries": by_name(DRIVER)["max_retries"],
    "drv-below": by_name(DRIVER)["cooldown_below"],
    "drv-timeout": by_name(DRIVER)["cooldown_timeout"],
    "drv-recheck": by_name(DRIVER)["recheck_every"],
}


def page_limits() -> dict[str, dict[str, Any]]:
    """Input id (or class) -> HTML attributes: the page holds a person to the server's bounds."""
    return {key: f.limits() for key, f in PAGE_INPUTS.items()}
