"""The JSON shapes clients of the original plugin read: the state object, jobs and sets.

Kept apart from the handlers so `state/get`, `set_active`, the web page's live updates and the
command line's status all describe the node the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..model import LOCAL, Job, PrintSet

if TYPE_CHECKING:
    from ..node import Node

__all__ = ["set_view", "job_view", "state_view"]


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


async def state_view(node: Node) -> dict[str, Any]:
    """The `state/get` object: runner status plus every visible queue in rank order."""
    runner = node.runner
    queues = []
    local_jobs = await node.store.jobs(LOCAL)
    flag_missing_files(node, local_jobs)
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
                    "jobs": [job_view(j) for j in local_jobs],
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
