"""The OpenAPI 3.0 document of the node's HTTP surface, served at /lanqueue/openapi.json
(api/docroutes.py imports this module on the first request for it).

Hand-written and kept true by tests/test_openapi.py: every route the application registers must
be described here and every path described here must be registered. To document a new route,
add one `describe(...)` call in the section of its module below (or call `describe` from the
route module itself); form fields are described once with the `field helpers` and reused by
tests/test_api_fuzz.py, which generates requests from this document.

Conventions of the document (so generated clients and the fuzzer read it the same way):
- Form bodies are `application/x-www-form-urlencoded`; the routes also take `multipart/form-data`
  and a raw JSON object with the same fields. Booleans are the strings true/True/false/False.
- A form field that holds a JSON document (the original plugin's `json` field) is a string with
  `contentMediaType: application/json` and the document's schema under `x-json-schema`.
- Every 4xx/5xx answer is `{"error": message}` (the `Error` schema).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from .. import __version__
from .. import automation as auto
from . import fields as F
from .docroutes import FIELDS_PATH, OPENAPI_PATH
from .fields import Field, required_of, schema_of

__all__ = ["describe", "example", "document", "OPENAPI_PATH", "PATHS"]

CP = "/plugin/continuousprint"

Schema = dict[str, Any]

# path template (OpenAPI style, `{name}` parameters) -> lower-case method -> operation object
PATHS: dict[str, dict[str, Schema]] = {}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


# --- field helpers ---------------------------------------------------------------------------


def text(description: str = "", *, max_length: int = 1000, enum: list[str] | None = None) -> Schema:
    """A path or body field of a route that reads no declared form field (its own checks)."""
    out: Schema = {"type": "string", "maxLength": max_length}
    if description:
        out["description"] = description
    if enum:
        out["enum"] = enum
    return out


def fields_form(group: tuple[Field, ...], *extra: Field, optional_body: bool = False) -> Schema:
    """A form body whose fields are declared in api/fields.py."""
    both = (*group, *extra)
    return form(schema_of(both), required_of(both), optional_body=optional_body)


def fields_doc(group: tuple[Field, ...], **more: Schema) -> Schema:
    """A JSON document (an object) of declared fields, plus `more` properties."""
    out: Schema = {"type": "object", "properties": {**schema_of(group), **more}}
    if required := required_of(group):
        out["required"] = list(required)
    return out


def json_text(inner: Schema, description: str = "") -> Schema:
    """A form field whose value is a JSON document described by `inner`."""
    return {
        "type": "string",
        "contentMediaType": "application/json",
        "description": (description + " " if description else "") + "A JSON document (see x-json-schema).",
        "x-json-schema": inner,
    }


def form(properties: dict[str, Schema], required: tuple[str, ...] = (), *, optional_body: bool = False) -> Schema:
    """A request body of form fields (urlencoded, multipart or the same fields as a JSON object)."""
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    array_fields = {k: {"style": "form", "explode": True} for k, v in properties.items() if v.get("type") == "array"}
    urlencoded: Schema = {"schema": schema}
    if array_fields:
        urlencoded["encoding"] = array_fields
    return {
        "required": not optional_body,
        "content": {
            "application/x-www-form-urlencoded": urlencoded,
            "multipart/form-data": {"schema": schema},
            "application/json": {"schema": schema},
        },
    }


def json_body(schema: Schema, *, required: bool = True) -> Schema:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def ok(schema: Schema | None, description: str = "OK", status: str = "200", headers: Schema | None = None) -> Schema:
    out: Schema = {status: {"description": description}}
    if schema is not None:
        out[status]["content"] = {"application/json": {"schema": schema}}
    if headers:
        out[status]["headers"] = headers
    return out


def ok_content(ctype: str, description: str, schema: Schema | None = None, status: str = "200") -> Schema:
    """A success answer that is not JSON (a page, a stream, a text format)."""
    return {status: {"description": description, "content": {ctype: {"schema": schema or {"type": "string"}}}}}


NO_CONTENT: Schema = {"204": {"description": "Done; no body."}}


def _error(description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


ERRORS: dict[str, Schema] = {
    "400": _error("Bad request: a field is missing or invalid. Nothing was changed."),
    "403": _error("No or wrong API key."),
    "404": _error("An id, queue or file named in the request does not exist. Nothing was changed."),
    "409": _error("The request is valid but the current state does not allow it."),
    "413": _error("The body or uploaded file is larger than the node accepts."),
    "415": _error("Unsupported file type."),
    "503": _error("A service the request needs is not available right now."),
}


def describe(
    method: str,
    path: str,
    summary: str,
    *,
    tag: str,
    responses: Schema,
    body: Schema | None = None,
    errors: tuple[str, ...] = ("400",),
    parameters: list[Schema] | None = None,
    public: bool = False,
    description: str = "",
    mutates: bool = True,
) -> None:
    """Document one route. `errors` lists the 4xx/5xx statuses it can answer besides 403.

    `mutates=False` marks a route that never changes the node's data (the fuzzer uses it)."""
    op: Schema = {"summary": summary, "tags": [tag], "operationId": f"{method.lower()}_{_op_name(path)}"}
    if description:
        op["description"] = description
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = body
    all_responses = dict(responses)
    if body is not None and "413" not in errors:  # every body is bounded
        errors = (*errors, "413")
    for status in errors:
        all_responses[status] = ERRORS[status]
    if public:
        op["security"] = []
    else:
        all_responses["403"] = ERRORS["403"]
    op["responses"] = all_responses
    op["x-mutates"] = mutates
    methods = PATHS.setdefault(path, {})
    if method.lower() in methods:
        raise ValueError(f"{method} {path} is described twice")
    methods[method.lower()] = op


def _op_name(path: str) -> str:
    name = path.replace(CP, "cp").strip("/").replace("{", "").replace("}", "")
    return "".join(c if c.isalnum() else "_" for c in name) or "root"


def document() -> Schema:
    """The whole OpenAPI document (a fresh copy)."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "lanqueue node",
            "version": __version__,
            "description": (
                "The HTTP surface of one lanqueue node: the Continuous Print plugin's API under "
                f"{CP}/, the subset of OctoPrint's REST API that slicers use under /api/, and "
                "lanqueue's own routes. Every route needs the node's API key unless marked "
                "otherwise; errors are JSON objects {\"error\": message}."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"ApiKeyHeader": []}, {"Bearer": []}, {"ApiKeyQuery": []}],
        "paths": copy.deepcopy(PATHS),
        "components": {
            "securitySchemes": {
                "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
                "Bearer": {"type": "http", "scheme": "bearer"},
                "ApiKeyQuery": {"type": "apiKey", "in": "query", "name": "apikey"},
            },
            "schemas": copy.deepcopy(SCHEMAS),
        },
    }


# --- shared schemas ---------------------------------------------------------------------------

_str = {"type": "string"}
_int = {"type": "integer"}
_num = {"type": "number"}
_bool = {"type": "boolean"}
_nullable_str = {"type": "string", "nullable": True}
_id = {"oneOf": [{"type": "integer"}, {"type": "string"}], "description": "integer for local jobs and sets, UUID text for LAN ones"}

SCHEMAS: dict[str, Schema] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": _str}},
    "OK": {"type": "string", "enum": ["OK"]},
    "Set": {
        "type": "object",
        "required": ["id", "path", "count", "remaining", "sd", "materials", "profiles"],
        "properties": {
            "id": _id,
            "path": _str,
            "count": _int,
            "remaining": _int,
            "completed": _int,
            "rank": _num,
            "sd": _bool,
            "materials": {"type": "array", "items": _nullable_str},
            "profiles": {"type": "array", "items": _str},
            "metadata": {"nullable": True, "description": "any JSON value"},
            "missing_file": {"type": "boolean", "description": "the set's file is not in the file store"},
        },
    },
    "Job": {
        "type": "object",
        "required": ["id", "queue", "name", "count", "remaining", "draft", "acquired", "created", "sets"],
        "properties": {
            "id": _id,
            "queue": _str,
            "name": _str,
            "count": _int,
            "remaining": _int,
            "draft": _bool,
            "acquired": _bool,
            "created": {"type": "integer", "description": "epoch seconds"},
            "rank": _num,
            "sets": {"type": "array", "items": _ref("Set")},
        },
    },
    "Queue": {
        "type": "object",
        "required": ["name", "strategy", "jobs"],
        "properties": {
            "name": _str,
            "strategy": {"type": "string", "enum": ["IN_ORDER", "LEAST_MANUAL"]},
            "addr": _nullable_str,
            "peers": {"description": "[] for the local queue, an object of peers for LAN queues"},
            "rank": _num,
            "active_set": {"nullable": True, "description": "id of the set being printed from this queue"},
            "jobs": {"type": "array", "items": _ref("Job")},
        },
    },
    "State": {
        "type": "object",
        "required": ["active", "status", "statusType", "profile", "queues"],
        "properties": {
            "active": _bool,
            "status": _str,
            "statusType": {"type": "string", "enum": ["NORMAL", "NEEDS_ACTION", "ERROR", "INIT"]},
            "profile": _str,
            "printer": {"type": "object", "nullable": True,
                        "description": "the printer this node drives: backend, target (address), state, "
                                       "error, capabilities (tools, nozzle_diameter, bed_size, filaments, model)"},
            "queues": {"type": "array", "items": _ref("Queue")},
        },
    },
    "SetAdded": {
        "type": "object",
        "required": ["job_id", "draft", "set_"],
        "properties": {"job_id": _id, "draft": {"type": "boolean", "description": "the job is a draft (never "
                       "printed): new jobs are unless jobDraft=false"}, "set_": _ref("Set")},
    },
    "Run": {
        "type": "object",
        "required": ["run_id", "queue_name", "job_name", "set_path", "start", "end", "result", "active"],
        "properties": {
            "run_id": _int,
            "queue_name": _str,
            "job_name": _str,
            "set_path": _str,
            "start": {"type": "number", "description": "epoch seconds"},
            "end": {"type": "number", "nullable": True},
            "result": {"type": "string", "nullable": True, "enum": ["success", "failure", "aborted", "cancelled", None]},
            "active": _bool,
        },
    },
    "QueueInfo": {
        "type": "object",
        "required": ["name", "addr", "strategy"],
        "properties": {"name": _str, "addr": _nullable_str, "strategy": {"type": "string", "enum": ["IN_ORDER", "LEAST_MANUAL"]}},
    },
    "Attachment": {
        "type": "object",
        "required": ["script"],
        "properties": {"script": _str, "preprocessor": {"type": "string", "description": "name of a preprocessor, or \"\""}},
        "additionalProperties": False,
    },
    "Automation": {
        "type": "object",
        "properties": {
            # the bounds Automation.from_json enforces (automation.py), not a copy of them
            "scripts": {"type": "object", "maxProperties": auto.MAX_SCRIPTS,
                        "additionalProperties": {"type": "string", "maxLength": auto.MAX_SCRIPT_CHARS}},
            "preprocessors": {"type": "object", "maxProperties": auto.MAX_PREPROCESSORS,
                              "additionalProperties": {"type": "string", "maxLength": auto.MAX_PROGRAM_CHARS}},
            "events": {
                "type": "object",
                "properties": {
                    e: {"type": "array", "items": _ref("Attachment"), "maxItems": auto.MAX_ATTACHMENTS}
                    for e in auto.EVENTS
                },
                "additionalProperties": False,
            },
        },
        "additionalProperties": False,
    },
    "Simulation": {
        "type": "object",
        "required": ["gcode", "symtable_diff", "stdout", "stderr"],
        "properties": {"gcode": _str, "symtable_diff": {"type": "object"}, "stdout": _str, "stderr": _str},
    },
    "DriverSettings": fields_doc(F.DRIVER),
    "FileEntry": {
        "type": "object",
        "required": ["name", "path", "origin", "type", "typePath", "size", "refs"],
        "properties": {
            "name": _str,
            "display": _str,
            "path": _str,
            "origin": {"type": "string", "enum": ["local"]},
            "type": {"type": "string", "enum": ["machinecode", "model"]},
            "typePath": {"type": "array", "items": _str},
            "size": {"type": "integer", "nullable": True},
            "date": {"type": "integer", "nullable": True},
            "hash": {"type": "string", "nullable": True, "description": "sha256 hex digest"},
            "refs": {"type": "object", "properties": {"resource": _str, "download": _str}},
        },
    },
    "FileList": {
        "type": "object",
        "required": ["files", "free", "total"],
        "properties": {"files": {"type": "array", "items": _ref("FileEntry")}, "free": _int, "total": _int},
    },
    "UploadResult": {
        "type": "object",
        "required": ["files", "done", "effectiveSelect", "effectivePrint"],
        "properties": {
            "files": {"type": "object", "properties": {"local": _ref("FileEntry")}},
            "done": _bool,
            "effectiveSelect": _bool,
            "effectivePrint": _bool,
            "lanqueue_job_id": {"type": "integer", "description": "the job queued by print=true"},
        },
    },
}

# Documents carried in `json` form fields (also used by tests to generate valid requests), all
# from the declarations in api/fields.py.
SET_ADD_DOC: Schema = fields_doc(F.SET_ADD)
EDITED_SET: Schema = {
    "type": "object",
    "properties": {"id": {"type": "integer", "minimum": 1, "maximum": F.MAX_ID,
                          "description": "Existing set to update; absent creates a set"},
                   **schema_of(F.SET)},
    "description": "A set without `id` is created (path required); one with `id` is updated.",
}
JOB_EDIT_DOC: Schema = {
    "type": "object",
    "required": ["id"],
    "properties": {
        "id": {**_id, "description": "the job to change"},
        "queue": F.QUEUE_NAME.schema(),
        **schema_of(F.JOB_EDIT),
        "sets": {"type": "array", "items": EDITED_SET, "maxItems": 1000,
                 "description": "The complete new list of sets, in rank order; sets not listed are removed."},
    },
}
JOB_ADD_DOC: Schema = fields_doc(F.JOB_ADD)
QUEUES_EDIT_DOC: Schema = {
    "type": "array",
    "maxItems": 32,
    "description": "Every queue in rank order; `local` must be listed. LAN queues need the LAN service.",
    "items": fields_doc(F.QUEUE),
}
SIM_PAIRS: Schema = {
    "type": "array",
    "maxItems": 50,
    "items": {"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "string", "nullable": True}},
    "description": "[script body, preprocessor body or null] pairs, run in order",
}
PATH_PARAM: list[Schema] = [
    {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}, "description": "path of a file in the store"}
]

# --- Continuous Print: public routes -----------------------------------------------------------

T_CP, T_CPI, T_AUTO, T_FILES, T_OP, T_NODE = (
    "continuousprint",
    "continuousprint-internal",
    "automation",
    "files",
    "octoprint",
    "node",
)

describe("get", CP + "/state/get", "The queue state", tag=T_CP, responses=ok(_ref("State")), errors=(), mutates=False)
describe(
    "post", CP + "/set_active", "Start or stop managing the queue", tag=T_CP,
    body=fields_form((F.ACTIVE,)), responses=ok(_ref("State")),
    description="Stopping does not stop a print in progress.",
)
describe(
    "post", CP + "/set/add", "Add a set, creating its job unless `job` is given", tag=T_CP,
    body=form({**SET_ADD_DOC["properties"], "json": json_text(SET_ADD_DOC, "All fields as one JSON object")},
              required_of(F.SET_ADD)),
    responses=ok(_ref("SetAdded")), errors=("400", "404"),
    description="`path` is required unless the `json` field carries it.",
)
describe(
    "post", CP + "/automation/external", "Replace the external data preprocessors see", tag=T_CP,
    body=json_body({"type": "object", "description": "any JSON object (at most 64 KiB)"}), responses=ok(_ref("OK")),
)

# --- Continuous Print: internal routes ----------------------------------------------------------

describe(
    "post", CP + "/job/add", "Create an empty draft job", tag=T_CPI,
    body=form({"json": json_text(JOB_ADD_DOC)}, ("json",)), responses=ok(_ref("Job")), errors=("400", "404"),
)
describe(
    "post", CP + "/job/edit", "Change a job's fields and its list of sets", tag=T_CPI,
    body=form({"json": json_text(JOB_EDIT_DOC)}, ("json",)), responses=ok(_ref("Job")), errors=("400", "404"),
)
describe(
    "post", CP + "/job/mv", "Move a job after another one (or to the front)", tag=T_CPI,
    body=fields_form(F.JOB_MV),
    responses=ok(_ref("OK")), errors=("400", "404"),
)
describe(
    "post", CP + "/job/rm", "Archive local jobs (delete archived ones)", tag=T_CPI,
    body=fields_form((F.QUEUE_NAME, F.JOB_IDS), optional_body=True),
    responses=ok({"type": "object", "required": ["jobs_deleted"], "properties": {"jobs_deleted": _int}}),
    errors=("400", "404"),
)
describe(
    "post", CP + "/job/reset", "Start jobs over", tag=T_CPI,
    body=fields_form((F.QUEUE_NAME, F.JOB_IDS), optional_body=True),
    responses=ok({"type": "object", "required": ["num_updated"], "properties": {"num_updated": _int}}),
    errors=("400", "404"),
)
describe(
    "post", CP + "/job/export", "Write each job as a .gjob into the file store", tag=T_CPI,
    body=fields_form((F.JOB_IDS,), optional_body=True),
    responses=ok({"type": "object", "required": ["paths", "errors"],
                  "properties": {"paths": {"type": "array", "items": _str}, "errors": {"type": "array", "items": _str}}}),
)
describe(
    "post", CP + "/job/import", "Create a draft job from a .gjob in the file store", tag=T_CPI,
    body=fields_form(F.JOB_IMPORT),
    responses=ok(_ref("Job")), errors=("400", "404", "409", "413", "415"),
)
describe("get", CP + "/history/get", "The newest 100 runs, newest first", tag=T_CPI,
         responses=ok({"type": "array", "items": _ref("Run")}), errors=(), mutates=False)
describe("post", CP + "/history/reset", "Forget finished runs", tag=T_CPI, responses=ok(_ref("OK")), errors=())
describe("get", CP + "/queues/get", "Queues in rank order", tag=T_CPI,
         responses=ok({"type": "array", "items": _ref("QueueInfo")}), errors=(), mutates=False)
describe(
    "post", CP + "/queues/edit", "Replace the queue list", tag=T_CPI,
    body=form({"json": json_text(QUEUES_EDIT_DOC)}, ("json",)), responses=ok(_ref("OK")), errors=("400", "404"),
)

# --- automation, materials, driver --------------------------------------------------------------

describe("get", CP + "/automation/get", "Scripts, preprocessors and event attachments", tag=T_AUTO,
         responses=ok(_ref("Automation")), errors=(), mutates=False)
describe(
    "post", CP + "/automation/edit", "Replace the whole automation", tag=T_AUTO,
    body=form({"json": json_text(_ref("Automation"))}, ("json",)), responses=ok(_ref("OK")),
)
describe(
    "post", CP + "/automation/simulate", "Run scripts and preprocessors against a symbol table", tag=T_AUTO,
    body=form({"symtable": json_text({"type": "object"}, "Symbols"), "automation": json_text(SIM_PAIRS)}, ("automation",)),
    responses=ok(_ref("Simulation")), mutates=False,
)
describe("post", CP + "/runner/continue", "A person cleared the bed: carry on", tag=T_AUTO,
         responses=ok(_ref("OK")), errors=("409",))
describe("get", CP + "/materials/get", "The material loaded in each tool", tag=T_AUTO,
         responses=ok({"type": "array", "items": _nullable_str}), errors=(), mutates=False)
describe(
    "post", CP + "/materials/set", "Set the material loaded in each tool", tag=T_AUTO,
    body=fields_form((F.MATERIALS,), optional_body=True),
    responses=ok({"type": "array", "items": _nullable_str}),
)
describe("get", CP + "/driver/get", "Driver settings", tag=T_AUTO, responses=ok(_ref("DriverSettings")), errors=(), mutates=False)
describe(
    "post", CP + "/driver/edit", "Change driver settings (applied from the next cycle)", tag=T_AUTO,
    body=form({"json": json_text(_ref("DriverSettings"))}, ("json",)), responses=ok(_ref("DriverSettings")),
)

# --- files (OctoPrint's /api/files) -------------------------------------------------------------

describe(
    "post", "/api/files/local", "Upload a G-code or .gjob file", tag=T_FILES,
    body={
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": ".gcode, .gco, .g or .gjob"},
                        **schema_of(F.UPLOAD),
                    },
                },
            }
        },
    },
    responses=ok(_ref("UploadResult"), "Stored", "201",
                 headers={"Location": {"schema": {"type": "string"}, "description": "URL of the file's resource"}}),
    errors=("400", "409", "413", "415"),
)
describe("get", "/api/files", "Every stored file", tag=T_FILES, responses=ok(_ref("FileList")), errors=(), mutates=False)
describe("get", "/api/files/local", "Every stored file", tag=T_FILES, responses=ok(_ref("FileList")), errors=(), mutates=False)
describe("get", "/api/files/local/{path}", "One stored file", tag=T_FILES, parameters=PATH_PARAM,
         responses=ok(_ref("FileEntry")), errors=("400", "404"), mutates=False)
describe("get", "/downloads/files/local/{path}", "Download a stored file (the refs.download link)", tag=T_FILES,
         parameters=PATH_PARAM, responses=ok_content("application/octet-stream", "The file's bytes"),
         errors=("400", "404"), mutates=False)
describe("get", "/lanqueue/thumbnail/{name}", "The slicer's thumbnail of a file (a set's gcode.thumbnail)", tag=T_FILES,
         parameters=[{"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
                      "description": "`<sha256>.png` or `<sha256>.jpg`, as the set's `gcode.thumbnail` names it"}],
         responses=ok_content("image/png", "The picture (image/png or image/jpeg)"), errors=("404",), mutates=False)
describe("delete", "/api/files/local/{path}", "Delete a stored file", tag=T_FILES, parameters=PATH_PARAM,
         responses=NO_CONTENT, errors=("400", "404", "409"))
describe(
    "post", "/api/files/local/{path}", "Select a file, optionally printing it directly (no queue)", tag=T_FILES,
    parameters=PATH_PARAM,
    body=json_body({"type": "object", "required": ["command"],
                    "properties": {"command": {"type": "string", "enum": ["select"]}, "print": _bool}}),
    responses=NO_CONTENT, errors=("400", "404", "409"),
)

# --- OctoPrint REST subset ----------------------------------------------------------------------

describe("get", "/api/version", "Versions (OctoPrint shape)", tag=T_OP, mutates=False, errors=(),
         responses=ok({"type": "object", "required": ["api", "server", "text"],
                       "properties": {"api": _str, "server": _str, "text": _str}}))
describe("get", "/api/server", "Server information (OctoPrint shape)", tag=T_OP, mutates=False, errors=(),
         responses=ok({"type": "object", "properties": {"version": _str, "safemode": {"nullable": True}}}))
describe("get", "/api/settings", "The few settings slicers read", tag=T_OP, mutates=False, errors=(),
         responses=ok({"type": "object"}))
describe("get", "/api/printerprofiles", "The printer profile (OctoPrint shape; Cura reads it)", tag=T_OP,
         mutates=False, errors=(),
         responses=ok({"type": "object", "required": ["profiles"], "properties": {"profiles": {"type": "object"}}}))
describe("get", "/api/printer", "Temperatures and state flags", tag=T_OP, mutates=False, errors=("409",),
         responses=ok({"type": "object", "properties": {"temperature": {"type": "object"}, "sd": {"type": "object"},
                                                        "state": {"type": "object"}}}))
describe(
    "post", "/api/printer/command", "Send G-code commands to the printer", tag=T_OP,
    body=json_body({"type": "object", "properties": {
        "command": {"type": "string", "maxLength": 256},
        "commands": {"type": "array", "items": {"type": "string", "maxLength": 256}, "maxItems": 100}}}),
    responses=NO_CONTENT, errors=("400", "409"),
)
describe("get", "/api/connection", "Connection settings and state", tag=T_OP, mutates=False, errors=(),
         responses=ok({"type": "object", "properties": {"current": {"type": "object"}, "options": {"type": "object"}}}))
describe(
    "post", "/api/connection", "Connect or disconnect the printer", tag=T_OP,
    body=json_body({"type": "object", "required": ["command"],
                    "properties": {"command": {"type": "string", "enum": ["connect", "disconnect", "fake_ack"]}}}),
    responses=NO_CONTENT, errors=("400", "409"),
)
describe("get", "/api/job", "The current direct print and its progress", tag=T_OP, mutates=False, errors=(),
         responses=ok({"type": "object", "properties": {"job": {"type": "object"}, "progress": {"type": "object"},
                                                        "state": _str}}))
describe(
    "post", "/api/job", "Start, cancel, restart or pause a direct print", tag=T_OP,
    body=json_body({"type": "object", "required": ["command"], "properties": {
        "command": {"type": "string", "enum": ["start", "cancel", "restart", "pause"]},
        "action": {"type": "string", "enum": ["pause", "resume", "toggle"]}}}),
    responses=NO_CONTENT, errors=("400", "409"),
)

# --- lanqueue's own -----------------------------------------------------------------------------

describe("get", OPENAPI_PATH, "This document", tag=T_NODE, public=True, errors=(), mutates=False,
         responses=ok({"type": "object", "description": "an OpenAPI 3.0 document"}))


describe("get", FIELDS_PATH, "The page's input limits, from the same declarations as this document", tag=T_NODE,
         errors=(), mutates=False,
         description="`inputs`: the page's input id or class -> the HTML attributes min, max, maxlength.",
         responses=ok({"type": "object", "required": ["inputs"],
                       "properties": {"inputs": {"type": "object", "additionalProperties": {"type": "object"}}}}))
describe("get", "/metrics", "Prometheus metrics (text exposition format 0.0.4)", tag=T_NODE, errors=(), mutates=False,
         responses=ok_content("text/plain; version=0.0.4", "Metrics"))
describe("get", "/lanqueue/events", "Live updates (server-sent events)", tag=T_NODE, errors=("503",), mutates=False,
         description="Event `hello` on connect, then `change` events with data `{\"kinds\": [...]}` "
         "(queues, driver, printer). EventSource cannot send headers: pass the key as ?apikey=.",
         responses=ok_content("text/event-stream", "An endless event stream"))

describe("get", "/lanqueue/peers", "This node and the peers it knows", tag=T_NODE, errors=(), mutates=False,
         responses=ok({"type": "object", "required": ["node_id", "name", "peers"],
                       "properties": {"node_id": _str, "name": _str, "peers": {"type": "array", "items": {"type": "object"}},
                                      "lan_standing": {"type": "object", "description":
                                                       "per LAN queue: state (ok, syncing, identity_clash), detail, "
                                                       "rolled_back, reset_identity (the command that fixes a clash)"}}}))
describe("post", "/lanqueue/lan/drain", "Hand this node's LAN jobs over to other nodes before it goes away", tag=T_NODE,
         responses=ok({"type": "object", "properties": {"moved": {"description": "jobs their new home confirmed receiving"},
                                                         "unconfirmed": {"description": "jobs given to a peer that did not answer"},
                                                         "kept": {"description": "jobs still homed here (no live peer took them)"}}}),
         errors=("400", "409", "503"))
describe("post", "/lanqueue/lan/adopt", "Take over the LAN jobs homed on a node that is gone for good", tag=T_NODE,
         body=fields_form(F.ADOPT),
         responses=ok({"type": "object", "properties": {"adopted": {"description": "what was adopted"}}}),
         errors=("400", "404", "409", "503"))
describe("get", "/lanqueue/farm", "The farm view: every printer of the shared LAN queues and each queue's timeline",
         tag=T_NODE, errors=("503",), mutates=False,
         description="`cards`: this node's printer first, then each member of a shared LAN queue with `farm_state` "
         "connecting, on or off (`since`: Unix time), its state, progress, temperatures, job, file, thumbnail, "
         "`needs` (what it needs from a person) and `actions`. `timelines`: per queue, each job to print with "
         "the printer expected to print it and `done_at` (null: unknown, an estimate is missing).",
         responses=ok({"type": "object", "required": ["node_id", "cards", "timelines"],
                       "properties": {"node_id": _str, "now": {"type": "number"},
                                      "cards": {"type": "array", "items": {"type": "object"}},
                                      "timelines": {"type": "array", "items": {"type": "object"}}}}))
describe("get", "/lanqueue/farm/thumbnail/{node}/{name}", "The slicer's thumbnail of what a printer of the farm prints",
         tag=T_NODE, errors=("404", "503"), mutates=False,
         description="This node's own, else relayed from the printer's node over the signed peer protocol.",
         parameters=[{"name": "node", "in": "path", "required": True, "schema": {"type": "string"}},
                     {"name": "name", "in": "path", "required": True,
                      "schema": {"type": "string", "pattern": "^[0-9a-f]{64}\\.(png|jpg)$"}}],
         responses=ok_content("image/png", "The picture (PNG or JPEG)"))
describe("post", "/lanqueue/farm/action", "Act on any printer of the farm (carried to its node, signed)", tag=T_NODE,
         body=fields_form(F.FARM_ACTION),
         responses=ok({"type": "object", "properties": {"ok": {"type": "boolean"}}}),
         errors=("400", "404", "409", "503"))

# --- node to node (no API key: every request is signed with the LAN queue's secret) -------------

_PEER = ("Node-to-node protocol (design/lan-protocol.md). No API key: requests and answers are "
         "signed with the LAN queue's shared secret; an unsigned or badly signed request is a 403.")
describe("get", "/lanqueue/peer/v1/hello", "Who this node is (discovery heartbeat)", tag="peer", public=True, errors=(),
         mutates=False, description="Unsigned: names and addresses only.", responses=ok({"type": "object"}))
describe("post", "/lanqueue/peer/v1/swim", "One SWIM membership message (ping, ack, ping-req)", tag="peer",
         public=True, errors=("400", "413", "503"), mutates=False,
         description="Unsigned: membership says what mDNS says; a forged suspicion is refuted by its "
                     "target (lanqueue/discovery/swimnet.py). Answered 204 at once.",
         body=json_body({"type": "object", "description": "one encoded SWIM message"}), responses=NO_CONTENT)
describe("post", "/lanqueue/peer/v1/message", "One LAN protocol message; the answer lists the replies", tag="peer",
         public=True, errors=("400", "403", "413", "503"), description=_PEER,
         body=json_body({"type": "object", "description": "an encoded protocol message"}),
         responses=ok({"oneOf": [{"type": "array", "items": {"type": "object"}}, _ref("Error")]}))
describe("post", "/lanqueue/peer/v1/edit", "Ask a job's home node to change the job", tag="peer", public=True,
         errors=("400", "403", "413", "503"), description=_PEER,
         body=json_body({"type": "object", "required": ["job_id"],
                         "properties": {"op": _str, "job_id": _str, "fields": {"type": "object"}}}),
         responses=ok({"type": "object", "properties": {"record": {"type": "object"}, "error": _str}}))
describe("get", "/lanqueue/peer/v1/files/{digest}", "A file by its sha256, for a peer that prints it", tag="peer",
         public=True, errors=("403", "404", "503"), description=_PEER, mutates=False,
         parameters=[{"name": "digest", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}],
         responses=ok_content("application/octet-stream", "The file's bytes"))
describe("get", "/lanqueue/peer/v1/etcd-files/{queue}/{digest}",
         "A file by its sha256, for a member of an etcd queue that prints it", tag="peer", public=True,
         errors=("400", "403", "404"), mutates=False,
         description="Signed with the queue's file secret (kept in etcd) in X-Lanqueue-Etcd-Signature.",
         parameters=[{"name": "queue", "in": "path", "required": True, "schema": {"type": "string"}},
                     {"name": "digest", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}],
         responses=ok_content("application/octet-stream", "The file's bytes"))
describe("post", "/lanqueue/peer/v1/farm/summary", "This node's printer, for a member's farm view", tag="peer",
         public=True, errors=("403", "413", "503"), description=_PEER, mutates=False,
         body=json_body({"type": "object"}), responses=ok({"type": "object"}))
describe("post", "/lanqueue/peer/v1/farm/thumbnail/{name}", "A thumbnail this node holds, for a member's farm view",
         tag="peer", public=True, errors=("403", "404", "413", "503"), description=_PEER, mutates=False,
         parameters=[{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
         body=json_body({"type": "object"}), responses=ok_content("application/octet-stream", "The picture's bytes"))
describe("post", "/lanqueue/peer/v1/farm/action", "An action on this node's printer from a member's farm view",
         tag="peer", public=True, errors=("400", "403", "413", "503"), description=_PEER,
         body=json_body({"type": "object", "required": ["action"], "properties": {"action": _str}}),
         responses=ok({"type": "object", "properties": {"ok": {"type": "boolean"}, "error": _str}}))

# --- the web page (public: the page asks for the key itself) ------------------------------------

for _page in ("/", "/index.html"):
    describe("get", _page, "The web page", tag=T_NODE, public=True, errors=(), mutates=False,
             responses=ok_content("text/html", "The page"))
describe("get", "/favicon.ico", "The page's icon", tag=T_NODE, public=True, errors=(), mutates=False,
         responses=ok_content("image/svg+xml", "The icon"))
describe("get", "/static/{name}", "A static file of the page", tag=T_NODE, public=True, errors=("404",), mutates=False,
         parameters=[{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
         responses=ok_content("application/octet-stream", "The file (its own content type)"))


# --- request examples (shown by documentation viewers; tests/test_api_fuzz.py mutates them) -----


def example(method: str, path: str, value: Any) -> None:
    """A realistic request body for a described route: form fields as text, or a JSON object."""
    body = PATHS[path][method]["requestBody"]
    for media in body["content"].values():
        media["example"] = value
        break


_J = json.dumps
example("post", CP + "/set_active", {"active": "false"})
example("post", CP + "/set/add", {"path": "part.gcode", "sd": "False", "count": "2", "job": "", "jobName": "Plates",
                                  "jobDraft": "True", "materials": "PLA_red_#ff0000"})
example("post", CP + "/automation/external", {"bed_clear": True, "operator": "Ann"})
example("post", CP + "/job/add", {"json": _J({"name": "Plates"})})
example("post", CP + "/job/edit", {"json": _J({"id": 1, "name": "Plates", "count": 2, "draft": False,
                                               "sets": [{"path": "part.gcode", "count": 3, "materials": [None]}]})})
example("post", CP + "/job/mv", {"id": "2", "after_id": "", "src_queue": "local", "dest_queue": "local"})
example("post", CP + "/job/rm", {"queue": "local", "job_ids": "3"})
example("post", CP + "/job/reset", {"queue": "local", "job_ids": "1"})
example("post", CP + "/job/export", {"job_ids": "1"})
example("post", CP + "/job/import", {"queue": "local", "path": "part.gjob"})
example("post", CP + "/queues/edit", {"json": _J([{"name": "local", "strategy": "IN_ORDER"}])})
example("post", CP + "/automation/edit", {"json": _J({
    "scripts": {"clear": "G28\nG1 Y235 F3000", "cool": "M190 R{bed}"},
    "preprocessors": {"warm_bed": "{'bed': 30} if external.get('bed_clear') else False"},
    "events": {"continuousprint_success": [{"script": "clear", "preprocessor": ""}],
               "continuousprint_finish": [{"script": "cool", "preprocessor": "warm_bed"}]}})})
example("post", CP + "/automation/simulate", {"symtable": _J({"x": 2}),
                                              "automation": _J([["G1 X{x}", "{'x': x * 2}"], ["M117 done", None]])})
example("post", CP + "/materials/set", {"materials": _J(["PLA_red_#ff0000", None])})
example("post", CP + "/driver/edit", {"json": _J({"max_retries": 2, "cooldown": True, "cooldown_below": 30})})
example("post", "/api/files/local/{path}", {"command": "select", "print": False})
example("post", "/api/printer/command", {"commands": ["M105", "M114"]})
example("post", "/api/connection", {"command": "connect"})
example("post", "/api/job", {"command": "pause", "action": "toggle"})
example("post", "/lanqueue/lan/adopt", {"node": "printer-7"})

