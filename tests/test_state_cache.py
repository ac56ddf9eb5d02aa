"""state/get's cache (api/state.py) over the local queue on a real SQLite file and file store:
the text it splices from per-job fragments is byte for byte a fresh full rebuild's after any
sequence of writes, a write re-encodes only the jobs it touched, and a client reads its own
acknowledged write while other writes and reads run."""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lanqueue.api.state import cached_jobs_text
from lanqueue.api.views import job_view
from lanqueue.errors import BadRequest, NotFound
from lanqueue.files import FileStore
from lanqueue.queues.local import LocalQueue
from lanqueue.store import Store

PATHS = ("a.gcode", "b.gcode", "c.gcode")


def encode_job(job: Any) -> str:
    return json.dumps(job_view(job))


async def full_rebuild(q: LocalQueue) -> str:
    """What state/get answered before the cache was incremental: the presenter's list, encoded
    in one `json.dumps`."""
    return json.dumps([job_view(j) for j in await q.jobs()])


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def open_queue(root: Path) -> LocalQueue:
    store = await Store.open(root / "db.sqlite3")
    files = FileStore(root / "files", 1 << 20)
    await files.save("a.gcode", chunks(b"G28\n"))
    return LocalQueue(store, files)


# one step: (kind, a number picking a job or a file, another number for the details)
STEP = st.tuples(
    st.sampled_from(["add", "join", "edit", "sets", "set_counts", "refused", "move", "front", "remove", "purge",
                     "reset", "hold", "upload", "delete_file", "success"]),
    st.integers(0, 1000),
    st.integers(0, 1000),
)


async def apply(q: LocalQueue, step: tuple[str, int, int]) -> None:
    """Apply one random step through the queue and store interfaces the routes use."""
    kind, a, b = step
    jobs = await q.jobs()
    job = jobs[a % len(jobs)] if jobs else None
    path = PATHS[b % len(PATHS)]
    if kind == "add" or job is None:
        await q.add_set({"path": path, "count": 1 + b % 3}, job_id=None, job_name=f"j{a}", job_draft=bool(b % 2))
    elif kind == "join":
        await q.add_set({"path": path, "count": 2}, job_id=str(job.id), job_name=None, job_draft=True)
    elif kind == "edit":
        await q.edit_job(str(job.id), {"name": f"n{b}", "count": 1 + b % 4, "draft": bool(a % 2)})
    elif kind == "sets":  # drop the first set, change the others, add one
        kept = [{"id": s.id, "count": 1 + b % 3, "materials": ["PLA"] * (b % 2)} for s in job.sets[1:]]
        await q.edit_job(str(job.id), {"sets": [*kept, {"path": path, "count": 1}]})
    elif kind == "set_counts":  # the same sets, only their counts change (no job column moves)
        await q.edit_job(str(job.id), {"sets": [{"id": s.id, "count": 1 + (b + i) % 5}
                                                for i, s in enumerate(job.sets)]})
    elif kind == "refused":
        with pytest.raises(BadRequest):
            await q.edit_job(str(job.id), {"name": "refused", "remaining": 99})
    elif kind in ("move", "front"):
        after = None if kind == "front" else str(jobs[b % len(jobs)].id)
        if after == str(job.id):
            after = None
        await q.move_within(str(job.id), after)
    elif kind == "remove":
        assert await q.remove_jobs([str(job.id)]) == 1
    elif kind == "purge":  # archived, then deleted for good (sets cascade)
        await q.remove_jobs([str(job.id)])
        await q.store.remove_jobs([int(job.id)])
    elif kind == "reset":
        await q.reset_jobs([str(job.id)])
    elif kind == "hold":
        q._hold(None if b % 3 == 0 else int(job.id))
    elif kind == "upload":
        await q.files.save(path, chunks(b"G1 X1\n"))
    elif kind == "delete_file":
        try:
            q.files.delete(path)
        except NotFound:
            pass
    elif kind == "success" and job.sets:
        run = await q.store.begin_run("local", job.id, job.name, job.sets[0].id, job.sets[0].path)
        await q.store.end_run(run, "success", count_success_of=(int(job.id), int(job.sets[0].id)))


async def run_steps(steps: list[tuple[str, int, int]], check_every: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        q = await open_queue(Path(tmp))
        try:
            for i, step in enumerate(steps):
                await apply(q, step)
                if i % check_every == 0 or i == len(steps) - 1:
                    assert await cached_jobs_text(q, encode_job) == await full_rebuild(q), (i, step)
        finally:
            await q.store.async_close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(STEP, min_size=1, max_size=25), check_every=st.sampled_from([1, 3]))
def test_the_spliced_answer_is_a_full_rebuilds_after_any_writes(steps, check_every) -> None:
    """Adds, joins, edits, set lists replaced, refused edits, moves, removals, deletions, resets,
    holds, files coming and going and counted successes, in any order, with the cache brought up
    to date after every step or only every third: the cached text equals a fresh full rebuild."""
    asyncio.run(run_steps(steps, check_every))


async def test_one_write_re_encodes_only_the_job_it_touched(tmp_path) -> None:
    q = await open_queue(tmp_path)
    try:
        for n in range(60):
            await q.add_set({"path": "a.gcode"}, job_id=None, job_name=f"j{n}", job_draft=True)
        encoded: list[int] = []

        def counting(job: Any) -> str:
            encoded.append(job.id)
            return encode_job(job)

        await cached_jobs_text(q, counting)
        assert len(encoded) == 60
        ids = [j.id for j in await q.jobs()]
        encoded.clear()
        await q.edit_job(str(ids[7]), {"name": "renamed"})
        assert await cached_jobs_text(q, counting) == await full_rebuild(q)
        assert encoded == [ids[7]]
        encoded.clear()
        await q.move_within(str(ids[30]), None)  # to the front: only its rank changed
        assert await cached_jobs_text(q, counting) == await full_rebuild(q)
        assert encoded == [ids[30]]
        encoded.clear()
        await q.remove_jobs([str(ids[3])])  # gone: nothing to encode
        assert await cached_jobs_text(q, counting) == await full_rebuild(q)
        assert encoded == []
        encoded.clear()
        await cached_jobs_text(q, counting)  # nothing changed: the cached text itself
        assert encoded == []
    finally:
        await q.store.async_close()


async def test_every_client_reads_its_own_write_while_others_write_and_read(tmp_path) -> None:
    """Writers rename jobs and at once read state through the cache while pollers keep it busy:
    each writer sees its acknowledged name, and the end state equals a full rebuild."""
    q = await open_queue(tmp_path)
    try:
        for n in range(40):
            await q.add_set({"path": "a.gcode"}, job_id=None, job_name=f"j{n}", job_draft=True)
        ids = [str(j.id) for j in await q.jobs()]
        stop = asyncio.Event()
        reads = 0

        async def poll() -> None:
            nonlocal reads
            while not stop.is_set():
                json.loads(await cached_jobs_text(q, encode_job))
                reads += 1
                await asyncio.sleep(0.002)  # busy, but not a spin that starves a loaded machine

        async def write(w: int) -> None:
            rng = random.Random(w)
            for n in range(30):
                jid = rng.choice(ids)
                await q.edit_job(jid, {"name": f"w{w}-{n}"})
                names = {str(j["id"]): j["name"] for j in json.loads(await cached_jobs_text(q, encode_job))}
                # another writer may have renamed it since, but never to something older than ours
                assert names[jid] == f"w{w}-{n}" or not names[jid].startswith(f"w{w}-")

        pollers = [asyncio.create_task(poll()) for _ in range(5)]
        await asyncio.gather(*(write(w) for w in range(4)))
        stop.set()
        await asyncio.gather(*pollers)
        assert reads > 50
        assert await cached_jobs_text(q, encode_job) == await full_rebuild(q)
    finally:
        await q.store.async_close()


async def test_a_database_of_schema_1_gains_versions_and_is_served_incrementally(tmp_path, monkeypatch) -> None:
    """A node upgraded in place: jobs written before job rows had versions are served, and the
    first edit after the upgrade shows (the triggers came with the migration)."""
    import lanqueue.store as store_module

    with monkeypatch.context() as m:
        m.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS[:1])
        old = await open_queue(tmp_path)
        for n in range(5):
            await old.add_set({"path": "a.gcode"}, job_id=None, job_name=f"old{n}", job_draft=True)
        await old.store.async_close()
    q = LocalQueue(await Store.open(tmp_path / "db.sqlite3"), FileStore(tmp_path / "files", 1 << 20))
    try:
        assert await cached_jobs_text(q, encode_job) == await full_rebuild(q)
        first = (await q.jobs())[0]
        await q.edit_job(str(first.id), {"sets": [{"id": first.sets[0].id, "count": 3}]})
        text = await cached_jobs_text(q, encode_job)
        assert text == await full_rebuild(q)
        assert json.loads(text)[0]["sets"][0]["count"] == 3
    finally:
        await q.store.async_close()


async def test_cancelled_reads_never_share_a_connection(tmp_path) -> None:
    """Reads of one job run in worker threads on pooled plain connections; a caller cancelled
    mid-read must not hand its connection to the next reader while its thread still uses it
    (two threads in one connection: 'cannot start a transaction within a transaction')."""
    q = await open_queue(tmp_path)
    try:
        jid, _ = await q.add_set({"path": "a.gcode"}, job_id=None, job_name="j", job_draft=True)
        for _ in range(20):
            tasks = [asyncio.create_task(q.store.job(int(jid))) for _ in range(16)]
            await asyncio.sleep(0)
            for t in tasks[::2]:
                t.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            kept = [r for r in results if not isinstance(r, asyncio.CancelledError)]
            assert kept and all(not isinstance(r, BaseException) and r.name == "j" for r in kept), kept
        assert q.store._direct.qsize() <= 8
    finally:
        await q.store.async_close()
