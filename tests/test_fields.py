"""Each request field is declared once (lanqueue/api/fields.py); the bounds a handler enforces,
the bounds the OpenAPI document declares and the page's input limits are the same.

The property tests run against a real `lanqueue serve` process over loopback and read the bounds
from the document it serves: a request inside every declared bound is never refused, and a
request with one field outside its declared bound is always refused (400) and changes nothing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import requests
from conftest import API_KEY, CP, NodeProcess, free_port
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lanqueue.api import fields as F
from lanqueue.api.forms import Form
from lanqueue.errors import BadRequest
from lanqueue.runner import DriverSettings

H = {"X-Api-Key": API_KEY}
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
PAGE = Path(F.__file__).resolve().parent.parent / "web" / "index.html"


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    n = NodeProcess(tmp_path_factory.mktemp("fields") / "data", free_port())
    n.start()
    r = requests.post(n.url + "/api/files/local", headers=H, files={"file": ("p.gcode", b"G28\n")}, timeout=10)
    assert r.status_code == 201, r.text
    n.doc = requests.get(n.url + "/lanqueue/openapi.json", timeout=10).json()
    yield n
    n.stop()


def _driver_bounds(doc):
    return {name: s for name, s in doc["components"]["schemas"]["DriverSettings"]["properties"].items()
            if "minimum" in s}


def _set_add_bounds(doc):
    body = doc["paths"][CP + "/set/add"]["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"]
    return body["schema"]["properties"]


def _inside(schema):
    """A value within the declared bounds, the bounds themselves often (where drift bites)."""
    lo, hi = schema["minimum"], schema["maximum"]
    if schema["type"] == "integer":
        return st.one_of(st.sampled_from([lo, hi]), st.integers(lo, min(hi, 10**12)))
    return st.one_of(st.sampled_from([lo, hi]), st.floats(lo, hi, allow_nan=False))


def _outside(schema):
    lo, hi = schema["minimum"], schema["maximum"]
    if schema["type"] == "integer":
        return st.one_of(st.integers(max_value=lo - 1, min_value=lo - 10**6), st.integers(hi + 1, hi + 10**6))
    below = st.floats(max_value=lo, exclude_max=True, min_value=lo - 1e6) if lo > -1e300 else st.nothing()
    return st.one_of(below, st.floats(min_value=hi, exclude_min=True, max_value=hi + 1e6))


def _driver(node):
    return requests.get(node.url + CP + "/driver/get", headers=H, timeout=10).json()


def _edit_driver(node, doc):
    return requests.post(node.url + CP + "/driver/edit", headers=H, data={"json": json.dumps(doc)}, timeout=10)


@st.composite
def _one_driver_setting(draw, doc, inside):
    bounds = _driver_bounds(doc)
    name = draw(st.sampled_from(sorted(bounds)))
    return name, draw((_inside if inside else _outside)(bounds[name]))


def test_driver_settings_declared_valid_are_accepted(node):
    @SETTINGS
    @given(_one_driver_setting(node.doc, inside=True))
    def check(pair):
        name, value = pair
        r = _edit_driver(node, {name: value})
        assert r.status_code == 200, (name, value, r.text)
        assert _driver(node)[name] == value

    check()


def test_driver_settings_outside_a_declared_bound_are_refused_and_change_nothing(node):
    @SETTINGS
    @given(_one_driver_setting(node.doc, inside=False))
    def check(pair):
        name, value = pair
        before = _driver(node)
        r = _edit_driver(node, {name: value})
        assert r.status_code == 400, (name, value, r.text)
        assert name in r.json()["error"]
        assert _driver(node) == before

    check()


SET_ADD_BOUNDED = ("count", "completed", "jobName", "materials", "profiles")


def _jobs(node):
    state = requests.get(node.url + CP + "/state/get", headers=H, timeout=10).json()
    return sum(len(q["jobs"]) for q in state["queues"])


@st.composite
def _set_add_form(draw, doc, bad_field=None):
    """A set/add form with each bounded field inside its declared bound, except `bad_field`."""
    props = _set_add_bounds(doc)
    out = {"path": "p.gcode"}
    for name in SET_ADD_BOUNDED:
        if not draw(st.booleans()) and name != bad_field:
            continue
        s = props[name]
        if s["type"] in ("integer", "number"):
            out[name] = str(draw((_outside if name == bad_field else _inside)(s)))
        elif s["type"] == "string":
            n = s["maxLength"] + 1 if name == bad_field else draw(st.sampled_from([1, s["maxLength"]]))
            out[name] = "j" * n
        else:  # a list of strings: as repeated fields
            item_max = s["items"]["maxLength"]
            if name == bad_field and draw(st.booleans()):
                out[name] = ["x"] * (s["maxItems"] + 1)
            elif name == bad_field:
                out[name] = ["x" * (item_max + 1)]
            else:
                out[name] = ["m" * draw(st.sampled_from([1, item_max]))] * draw(st.sampled_from([1, s["maxItems"]]))
    return out


def test_set_add_declared_valid_is_accepted(node):
    @settings(SETTINGS, max_examples=15)
    @given(_set_add_form(node.doc))
    def check(form):
        r = requests.post(node.url + CP + "/set/add", headers=H, data=form, timeout=10)
        assert r.status_code == 200, (form, r.text)

    check()


def test_set_add_outside_a_declared_bound_is_refused_and_changes_nothing(node):
    @settings(SETTINGS, max_examples=20)
    @given(st.sampled_from(SET_ADD_BOUNDED).flatmap(lambda bad: _set_add_form(node.doc, bad).map(lambda f: (bad, f))))
    def check(case):
        bad, form = case
        before = _jobs(node)
        r = requests.post(node.url + CP + "/set/add", headers=H, data=form, timeout=10)
        assert r.status_code == 400, (bad, form, r.text)
        assert bad in r.json()["error"]
        assert _jobs(node) == before

    check()


# --- the declarations themselves ---------------------------------------------------------------


def test_driver_fields_are_the_driver_settings():
    assert [f.name for f in F.DRIVER] == list(DriverSettings.__dataclass_fields__)


def test_the_drifts_of_issue_16_are_gone(node):
    """cooldown_below: the document said 604,800, the handler 150, the page 200; job names:
    the page said 200 characters, the server 1,000. Now all from one declaration."""
    driver = _driver_bounds(node.doc)
    assert driver["cooldown_below"]["maximum"] == 150
    inputs = requests.get(node.url + "/lanqueue/fields", headers=H, timeout=10).json()["inputs"]
    assert inputs["drv-below"]["max"] == 150
    assert inputs["job-name"]["maxlength"] == inputs["add-name"]["maxlength"] == 1000
    name_schema = node.doc["paths"][CP + "/set/add"]["post"]["requestBody"]["content"][
        "application/x-www-form-urlencoded"]["schema"]["properties"]["jobName"]
    assert name_schema["maxLength"] == 1000


def test_page_fallback_limits_match_the_served_ones():
    """index.html's own attributes (what an input has before /lanqueue/fields answers) are the
    declared bounds too; a drift here is a page that lets a person type what the server refuses."""
    html = PAGE.read_text()
    for key, attrs in F.page_limits().items():
        m = re.search(rf'<input id="{re.escape(key)}"[^>]*>', html)
        if m is None:
            continue  # drawn by a module (job-name, set-count, ...): held by web/limits.js
        tag = m.group(0)
        for attr, value in attrs.items():
            if key == "add-count" and attr == "min":
                continue  # the page asks for at least one copy on purpose
            found = re.search(rf'\b{attr}="([^"]*)"', tag)
            assert found and float(found.group(1)) == float(value), (key, attr, value, tag)


@pytest.mark.parametrize("field", [f for group in (F.SET_ADD, F.DRIVER, F.JOB_EDIT, F.QUEUE) for f in group],
                         ids=lambda f: f.name)
def test_read_refuses_just_past_each_bound_and_takes_each_bound(field):
    """Field.read and Field.schema agree at the edges (the unit-level twin of the tests above)."""
    schema = field.schema()
    if field.kind in ("integer", "number"):
        step = 1 if field.kind == "integer" else 0.001
        for ok in (schema["minimum"], schema["maximum"]):
            assert field.read(Form({field.name: str(ok)})) == ok
        for bad in (schema["minimum"] - step, schema["maximum"] + step):
            with pytest.raises(BadRequest, match=field.name):
                field.read(Form({field.name: str(bad)}))
    elif field.kind == "text" and not field.enum:
        assert field.read(Form({field.name: "a" * schema["maxLength"]})) == "a" * schema["maxLength"]
        with pytest.raises(BadRequest, match=field.name):
            field.read(Form({field.name: "a" * (schema["maxLength"] + 1)}))
    elif field.kind == "text":
        with pytest.raises(BadRequest, match=field.name):
            field.read(Form({field.name: "NOT_" + field.enum[0]}))
    elif field.kind == "strings":
        with pytest.raises(BadRequest, match=field.name):
            field.read(Form({field.name: json.dumps(["a"] * (schema["maxItems"] + 1))}))
