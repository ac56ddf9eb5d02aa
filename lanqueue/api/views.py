"""The JSON shapes clients of the original plugin read: the state object, jobs and sets.

Kept apart from the handlers so `state/get`, `set_active`, the web page's live updates and the
command line's status all describe the node the same way.
"""

from __future__ import annotations

import json
import secrets
import weakref
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
    for job in jobs:
        for s in job.sets:
            s.missing_file = not s.sd and not node.files.exists(s.path)


class _JobsCache:
    """The local queue's job views as of one (store, file store) generation, and their JSON."""

    __slots__ = ("key", "views", "text")

    def __init__(self, key: tuple[int, int], views: list[dict[str, Any]]) -> None:
        self.key = key
        self.views = views
        self.text: str | None = None

    def json_text(self) -> str:
        if self.text is None:
            self.text = json.dumps(self.views)
        return self.text


_caches: weakref.WeakKeyDictionary[Any, _JobsCache] = weakref.WeakKeyDictionary()
# stands in for the local jobs while the rest of the state is encoded, then is replaced by their
# cached JSON text; random per process so no job or queue name can collide with it
_SPLICE = f"lanqueue-local-jobs-{secrets.token_hex(8)}"


async def _local_jobs(node: Node) -> _JobsCache:
    """Reading and shaping every local job costs milliseconds per hundred jobs; clients poll
    state/get, so the result is kept until the next write to the store or the file store.
    The key is taken before reading: a write landing meanwhile makes the entry stale, never
    wrongly fresh."""
    key = (node.store.generation, node.files.generation)
    cache = _caches.get(node.store)
    if cache is None or cache.key != key:
        jobs = await node.store.jobs(LOCAL)
        flag_missing_files(node, jobs)
        cache = _JobsCache(key, [job_view(j) for j in jobs])
        _caches[node.store] = cache
    return cache


async def state_view(node: Node) -> dict[str, Any]:
    """The `state/get` object: runner status plus every visible queue in rank order.

    The local jobs part is shared with a cache: serialise the answer, do not change it."""
    return await _state(node, (await _local_jobs(node)).views)


async def state_json(node: Node) -> str:
    """`state_view` as JSON text, re-using the cached encoding of the local jobs."""
    cache = await _local_jobs(node)
    text = json.dumps(await _state(node, _SPLICE))
    return text.replace(json.dumps(_SPLICE), cache.json_text(), 1)


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
