"""LAN queues: jobs replicated between the nodes that joined the queue, over `sync.LanService`.

Ids are UUID strings. A job's record is written only by its home node, so every change here is
an edit the service makes at the home (forwarding it when the home is another node). Sets are
not edited in place and not added to existing jobs (a job is built in the local queue and moved
here whole); counts are at least 1. Holding a set for the driver is a lease with a fencing token
from the job's home.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BadRequest, Conflict, NotFound, Unavailable
from ..model import Job, JobRef, PrintSet, Strategy
from ..sync import views
from ..sync.edits import EDITABLE, rank_after
from .base import Pick, PortableJob, PortableSet, Queue, QueueInfo, is_no_id

if TYPE_CHECKING:
    from ..sync.directory import LanQueue
    from ..sync.records import JobRecord
    from ..sync.service import LanService

__all__ = ["LanJobQueue", "LanProvider"]

MAX_ID = 100


class LanJobQueue:
    """`base.Queue` for one joined LAN queue."""

    def __init__(self, service: LanService, name: str) -> None:
        self.service = service
        self.name = name

    def parse_job_id(self, raw: Any) -> str:
        if not isinstance(raw, str) or not raw or len(raw) > MAX_ID:
            raise BadRequest("a LAN job id is a string")
        return raw

    @property
    def _q(self) -> LanQueue:
        return self.service.queue(self.name)

    def _record(self, job_id: str) -> JobRecord:
        rec = self._q.core.records.get(job_id)
        if rec is None or rec.tombstone:
            raise NotFound(f"no job {job_id} in {self.name}")
        return rec

    def _job(self, rec: JobRecord) -> Job:
        return views.job_of(self._q, rec, self.service.node_id, self.service.directory)

    # --- reading ---------------------------------------------------------------------------

    async def jobs(self) -> list[Job]:
        q, service = self._q, self.service
        online = service.directory.online(self.name)
        jobs = [views.job_of(q, r, service.node_id, service.directory, online) for r in views.ordered(q)]
        self._local_gcode(jobs)
        return jobs

    def _local_gcode(self, jobs: list[Job]) -> None:
        """A file this node holds is described from its own index (its thumbnail is served
        here); otherwise from the record, without a thumbnail this node cannot serve."""
        meta = self.service.files.meta
        for job in jobs:
            for s in job.sets:
                local = meta.view_by_digest(s.hash) if meta is not None and s.hash else None
                if local is not None:
                    s.gcode = local
                elif s.gcode is not None and s.gcode.get("thumbnail"):
                    s.gcode = {**s.gcode, "thumbnail": None}

    async def job(self, job_id: str) -> Job:
        return self._job(self._record(job_id))

    async def info(self) -> QueueInfo:
        return QueueInfo(addr=self.service.node_id, peers=views.peers_of(self._q, self.service.directory))

    def cache_key(self) -> Hashable | None:
        return None  # records, peers and their liveness change without a write here

    # --- editing ---------------------------------------------------------------------------

    async def add_set(self, fields: dict[str, Any], *, job_id: str | None, job_name: str | None,
                      job_draft: bool) -> tuple[int | str, PrintSet]:
        if not is_no_id(job_id):
            raise BadRequest("sets cannot be added to a LAN job; build the job in the local queue and move it")
        if fields.get("count", 1) < 1:
            raise BadRequest("a LAN set prints at least one copy: count must be 1 or more")
        s = await self.service.set_record(fields)
        new_id = str(uuid.uuid4())
        await self.service.submit(self.name, new_id, job_name or Path(s.path).stem, [s], 1,
                                  draft=bool(job_draft), created=time.time())
        return new_id, self._job(self._record(new_id)).sets[0]

    async def add_job(self, name: str) -> Job:
        raise BadRequest("create LAN jobs with set/add or by moving a local job into the LAN queue")

    async def edit_job(self, job_id: str, changes: dict[str, Any]) -> Job:
        self._record(job_id)
        unsupported = set(changes) - set(EDITABLE)
        if unsupported:
            raise BadRequest(f"on a LAN job only {', '.join(EDITABLE)} can be edited, not {sorted(unsupported)}")
        allowed = {k: changes[k] for k in EDITABLE if k in changes}
        if allowed:
            await self.service.edit(self.name, job_id, "update", allowed)
        return self._job(self._record(job_id))

    async def remove_jobs(self, job_ids: Sequence[str]) -> int:
        return await self._each(job_ids, "delete")

    async def reset_jobs(self, job_ids: Sequence[str]) -> int:
        return await self._each(job_ids, "reset")

    async def _each(self, job_ids: Sequence[str], op: str) -> int:
        n = 0
        for job_id in job_ids:
            rec = self._q.core.records.get(job_id)
            if rec is None or rec.tombstone:
                continue
            await self.service.edit(self.name, job_id, op, {})
            n += 1
        return n

    async def move_within(self, job_id: str, after_id: str | None) -> None:
        self._record(job_id)
        rank = rank_after(views.ordered(self._q), job_id, None if is_no_id(after_id) else after_id)
        if rank is None:
            raise NotFound(f"no job {after_id} in {self.name}")
        await self.service.edit(self.name, job_id, "update", {"rank": rank})

    async def export_job(self, job_id: str) -> PortableJob:
        rec = self._record(job_id)
        if rec.lease_holder is not None:
            raise Conflict("the job is being printed; wait until it is released")
        sets = []
        for s in rec.sets:
            path = await self.service.local_file(self._q, s)
            if path is None:
                raise Unavailable(f"the file {s.path} is not available from any peer")
            sets.append(PortableSet(path=path, count=s.count, materials=tuple(m or None for m in s.materials),
                                    profiles=tuple(s.profiles)))
        return PortableJob(name=rec.name, count=rec.count, draft=rec.draft, created=rec.created, sets=tuple(sets))

    async def import_job(self, job: PortableJob) -> str:
        if not job.sets:
            raise BadRequest("the job has no sets")
        records = [await self.service.set_record({"path": s.path, "count": s.count, "materials": s.materials,
                                                  "profiles": s.profiles, "sd": s.sd}) for s in job.sets]
        new_id = str(uuid.uuid4())
        await self.service.submit(self.name, new_id, job.name, records, max(1, job.count),
                                  draft=job.draft, created=job.created)
        return new_id

    # --- the driver's side -----------------------------------------------------------------

    async def hold_next(self, profile: str, loaded: Sequence[str | None], strategy: Strategy,
                        fits: Callable[[PrintSet], bool] | None = None) -> Pick:
        return Pick(await self.service.acquire_next(self.name, profile, list(loaded), fits))

    async def finish(self, ref: JobRef, result: str, run_id: int) -> None:
        await self.service.finish_run(ref, result, run_id)

    async def release(self, ref: JobRef) -> None:
        await self.service.release(ref)


class LanProvider:
    """Every LAN queue the node has joined (joining and leaving change what it answers)."""

    def __init__(self, service: LanService) -> None:
        self.service = service
        self._queues: dict[str, LanJobQueue] = {}

    def queue(self, name: str) -> Queue | None:
        if not self.service.has_queue(name):
            return None
        q = self._queues.get(name)
        if q is None:
            q = self._queues[name] = LanJobQueue(self.service, name)
        return q
