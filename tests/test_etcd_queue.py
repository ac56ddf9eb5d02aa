"""Etcd queues against a real etcd (Debian's etcd-server): two nodes, each with its own SQLite
store and file store and a real HTTP server for file fetches, sharing one queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from lanqueue.errors import BadRequest, Conflict
from lanqueue.etcd.client import EtcdClient
from lanqueue.etcd.queue import EtcdContext, EtcdQueue
from lanqueue.etcd.routes import file_routes
from lanqueue.files import FileStore
from lanqueue.model import Strategy
from lanqueue.store import Store
from tests.etcd_server import free_port, start_cluster

GCODE = b"G28\n" + b"G1 X1 Y1\n" * 50


@dataclass
class Node:
    queue: EtcdQueue
    store: Store
    files: FileStore
    runner: web.AppRunner

    async def upload(self, name: str, data: bytes = GCODE) -> str:
        async def chunks() -> AsyncIterator[bytes]:
            yield data

        staged = await self.files.stage(name, chunks())
        stored = await self.files.async_commit(staged)
        await self.store.record_file(stored.path, stored.sha256, stored.size)
        return stored.path

    async def run(self, ref, result: str = "success") -> None:  # type: ignore[no-untyped-def]
        run_id = await self.store.begin_run(ref.queue, ref.job_id, ref.job_name, ref.set_id, ref.path)
        await self.queue.finish(ref, result, run_id)
        await self.queue.release(ref)


@pytest.fixture
def etcd(tmp_path: Path):  # type: ignore[no-untyped-def]
    cluster = start_cluster(tmp_path / "etcd")
    yield cluster
    cluster.stop()


async def make_node(tmp: Path, name: str, endpoints: list[str], *, ttl: float = 4.0, lock_delay: float = 2.0) -> Node:
    tmp.mkdir(parents=True, exist_ok=True)
    store = await Store.open(tmp / "db.sqlite3")
    files = FileStore(tmp / "files", 10 * 1024 * 1024)
    port = free_port()
    holder: dict[str, EtcdQueue] = {}
    app = web.Application()
    app.add_routes(file_routes(lambda q: holder.get(q)))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    ctx = EtcdContext(node_id=f"node-{name}", node_name=name, node_url=f"http://127.0.0.1:{port}",
                      store=store, files=files, ttl=ttl, lock_delay=lock_delay)
    queue = EtcdQueue("farm", EtcdClient(endpoints), ctx)
    holder["farm"] = queue
    await queue.async_start()
    await queue.wait_loaded()
    return Node(queue, store, files, runner)


async def close(*nodes: Node) -> None:
    for n in nodes:
        await n.queue.async_close()
        await n.runner.cleanup()
        await n.store.async_close()


async def eventually(check, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_job_added_on_one_node_prints_on_the_other_exactly_its_count(etcd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = await make_node(tmp_path / "a", "a", etcd.endpoints)
    b = await make_node(tmp_path / "b", "b", etcd.endpoints)
    try:
        path = await a.upload("part.gcode")
        job_id, _ = await a.queue.add_set({"path": path, "count": 2}, job_id=None, job_name="part", job_draft=False)
        await eventually(lambda: job_id in b.queue.docs)
        await eventually(lambda: "node-a" in b.queue.nodes and b.queue.file_secret() != b"")
        pick = await b.queue.hold_next("Generic", [], Strategy.IN_ORDER)
        assert pick.ref is not None, "b could not hold the job (file fetched from a?)"
        assert (tmp_path / "b" / "files").exists() and b.files.exists(pick.ref.path)
        # held: a cannot hold it at the same time
        assert (await a.queue.hold_next("Generic", [], Strategy.IN_ORDER)).ref is None
        await eventually(lambda: job_id in a.queue.holds)
        assert (await a.queue.jobs())[0].acquired and (await a.queue.jobs())[0].replica.acquired_by == "node-b"
        with pytest.raises(Conflict):
            await a.queue.remove_jobs([job_id])
        await b.run(pick.ref)
        # the second copy: either node may take it; the hold and fence went with the completion
        pick2 = await a.queue.hold_next("Generic", [], Strategy.IN_ORDER)
        assert pick2.ref is not None and pick2.ref.token > pick.ref.token
        await a.run(pick2.ref)
        await eventually(lambda: b.queue.docs[job_id][0].job.remaining == 0)
        done = b.queue.docs[job_id][0].job
        assert done.sets[0].completed == 2 and done.remaining == 0
        assert (await b.queue.hold_next("Generic", [], Strategy.IN_ORDER)).ref is None
    finally:
        await close(a, b)


async def test_completion_after_lost_hold_is_a_conflict_and_counts_nothing(etcd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = await make_node(tmp_path / "a", "a", etcd.endpoints, ttl=2.0, lock_delay=1.0)
    b = await make_node(tmp_path / "b", "b", etcd.endpoints)
    try:
        path = await a.upload("part.gcode")
        job_id, _ = await a.queue.add_set({"path": path, "count": 1}, job_id=None, job_name="p", job_draft=False)
        await eventually(lambda: job_id in a.queue.docs)
        pick = await a.queue.hold_next("Generic", [], Strategy.IN_ORDER)
        assert pick.ref is not None
        # a's lease lapses (as if it froze): revoke it as etcd would on expiry
        await a.queue.client.lease_revoke(a.queue._print_lease)
        await a.queue.client.lease_revoke(a.queue._fence_lease)
        await eventually(lambda: job_id not in b.queue.holds and job_id not in b.queue.fences)
        await eventually(lambda: "node-a" in b.queue.nodes)  # a re-joined with new leases (its file server)
        pick_b = await b.queue.hold_next("Generic", [], Strategy.IN_ORDER)
        assert pick_b.ref is not None and pick_b.ref.token > pick.ref.token
        await a.run(pick.ref)  # a's late completion: refused by fencing
        await eventually(lambda: b.queue.docs[job_id][0].conflicts != ())
        assert b.queue.docs[job_id][0].job.remaining == 1, "a fenced-off completion was counted"
        await b.run(pick_b.ref)
        await eventually(lambda: b.queue.docs[job_id][0].job.remaining == 0)
        assert b.queue.docs[job_id][0].job.sets[0].completed == 1
    finally:
        await close(a, b)


async def test_completion_waits_in_outbox_while_etcd_is_down(etcd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = await make_node(tmp_path / "a", "a", etcd.endpoints, ttl=30.0)
    try:
        path = await a.upload("part.gcode")
        job_id, _ = await a.queue.add_set({"path": path, "count": 1}, job_id=None, job_name="p", job_draft=False)
        await eventually(lambda: job_id in a.queue.docs)
        pick = await a.queue.hold_next("Generic", [], Strategy.IN_ORDER)
        assert pick.ref is not None
        etcd.kill(0)
        await a.run(pick.ref)  # answered from the outbox, not lost
        rows = await a.store.fetchall("SELECT job_id FROM etcd_outbox")
        assert [r["job_id"] for r in rows] == [job_id]
        await eventually(lambda: not a.queue.reachable, 15)
        assert (await a.queue.hold_next("Generic", [], Strategy.IN_ORDER)).ref is None
        etcd.start(0, state="existing")
        await eventually(lambda: a.queue.reachable, 20)
        await eventually(lambda: a.queue.docs.get(job_id) is not None
                         and a.queue.docs[job_id][0].job.remaining == 0, 20)
        assert await a.store.fetchall("SELECT * FROM etcd_outbox") == []
    finally:
        await close(a)


async def test_bad_requests_change_nothing(etcd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = await make_node(tmp_path / "a", "a", etcd.endpoints)
    try:
        with pytest.raises(BadRequest):
            await a.queue.add_set({"path": "nothere.gcode", "count": 1}, job_id=None, job_name="x", job_draft=False)
        path = await a.upload("part.gcode")
        job_id, _ = await a.queue.add_set({"path": path, "count": 3}, job_id=None, job_name="x", job_draft=True)
        with pytest.raises(BadRequest):
            await a.queue.edit_job(job_id, {"remaining": 9})
        with pytest.raises(BadRequest):
            await a.queue.edit_job(job_id, {"sets": []})
        with pytest.raises(BadRequest):
            a.queue.parse_job_id("../../etc")
        kvs, _ = await a.queue.client.range(a.queue.keys.job(job_id))
        assert len(kvs) == 1 and kvs[0].version == 1, "a refused edit wrote to etcd"
        edited = await a.queue.edit_job(job_id, {"count": 5, "draft": False, "name": "y"})
        assert (edited.count, edited.remaining, edited.draft, edited.name) == (5, 5, False, "y")
    finally:
        await close(a)
