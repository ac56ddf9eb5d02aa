"""The one queue interface: what routes, the driver and the page may ask of any queue.

A node has several queues: the local one (rows in the node's SQLite store), LAN queues (records
replicated between nodes, leased for printing) and, later, queues kept in an external store such
as etcd. Every caller talks to them through `Queue`, resolved once by name from the node's
`QueueRegistry`; nobody branches on what kind of queue it holds. A new kind of queue is a new
class with these methods plus a `QueueProvider` registered with the node: no route or driver
change.

Conventions every implementation keeps:

- **Job ids cross the interface as strings.** The queue knows its own id form and says whether a
  string names one of its jobs (`parse_job_id` refuses a malformed id with `BadRequest` or an
  impossible one with `NotFound`). What the wire shows is the queue's business: the local queue's
  ids are integers in JSON, as the original API has them, LAN ids are UUID strings.
- **Jobs come out as `model.Job`** (sets as `model.PrintSet`), ranked. Kind-specific facts (the
  LAN's lease holder, home, epoch...) travel in `Job.replica`, never in ad-hoc dicts; one
  presenter in `lanqueue.api.views` turns any queue's jobs into the wire format.
- **Errors are `lanqueue.errors` types**: `BadRequest` for a request this queue cannot do as asked
  (nothing changed), `NotFound` for an unknown job, `Conflict` for a state that forbids it now
  (a job being printed), `Unavailable` when another node that must act is unreachable. A method
  that raises has changed nothing, unless its docstring says otherwise.
- **Fields are already validated** by the API (types and bounds, `api/forms.py`); a queue checks
  only what depends on its own state or kind (a LAN set needs an uploaded file, counts >= 1).

Moving a job between two queues of any kinds is one generic path (`move_between`): the source
exports a `PortableJob` (checking it may let it go), the destination puts it in, then the source
removes its copy; if that removal fails the destination's copy is removed again, so a job is
never lost and never left in both queues.

For the driver, a queue offers `hold_next` (pick the next set this printer can print and hold it:
trivial for the local queue, a lease for a LAN queue), `finish` (record the run's end and count a
success) and `release`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..errors import BadRequest, NotFound
from ..model import Job, JobRef, PrintSet, Strategy

__all__ = [
    "ChangedJobs",
    "JobChanges",
    "JobLookup",
    "Pick",
    "PortableJob",
    "PortableSet",
    "Queue",
    "QueueInfo",
    "QueueProvider",
    "is_no_id",
    "move_between",
    "one_job",
]


@dataclass(frozen=True)
class PortableSet:
    """A set as it leaves one queue for another: what a print needs, no queue-specific ids."""

    path: str
    count: int = 1
    materials: tuple[str | None, ...] = ()
    profiles: tuple[str, ...] = ()
    sd: bool = False
    metadata: Any = None


@dataclass(frozen=True)
class PortableJob:
    """A job as it moves between queues. Counts start over in the destination (as the original
    does when a job changes queue): `count` runs of every set's `count` copies."""

    name: str
    count: int = 1
    draft: bool = False
    created: float = 0.0
    sets: tuple[PortableSet, ...] = ()


@dataclass(frozen=True)
class QueueInfo:
    """Queue-level facts the page shows beside the jobs: this node's address in the queue (None
    for a queue only this node sees) and the other members (the original's `peers` object)."""

    addr: str | None = None
    peers: dict[str, Any] | list[Any] = field(default_factory=list)
    #: for a queue kept elsewhere (etcd): whether this node reaches it, since when not, and what
    #: that means for printing; None for queues this node holds itself
    link: dict[str, Any] | None = None


@dataclass(frozen=True)
class Pick:
    """`hold_next`'s answer: the held set, or None and how many jobs wait for something this
    printer lacks (material, profile, file), for the driver's status line."""

    ref: JobRef | None
    waiting: int = 0


@runtime_checkable
class Queue(Protocol):
    """One queue of jobs. Methods are coroutines; each either completes or raises having changed
    nothing (see the module docstring for the error types)."""

    #: The queue's name, unique on the node (`local` for the local queue).
    name: str

    def parse_job_id(self, raw: Any) -> str:
        """The id in canonical string form if `raw` may name a job of this queue;
        `BadRequest` if malformed for this kind of queue, `NotFound` if out of range."""
        ...

    async def jobs(self) -> list[Job]:
        """Every live job in rank order, sets in rank order; `missing_file` is set for sets
        whose file this node does not have."""
        ...

    async def info(self) -> QueueInfo:
        """Queue-level facts for the page (address, peers)."""
        ...

    def cache_key(self) -> Hashable | None:
        """A value that changes whenever `jobs()` could answer differently, so a reader may keep
        what it made of the jobs until then; None if the queue cannot tell (nothing is kept)."""
        ...

    async def add_set(self, fields: dict[str, Any], *, job_id: str | None, job_name: str | None,
                      job_draft: bool) -> tuple[int | str, PrintSet]:
        """Add one set (validated set fields) to job `job_id`, or to a new job named `job_name`
        (default: the file's stem) when `job_id` is None. Returns the job's id as its jobs show
        it (`Job.id`) and the new set. `NotFound` for an unknown job; `BadRequest` if this queue cannot hold it."""
        ...

    async def add_job(self, name: str) -> Job:
        """A new, empty draft job. `BadRequest` if this queue does not build jobs in place."""
        ...

    async def edit_job(self, job_id: str, changes: dict[str, Any]) -> Job:
        """Apply validated changes (name, count, remaining, draft, sets: the full new list of
        set field dicts, an `id` naming an existing set). Returns the job after the change.
        `BadRequest` names the fields this queue cannot edit."""
        ...

    async def remove_jobs(self, job_ids: Sequence[str]) -> int:
        """Remove jobs; unknown ids are skipped. Returns how many were removed."""
        ...

    async def reset_jobs(self, job_ids: Sequence[str]) -> int:
        """Start jobs over (every run and copy to print again, completed back to zero); unknown
        ids are skipped. Returns how many were reset."""
        ...

    async def move_within(self, job_id: str, after_id: str | None) -> None:
        """Put the job right after `after_id` (None: first). `NotFound` for an unknown id."""
        ...

    async def export_job(self, job_id: str) -> PortableJob:
        """The job as it would leave this queue, checking it may leave now (`Conflict` while
        it is printed, `Unavailable` if its files cannot be had). Changes nothing."""
        ...

    async def import_job(self, job: PortableJob) -> str:
        """Put a job in at the end of this queue; returns its new id."""
        ...

    async def hold_next(self, profile: str, loaded: Sequence[str | None], strategy: Strategy,
                        fits: Callable[[PrintSet], bool] | None = None) -> Pick:
        """Choose the next set this printer (profile, material per tool) can print, by the
        queue's `strategy`, and hold it so no other printer prints it; the held set's file is
        in the node's file store. A held set must be `finish`ed or `release`d. `fits` is the
        printer's limit of the moment (attended hours: model.choose_next's `fits`)."""
        ...

    async def finish(self, ref: JobRef, result: str, run_id: int) -> None:
        """The print of `ref` ended with `result` (model.RunResult value): end history run
        `run_id` and, on success, count it (model.apply_success's rule), durably."""
        ...

    async def release(self, ref: JobRef) -> None:
        """Let go of a held set (after `finish`, or when the driver stops before printing)."""
        ...


class QueueProvider(Protocol):
    """One source of queues (the local store, the LAN service, an etcd cluster): the registry
    asks each provider, in order, for a queue by name."""

    def queue(self, name: str) -> Queue | None:
        """The queue of that name if this provider keeps it, else None."""
        ...


@runtime_checkable
class JobLookup(Protocol):
    """What a queue offers when it can find one job without reading them all (the local queue
    by its index, a LAN queue in its records): `one_job` then uses it."""

    async def job(self, job_id: str) -> Job:
        """One job as `jobs()` shows it; `NotFound` if the queue has no live job of that id."""
        ...


@dataclass(frozen=True)
class JobChanges:
    """`ChangedJobs.changed_jobs`'s answer, both parts read from one state of the queue."""

    #: every job of the queue in rank order: its id (as `str(Job.id)`) and a stamp that changes
    #: whenever that job's view (`jobs()`'s entry for it) could differ
    stamps: list[tuple[str, Hashable]]
    #: at least the jobs whose stamp is not the caller's `known` one, as `jobs()` shows them
    jobs: list[Job]


@runtime_checkable
class ChangedJobs(Protocol):
    """What a queue offers when it can tell which of its jobs changed (the local queue, by a
    version on each job row): state/get's cache then re-encodes only those. Queues without it
    are rebuilt whole from `jobs()` when their `cache_key()` moves."""

    async def changed_jobs(self, known: Mapping[str, Hashable]) -> JobChanges:
        """The queue's stamps and the jobs whose stamp differs from `known` (id -> stamp of
        what the caller holds)."""
        ...


async def one_job(queue: Queue, job_id: str) -> Job:
    """One job of `queue` by id: looked up where the queue can (`JobLookup`), else found in
    `jobs()`. `NotFound` if there is none."""
    if isinstance(queue, JobLookup):
        return await queue.job(job_id)
    for job in await queue.jobs():
        if str(job.id) == job_id:
            return job
    raise NotFound(f"no job {job_id} in {queue.name}")


def is_no_id(raw: Any) -> bool:
    """The spellings clients use for "no job" in `after_id` and `job` (the original's page sends
    `null` or `None` as text)."""
    return raw in (None, "", "null", "None")


async def move_between(src: Queue, dest: Queue, job_id: str) -> str:
    """Move a job from `src` to the end of `dest` (different queues); returns its id in `dest`.

    Export first (the source checks it may let the job go), then import (the destination
    checks it can hold it), and only then remove it from the source. If the removal fails the
    imported copy is removed again and the error raised: the job stays where it was."""
    if src.name == dest.name:
        raise BadRequest("source and destination are the same queue")
    portable = await src.export_job(job_id)
    new_id = await dest.import_job(portable)
    try:
        removed = await src.remove_jobs([job_id])
        if removed != 1:
            raise NotFound(f"job {job_id} left {src.name} while it was moved")
    except BaseException:
        await dest.remove_jobs([new_id])
        raise
    return new_id
