"""Continuous printing end to end: a real node, its virtual printer on a pty, real HTTP.

The virtual printer records every command it executed, so the tests read the print order from
the firmware's side, not from what the node claims.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp

from conftest import CP

NO_WAIT = {  # automation without the default "wait for a person" after each print
    "scripts": {"clear": "G28 X ; sweep"},
    "preprocessors": {},
    "events": {"continuousprint_success": [{"script": "clear", "preprocessor": ""}]},
}


def gcode(tag: str, moves: int = 3) -> bytes:
    lines = [f"M117 {tag}", "G28"] + [f"G1 X{i} Y{i} F6000 ; move" for i in range(moves)]
    return ("\n".join(lines) + "\n").encode()


async def upload(api, name: str, body: bytes) -> None:
    form = aiohttp.FormData()
    form.add_field("file", body, filename=name)
    r = await api.post("/api/files/local", data=form)
    assert r.status == 201, await r.text()


async def state(api) -> dict:
    return await (await api.get(CP + "/state/get")).json()


async def wait_for(predicate, timeout: float = 20.0, step: float = 0.05):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(step)


def printed_tags(node) -> list[str]:
    return [c.split(" ", 1)[1] for c in node.printer.virtual.model.executed if c.startswith("M117 ")]


async def set_automation(api, doc) -> None:
    r = await api.post(CP + "/automation/edit", data={"json": json.dumps(doc)})
    assert r.status == 200, await r.text()


async def printer_ready(node) -> None:
    async def ready():
        return node.printer.state.name == "OPERATIONAL"

    await wait_for(ready)


async def test_sets_and_job_count_print_AABAAB_with_counts_matching(node_factory):
    api, node = await node_factory()
    await printer_ready(node)
    await set_automation(api, NO_WAIT)
    await upload(api, "A.gcode", gcode("A"))
    await upload(api, "B.gcode", gcode("B"))
    r = await (await api.post(CP + "/set/add", data={"path": "A.gcode", "count": "2", "jobName": "J", "jobDraft": "false"})).json()
    jid = r["job_id"]
    await api.post(CP + "/set/add", data={"path": "B.gcode", "count": "1", "job": str(jid)})
    await api.post(CP + "/job/edit", data={"json": json.dumps({"id": jid, "count": 2, "remaining": 2})})

    seen_counts = []
    node.store.add_listener(lambda: seen_counts.append(None))
    await api.post(CP + "/set_active", data={"active": "true"})

    async def finished():
        s = await state(api)
        job = s["queues"][0]["jobs"][0]
        return job["remaining"] == 0 and s["status"].startswith("Idle")

    await wait_for(finished)
    assert printed_tags(node) == list("AABAAB")
    job = (await state(api))["queues"][0]["jobs"][0]
    assert [(x["path"], x["completed"]) for x in job["sets"]] == [("A.gcode", 4), ("B.gcode", 2)]
    history = await (await api.get(CP + "/history/get")).json()
    assert [h["set_path"][0] for h in reversed(history)] == list("AABAAB")
    assert all(h["result"] == "success" for h in history)


async def test_counts_in_state_match_each_print(node_factory):
    """After every completed print the counts in state/get equal what the printer executed."""
    api, node = await node_factory()
    await printer_ready(node)
    await upload(api, "A.gcode", gcode("A"))
    r = await (await api.post(CP + "/set/add", data={"path": "A.gcode", "count": "3", "jobDraft": "false"})).json()
    await api.post(CP + "/set_active", data={"active": "true"})
    for done in range(1, 4):
        # the default automation waits for a person after every print
        async def waiting():
            s = await state(api)
            return s["statusType"] == "NEEDS_ACTION" and s
        s = await wait_for(waiting)
        the_set = s["queues"][0]["jobs"][0]["sets"][0]
        assert printed_tags(node).count("A") == done
        assert (the_set["completed"], the_set["remaining"]) == (done, 3 - done)
        assert (await api.post(CP + "/runner/continue")).status == 200
    assert r["job_id"]


async def test_prepended_job_is_taken_after_the_current_set(node_factory):
    api, node = await node_factory()
    await printer_ready(node)
    await set_automation(api, NO_WAIT)
    await upload(api, "L.gcode", gcode("L", moves=40))
    await upload(api, "U.gcode", gcode("U"))
    await upload(api, "X.gcode", gcode("X"))
    first = await (await api.post(CP + "/set/add", data={"path": "L.gcode", "count": "1", "jobDraft": "false"})).json()
    await api.post(CP + "/set/add", data={"path": "X.gcode", "count": "1", "job": str(first["job_id"])})
    await api.post(CP + "/set_active", data={"active": "true"})

    async def printing_l():
        return "L" in printed_tags(node)

    await wait_for(printing_l, step=0.01)
    urgent = await (await api.post(CP + "/set/add", data={"path": "U.gcode", "count": "1", "jobDraft": "false"})).json()
    await api.post(CP + "/job/mv", data={"id": str(urgent["job_id"]), "after_id": "", "src_queue": "local", "dest_queue": "local"})

    async def all_done():
        s = await state(api)
        return all(j["remaining"] == 0 for j in s["queues"][0]["jobs"]) and s["status"].startswith("Idle")

    await wait_for(all_done)
    assert printed_tags(node) == ["L", "U", "X"]


async def test_material_mismatch_is_skipped_until_loaded(node_factory):
    api, node = await node_factory()
    await printer_ready(node)
    await set_automation(api, NO_WAIT)
    await upload(api, "R.gcode", gcode("R"))
    await upload(api, "P.gcode", gcode("P"))
    await api.post(CP + "/set/add", data={"path": "R.gcode", "materials": "PLA_red_#ff0000", "jobDraft": "false"})
    await api.post(CP + "/set/add", data={"path": "P.gcode", "jobDraft": "false"})
    await api.post(CP + "/set_active", data={"active": "true"})

    async def idle_after_p():
        s = await state(api)
        return "P" in printed_tags(node) and s["status"].startswith("Idle") and s
    s = await wait_for(idle_after_p)
    assert printed_tags(node) == ["P"]
    assert "material" in s["status"]
    r = await api.post(CP + "/materials/set", data={"materials": '["PLA_red_#ff0000"]'})
    assert r.status == 200

    async def red_printed():
        return "R" in printed_tags(node)

    await wait_for(red_printed)
    assert printed_tags(node) == ["P", "R"]


async def test_script_gated_on_external_runs_only_after_post(node_factory):
    api, node = await node_factory()
    await printer_ready(node)
    doc = {
        "scripts": {"clear": "M117 cleared-{how}"},
        "preprocessors": {"gate": "external.get('clear') and {'how': external['clear']}"},
        "events": {"continuousprint_success": [{"script": "clear", "preprocessor": "gate"}]},
    }
    await set_automation(api, doc)
    await upload(api, "A.gcode", gcode("A"))
    await api.post(CP + "/set/add", data={"path": "A.gcode", "count": "2", "jobDraft": "false"})
    await api.post(CP + "/set_active", data={"active": "true"})

    async def two_prints():
        return printed_tags(node).count("A") == 2 and (await state(api))["status"].startswith("Idle")

    await wait_for(two_prints)
    assert not any(t.startswith("cleared") for t in printed_tags(node))
    await api.post(CP + "/automation/external", json={"clear": "sweep"})
    await upload(api, "B.gcode", gcode("B"))
    await api.post(CP + "/set/add", data={"path": "B.gcode", "jobDraft": "false"})

    async def cleared():
        return "cleared-sweep" in printed_tags(node)

    await wait_for(cleared)
    assert printed_tags(node)[-2:] == ["B", "cleared-sweep"]


async def test_firmware_failure_retries_then_stops_with_error(node_factory):
    api, node = await node_factory()
    await printer_ready(node)
    await set_automation(api, NO_WAIT)
    await api.post(CP + "/driver/edit", data={"json": json.dumps({"max_retries": 2})})
    await upload(api, "A.gcode", gcode("A", moves=30))
    await api.post(CP + "/set/add", data={"path": "A.gcode", "jobDraft": "false"})
    model = node.printer.virtual.model
    failures = 0

    def break_printer():
        # a thermal runaway a few commands into every print
        model.faults.thermal_runaway_after = model.session_executed + 8

    break_printer()
    unsubscribe = node.printer.add_listener(lambda e: type(e).__name__ == "StateChanged" and break_printer())
    await api.post(CP + "/set_active", data={"active": "true"})

    async def stopped():
        s = await state(api)
        return (not s["active"]) and s

    s = await wait_for(stopped, timeout=40)
    unsubscribe()
    history = await (await api.get(CP + "/history/get")).json()
    failures = [h for h in history if h["result"] == "failure"]
    assert len(failures) == 3  # the first try and two retries
    assert s["statusType"] == "ERROR"
    assert (await state(api))["queues"][0]["jobs"][0]["sets"][0]["remaining"] == 1


async def test_AABAAB_counts_in_state_match_after_every_print(node_factory):
    """Sets A x2 and B x1, job x2: after each print (the default automation waits for a person,
    so the node stands still there) the counts in state/get are exactly what was printed."""
    api, node = await node_factory()
    await printer_ready(node)
    await upload(api, "A.gcode", gcode("A"))
    await upload(api, "B.gcode", gcode("B"))
    r = await (await api.post(CP + "/set/add", data={"path": "A.gcode", "count": "2", "jobName": "J", "jobDraft": "false"})).json()
    jid = r["job_id"]
    await api.post(CP + "/set/add", data={"path": "B.gcode", "count": "1", "job": str(jid)})
    await api.post(CP + "/job/edit", data={"json": json.dumps({"id": jid, "count": 2, "remaining": 2})})
    # (job remaining, A completed, A remaining, B completed, B remaining) after each print
    expected = [(2, 1, 1, 0, 1), (2, 2, 0, 0, 1), (1, 2, 2, 1, 1),
                (1, 3, 1, 1, 1), (1, 4, 0, 1, 1), (0, 4, 0, 2, 0)]
    await api.post(CP + "/set_active", data={"active": "true"})
    for done, want in enumerate(expected, start=1):
        async def settled():
            s = await state(api)
            still = s["statusType"] == "NEEDS_ACTION" or s["status"].startswith("Idle")
            return still and len(printed_tags(node)) == done and s

        s = await wait_for(settled)
        job = s["queues"][0]["jobs"][0]
        a, b = job["sets"]
        assert (job["remaining"], a["completed"], a["remaining"], b["completed"], b["remaining"]) == want, done
        if s["statusType"] == "NEEDS_ACTION":
            assert (await api.post(CP + "/runner/continue")).status == 200
    assert printed_tags(node) == list("AABAAB")


async def test_a_failing_queue_source_does_not_stall_the_driver(node_factory):
    """If looking for work raises (a LAN peer misbehaving, a disk error), the driver says so and
    looks again later instead of waiting forever for an answer."""
    api, node = await node_factory()
    await printer_ready(node)
    await set_automation(api, NO_WAIT)
    calls = []

    from lanqueue.queues import QueueInfo

    class FailingQueue:  # fault injection: no real queue fails on demand
        name = "farm"

        async def hold_next(self, profile, loaded, strategy):
            calls.append(self.name)
            raise RuntimeError("peer exploded")

        async def jobs(self):
            return []

        async def info(self):
            return QueueInfo()

        def cache_key(self):
            return None

    class FailingProvider:
        def queue(self, name):
            return FailingQueue() if name == "farm" else None

    provider = FailingProvider()
    node.queues.add(provider)
    await node.store.ensure_queue("farm")
    await api.post(CP + "/set_active", data={"active": "true"})

    async def idle_with_reason():
        s = await state(api)
        return "could not read the queues" in s["status"] and s
    await wait_for(idle_with_reason)
    node.queues.remove(provider)  # the source recovers: local work is found again
    await upload(api, "A.gcode", gcode("A"))
    await api.post(CP + "/set/add", data={"path": "A.gcode", "jobDraft": "false"})

    async def printed():
        return "A" in printed_tags(node)
    await wait_for(printed)
    assert calls and set(calls) == {"farm"}
