"""Automation: validation, placeholder filling, and preprocessors in real worker processes."""

from __future__ import annotations

import asyncio
import json
import pathlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lanqueue.automation import (
    EVENTS,
    HOST_PAUSE,
    MAX_ATTACHMENTS,
    MAX_PROGRAM_CHARS,
    MAX_SCRIPT_CHARS,
    MAX_SCRIPTS,
    Automation,
    async_render_event,
    async_simulate,
    fill_placeholders,
    standard_symbols,
)
from lanqueue.errors import BadRequest
from lanqueue.hostcmd import split_at_pauses, waits_for_person
from lanqueue.preprocess import OUTPUT_LIMIT, Evaluator, _worker_env

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def engine() -> AsyncIterator[Evaluator]:
    async with Evaluator() as evaluator:
        yield evaluator


def one_event(script: str, program: str = "", event: str = "continuousprint_success") -> Automation:
    """An automation with one script on one event, gated by `program` if given."""
    return Automation.from_json({
        "scripts": {"s": script},
        "preprocessors": {"p": program} if program else {},
        "events": {event: [{"script": "s", "preprocessor": "p" if program else ""}]},
    })


# --- decisions ---------------------------------------------------------------------------

@pytest.mark.parametrize("program, decision", [
    ("True", "run"),
    ("1", "run"),
    ("'text'", "run"),
    ("False", "skip"),
    ("None", "skip"),
    ("0", "skip"),
    ("x = 1", "skip"),  # an assignment has no value
    ("{'a': 1}", "fill"),
    ("{}", "fill"),
    ("1/0", "error"),
    ("x = ((1", "error"),  # syntax
    ("{1: 'a'}", "error"),  # placeholder names must be strings
])
async def test_last_value_decides(engine: Evaluator, program: str, decision: str) -> None:
    evaluation = await engine.async_evaluate(program, standard_symbols())
    assert evaluation.decision == decision


async def test_many_decisions_in_one_run_share_the_interpreter(engine: Evaluator) -> None:
    result = await engine.async_run(standard_symbols(), ["x = 5\nTrue", "", None, "{'v': x * 2}"])
    assert [e.decision for e in result.evaluations] == ["run", "run", "run", "fill"]
    assert result.evaluations[3].mapping == {"v": "10"}
    assert result.symtable_diff == {"x": "5"}


async def test_exception_is_reported_with_output(engine: Evaluator) -> None:
    evaluation = await engine.async_evaluate("print('checking', 3)\n1/0", standard_symbols())
    assert evaluation.decision == "error"
    assert "ZeroDivisionError" in evaluation.message
    assert "ZeroDivisionError" in evaluation.stderr
    assert evaluation.stdout == "checking 3\n"


async def test_output_is_bounded(engine: Evaluator) -> None:
    evaluation = await engine.async_evaluate("for i in range(100):\n    print('x' * 1000)\nTrue",
                                             standard_symbols())
    assert evaluation.decision == "run"
    assert OUTPUT_LIMIT <= len(evaluation.stdout) < OUTPUT_LIMIT + 100
    assert "truncated" in evaluation.stdout


# --- rendering ----------------------------------------------------------------------------

async def test_placeholders_are_filled(engine: Evaluator) -> None:
    automation = one_event("M190 S{bed} ; for {name}", "{'bed': current['bed_temp'], 'name': 'A'}")
    symbols = standard_symbols(current={"bed_temp": 60})
    result = await async_render_event(automation, "continuousprint_success", symbols, engine=engine)
    assert result.gcode == "M190 S60 ; for A"
    assert [o.status for o in result.outcomes] == ["ran"] and result.ok


async def test_missing_placeholder_skips_only_that_script(engine: Evaluator) -> None:
    automation = Automation.from_json({
        "scripts": {"a": "G1 X{x} Y{y}", "b": "M117 done"},
        "preprocessors": {"p": "{'x': 1}"},
        "events": {"continuousprint_finish": [{"script": "a", "preprocessor": "p"},
                                              {"script": "b", "preprocessor": ""}]},
    })
    result = await async_render_event(automation, "continuousprint_finish", {}, engine=engine)
    assert result.gcode == "M117 done"
    first, second = result.outcomes
    assert (first.script, first.status) == ("a", "error") and "{y}" in first.message
    assert second.status == "ran"
    assert not result.ok


async def test_skipped_and_errored_scripts_send_nothing(engine: Evaluator) -> None:
    for program, status in [("False", "skipped"), ("None", "skipped"), ("undefined_name", "error")]:
        automation = one_event("G28", program)
        result = await async_render_event(automation, "continuousprint_success", {}, engine=engine)
        assert result.gcode == ""
        assert result.outcomes[0].status == status


@pytest.mark.parametrize("external, expected", [
    ({"go": True}, "G28"), ({"go": False}, ""), ({}, ""), (None, ""),
])
async def test_external_gates_a_script(engine: Evaluator, external: Any, expected: str) -> None:
    automation = one_event("G28", "external.get('go', False)")
    symbols = standard_symbols(external=external)
    result = await async_render_event(automation, "continuousprint_success", symbols, engine=engine)
    assert result.gcode == expected and result.ok


async def test_metadata_and_current_are_visible(engine: Evaluator) -> None:
    automation = one_event("M117 {layers} {path}",
                           "{'layers': metadata['layers'], 'path': current['path']}")
    symbols = standard_symbols(current={"path": "a.gcode"}, metadata={"layers": 42})
    result = await async_render_event(automation, "continuousprint_success", symbols, engine=engine)
    assert result.gcode == "M117 42 a.gcode"


async def test_changes_to_symbols_stay_in_the_worker(engine: Evaluator) -> None:
    current = {"state": "printing"}
    automation = one_event("G28", "current['state'] = 'hacked'\nTrue")
    await async_render_event(automation, "continuousprint_success", {"current": current},
                             engine=engine)
    assert current == {"state": "printing"}


async def test_unknown_event_is_a_programming_error(engine: Evaluator) -> None:
    with pytest.raises(ValueError):
        await async_render_event(Automation.defaults(), "continuousprint_nope", {}, engine=engine)


async def test_without_an_engine_a_one_off_worker_is_used() -> None:
    result = await async_render_event(one_event("G28", "True"), "continuousprint_success", {})
    assert result.gcode == "G28"


# --- limits -------------------------------------------------------------------------------

async def test_infinite_loop_is_stopped_and_the_engine_recovers(engine: Evaluator) -> None:
    started = time.monotonic()
    evaluation = await engine.async_evaluate("while True:\n    pass", {}, time_limit=0.5)
    elapsed = time.monotonic() - started
    assert evaluation.decision == "error" and "longer than 0.5 s" in evaluation.message
    assert 0.5 <= elapsed < 3.0
    assert (await engine.async_evaluate("1 + 1", {})).decision == "run"
    assert engine.workers_started == 2


async def test_attachments_after_a_timeout_still_run(engine: Evaluator) -> None:
    automation = Automation.from_json({
        "scripts": {"a": "G1", "b": "G2"},
        "preprocessors": {"loop": "while True:\n    pass", "yes": "True"},
        "events": {"continuousprint_cancel": [{"script": "a", "preprocessor": "loop"},
                                              {"script": "b", "preprocessor": "yes"}]},
    })
    result = await async_render_event(automation, "continuousprint_cancel", {},
                                      time_limit=0.3, engine=engine)
    assert [o.status for o in result.outcomes] == ["error", "ran"]
    assert result.gcode == "G2"


async def test_evaluation_does_not_block_the_event_loop(engine: Evaluator) -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        await engine.async_evaluate("while True:\n    pass", {}, time_limit=0.5)
    finally:
        ticker.cancel()
    assert ticks >= 10  # about 50 on an idle machine


async def test_cancelled_evaluation_leaves_no_stale_answer(engine: Evaluator) -> None:
    task = asyncio.create_task(engine.async_evaluate("while True:\n    pass", {}, time_limit=5))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    evaluation = await engine.async_evaluate("{'n': 7}", {})
    assert evaluation.mapping == {"n": "7"}


@pytest.mark.parametrize("program", [
    "[0] * 10**9",
    "'x' * 10**10",
    "x = ['y' * 100000 + str(i) for i in range(1000000)]",
    "list(range(10**10))",
])
async def test_memory_bomb_is_stopped(engine: Evaluator, program: str) -> None:
    evaluation = await engine.async_evaluate(program, {}, time_limit=5)
    assert evaluation.decision == "error"
    assert (await engine.async_evaluate("True", {})).decision == "run"


@pytest.mark.parametrize("program", [
    "open('/etc/passwd').read()",
    "__import__('os').system('id')",
    "import os",
    "from os import system",
    "().__class__.__bases__[0].__subclasses__()",
    "(1).__class__",
    "current.__class__.__mro__",
    "getattr((), '__class__')",
    "'{0.__class__}'.format(1)",
    "'{a.__class__}'.format_map({'a': 1})",
    "print.__self__",
    "exec('1')",
    "eval('1')",
    "compile('1', 'x', 'eval')",
    "globals()",
    "vars()",
    "def f():\n    pass\nf.__globals__",
    "with open('/etc/passwd') as f:\n    f.read()",
])
async def test_escapes_fail(engine: Evaluator, program: str) -> None:
    evaluation = await engine.async_evaluate(program, standard_symbols())
    assert evaluation.decision == "error", evaluation
    assert "root:" not in evaluation.stdout + evaluation.message


async def test_closed_engine_refuses_work() -> None:
    evaluator = Evaluator()
    assert (await evaluator.async_evaluate("True", {})).decision == "run"
    await evaluator.async_close()
    await evaluator.async_close()  # idempotent
    with pytest.raises(RuntimeError):
        await evaluator.async_evaluate("True", {})


# --- placeholders (pure) ------------------------------------------------------------------

def test_fill_placeholders_plain_names_and_literal_braces() -> None:
    assert fill_placeholders("G1 X{x} {{literal}}", {"x": "5"}) == "G1 X5 {literal}"


@pytest.mark.parametrize("script", ["{a.b}", "{a[0]}", "{a!r}", "{a:>5}", "{", "}", "{0}", "{}"])
def test_fill_placeholders_rejects_anything_but_names(script: str) -> None:
    with pytest.raises(ValueError):
        fill_placeholders(script, {"a": "1", "0": "z"})


names = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
literals = st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=20)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(literals, names, literals), max_size=5), st.data())
def test_fill_placeholders_matches_a_naive_model(parts: list[tuple[str, str, str]],
                                                 data: st.DataObject) -> None:
    mapping = {name: data.draw(literals) for _, name, _ in parts}
    script = "".join(f"{a}{{{name}}}{b}" for a, name, b in parts)
    expected = "".join(f"{a}{mapping[name]}{b}" for a, name, b in parts)
    assert fill_placeholders(script, mapping) == expected


# --- validation ---------------------------------------------------------------------------

def valid() -> dict[str, Any]:
    return {"scripts": {"s": "G28"}, "preprocessors": {"p": "True"},
            "events": {"continuousprint_success": [{"script": "s", "preprocessor": "p"}]}}


def with_change(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    obj = valid()
    target = obj
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return obj


SUCCESS = ("events", "continuousprint_success")
FIRST = (*SUCCESS, 0)

BAD_SHAPES = {
    "not an object": (None, "expected an object"),
    "a list": ([], "expected an object"),
    "unknown top key": (with_change(("extra",), {}), "unknown keys"),
    "scripts null": (with_change(("scripts",), None), "scripts: expected an object"),
    "script body null": (with_change(("scripts", "s"), None), "expected a string"),
    "script body number": (with_change(("scripts", "s"), 5), "expected a string"),
    "empty script name": (with_change(("scripts", ""), "G1"), "non-empty string"),
    "long script name": (with_change(("scripts", "n" * 201), "G1"), "longer than"),
    "program null": (with_change(("preprocessors", "p"), None), "expected a string"),
    "events a list": (with_change(("events",), []), "events: expected an object"),
    "unknown event": (with_change(("events", "print_done"), []), "unknown event"),
    "attachments null": (with_change(SUCCESS, None), "expected a list"),
    "attachments object": (with_change(SUCCESS, {"script": "s"}), "expected a list"),
    "attachment a string": (with_change(SUCCESS, ["s"]), "expected an object"),
    "attachment null": (with_change(SUCCESS, [None]), "expected an object"),
    "no script key": (with_change(SUCCESS, [{"preprocessor": ""}]), "non-empty string"),
    "unknown script": (with_change((*FIRST, "script"), "nope"), "no script named 'nope'"),
    "unknown preprocessor": (with_change((*FIRST, "preprocessor"), "nope"),
                             "no preprocessor named 'nope'"),
    "preprocessor null": (with_change((*FIRST, "preprocessor"), None), "expected a string"),
    "preprocessor number": (with_change((*FIRST, "preprocessor"), 1), "expected a string"),
    "extra attachment key": (with_change((*FIRST, "when"), "now"), "unknown keys"),
    "script too long": (with_change(("scripts", "s"), "G" * (MAX_SCRIPT_CHARS + 1)), "longer than"),
    "program too long": (with_change(("preprocessors", "p"), "1" * (MAX_PROGRAM_CHARS + 1)),
                         "longer than"),
    "too many scripts": (with_change(("scripts",), {f"s{i}": "" for i in range(MAX_SCRIPTS + 1)}),
                         "more than"),
    "too many attachments": (with_change(SUCCESS, [{"script": "s"}] * (MAX_ATTACHMENTS + 1)),
                             "more than"),
}


@pytest.mark.parametrize("obj, message", BAD_SHAPES.values(), ids=list(BAD_SHAPES))
def test_bad_shapes_are_rejected(obj: Any, message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        Automation.from_json(obj)
    assert message in caught.value.message


def test_valid_shape_round_trips_with_every_event_listed() -> None:
    automation = Automation.from_json(valid())
    out = automation.to_json()
    assert set(out["events"]) == set(EVENTS)
    assert out["events"]["continuousprint_success"] == [{"script": "s", "preprocessor": "p"}]
    assert Automation.from_json(json.loads(json.dumps(out))) == automation


def test_missing_preprocessor_key_means_none() -> None:
    obj = with_change(FIRST, {"script": "s"})
    assert Automation.from_json(obj).attachments("continuousprint_success")[0].preprocessor == ""


# --- defaults -----------------------------------------------------------------------------

def test_default_automation_validates_and_round_trips() -> None:
    automation = Automation.defaults()
    assert Automation.from_json(json.loads(json.dumps(automation.to_json()))) == automation


async def test_default_automation_renders_every_event(engine: Evaluator) -> None:
    automation = Automation.defaults()
    symbols = standard_symbols(current={"bed_temp": 60, "path": "a.gcode", "state": "success"})
    results = {event: await async_render_event(automation, event, symbols, engine=engine)
               for event in EVENTS}
    assert all(r.ok for r in results.values())
    success = results["continuousprint_success"]
    before, after = split_at_pauses(success.gcode)  # what the driver does with it
    assert waits_for_person([success.gcode]) and HOST_PAUSE in success.gcode
    motion = [line for line in (before + "\n" + after).splitlines()
              if line.strip() and not line.lstrip().startswith(";")]
    assert motion == []  # a person clears the bed; nothing moves
    finish = "\n".join(split_at_pauses(results["continuousprint_finish"].gcode))
    assert all(code in finish for code in ("M104 S0", "M140 S0", "M84"))
    cancel = "\n".join(split_at_pauses(results["continuousprint_cancel"].gcode))
    assert all(code in cancel for code in ("M104 S0", "M140 S0", "M106 S0", "M84"))


@pytest.mark.parametrize("bed_temp, runs", [(60, True), (35, False), (20, False), (None, False)])
async def test_default_managed_cooldown(engine: Evaluator, bed_temp: Any, runs: bool) -> None:
    symbols = standard_symbols(current={"bed_temp": bed_temp})
    result = await async_render_event(Automation.defaults(), "continuousprint_cooldown", symbols,
                                      engine=engine)
    assert result.ok and ("M140 S0" in result.gcode) == runs


# --- simulate -----------------------------------------------------------------------------

async def test_simulate_answers_like_the_original(engine: Evaluator) -> None:
    answer = await async_simulate(
        {"current": {"bed_temp": 50}, "extra": 1},
        [["G1 X{x}", "x = current['bed_temp']\nprint('bed', x)\n{'x': x}"],
         ["M117 always", None],
         ["M117 never", "False"],
         ["G1 {missing}", "{}"],
         ["M117 broken", "1/0"]],
        engine=engine,
    )
    assert set(answer) == {"gcode", "symtable_diff", "stdout", "stderr"}
    assert answer["gcode"] == "G1 X50\nM117 always"
    assert answer["symtable_diff"] == {"x": "50"}
    assert answer["stdout"] == "bed 50\n"
    assert "{missing}" in answer["stderr"] and "ZeroDivisionError" in answer["stderr"]


async def test_simulate_accepts_attachment_objects(engine: Evaluator) -> None:
    answer = await async_simulate({}, [{"script": "G28", "preprocessor": ""}], engine=engine)
    assert answer["gcode"] == "G28" and answer["stderr"] == ""


@pytest.mark.parametrize("symtable, attachments", [
    ([], []),
    (None, []),
    ({"1bad": 1}, []),
    ({"_private": 1}, []),
    ({}, None),
    ({}, "G28"),
    ({}, [["G28"]]),
    ({}, [[1, "True"]]),
    ({}, [["G28", 5]]),
    ({}, [["G28", "1" * (MAX_PROGRAM_CHARS + 1)]]),
])
async def test_simulate_rejects_bad_input(symtable: Any, attachments: Any) -> None:
    with pytest.raises(BadRequest):
        await async_simulate(symtable, attachments)


# --- the worker's own guards --------------------------------------------------------------

LIMITS_PROBE = """
import errno, os, resource, sys
sys.path.insert(0, sys.argv[1])
from lanqueue import preprocess
preprocess._apply_limits(64 * 1024 * 1024)
try:
    os.open("/etc/hostname", os.O_RDONLY)
    print("opened")
except OSError as exc:
    print("open", errno.errorcode[exc.errno])
soft, hard = resource.getrlimit(resource.RLIMIT_AS)
print("as", soft == hard != resource.RLIM_INFINITY)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS is measured from /proc")
def test_worker_limits_forbid_files_and_cap_memory() -> None:
    root = str(pathlib.Path(__file__).resolve().parents[1])
    done = subprocess.run([sys.executable, "-c", LIMITS_PROBE, root], capture_output=True,
                          text=True, timeout=30)
    assert done.stdout.split("\n")[:2] == ["open EMFILE", "as True"], done.stderr


def test_worker_environment_is_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANQUEUE_API_KEY", "secret")
    assert "LANQUEUE_API_KEY" not in _worker_env()


def test_pause_lines_are_read_one_way():
    """One reader of `@pause` for the driver (split) and attended hours (waits): a comment after
    it counts, in any case; inside a comment or with more on the line it is not a pause."""
    gcode = "G28\n@PAUSE ; clear the bed\nG1 X1\n; @pause in a comment\n@pause now\n@pause"
    assert split_at_pauses(gcode) == ["G28", "G1 X1\n; @pause in a comment\n@pause now", ""]
    assert waits_for_person(["G1", "  @Pause  "]) and not waits_for_person(["; @pause", "@pausex"])
