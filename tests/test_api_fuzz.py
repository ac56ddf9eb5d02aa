"""Schema-driven fuzzing of every documented route against a real `lanqueue serve` process.

For each operation of the OpenAPI document (lanqueue/api/openapi.py), hypothesis builds requests
from the documented fields with valid, wrong-typed and hostile values (huge and negative numbers,
'True'/'false'/'', nulls inside JSON lists, JSON text where a number belongs, raw JSON bodies,
traversal paths, unicode, long strings, missing required fields, unknown ids, wrong content
types, garbage multipart) and checks three properties:

- the node never answers 5xx;
- every 4xx is JSON `{"error": str}` with Content-Type application/json;
- a 4xx changes nothing: state, history, queues, automation, materials, driver settings and the
  file list are the same before and after.

One node serves the whole module (started once, seeded with files and jobs); each request is
sent with a plain `requests` session, so hypothesis runs synchronously. Runs are derandomized.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import API_KEY, CP, NodeProcess, free_port
from lanqueue.api.openapi import document

DOC = document()
SCHEMAS = DOC["components"]["schemas"]
MAX_UPLOAD_MB = 1

# Routes not fuzzed, with the reason (everything else in the document is).
SKIP = {
    ("get", "/lanqueue/events"): "an endless event stream; covered by the web page's tests",
}

OPERATIONS = [
    (method, path, op)
    for path, ops in DOC["paths"].items()
    for method, op in ops.items()
    if (method, path) not in SKIP
]

# A few hundred examples in CI (derandomized: the same requests every run). To hunt for bugs,
# LANQUEUE_FUZZ_EXAMPLES=500 LANQUEUE_FUZZ_RANDOM=1 pytest tests/test_api_fuzz.py
EXAMPLES_PER_OPERATION = int(os.environ.get("LANQUEUE_FUZZ_EXAMPLES", "12"))
DERANDOMIZE = os.environ.get("LANQUEUE_FUZZ_RANDOM", "") != "1"

KNOWN_FILES = ["a.gcode", "b.gcode", "sub/c.gcode", "seed.gjob", "part.gcode", "part.gjob"]
HOSTILE_TEXT = [
    "",
    " ",
    "True",
    "false",
    "null",
    "None",
    "NaN",
    "-1",
    "1e9",
    " 7 ",
    "0x10",
    "[]",
    "{}",
    "[null]",
    "[1, null]",
    '{"a": 1}',
    '"quoted"',
    "../../etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "/etc/passwd",
    "C:\\Windows\\x.gcode",
    "a\x00b.gcode",
    "ünïcødé 🖨 .gcode",
    "x" * 5000,
    "a.gcode",
    "archive",
    "local",
    "LAN",
    "PLA_red_#ff0000",
    "[" * 20_000 + "]" * 20_000,
    '{"a":' * 975 + "1" + "}" * 975,  # metadata this deep once broke state/get for good
    '{"a": "\\ud800"}',  # a lone surrogate, escaped in JSON text
    "\u202e\x1b[2Jforged",  # bidi override and terminal escapes, for the log
]


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value

HOSTILE_JSON: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    2**63,
    -(2**70),
    1.5,
    1e308,
    [],
    {},
    [None],
    [None, 1],
    ["a", None],
    {"path": "a.gcode"},
    [[[]]],
    "\ud800",  # lone surrogates: valid JSON text, not encodable as UTF-8
    {"k\udfff": "v"},
    _nested(40),  # deeper than any stored value may be
    10**400,
    float("nan"),  # json.dumps writes NaN / Infinity tokens, which are not JSON
    float("inf"),
]

# ids of the fuzzed node's LAN jobs and sets (UUID text), filled in by the fixture
LAN_IDS: list[str] = []


def known_text() -> st.SearchStrategy[str]:
    return st.sampled_from(KNOWN_FILES + ["1", "2", "3", "999", "local", "LAN"] + LAN_IDS)


hostile_text = st.sampled_from(HOSTILE_TEXT) | st.text(max_size=40)
hostile_json = st.sampled_from(HOSTILE_JSON) | hostile_text | st.integers()


# --- generating values from schemas ---------------------------------------------------------


def resolve(schema: dict) -> dict:
    while "$ref" in schema:
        schema = SCHEMAS[schema["$ref"].rsplit("/", 1)[1]]
    return schema


def gen_json(data: st.DataObject, schema: dict, depth: int = 0) -> Any:
    """A JSON value for `schema`: usually well-typed, sometimes hostile."""
    schema = resolve(schema)
    if depth > 4 or data.draw(st.integers(0, 14)) == 14:
        return data.draw(hostile_json)
    if "oneOf" in schema:
        return gen_json(data, data.draw(st.sampled_from(schema["oneOf"])), depth + 1)
    if "enum" in schema:
        return data.draw(st.sampled_from(schema["enum"]) | hostile_text)
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        out = {}
        for name, sub in props.items():
            if data.draw(st.booleans()):
                out[name] = gen_json(data, sub, depth + 1)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and data.draw(st.booleans()):
            out[data.draw(st.sampled_from(["a", "clear", "x" * 300, "", "continuousprint_success"]))] = gen_json(data, extra, depth + 1)
        if data.draw(st.integers(0, 5)) == 5:
            out[data.draw(st.sampled_from(["unknown", "__proto__", "id"]))] = data.draw(hostile_json)
        return out
    if kind == "array":
        n = data.draw(st.integers(0, 4))
        return [gen_json(data, schema.get("items", {}), depth + 1) for _ in range(n)]
    if kind == "integer":
        return data.draw(
            st.integers(0, 6)
            | st.sampled_from([-1, 100_000, 100_001, 2**62, 2**63, -(2**63)])
            | st.integers(schema.get("minimum", -(2**40)), schema.get("maximum", 2**40))
        )
    if kind == "number":
        return data.draw(st.floats(allow_nan=False, allow_infinity=False) | st.integers(-10, 10**7))
    if kind == "boolean":
        return data.draw(st.booleans() | st.sampled_from(["true", "False", "", "yes", 1, None]))
    if kind == "string":
        return data.draw(known_text() | hostile_text)
    return data.draw(hostile_json)


def gen_form_value(data: st.DataObject, name: str, schema: dict) -> list[str]:
    """The text values one form field is sent with (several for repeated list fields)."""
    if data.draw(st.integers(0, 7)) == 7:  # wrong-typed: any hostile text
        return [data.draw(hostile_text)]
    if "x-json-schema" in schema:
        doc = gen_json(data, schema["x-json-schema"])
        text = json.dumps(doc)
        return [data.draw(st.sampled_from([text, text, text, text, text[:-1] or "{", json.dumps([doc])]))]
    kind = schema.get("type")
    if kind == "boolean":
        return [data.draw(st.sampled_from(["true", "True", "false", "False", "TRUE", "", "1", "maybe", "null"]))]
    if kind == "integer":
        value = data.draw(
            st.integers(0, 8) | st.sampled_from([-1, 100_000, 100_001, 2**62, 2**63, -(2**63), 10**30])
        )
        return [data.draw(st.sampled_from([str(value), f" {value} ", f"{value}.0", json.dumps([value])]))]
    if kind == "array":
        items = [data.draw(st.sampled_from(["PLA_red_#ff0000", "", "1", "2", "MK3", "null"]) | hostile_text)
                 for _ in range(data.draw(st.integers(0, 4)))]
        style = data.draw(st.sampled_from(["repeat", "json", "comma", "json_nulls"]))
        if style == "repeat":
            return items
        if style == "json":
            return [json.dumps(items)]
        if style == "json_nulls":
            return [json.dumps(items + [None])]
        return [",".join(items)]
    if schema.get("enum"):
        return [data.draw(st.sampled_from(schema["enum"]) | hostile_text)]
    return [data.draw(known_text() | hostile_text)]


def gen_form(data: st.DataObject, schema: dict) -> list[tuple[str, str]]:
    props = schema.get("properties", {})
    required = set(schema.get("required", []))
    fields: list[tuple[str, str]] = []
    for name, sub in props.items():
        present = data.draw(st.integers(0, 3)) != 3 if name in required else data.draw(st.booleans())
        if not present:
            continue
        values = gen_form_value(data, name, sub)
        key = name
        if sub.get("type") == "array" and len(values) > 1 and data.draw(st.booleans()):
            key = name + "[]"
        fields.extend((key, v) for v in values)
    if data.draw(st.integers(0, 5)) == 5:
        fields.append((data.draw(st.sampled_from(["unknown", "json", "job", "a" * 200])), data.draw(hostile_text)))
    return fields


GARBAGE_BODIES = [
    b"",
    b"\xff\xfe\x00garbage",
    b"{",
    b"[1, 2, 3]",
    b'"just a string"',
    b"null",
    b"a=1&a=2&b",
    b"%%%%=%%",
    b"--zzz\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nG28\r\n",  # unterminated multipart
    b"--zzz--\r\n",
    json.dumps({"json": "{}"}).encode(),
    b"[" * 100_000 + b"]" * 100_000,  # nesting deeper than the JSON decoder's recursion limit
    b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    b'{"jobName": "\\ud800", "path": "a.gcode", "name": "\\udc00"}',
    b'{"path": "a.gcode", "metadata": ' + b'{"a":' * 975 + b"1" + b"}" * 975 + b"}",
    b'{"count": NaN, "path": "a.gcode"}',
    b'{"count": 1e999, "path": "a.gcode"}',
    b'{"count": ' + b"9" * 5000 + b', "path": "a.gcode"}',
    b'{"path": "../../../etc/passwd", "name": "..\\\\..\\\\x"}',
]
CONTENT_TYPES = [
    "text/plain",
    "application/xml",
    "multipart/form-data",  # no boundary
    "multipart/form-data; boundary=zzz",
    "application/json",
    "application/x-www-form-urlencoded",
    "application/octet-stream",
]


def gen_request(data: st.DataObject, method: str, path: str, op: dict) -> dict[str, Any]:
    """Keyword arguments for `requests.Session.request`."""
    url = path
    for param in op.get("parameters", []):
        if param["in"] == "path":
            value = data.draw(
                st.sampled_from(KNOWN_FILES + ["nothere.gcode", "index.html", "app.js", "../../etc/passwd",
                                               "..%2F..%2Fetc%2Fpasswd", "%00.gcode", "a/../../b.gcode", "x" * 600])
                | hostile_text.filter(lambda t: t.strip("/") != "" and len(quote(t)) < 4000)  # see the query
            )
            url = url.replace("{" + param["name"] + "}", quote(value, safe="/%") if value else "x")
    kw: dict[str, Any] = {"method": method.upper(), "url": url, "headers": {}}
    if data.draw(st.integers(0, 9)) == 9:
        # a request line over 8 KiB is refused by aiohttp's HTTP parser before the app (a plain
        # 400): outside the JSON contract, so query values stay short
        value = data.draw(hostile_text.filter(lambda t: len(t) < 2000))
        kw["params"] = {data.draw(st.sampled_from(["x", "apikey", "queue"])): value}
        if "apikey" in kw["params"]:
            kw["params"]["apikey"] = API_KEY
    body = op.get("requestBody")
    if body is None:
        if data.draw(st.integers(0, 4)) == 4:
            kw["data"] = data.draw(st.sampled_from(GARBAGE_BODIES))
        return kw
    content = body["content"]
    # "example": the document's own example, mutated a little (often valid, so requests
    # succeed and change the node); "schema": fields built from the schema; then hostility
    mode = data.draw(st.sampled_from(["example", "schema", "schema", "garbage", "empty"]))
    example = next(iter(content.values())).get("example")
    if mode == "example" and example is not None:
        return mutate_example(data, kw, content, example)
    if mode == "garbage":  # garbage with a (maybe) wrong content type
        kw["data"] = data.draw(st.sampled_from(GARBAGE_BODIES))
        kw["headers"]["Content-Type"] = data.draw(st.sampled_from(CONTENT_TYPES))
        return kw
    if mode == "empty" and not body.get("required"):  # no body at all
        return kw
    if "multipart/form-data" in content and "file" in content["multipart/form-data"]["schema"].get("properties", {}):
        return gen_upload(data, kw, content["multipart/form-data"]["schema"])
    if "application/x-www-form-urlencoded" in content:
        schema = content["application/x-www-form-urlencoded"]["schema"]
        encoding = data.draw(st.sampled_from(["urlencoded", "urlencoded", "multipart", "json"]))
        if encoding == "json":
            kw["json"] = gen_json(data, schema) if data.draw(st.booleans()) else data.draw(hostile_json)
        else:
            fields = gen_form(data, schema)
            if encoding == "urlencoded":
                kw["data"] = fields
            else:
                kw["files"] = [(k, (None, v)) for k, v in fields] or [("x", (None, ""))]
        return kw
    schema = content["application/json"]["schema"]
    if data.draw(st.integers(0, 3)) == 0:
        kw["data"] = json.dumps(data.draw(hostile_json))
        kw["headers"]["Content-Type"] = "application/json"
    else:
        kw["json"] = gen_json(data, schema)
    return kw


def mutate_example(data: st.DataObject, kw: dict[str, Any], content: dict, example: Any) -> dict[str, Any]:
    value = json.loads(json.dumps(example))
    for _ in range(data.draw(st.integers(0, 2))):
        if not isinstance(value, dict) or not value:
            break
        key = data.draw(st.sampled_from(sorted(value)))
        action = data.draw(st.sampled_from(["hostile", "drop", "known", "extra"]))
        if action == "drop":
            del value[key]
        elif action == "known":
            value[key] = data.draw(known_text())
        elif action == "extra":
            value[data.draw(st.sampled_from(["unknown", "json", "queue", "job"]))] = data.draw(hostile_text)
        else:
            value[key] = data.draw(hostile_json if "application/json" in content and len(content) == 1 else hostile_text)
    if "application/x-www-form-urlencoded" in content and isinstance(value, dict):
        kw["data"] = [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in value.items()]
    else:
        kw["json"] = value
    return kw


def gen_upload(data: st.DataObject, kw: dict[str, Any], schema: dict) -> dict[str, Any]:
    name = data.draw(
        st.sampled_from(["up.gcode", "Up Load.gco", "x.g", "model.stl", "noext", "../../etc/passwd.gcode",
                         "/abs.gcode", "a\\b.gcode", "ünï 🖨.gcode", ".hidden.gcode", "x" * 300 + ".gcode",
                         "seed.gjob", ""])
        | hostile_text
    )
    size = data.draw(st.sampled_from([0, 10, 1000, MAX_UPLOAD_MB * 1024 * 1024 + 1]))
    payload = (b"G1 X1\n" * (size // 6 + 1))[:size]
    files: list[tuple[str, Any]] = []
    for field in ("path", "select", "print", "filename"):
        if data.draw(st.booleans()):
            files.append((field, (None, gen_form_value(data, field, schema["properties"][field])[0])))
    if data.draw(st.integers(0, 5)) > 0:
        files.append(("file", (name, payload, "application/octet-stream")))
    if data.draw(st.integers(0, 6)) == 0:
        files.append(("file", ("second.gcode", b"G28\n", "text/plain")))
    if not files:
        files.append(("nothing", (None, "")))
    kw["files"] = files
    return kw


# --- the node and its state ------------------------------------------------------------------


class Fuzzed:
    def __init__(self, node: NodeProcess) -> None:
        self.node = node
        self.session = requests.Session()
        self.session.headers["X-Api-Key"] = API_KEY
        self.snapshot_cache: dict | None = None

    def get(self, path: str) -> Any:
        r = self.session.get(self.node.url + path, timeout=30)
        assert r.status_code == 200, (path, r.status_code, r.text[:500])
        return r.json()

    def snapshot(self) -> dict:
        state = self.get(CP + "/state/get")
        # the runner's status text follows the printer (connect/disconnect are async): not data
        state.pop("status", None)
        state.pop("statusType", None)
        files = self.get("/api/files")
        return {
            "state": state,
            "history": self.get(CP + "/history/get"),
            "queues": self.get(CP + "/queues/get"),
            "automation": self.get(CP + "/automation/get"),
            "materials": self.get(CP + "/materials/get"),
            "driver": self.get(CP + "/driver/get"),
            "files": files["files"],  # free/total disk space moves with the rest of the machine
        }

    def log_tail(self) -> str:
        try:
            return self.node.log.read_text()[-3000:]
        except OSError:
            return ""


@pytest.fixture(scope="module", params=["local", "lan"])
def fuzzed(request, tmp_path_factory):
    """A node with only its local queue, and one that also joined a LAN queue named `LAN` (alone:
    no peers, no mDNS), so the LAN branches of the routes see the same requests."""
    root = tmp_path_factory.mktemp("fuzz")
    extra = ["--max-upload-mb", str(MAX_UPLOAD_MB)]
    if request.param == "lan":
        extra += ["--lan", "LAN=fuzzsecret"]
    node = NodeProcess(root / "data", free_port(), extra)
    node.start()
    f = Fuzzed(node)
    s, url = f.session, node.url
    for name in ("a.gcode", "b.gcode", "part.gcode"):
        assert s.post(url + "/api/files/local", files={"file": (name, b"G28\nG1 X5\n")}).status_code == 201
    assert s.post(url + "/api/files/local", files={"file": ("c.gcode", b"G28\n")}, data={"path": "sub"}).status_code == 201
    for i in range(3):
        r = s.post(url + CP + "/set/add", data={"path": "a.gcode", "count": "2", "jobName": f"seed{i}"})
        assert r.status_code == 200
    r = s.post(url + CP + "/set/add", data={"path": "b.gcode", "job": "1", "materials": "PLA_red_#ff0000"})
    assert r.status_code == 200
    r = s.post(url + CP + "/set/add", data={"path": "part.gcode", "count": "2", "jobName": "part"})
    assert r.status_code == 200 and r.json()["job_id"] == 4, r.text
    assert s.post(url + CP + "/job/export", data={"job_ids[]": "4"}).json()["paths"] == ["part.gjob"]
    r = s.post(url + CP + "/job/export", data={"job_ids[]": "1"})
    assert r.status_code == 200 and r.json()["paths"] == ["seed0.gjob"], r.text
    assert s.post(url + "/api/files/local/seed0.gjob", json={"command": "select"}).status_code == 204
    s.post(url + "/api/files/local", files={"file": ("seed.gjob", open(node.data_dir / "files" / "seed0.gjob", "rb").read())})
    LAN_IDS.clear()
    if request.param == "lan":
        for name in ("lan1", "lan2"):
            r = s.post(url + CP + "/set/add", data={"path": "a.gcode", "queue": "LAN", "jobName": name})
            assert r.status_code == 200, r.text
            LAN_IDS.extend([r.json()["job_id"], r.json()["set_"]["id"]])
    yield f
    f.session.close()
    node.stop()


def _is_true(text: Any) -> bool:
    return text is True or (isinstance(text, str) and text.strip().lower() in ("true", "1", "yes", "on"))


def keep_the_queue_unmanaged(method: str, path: str, kw: dict[str, Any]) -> None:
    """Activating the driver would start prints in the background and move history while the
    fuzzer compares snapshots; set_active=true has its own tests, so it is sent as false here."""
    if path != CP + "/set_active":
        return
    if isinstance(kw.get("data"), list):
        kw["data"] = [(k, "false" if k == "active" and _is_true(v) else v) for k, v in kw["data"]]
    if isinstance(kw.get("json"), dict) and _is_true(kw["json"].get("active")):
        kw["json"]["active"] = False
    if isinstance(kw.get("files"), list):
        kw["files"] = [(k, (None, "false")) if k == "active" and _is_true(v[1]) else (k, v) for k, v in kw["files"]]


@pytest.mark.parametrize("method, path, op", OPERATIONS, ids=[f"{m.upper()} {p}" for m, p, _ in OPERATIONS])
def test_fuzz_operation(fuzzed: Fuzzed, method: str, path: str, op: dict) -> None:
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=DERANDOMIZE,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        kw = gen_request(data, method, path, op)
        keep_the_queue_unmanaged(method, path, kw)
        before = fuzzed.snapshot_cache or fuzzed.snapshot()
        kw["url"] = fuzzed.node.url + kw["url"]
        r = fuzzed.session.request(timeout=30, **kw)
        shown = f"{kw['method']} {kw['url'][:200]} -> {r.status_code} {r.text[:300]!r}"
        assert r.status_code < 500, f"{shown}\nnode log:\n{fuzzed.log_tail()}"
        after = fuzzed.snapshot()
        fuzzed.snapshot_cache = after
        assert str(r.status_code) in op["responses"], f"status {r.status_code} is not documented: {shown}"
        if r.status_code < 300:
            check_documented_shape(op["responses"][str(r.status_code)], r, shown)
        if 400 <= r.status_code < 500:
            assert r.headers.get("Content-Type", "").startswith("application/json"), shown
            body = r.json()
            assert isinstance(body, dict) and isinstance(body.get("error"), str), shown
            assert after == before, f"a {r.status_code} changed the node's data: {shown}\n{_diff(before, after)}"

    run()


def check_documented_shape(response: dict, r: requests.Response, shown: str) -> None:
    """A success answer has the documented content type and, for JSON, the documented
    top-level shape (type and required keys)."""
    content = response.get("content")
    if not content:
        assert not r.content, f"documented without a body but got one: {shown}"
        return
    ctype = r.headers.get("Content-Type", "")
    if "application/json" not in content:
        return
    assert ctype.startswith("application/json"), shown
    schema = resolve(content["application/json"]["schema"])
    body = r.json()
    if schema.get("type") == "object":
        assert isinstance(body, dict), shown
        missing = [k for k in schema.get("required", []) if k not in body]
        assert not missing, f"documented keys {missing} missing: {shown}"
    elif schema.get("type") == "array":
        assert isinstance(body, list), shown
    elif schema.get("type") == "string":
        assert isinstance(body, str), shown


def _diff(before: dict, after: dict) -> str:
    return "\n".join(
        f"{key}:\n  before {json.dumps(before[key])[:800]}\n  after  {json.dumps(after[key])[:800]}"
        for key in before
        if before[key] != after.get(key)
    )


def test_every_documented_operation_is_fuzzed_or_skipped_with_a_reason():
    documented = {(m, p) for p, ops in DOC["paths"].items() for m in ops}
    assert SKIP.keys() <= documented, "SKIP names routes that are not documented"
    assert len(OPERATIONS) + len(SKIP) == len(documented)
