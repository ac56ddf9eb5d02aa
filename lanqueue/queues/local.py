"""The local queue: jobs only this node prints, kept in its SQLite store.

Ids are the store's integers (on the wire too, as the original API has them); across the queue
interface they are their decimal strings. Holding a set for the driver needs no coordination:
this node is the only printer of the queue, so `hold_next` just remembers the held job, which the
page shows as `acquired` (as the original does for the job being printed).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import BadRequest, Conflict, NotFound
from ..model import LOCAL, Job, JobRef, PrintSet, Strategy, choose_next
from .base import JobChanges, Pick, PortableJob, PortableSet, QueueInfo, is_no_id

if TYPE_CHECKING:
    from ..files import FileStore
    from ..store import Store

__all__ = ["LocalQueue", "int_id"]


def int_id(value: Any, what: str = "job id") -> int:
    """A store id from a client's value: an integer (or its text) in the store's id range."""
    if isinstance(value, bool):
        raise BadRequest(f"{what} must be an integer")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise BadRequest(f"{what} must be an integer, not {value!r}") from None
    if not 0 < number < 2**62:
        raise NotFound(f"no {what.split()[0]} with id {number}")
    return number


class LocalQueue:
    """`base.Queue` over the node's store and file store."""

    def __init__(self, store: Store, files: FileStore, name: str = LOCAL) -> None:
        self.name = name
        self.store = store
        self.files = files
        self._held: int | None = None
        #: moves when the held job changes, so cached views of the jobs know they are stale
        self.generation = 0

    def parse_job_id(self, raw: Any) -> str:
        return str(int_id(raw))

    # --- reading ---------------------------------------------------------------------------

    async def jobs(self) -> list[Job]:
        jobs = await self.store.jobs(self.name)
        self.flag_missing_files(jobs)
        held = self._held
        if held is not None:
            for job in jobs:
                if job.id == held:
                    job.acquired = True
        return jobs

    async def changed_jobs(self, known: Mapping[str, Hashable]) -> JobChanges:
        """`base.ChangedJobs`: a job's stamp is its row version (moved by the store's triggers on
        any write to it or its sets), whether it is held, and the file store's generation (its
        sets' `missing_file` and `gcode` follow the files; a file coming or going is rare, so
        every job is then re-read). Versions and jobs come from one read snapshot."""
        held, files_gen = self._held, self.files.generation
        stamps: list[tuple[str, Hashable]] = []

        def pick(versions: list[tuple[int, int]]) -> list[int]:  # in the store's worker thread
            stamps.extend((str(jid), (version, jid == held, files_gen)) for jid, version in versions)
            return [jid for (jid, _), (key, stamp) in zip(versions, stamps) if known.get(key) != stamp]

        jobs = await self.store.changed_jobs(self.name, pick)
        self.flag_missing_files(jobs)
        for job in jobs:
            job.acquired = job.id == held
        return JobChanges(stamps, jobs)

    async def job(self, job_id: str) -> Job:
        job = await self.store.job(int(job_id))
        if job.queue != self.name:
            raise NotFound(f"no job {job_id} in {self.name}")
        self.flag_missing_files([job])
        job.acquired = job.id == self._held
        return job

    def flag_missing_files(self, jobs: list[Job]) -> None:
        """Mark sets whose file is not in the file store (SD sets live on the printer's card)
        and attach what the slicer wrote in each file (`gcode`)."""
        seen: dict[str, bool] = {}
        exists, gcode = self.files.exists, self.files.gcode
        for job in jobs:
            for s in job.sets:
                s.gcode = gcode(s.path)
                if s.sd:
                    s.missing_file = False
                    continue
                present = seen.get(s.path)
                if present is None:
                    present = seen[s.path] = exists(s.path)
                s.missing_file = not present

    async def info(self) -> QueueInfo:
        return QueueInfo(addr=None, peers=[])

    def cache_key(self) -> Hashable:
        return (self.store.generation, self.files.generation, self.generation)

    # --- editing ---------------------------------------------------------------------------

    async def add_set(self, fields: dict[str, Any], *, job_id: str | None, job_name: str | None,
                      job_draft: bool) -> tuple[int | str, PrintSet]:
        jid = None if is_no_id(job_id) else int_id(job_id)
        new_jid, added = await self.store.add_set(fields, job_id=jid, job_name=job_name,
                                                  job_draft=job_draft, queue=self.name)
        added.missing_file = not added.sd and not self.files.exists(added.path)
        added.gcode = self.files.gcode(added.path)
        return new_jid, added

    async def add_job(self, name: str) -> Job:
        return await self.store.add_job(name or "Untitled", queue=self.name, draft=True)

    async def edit_job(self, job_id: str, changes: dict[str, Any]) -> Job:
        if changes.get("sets") is not None:
            changes = {**changes, "sets": [_with_int_set_id(s) for s in changes["sets"]]}
        job = await self.store.edit_job(int(job_id), changes)
        self.flag_missing_files([job])
        return job

    async def remove_jobs(self, job_ids: Sequence[str]) -> int:
        return int(await self.store.remove_jobs([int(j) for j in job_ids]))

    async def reset_jobs(self, job_ids: Sequence[str]) -> int:
        return int(await self.store.reset_jobs([int(j) for j in job_ids]))

    async def move_within(self, job_id: str, after_id: str | None) -> None:
        after = None if is_no_id(after_id) else int_id(after_id, "after_id")
        await self.store.move_job(int(job_id), after, self.name)

    async def export_job(self, job_id: str) -> PortableJob:
        job = await self.store.job(int(job_id))
        if job.queue != self.name:
            raise NotFound(f"no job {job_id} in {self.name}")
        if int(job_id) == self._held:
            raise Conflict("the job is being printed; move it when the print has ended")
        return PortableJob(
            name=job.name, count=job.count, draft=job.draft, created=float(job.created),
            sets=tuple(PortableSet(path=s.path, count=s.count, materials=tuple(s.materials),
                                   profiles=tuple(s.profiles), sd=s.sd, metadata=s.metadata)
                       for s in job.sets),
        )

    async def import_job(self, job: PortableJob) -> str:
        sets = [{"path": s.path, "count": s.count, "remaining": s.count, "materials": list(s.materials),
                 "profiles": list(s.profiles), "sd": s.sd, "metadata": s.metadata} for s in job.sets]
        added = await self.store.add_job(job.name, queue=self.name, draft=job.draft, count=job.count, sets=sets)
        return str(added.id)

    # --- the driver's side -----------------------------------------------------------------

    async def hold_next(self, profile: str, loaded: Sequence[str | None], strategy: Strategy,
                        fits: Callable[[PrintSet], bool] | None = None) -> Pick:
        jobs = await self.store.jobs(self.name)
        self.flag_missing_files(jobs)
        choice = choose_next(jobs, profile, loaded, strategy, fits)
        if choice is None:
            return Pick(None, waiting=sum(1 for j in jobs if not j.draft and j.remaining > 0))
        job, chosen = choice
        self._hold(int(job.id))
        return Pick(JobRef(self.name, job.id, job.name, chosen.id, chosen.path, tuple(chosen.materials)))

    async def finish(self, ref: JobRef, result: str, run_id: int) -> None:
        # let go before the write: the write's notice then shows the job no longer acquired
        self._hold(None)
        count = (int(ref.job_id), int(ref.set_id)) if result == "success" else None
        await self.store.end_run(run_id, result, count_success_of=count)

    async def release(self, ref: JobRef) -> None:
        self._hold(None)

    def _hold(self, job_id: int | None) -> None:
        if job_id != self._held:
            self._held = job_id
            self.generation += 1


def _with_int_set_id(fields: dict[str, Any]) -> dict[str, Any]:
    """Set ids of an edit are local store ids (a LAN set id here is simply not one of them)."""
    if "id" not in fields:
        return fields
    return {**fields, "id": int_id(fields["id"], "set id")}
