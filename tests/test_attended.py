"""Attended hours: a long job waits, a short one that ends while someone is there is taken."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from conftest import CP

from lanqueue.attended import ScheduleError, parse_attended, waits_for_person
from lanqueue.config import ConfigError, resolve_options
from lanqueue.model import Job, PrintSet, choose_next

SAMPLES = Path(__file__).resolve().parent.parent / "lanqueue" / "samples"
MON = datetime(2026, 11, 30)  # a Monday


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return MON + timedelta(days=day, hours=hour, minutes=minute)


def test_schedule_reads_days_ranges_and_midnight() -> None:
    hours = parse_attended("Mon-Fri 08:00-18:00, Sat 09:00-12:00 14:00-16:00; Sun 22:00-02:00")
    assert hours.attended(at(0, 8)) and hours.attended(at(4, 17, 59)) and not hours.attended(at(4, 18))
    assert not hours.attended(at(0, 7, 59)) and not hours.attended(at(5, 13)) and hours.attended(at(5, 15))
    assert hours.attended(at(6, 23)) and hours.attended(at(7, 1, 30)) and not hours.attended(at(7, 2))  # Sun night
    assert parse_attended("08:00-24:00").attended(at(2, 23, 59))  # no days: every day
    assert parse_attended("Fri-Mon 10:00-11:00").attended(at(6, 10, 30))  # wraps over the week end


@pytest.mark.parametrize("bad", ["", "Mon-Fry 08:00-18:00", "Mon 8-18", "25:00-26:00", "08:00-08:00", "Mon"])
def test_schedule_errors_are_clear(bad: str) -> None:
    with pytest.raises(ScheduleError, match="attended hours"):
        parse_attended(bad)
    with pytest.raises(ConfigError, match="attended hours"):
        resolve_options(None, env={"LANQUEUE_ATTENDED_HOURS": bad or " "})


def test_fits_by_the_end_of_the_print() -> None:
    hours = parse_attended("Mon-Fri 08:00-18:00")
    assert hours.fits(at(0, 17), 30 * 60) and not hours.fits(at(0, 17), 90 * 60)
    assert hours.fits(at(0, 18), 14 * 3600)  # overnight, ends Tuesday 08:00: a person is there
    assert hours.fits(at(0, 23), None)  # unknown length: nothing says it does not fit


def test_choose_next_takes_the_short_job_the_long_one_waits() -> None:
    """The pure core: IN_ORDER would take the long job first; attended hours pass it over."""
    hours = parse_attended("Mon-Fri 08:00-18:00")
    long = Job(1, "local", "long", rank=1, sets=[PrintSet(1, "long.gcode", gcode={"estimated_time_s": 3 * 3600})])
    short = Job(2, "local", "short", rank=2, sets=[PrintSet(2, "short.gcode", gcode={"estimated_time_s": 1200})])
    def fits_at(now: datetime):
        return lambda s: hours.fits(now, (s.gcode or {}).get("estimated_time_s"))
    assert choose_next([long, short], "Generic", [])[0].name == "long"
    assert choose_next([long, short], "Generic", [], fits=fits_at(at(0, 16)))[0].name == "short"
    assert choose_next([long, short], "Generic", [], fits=fits_at(at(0, 9)))[0].name == "long"
    assert choose_next([long], "Generic", [], fits=fits_at(at(0, 16))) is None


def test_only_a_pause_in_bed_clearing_makes_it_manual() -> None:
    assert waits_for_person(["G28 X", "@pause ; wait"]) and waits_for_person(["@PAUSE"])
    assert not waits_for_person(["G28 X", "; @pause in a comment"])


async def _upload(client, name: str) -> None:
    data = aiohttp.FormData()
    data.add_field("file", (SAMPLES / name).read_bytes(), filename=name, content_type="application/octet-stream")
    assert (await client.post("/api/files/local", data=data)).status == 201
    r = await client.post(f"{CP}/set/add", data={"path": name, "jobDraft": "false", "jobName": name})
    assert r.status == 200, await r.text()


async def test_a_real_node_prints_the_short_job_and_keeps_the_long_one_waiting(node_factory) -> None:
    """Someone is there for the next 30 minutes: superslicer.gcode (65 min by its slicer, first
    in the queue) would end after they leave; prusaslicer.gcode (12.5 min) ends before."""
    now = datetime.now()
    start, end = now - timedelta(hours=1), now + timedelta(minutes=30)
    client, _ = await node_factory(attended_hours=f"{start:%H:%M}-{end:%H:%M}")
    await _upload(client, "superslicer.gcode")
    await _upload(client, "prusaslicer.gcode")
    assert (await client.post(f"{CP}/set_active", data={"active": "true"})).status == 200
    deadline = time.monotonic() + 30
    while True:  # the short one prints, then the default bed clearing waits for a person
        history = await (await client.get(f"{CP}/history/get")).json()
        state = await (await client.get(f"{CP}/state/get")).json()
        if state["statusType"] == "NEEDS_ACTION":
            break
        assert time.monotonic() < deadline, (history, state["status"])
        await asyncio.sleep(0.1)
    assert [h["set_path"] for h in history] == ["prusaslicer.gcode"]
    assert (await client.post(f"{CP}/runner/continue")).status == 200
    deadline = time.monotonic() + 20
    while "attended hours" not in state["status"]:
        assert time.monotonic() < deadline, state["status"]
        await asyncio.sleep(0.1)
        state = await (await client.get(f"{CP}/state/get")).json()
    jobs = {j["name"]: j for j in state["queues"][0]["jobs"]}
    assert jobs["superslicer.gcode"]["remaining"] == 1 and jobs["prusaslicer.gcode"]["remaining"] == 0
    history = await (await client.get(f"{CP}/history/get")).json()
    assert [h["set_path"] for h in history] == ["prusaslicer.gcode"]  # the long one never started


async def test_attended_hours_also_choose_among_lan_jobs(node_factory) -> None:
    """The same rule for a LAN queue: its long job waits, its short one is taken."""
    now = datetime.now()
    start, end = now - timedelta(hours=1), now + timedelta(minutes=30)
    client, _ = await node_factory(attended_hours=f"{start:%H:%M}-{end:%H:%M}", lan=("farm=attended-farm-1",))
    for name in ("superslicer.gcode", "prusaslicer.gcode"):
        data = aiohttp.FormData()
        data.add_field("file", (SAMPLES / name).read_bytes(), filename=name, content_type="application/octet-stream")
        assert (await client.post("/api/files/local", data=data)).status == 201
        r = await client.post(f"{CP}/set/add", data={"path": name, "jobDraft": "false", "jobName": name,
                                                     "queue": "farm"})
        assert r.status == 200, await r.text()
    assert (await client.post(f"{CP}/set_active", data={"active": "true"})).status == 200
    deadline = time.monotonic() + 30
    while True:
        state = await (await client.get(f"{CP}/state/get")).json()
        if state["statusType"] == "NEEDS_ACTION":
            break
        assert time.monotonic() < deadline, state["status"]
        await asyncio.sleep(0.1)
    history = await (await client.get(f"{CP}/history/get")).json()
    assert [h["set_path"] for h in history] == ["prusaslicer.gcode"]
    farm = next(q for q in state["queues"] if q["name"] == "farm")
    jobs = {j["name"]: j for j in farm["jobs"]}
    assert jobs["superslicer.gcode"]["remaining"] == 1 and jobs["prusaslicer.gcode"]["remaining"] == 0
