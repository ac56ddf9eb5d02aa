"""The write model: refused writes are never seen, accepted ones always are, a full disk is a 507
(real SQLite files; the full disk is a small tmpfs this test mounts, so it needs root)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import CP

from lanqueue.errors import BadRequest, InsufficientStorage
from lanqueue.store import Store

GCODE = b"G28\nG1 X10 Y10\nM104 S0\n"


@pytest.fixture
async def store(tmp_path):
    s = await Store.open(tmp_path / "db.sqlite3")
    yield s
    await s.async_close()


async def test_refused_units_are_never_read_and_neighbours_still_commit(store):
    """Thousands of refused edits (each UPDATEs, then fails its check) interleaved with reads on
    the same store: no read returns a refused value, and accepted writes queued with them land."""
    jid, _ = await store.add_set({"path": "a.gcode", "count": 2, "remaining": 2}, job_id=None, job_name="J", job_draft=True)
    seen: list[tuple[int, bool, str]] = []
    stop = asyncio.Event()

    async def refuse(n: int) -> None:
        with pytest.raises(BadRequest):
            await store.edit_job(jid, {"remaining": 50, "draft": False, "name": f"refused-{n}"})

    async def read() -> None:
        while not stop.is_set():
            job = await store.job(jid)
            seen.append((job.remaining, job.draft, job.name))
            await asyncio.sleep(0)

    readers = [asyncio.create_task(read()) for _ in range(4)]
    accepted = [store.edit_job(jid, {"name": f"ok-{i}"}) for i in range(20)]
    await asyncio.gather(*(refuse(n) for n in range(2000)), *accepted)
    stop.set()
    await asyncio.gather(*readers)
    assert len(seen) > 100  # the reads really ran while the edits were queued
    refused = [s for s in seen if s[0] == 50 or not s[1] or s[2].startswith("refused")]
    assert refused == []
    job = await store.job(jid)
    assert (job.remaining, job.draft) == (1, True) and job.name.startswith("ok-")


async def test_group_commit_answers_each_unit_on_its_own(store):
    """Units queued together commit together, but each one's failure is its own."""
    async def good(db, n=0):
        await db.execute("INSERT INTO settings(key, value) VALUES (?, '1')", (f"k{n}",))
        return n

    async def bad(db):
        await db.execute("INSERT INTO settings(key, value) VALUES ('bad', '1')")
        raise BadRequest("no")

    results = await asyncio.gather(
        *(store.transaction(lambda db, n=n: good(db, n)) for n in range(10)),
        store.transaction(bad),
        return_exceptions=True,
    )
    assert results[:10] == list(range(10))
    assert isinstance(results[10], BadRequest)
    keys = {r["key"] for r in await store.fetchall("SELECT key FROM settings")}
    assert {f"k{n}" for n in range(10)} <= keys and "bad" not in keys


async def test_generation_moves_only_on_commit(store):
    before = store.generation
    with pytest.raises(BadRequest):
        await store.set_queues([{"name": "other"}])  # local missing: refused before any write
    jid, _ = await store.add_set({"path": "a.gcode", "count": 1, "remaining": 1}, job_id=None, job_name="J", job_draft=True)
    after_add = store.generation
    with pytest.raises(BadRequest):
        await store.edit_job(jid, {"remaining": 9})
    assert after_add > before and store.generation == after_add


async def test_refused_draft_false_never_starts_the_driver(node_factory):
    """Over HTTP with the driver managing the queue: a draft job edited with a refused
    `draft: false` (and remaining above count) many times over is never printed, and no
    state/get in between shows it ready."""
    api, node = await node_factory()
    data = __import__("aiohttp").FormData()
    data.add_field("file", GCODE, filename="p.gcode", content_type="application/octet-stream")
    assert (await api.post("/api/files/local", data=data)).status in (200, 201)
    r = await api.post(CP + "/set/add", data={"path": "p.gcode", "count": "2", "jobDraft": "true"})
    assert r.status == 200, await r.text()
    jid = (await r.json())["job_id"]
    assert (await api.post(CP + "/set_active", data={"active": "true"})).status == 200
    first = next(j for j in (await (await api.get(CP + "/state/get")).json())["queues"][0]["jobs"] if j["id"] == jid)
    initial = (first["draft"], first["remaining"])
    assert initial == (True, 1)
    stop = asyncio.Event()
    shown: list[tuple[bool, int]] = []

    async def refuse() -> None:
        for _ in range(60):
            r = await api.post(CP + "/job/edit", data={"json": json.dumps({"id": jid, "draft": False, "remaining": 50})})
            assert r.status == 400, await r.text()

    async def watch() -> None:
        while not stop.is_set():
            r = await api.get(CP + "/state/get")
            assert r.status == 200
            job = next(j for j in (await r.json())["queues"][0]["jobs"] if j["id"] == jid)
            shown.append((job["draft"], job["remaining"]))

    watchers = [asyncio.create_task(watch()) for _ in range(3)]
    await asyncio.gather(*(refuse() for _ in range(10)))
    await asyncio.sleep(0.3)  # time for a driver that saw a ready job to start it
    stop.set()
    await asyncio.gather(*watchers)
    assert len(shown) > 20
    assert [s for s in shown if s != initial] == []
    history = await (await api.get(CP + "/history/get")).json()
    assert history == []
    assert node.printer.progress() is None or getattr(node.printer.progress(), "name", None) is None


# --- a full disk ------------------------------------------------------------------------------


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str = "3m"):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(path: Path) -> None:
    """Write until the filesystem is full."""
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
        with contextlib.suppress(OSError):
            os.fsync(f.fileno())


async def test_full_disk_is_a_507_reads_work_and_writes_resume(node_factory, tmp_path):
    with small_tmpfs(tmp_path / "disk") as disk:
        api, _ = await node_factory(data_dir=disk / "node")
        r = await api.post(CP + "/set/add", data={"path": "a.gcode", "count": "1", "jobName": "before"})
        assert r.status == 200
        before = await (await api.get(CP + "/state/get")).json()
        fill(disk / "filler")
        big = json.dumps({"notes": "x" * 60_000})
        statuses = []
        for i in range(5):  # some may fit in pages already there; the disk fills up soon
            r = await api.post(CP + "/set/add", data={"path": f"b{i}.gcode", "count": "1", "jobName": "during",
                                                     "metadata": big})
            statuses.append(r.status)
            if r.status == 507:
                body = await r.json()
                assert "disk is full" in body["error"]
        assert 507 in statuses and 500 not in statuses, statuses
        during = await api.get(CP + "/state/get")
        assert during.status == 200  # reads keep working
        names = [j["name"] for j in (await during.json())["queues"][0]["jobs"]]
        assert names.count("during") == statuses.count(200)  # refused writes left nothing
        (disk / "filler").unlink()
        r = await api.post(CP + "/set/add", data={"path": "c.gcode", "count": "1", "jobName": "after"})
        assert r.status == 200, await r.text()
        after = [j["name"] for j in (await (await api.get(CP + "/state/get")).json())["queues"][0]["jobs"]]
        assert after[: len(before["queues"][0]["jobs"])] == ["before"] and after[-1] == "after"


async def test_full_disk_at_the_store(tmp_path):
    """The store itself: a write that cannot commit raises InsufficientStorage, state unchanged."""
    with small_tmpfs(tmp_path / "disk", "2m") as disk:
        s = await Store.open(disk / "db.sqlite3")
        try:
            jid, _ = await s.add_set({"path": "a.gcode", "count": 1, "remaining": 1}, job_id=None, job_name="J",
                                     job_draft=True)
            fill(disk / "filler")
            with pytest.raises(InsufficientStorage):
                for i in range(50):
                    await s.add_set({"path": f"{i}.gcode", "count": 1, "remaining": 1,
                                     "metadata": {"n": "y" * 50_000}}, job_id=jid, job_name=None, job_draft=True)
            kept = len((await s.job(jid)).sets)
            (disk / "filler").unlink()
            await s.add_set({"path": "z.gcode", "count": 1, "remaining": 1}, job_id=jid, job_name=None, job_draft=True)
            assert len((await s.job(jid)).sets) == kept + 1
        finally:
            await s.async_close()


async def test_full_disk_upload_is_a_507_that_leaves_nothing(node_factory, tmp_path):
    import aiohttp

    with small_tmpfs(tmp_path / "disk", "3m") as disk:
        api, _ = await node_factory(data_dir=disk / "node")
        fill(disk / "filler")
        form = aiohttp.FormData()
        form.add_field("file", b"G1 X1 Y1\n" * 200_000, filename="big.gcode")
        r = await api.post("/api/files/local", data=form)
        assert r.status == 507, await r.text()
        assert "disk is full" in (await r.json())["error"]
        assert not (disk / "node" / "files" / "big.gcode").exists()
        assert [p for p in (disk / "node" / "files").rglob("*") if p.is_file()] == []
        (disk / "filler").unlink()
        form = aiohttp.FormData()
        form.add_field("file", b"G28\n", filename="small.gcode")
        r = await api.post("/api/files/local", data=form)
        assert r.status == 201, await r.text()
