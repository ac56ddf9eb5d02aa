"""The JSON shapes clients of the original plugin read: the state object, jobs and sets.

Kept apart from the handlers so `state/get`, `set_active`, the web page's live updates and the
command line's status all describe the node the same way.
"""

from __future__ import annotations

import contextlib
import gc
import json
import secrets
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..model import LOCAL, Job, PrintSet

if TYPE_CHECKING:
    from ..node import Node

__all__ = ["set_view", "job_view", "state_view", "state_json"]


def set_view(s: PrintSet) -> dict[str, Any]:
    return {
        "id": s.id,
        "path": s.path,
        "count": s.count,
        "remaining": s.remaining,
        "completed": s.completed,
        "rank": s.rank,
        "sd": s.sd,
        "materials": s.materials,
        "profiles": s.profiles,
        "metadata": s.metadata,
        "missing_file": s.missing_file,
    }


def job_view(job: Job) -> dict[str, Any]:
    return {
        "queue": job.queue,
        "name": job.name,
        "count": job.count,
        "remaining": job.remaining,
        "draft": job.draft,
        "acquired": job.acquired,
        "created": job.created,
        "id": job.id,
        "rank": job.rank,
        "sets": [set_view(s) for s in job.sets],
    }


def flag_missing_files(node: Node, jobs: list[Job]) -> None:
    """Mark sets whose file is not in the store (SD sets live on the printer's card)."""
    seen: dict[str, bool] = {}
    for job in jobs:
        for s in job.sets:
            if s.sd:
                s.missing_file = False
                continue
            present = seen.get(s.path)
            if present is None:
                present = seen[s.path] = node.files.exists(s.path)
            s.missing_file = not present


class _JobsCache:
    """The JSON text of the local queue's jobs as of one (store, file store) generation."""

    __slots__ = ("key", "text")

    def __init__(self, key: tuple[int, int], text: str) -> None:
        self.key = key
        self.text = text


_caches: weakref.WeakKeyDictionary[Any, _JobsCache] = weakref.WeakKeyDictionary()
# stands in for the local jobs while the rest of the state is encoded, then is replaced by their
# cached JSON text; random per process so no job or queue name can collide with it
_SPLICE = f"lanqueue-local-jobs-{secrets.token_hex(8)}"


async def _local_jobs_json(node: Node) -> str:
    """Reading, shaping and encoding every local job is the whole cost of state/get; clients
    poll it, so the text is kept until the next write to the store or the file store. The key
    is taken before reading: a write landing meanwhile makes the entry stale, never wrongly
    fresh. Only the text is kept (a tenth of the memory of the objects)."""
    key = (node.store.generation, node.files.generation)
    cache = _caches.get(node.store)
    if cache is None or cache.key != key:
        with _no_gc():  # held across one read: the rows are made on the store's thread
            jobs = await node.store.jobs(LOCAL)
            flag_missing_files(node, jobs)
            text = json.dumps([job_view(j) for j in jobs])
            del jobs
        cache = _JobsCache(key, text)
        _caches[node.store] = cache
    return cache.text


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Building tens of thousands of dicts and lists makes the cycle collector walk every live
    object again and again (state/get of 10,000 jobs grew twice as fast as the queue); these
    objects form no cycles, so reference counting frees them and the collector can wait."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


async def state_view(node: Node) -> dict[str, Any]:
    """The `state/get` object: runner status plus every visible queue in rank order (a fresh
    copy the caller may change)."""
    return json.loads(await state_json(node))


async def state_json(node: Node) -> str:
    """`state_view` as JSON text, re-using the cached encoding of the local jobs."""
    jobs_text = await _local_jobs_json(node)
    text = json.dumps(await _state(node, _SPLICE))
    return text.replace(json.dumps(_SPLICE), jobs_text, 1)


async def _state(node: Node, local_jobs: Any) -> dict[str, Any]:
    runner = node.runner
    queues = []
    for q in await node.store.queues():
        if q["name"] == LOCAL:
            queues.append(
                {
                    "name": LOCAL,
                    "strategy": q["strategy"],
                    "addr": None,
                    "peers": [],
                    "rank": q["rank"],
                    "active_set": runner.active_set_id(LOCAL),
                    "jobs": local_jobs,
                }
            )
        elif node.lan is not None:
            view = await node.lan.queue_view(q["name"])
            if view is not None:
                view["rank"] = q["rank"]
                view["strategy"] = q["strategy"]
                view["active_set"] = runner.active_set_id(q["name"])
                queues.append(view)
    return {
        "active": runner.active,
        "status": runner.status,
        "statusType": runner.status_type,
        "profile": node.options.profile,
        "queues": queues,
    }
