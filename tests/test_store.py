"""The store on a real SQLite file: durability settings, migrations, ranks, counts, runs."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from lanqueue.errors import BadRequest, NotFound
from lanqueue.store import MIGRATIONS, Store


@pytest.fixture
async def store(tmp_path):
    s = await Store.open(tmp_path / "db.sqlite3")
    yield s
    await s.async_close()


async def test_durability_pragmas_and_schema_version(store):
    async with store.db.execute("PRAGMA journal_mode") as cur:
        assert (await cur.fetchone())[0] == "wal"
    async with store.db.execute("PRAGMA synchronous") as cur:
        assert (await cur.fetchone())[0] == 2  # FULL
    async with store.db.execute("PRAGMA user_version") as cur:
        assert (await cur.fetchone())[0] == len(MIGRATIONS)


async def test_reopen_keeps_data_and_does_not_migrate_twice(tmp_path):
    s = await Store.open(tmp_path / "db.sqlite3")
    jid, _ = await s.add_set({"path": "a.gcode", "count": 2, "remaining": 2}, job_id=None, job_name="J", job_draft=False)
    await s.async_close()
    s = await Store.open(tmp_path / "db.sqlite3")
    jobs = await s.jobs("local")
    assert [(j.id, j.name, j.sets[0].count) for j in jobs] == [(jid, "J", 2)]
    assert [q["name"] for q in await s.queues()] == ["local"]
    await s.async_close()


async def test_component_migrations_run_once(store):
    calls = []

    async def step(db):
        calls.append(1)
        await db.execute("CREATE TABLE extra (x)")

    await store.migrate_component("lan", [step])
    await store.migrate_component("lan", [step])
    assert calls == [1]


async def test_new_jobs_go_last_and_move_between_neighbours(store):
    ids = [(await store.add_job(f"j{i}", draft=False)).id for i in range(4)]
    assert [j.id for j in await store.jobs("local")] == ids
    await store.move_job(ids[3], None, "local")
    assert [j.id for j in await store.jobs("local")] == [ids[3], *ids[:3]]
    await store.move_job(ids[3], ids[1], "local")
    assert [j.id for j in await store.jobs("local")] == [ids[0], ids[1], ids[3], ids[2]]
    with pytest.raises(NotFound):
        await store.move_job(ids[0], 9999, "local")


async def test_success_counting_is_the_models(store):
    jid, s1 = await store.add_set({"path": "a.gcode", "count": 2}, job_id=None, job_name="J", job_draft=False)
    _, s2 = await store.add_set({"path": "b.gcode", "count": 1}, job_id=jid, job_name=None, job_draft=False)
    await store.edit_job(jid, {"count": 2})
    for sid in (s1.id, s1.id, s2.id):  # as the driver writes a success: the run and its count
        run = await store.begin_run("local", jid, "J", sid, "a.gcode")
        await store.end_run(run, "success", count_success_of=(jid, sid))
    job = await store.job(jid)
    assert job.remaining == 1 and [s.remaining for s in job.sets] == [2, 1]


async def test_run_and_its_count_commit_together(store):
    jid, s = await store.add_set({"path": "a.gcode", "count": 3}, job_id=None, job_name="J", job_draft=False)
    run = await store.begin_run("local", jid, "J", s.id, "a.gcode")
    await store.end_run(run, "success", count_success_of=(jid, s.id))
    await store.end_run(run, "success", count_success_of=None)  # a second close changes nothing
    assert (await store.job(jid)).sets[0].remaining == 2
    history = await store.history()
    assert [(h.result, h.end is not None) for h in history] == [("success", True)]


async def test_open_runs_are_aborted_once_after_a_crash(store):
    jid, s = await store.add_set({"path": "a.gcode"}, job_id=None, job_name="J", job_draft=False)
    await store.begin_run("local", jid, "J", s.id, "a.gcode")
    assert await store.abort_open_runs() == 1
    assert await store.abort_open_runs() == 0
    assert [h.result for h in await store.history()] == ["aborted"]
    assert (await store.job(jid)).sets[0].remaining == 1


async def test_remove_archives_then_deletes(store):
    job = await store.add_job("x")
    assert await store.remove_jobs([job.id, 12345]) == 1
    assert await store.jobs("local") == []
    assert [j.id for j in await store.jobs("archive")] == [job.id]
    assert await store.remove_jobs([job.id]) == 1
    assert await store.jobs("archive") == []


async def test_failed_transaction_changes_nothing(store):
    job = await store.add_job("x")
    with pytest.raises(NotFound):
        await store.edit_job(job.id, {"name": "renamed", "sets": [{"id": 777, "count": 1}]})
    assert (await store.job(job.id)).name == "x"


async def test_local_queue_cannot_be_removed(store):
    with pytest.raises(BadRequest):
        await store.set_queues([{"name": "other"}])


async def test_concurrent_adds_keep_distinct_ranks_and_all_sets(store):
    job = await store.add_job("many", draft=False)
    await asyncio.gather(*[
        store.add_set({"path": f"f{i}.gcode"}, job_id=job.id, job_name=None, job_draft=False) for i in range(50)
    ])
    sets = (await store.job(job.id)).sets
    assert len(sets) == 50 and len({s.rank for s in sets}) == 50


async def test_file_is_a_real_sqlite_database(store, tmp_path):
    await store.add_job("visible")
    raw = sqlite3.connect(tmp_path / "db.sqlite3")
    assert raw.execute("SELECT name FROM jobs").fetchall() == [("visible",)]
    raw.close()
