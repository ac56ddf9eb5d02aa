"""The JSON shapes clients of the original plugin read: the state object, jobs and sets.

Kept apart from the handlers so `state/get`, `set_active`, the web page's live updates and the
command line's status all describe the node the same way.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..model import Job, PrintSet
from ..queues import Queue, QueueInfo
from .state import cached_jobs_text

if TYPE_CHECKING:
    from .keys import NodeServices as Node

__all__ = [
    "JOB_FIELDS",
    "QUEUE_FIELDS",
    "SET_FIELDS",
    "OutField",
    "fields_schema",
    "job_schema",
    "job_view",
    "queue_schema",
    "queue_view",
    "set_view",
    "state_json",
    "state_view",
]


@dataclass(frozen=True)
class OutField:
    """One field of an answer: its name, JSON type(s) and meaning. `replica`: present only on
    jobs and sets of replicated (LAN) queues. The presenter below writes exactly these fields
    (a test holds them together), and the OpenAPI document describes answers from them."""

    name: str
    kind: str | tuple[str, ...]
    description: str
    replica: bool = False


SET_FIELDS: tuple[OutField, ...] = (
    OutField("id", ("integer", "string"), "set id: an integer in the local queue, `<job uuid>_<n>` in a LAN queue"),
    OutField("path", "string", "file path in the node's file store (or on the SD card when `sd`)"),
    OutField("count", "integer", "copies per run of the job"),
    OutField("remaining", "integer", "copies still to print in the current run"),
    OutField("completed", "integer", "copies printed over the job's life (reset by job/reset)"),
    OutField("rank", "number", "order within the job"),
    OutField("sd", "boolean", "the file is on the printer's SD card"),
    OutField("materials", "array", "material wanted per tool (null or empty: any)"),
    OutField("profiles", "array", "printer profiles that may print it (empty: any)"),
    OutField("metadata", ("object", "array", "string", "number", "boolean", "null"), "client data, returned as stored"),
    OutField("missing_file", "boolean", "the file is not in this node's file store"),
    OutField("gcode", ("object", "null"), "what the slicer wrote in the file: slicer, estimated_time_s, "
             "filament_mm, filament_g, filament_type (per tool), nozzle_diameter, layer_height, "
             "thumbnail (URL path); null if the file says nothing"),
    OutField("hash", "string", "sha256 of the file's content (LAN files travel by digest)", replica=True),
)

JOB_FIELDS: tuple[OutField, ...] = (
    OutField("queue", "string", "the queue holding the job"),
    OutField("name", "string", "job name"),
    OutField("count", "integer", "runs of the whole job"),
    OutField("remaining", "integer", "runs still to do"),
    OutField("draft", "boolean", "a draft is never printed"),
    OutField("acquired", "boolean", "a printer holds the job (printing it now)"),
    OutField("created", "integer", "creation time, seconds since the epoch"),
    OutField("id", ("integer", "string"), "job id: an integer in the local queue, a UUID in a LAN queue"),
    OutField("rank", "number", "order within the queue"),
    OutField("sets", "array", "the job's sets in rank order"),
    OutField("acquired_by_", ("string", "null"), "node id of the lease holder (a key of the queue's peers)", replica=True),
    OutField("acquired_by_name", ("string", "null"), "the lease holder's name ('this node' for this one)", replica=True),
    OutField("peer_", "string", "node id of the job's home (the original's field)", replica=True),
    OutField("home", "string", "node id of the job's home, the only node that changes its record", replica=True),
    OutField("home_name", "string", "the home's name ('this node' for this one)", replica=True),
    OutField("home_online", "boolean", "the home is this node or reachable from it", replica=True),
    OutField("epoch", "integer", "moves when the job changes home (drain, adopt)", replica=True),
    OutField("version", "integer", "moves on every change the home makes", replica=True),
    OutField("hash", ("string", "null"), "digest of the first set's file", replica=True),
    OutField("conflicts", "array", "completion reports the home could not count", replica=True),
    OutField("waiting_reason", "string", "why a printable job is not printed (only when it waits)", replica=True),
)

QUEUE_FIELDS: tuple[OutField, ...] = (
    OutField("name", "string", "queue name ('local' for this node's own queue)"),
    OutField("strategy", "string", "how the driver picks among printable jobs (IN_ORDER, LEAST_MANUAL)"),
    OutField("addr", ("string", "null"), "this node's address in the queue (its node id in a LAN queue)"),
    OutField("peers", ("object", "array"), "the other members of a LAN queue, by node id"),
    OutField("rank", "number", "order among the node's queues"),
    OutField("active_set", ("integer", "string", "null"), "the set this node prints from the queue now"),
    OutField("jobs", "array", "the queue's jobs in rank order"),
    OutField("link", "object", "a queue kept in etcd: whether this node reaches etcd (reachable, since, "
             "error, meaning)", replica=True),
)


def fields_schema(fields: Sequence[OutField], **nested: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema (OpenAPI 3.1) of an answer object from its field table: every field not
    marked `replica` is always present; `nested` gives the item schema of array fields."""
    props: dict[str, Any] = {}
    for f in fields:
        kinds = [f.kind] if isinstance(f.kind, str) else list(f.kind)
        prop: dict[str, Any] = {"type": kinds[0] if len(kinds) == 1 else kinds, "description": f.description}
        if f.name in nested:
            prop["items"] = nested[f.name]
        props[f.name] = prop
    return {"type": "object", "properties": props, "required": [f.name for f in fields if not f.replica]}


def job_schema() -> dict[str, Any]:
    """The schema of a job as `job_view` writes it (sets included)."""
    return fields_schema(JOB_FIELDS, sets=fields_schema(SET_FIELDS))


def queue_schema() -> dict[str, Any]:
    """The schema of a queue of `state/get`."""
    return fields_schema(QUEUE_FIELDS, jobs=job_schema())


def set_view(s: PrintSet) -> dict[str, Any]:
    """A set on the wire (SET_FIELDS)."""
    out = {
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
        "gcode": s.gcode,
    }
    if s.hash is not None:
        out["hash"] = s.hash
    return out


def job_view(job: Job) -> dict[str, Any]:
    """A job of any queue on the wire (JOB_FIELDS; the replica fields for LAN jobs)."""
    out = {
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
    rep = job.replica
    if rep is not None:
        out.update({
            "acquired_by_": rep.acquired_by, "acquired_by_name": rep.acquired_by_name,
            "peer_": rep.home, "home": rep.home, "home_name": rep.home_name, "home_online": rep.home_online,
            "epoch": rep.epoch, "version": rep.version, "hash": rep.hash, "conflicts": list(rep.conflicts),
        })
        if rep.waiting_reason is not None:
            out["waiting_reason"] = rep.waiting_reason
    return out


def queue_view(name: str, row: dict[str, Any], info: QueueInfo, active_set: Any, jobs: Any) -> dict[str, Any]:
    """A queue in `state/get` (QUEUE_FIELDS); `jobs` as given (a list of job views or a
    stand-in the caller splices its cached text into)."""
    return {
        "name": name,
        "strategy": row["strategy"],
        "addr": info.addr,
        "peers": info.peers,
        "rank": row["rank"],
        "active_set": active_set,
        "jobs": jobs,
        **({"link": info.link} if info.link is not None else {}),
    }


# stands in for a queue's jobs while the rest of the state is encoded, then is replaced by their
# JSON text; random per process so no job or queue name can collide with it
_SPLICE = f"lanqueue-queue-jobs-{secrets.token_hex(8)}"


def _encode_job(job: Job) -> str:
    return json.dumps(job_view(job))


async def _jobs_json(q: Queue) -> str:
    """A queue's jobs as JSON text, brought up to date once per change of the queue (api/state)."""
    return await cached_jobs_text(q, _encode_job)


async def state_view(node: Node) -> dict[str, Any]:
    """The `state/get` object: runner status plus every visible queue in rank order (a fresh
    copy the caller may change)."""
    return json.loads(await state_json(node))


def printer_view(node: Node) -> dict[str, Any] | None:
    """Which printer this node drives: the backend kind ("virtual", "serial", "octoprint",
    "moonraker", ...), the printer's address (never a secret), its state and capabilities."""
    printer = node.printer
    if printer is None:
        return None
    return {
        "backend": printer.kind,
        "target": printer.target,
        "state": printer.state.text,
        "error": printer.error,
        "capabilities": printer.capabilities.to_json(),
    }


async def state_json(node: Node) -> str:
    """`state_view` as JSON text; each queue's jobs are spliced in as (cached) text."""
    runner = node.runner
    queues = []
    texts: list[tuple[str, str]] = []
    for q, row in await node.queues.listed():
        marker = f"{_SPLICE}-{len(texts)}"
        texts.append((marker, await _jobs_json(q)))
        queues.append(queue_view(q.name, row, await q.info(), runner.active_set_id(q.name), marker))
    text = json.dumps({
        "active": runner.active,
        "status": runner.status,
        "statusType": runner.status_type,
        "profile": node.options.profile,
        "printer": printer_view(node),
        "queues": queues,
    })
    for marker, jobs_text in texts:
        text = text.replace(json.dumps(marker), jobs_text, 1)
    return text
