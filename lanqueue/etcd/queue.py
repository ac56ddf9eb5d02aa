"""A queue kept in etcd: the asyncio adapter around the rules of core.py.

It keeps a view of the queue's keys, loaded once and then kept current by an etcd watch that
resumes from the last revision it saw (no polling). Reads (the page, `state/get`) come from that
view; every change is one etcd transaction built by core.py, retried when another node won a race.

This node holds two etcd leases while the queue is joined: the *print lease* (TTL) under which its
holds live, and the *lock-delay lease* (TTL + lock-delay) under which their fences live; both are
kept alive every TTL/3. The node trusts a hold only until (when it sent the last successful
keep-alive) + TTL x (1 - margin) on its own monotonic clock, as a LAN holder does (S7).

A finished print is written to the node's SQLite outbox in the same transaction as its history
row, then delivered to etcd until etcd answers; a node cut off from etcd keeps printing what it
holds, starts nothing new, and delivers its completions when etcd is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from ..errors import BadRequest, Conflict, NotFound, Unavailable
from ..model import (
    Job,
    JobRef,
    PrintSet,
    Replica,
    Strategy,
    choose_next,
    rank_between,
    reset_job,
)
from ..queues.base import Pick, PortableJob, PortableSet, QueueInfo
from . import core
from .client import EtcdClient, EtcdError, EtcdUnavailable, KeyValue
from .signing import FILE_ROUTE, SIGNATURE_HEADER, file_signature
from .txn import Compare, Put, Range, prefix_end

if TYPE_CHECKING:
    from ..files import FileStore
    from ..store import Store

__all__ = ["FILE_ROUTE", "MIGRATIONS", "EtcdContext", "EtcdQueue", "file_signature"]

log = logging.getLogger(__name__)

RETRIES = 20


async def _v1(db: Any) -> None:
    await db.execute(
        "CREATE TABLE etcd_outbox (id INTEGER PRIMARY KEY, queue TEXT NOT NULL, job_id TEXT NOT NULL,"
        " token INTEGER NOT NULL, set_index INTEGER NOT NULL, key TEXT NOT NULL UNIQUE, result TEXT NOT NULL)"
    )
    await db.execute(
        "CREATE TABLE etcd_held (queue TEXT NOT NULL, job_id TEXT NOT NULL, token INTEGER NOT NULL,"
        " PRIMARY KEY (queue, job_id))"
    )


MIGRATIONS = [_v1]


@dataclass(frozen=True)
class EtcdContext:
    """What every etcd queue of a node shares: who this node is and where its files are."""

    node_id: str
    node_name: str
    node_url: str
    store: Store
    files: FileStore
    ttl: float = 60.0
    lock_delay: float = 60.0
    margin: float = 0.25
    clock: Callable[[], float] = time.monotonic
    on_change: Callable[[], None] = lambda: None
    #: called with (queue, job id) when this node's lease lapsed, by its own clock, while it
    #: holds a job (a freeze, etcd out of reach): the print must get no further line
    on_lease_lapsed: Callable[[str, str], Awaitable[None]] | None = None


class EtcdQueue:
    """One etcd queue as the node's `Queue` (lanqueue.queues.base)."""

    def __init__(self, name: str, client: EtcdClient, ctx: EtcdContext) -> None:
        self.name = name
        self.client = client
        self.ctx = ctx
        self.keys = core.Keys(name)
        self.docs: dict[str, tuple[core.JobDoc, int]] = {}
        self.holds: dict[str, core.Hold] = {}
        self.fences: set[str] = set()
        self.nodes: dict[str, dict[str, Any]] = {}
        self.revision = 0
        self.reachable = False
        self.unreachable_since: float | None = time.time()
        self.last_error: str | None = "not connected yet"
        self._print_lease = 0
        self._fence_lease = 0
        self._valid_until = float("-inf")
        self._secret = b""
        self._tasks: set[asyncio.Task[None]] = set()
        self._outbox_kick = asyncio.Event()
        self._loaded = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._generation = 0
        self._watch: asyncio.Task[None] | None = None
        self._behind = 0  # consecutive checks that found the watch behind etcd
        self._wanted: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

    # --- life --------------------------------------------------------------------------------

    async def async_start(self) -> None:
        await self.ctx.store.migrate_component("etcd", MIGRATIONS)
        for coro in (self._keepalive_loop(), self._outbox_loop(), self._prefetch_loop()):
            task = asyncio.create_task(coro, name=f"etcd-{self.name}")
            self._tasks.add(task)
        self._restart_watch()

    def _restart_watch(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        self._watch = asyncio.create_task(self._watch_loop(), name=f"etcd-watch-{self.name}")

    async def async_close(self) -> None:
        if self._watch is not None:
            self._tasks.add(self._watch)
            self._watch = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()
        with contextlib.suppress(EtcdError):
            if self._print_lease:
                await asyncio.wait_for(self.client.lease_revoke(self._print_lease), 2)
        with contextlib.suppress(EtcdError, TimeoutError):
            await asyncio.wait_for(self.client.async_close(), 2)

    async def wait_loaded(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self._loaded.wait(), timeout)

    # --- leases --------------------------------------------------------------------------------

    def lease_valid(self) -> bool:
        """Whether this node may still trust its holds, by its own monotonic clock."""
        return self.ctx.clock() < self._valid_until

    async def _keepalive_loop(self) -> None:
        while True:
            await self._stop_lapsed()
            try:
                await self._keepalive_once()
                self._set_reachable(None)
                await self._check_watch()
            except EtcdError as e:
                self._set_reachable(str(e))
            await asyncio.sleep(self.ctx.ttl / 3 if self.reachable else min(1.0, self.ctx.ttl / 3))

    async def _stop_lapsed(self) -> None:
        """Checked before every renewal, so the first thing a thawed node does is stop a copy
        whose lease lapsed while it was frozen (another printer may take it after TTL +
        lock-delay by etcd's clock; this node's own clock says TTL x (1 - margin))."""
        if self.ctx.on_lease_lapsed is None or self._valid_until == float("-inf") or self.lease_valid():
            return
        rows = await self.ctx.store.fetchall("SELECT job_id, token FROM etcd_held WHERE queue=?", (self.name,))
        for row in rows:
            if not await self._pending_completion(row["job_id"], row["token"]):
                log.warning("etcd queue %s: the lease of %s lapsed by this node's clock; stopping its print",
                            self.name, row["job_id"][:8])
                await self.ctx.on_lease_lapsed(self.name, row["job_id"])

    async def _check_watch(self) -> None:
        """A watch on a member that was cut off from the others stays open and silent. Restart
        it on the endpoint that answers calls when they differ, or when etcd holds writes under
        the prefix that the watch has not delivered at two checks in a row."""
        watching = self.client.watching
        if watching is not None and watching != self.client.preferred:
            log.info("etcd queue %s: watch moves from %s to %s", self.name, watching, self.client.preferred)
            self._restart_watch()
            return
        if not self._loaded.is_set():
            return
        missed = await self.client.count_changed_since(self.keys.prefix, prefix_end(self.keys.prefix), self.revision)
        self._behind = self._behind + 1 if missed else 0
        if self._behind >= 2:
            log.info("etcd queue %s: watch fell behind (%d changes); restarting it", self.name, missed)
            self._behind = 0
            self._restart_watch()

    async def _keepalive_once(self) -> None:
        sent = self.ctx.clock()
        if self._print_lease and await self.client.lease_keepalive(self._print_lease) > 0:
            await self.client.lease_keepalive(self._fence_lease)
            self._valid_until = sent + self.ctx.ttl * (1 - self.ctx.margin)
            return
        # first start, or the lease expired while etcd could not hear us: its holds are gone
        if self._print_lease:
            log.warning("etcd queue %s: this node's lease expired; its holds are gone", self.name)
        self._print_lease = await self.client.lease_grant(self.ctx.ttl)
        self._fence_lease = await self.client.lease_grant(self.ctx.ttl + self.ctx.lock_delay)
        self._valid_until = sent + self.ctx.ttl * (1 - self.ctx.margin)
        await self.client.put(self.keys.node(self.ctx.node_id), json.dumps(
            {"name": self.ctx.node_name, "url": self.ctx.node_url}).encode(), lease=self._print_lease)
        await self._ensure_secret()
        await self._release_stale_holds()

    async def _ensure_secret(self) -> None:
        made = uuid.uuid4().bytes + uuid.uuid4().bytes
        result = await self.client.txn([Compare(self.keys.secret, "CREATE", 0)],
                                       [Put(self.keys.secret, made)], [Range(self.keys.secret)])
        self._secret = made if result.succeeded else result.ranges[0][0].value

    async def _release_stale_holds(self) -> None:
        """After a restart (new leases), holds this node had are interrupted prints: give them
        back at once instead of after TTL + lock-delay."""
        rows = await self.ctx.store.fetchall("SELECT job_id, token FROM etcd_held WHERE queue=?", (self.name,))
        for row in rows:
            pending = await self._pending_completion(row["job_id"], row["token"])
            if not pending:
                await self._send(core.plan_release(self.keys, row["job_id"], row["token"]))
                await self._forget_held(row["job_id"])

    def _changed(self) -> None:
        self._generation += 1
        self.ctx.on_change()

    def _set_reachable(self, error: str | None) -> None:
        was = self.reachable
        self.reachable = error is None
        self.last_error = error
        if error is None:
            self.unreachable_since = None
            if not was:
                self._outbox_kick.set()
        elif self.unreachable_since is None:
            self.unreachable_since = time.time()
            log.warning("etcd queue %s unreachable: %s (no new prints start here)", self.name, error)
        if was != self.reachable:
            self._changed()

    # --- the view, kept by a watch ----------------------------------------------------------------

    async def _watch_loop(self) -> None:
        backoff = 0.2
        while True:
            try:
                if not self._loaded.is_set() or self.revision == 0:
                    await self._load()
                async for rev, events in self.client.watch(self.keys.prefix, prefix_end(self.keys.prefix),
                                                           self.revision + 1):
                    for ev in events:
                        self._apply(ev.kind, ev.kv)
                    if events:
                        self.revision = max(self.revision, rev)
                        self._changed()
                    backoff = 0.2
            except EtcdError as e:
                if "compacted" in str(e):
                    self.revision = 0
                log.info("etcd queue %s: watch interrupted (%s); resuming", self.name, e)
            except (aiohttp.ClientError, OSError, ValueError) as e:
                log.info("etcd queue %s: watch stream broke (%s); resuming", self.name, e)
            except Exception:  # noqa: BLE001 - a bug must not end the queue's view for good
                log.exception("etcd queue %s: watch failed; resuming", self.name)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _load(self) -> None:
        kvs, rev = await self.client.range(self.keys.prefix, prefix_end(self.keys.prefix))
        self.docs.clear()
        self.holds.clear()
        self.fences.clear()
        self.nodes.clear()
        for kv in kvs:
            self._apply("PUT", kv)
        self.revision = rev
        self._loaded.set()
        self._changed()

    def _apply(self, kind: str, kv: KeyValue) -> None:
        what, ident = self.keys.kind(kv.key)
        deleted = kind == "DELETE"
        try:
            if what == "job":
                if deleted:
                    self.docs.pop(ident, None)
                else:
                    doc = core.JobDoc.decode(self.name, kv.value)
                    self.docs[ident] = (doc, kv.mod_revision)
                    self._want_files(doc)
            elif what == "hold":
                if deleted:
                    self.holds.pop(ident, None)
                else:
                    self.holds[ident] = core.Hold.decode(kv.value, kv.create_revision)
            elif what == "fence":
                (self.fences.discard if deleted else self.fences.add)(ident)
            elif what == "node":
                if deleted:
                    self.nodes.pop(ident, None)
                else:
                    self.nodes[ident] = json.loads(kv.value)
        except (core.DocError, ValueError) as e:
            log.warning("etcd queue %s: ignoring damaged key %r: %s", self.name, kv.key[:80], e)

    # --- reads ------------------------------------------------------------------------------------

    def parse_job_id(self, raw: Any) -> str:
        text = str(raw) if raw is not None else ""
        try:
            return str(uuid.UUID(text))
        except ValueError:
            raise BadRequest(f"a job id of etcd queue {self.name!r} is a UUID, not {text[:40]!r}") from None

    async def jobs(self) -> list[Job]:
        out = []
        have = {str(f["sha256"]) for f in (await self.ctx.store.files()).values()}
        others = self._peer_count() > 0
        for job_id, (doc, rev) in sorted(self.docs.items(), key=lambda kv: (kv[1][0].job.rank, kv[1][0].job.created)):
            job = replace(doc.job, sets=[replace(s) for s in doc.job.sets])
            for s, digest in zip(job.sets, doc.hashes, strict=True):
                s.missing_file = digest not in have and not others
            hold = self.holds.get(job_id)
            job.acquired = hold is not None
            job.replica = Replica(
                acquired_by=hold.holder if hold else None,
                acquired_by_name=(hold.holder_name if hold else None),
                home="etcd", home_name="etcd", home_online=self.reachable, epoch=0, version=rev,
                hash=doc.hashes[0] if doc.hashes else None, conflicts=doc.conflicts,
            )
            out.append(job)
        return out

    def _peer_count(self) -> int:
        return sum(1 for n in self.nodes if n != self.ctx.node_id)

    def cache_key(self) -> Hashable:
        """Bumped with every change of the view (records, holds, members, reachability)."""
        return (self._generation, self.ctx.files.generation)

    async def info(self) -> QueueInfo:
        peers = {
            node_id: {"name": n.get("name"), "status": "online", "online": True, "profile": {"name": None},
                      "active_set": None, "acquired": [j for j, h in self.holds.items() if h.holder == node_id]}
            for node_id, n in self.nodes.items() if node_id != self.ctx.node_id
        }
        return QueueInfo(addr=self.ctx.node_id, peers=peers, link=self.status())

    def status(self) -> dict[str, Any]:
        """What the page shows about the queue's link to etcd."""
        return {"kind": "etcd", "reachable": self.reachable, "since": self.unreachable_since,
                "error": self.last_error, "endpoints": self.client.endpoints,
                "meaning": None if self.reachable else
                f"no new job starts here; a print already running goes on for up to "
                f"{self.ctx.ttl * (1 - self.ctx.margin):.0f} s from the last renewal (then it is stopped: another "
                "printer may take the copy) and its completion waits in this node's outbox until etcd is back"}

    # --- writes -------------------------------------------------------------------------------------

    async def _send(self, plan: core.Plan) -> Any:
        try:
            result = await self.client.txn(plan.compare, plan.success, plan.failure)
        except EtcdUnavailable as e:
            self._set_reachable(str(e))
            raise Unavailable(f"etcd queue {self.name}: {e}") from None
        return result

    async def _read(self, job_id: str) -> tuple[core.JobDoc, int]:
        kvs, _ = await self.client.range(self.keys.job(job_id))
        if not kvs:
            raise NotFound(f"no job {job_id} in etcd queue {self.name}")
        return core.JobDoc.decode(self.name, kvs[0].value), kvs[0].mod_revision

    async def _update(self, job_id: str, change: Callable[[core.JobDoc], core.JobDoc]) -> Job:
        for _ in range(RETRIES):
            doc, rev = await self._read(job_id)
            new = change(doc)
            if (await self._send(core.plan_update(self.keys, new, rev))).succeeded:
                return new.job
        raise Conflict(f"job {job_id} kept changing; try again")

    async def _digest(self, path: str) -> str:
        files = await self.ctx.store.files()
        entry = files.get(path)
        if entry is None:
            raise BadRequest(f"{path} is not an uploaded file: a job of an etcd queue needs its file on this node")
        return str(entry["sha256"])

    def _last_rank(self) -> float:
        return max((d.job.rank for d, _ in self.docs.values()), default=0.0)

    async def _new_job(self, name: str, count: int, draft: bool, sets: list[tuple[PrintSet, str]]) -> core.JobDoc:
        job_id = str(uuid.uuid4())
        ps = [replace(s, id=f"{job_id}_{i}", rank=float(i)) for i, (s, _) in enumerate(sets)]
        job = Job(id=job_id, queue=self.name, name=name, count=count, remaining=count, draft=draft,
                  created=int(time.time()), rank=rank_between(self._last_rank(), None), sets=ps)
        doc = core.JobDoc(job, tuple(h for _, h in sets))
        if not (await self._send(core.plan_create(self.keys, doc))).succeeded:
            raise Conflict("a job with that id exists")
        return doc

    def _set_from_fields(self, f: dict[str, Any]) -> PrintSet:
        count = int(f.get("count", 1))
        if count < 1:
            raise BadRequest("a set of an etcd queue job prints at least one copy")
        return PrintSet(id="", path=f["path"], count=count, remaining=count,
                        materials=list(f.get("materials", [])), profiles=list(f.get("profiles", [])),
                        metadata=f.get("metadata"))

    async def add_set(self, fields: dict[str, Any], *, job_id: str | None, job_name: str | None,
                      job_draft: bool) -> tuple[int | str, PrintSet]:
        new_set = self._set_from_fields(fields)
        digest = await self._digest(new_set.path)
        if job_id is None:
            doc = await self._new_job(job_name or Path(new_set.path).stem, 1, job_draft, [(new_set, digest)])
            return doc.job.id, doc.job.sets[0]

        def add(doc: core.JobDoc) -> core.JobDoc:
            index = len(doc.job.sets)
            s = replace(new_set, id=f"{doc.job.id}_{index}", rank=float(index))
            return replace(doc, job=replace(doc.job, sets=[*doc.job.sets, s]), hashes=(*doc.hashes, digest))

        job = await self._update(self.parse_job_id(job_id), add)
        return job.id, job.sets[-1]

    async def add_job(self, name: str) -> Job:
        return (await self._new_job(name, 1, True, [])).job

    async def edit_job(self, job_id: str, changes: dict[str, Any]) -> Job:
        unknown = set(changes) - {"name", "count", "remaining", "draft"}
        if unknown:
            raise BadRequest(f"a job of an etcd queue can change name, count, remaining and draft; not {sorted(unknown)}")

        def edit(doc: core.JobDoc) -> core.JobDoc:
            job = replace(doc.job, **changes)
            if "count" in changes and "remaining" not in changes:  # keep the runs already done
                job.remaining = max(0, job.count - (doc.job.count - doc.job.remaining))
            if job.remaining > job.count:
                raise BadRequest("a job's remaining cannot exceed its count")
            return replace(doc, job=job)

        return await self._update(job_id, edit)

    async def remove_jobs(self, job_ids: Sequence[str]) -> int:
        removed = 0
        for job_id in job_ids:
            if job_id in self.holds:
                raise Conflict(f"job {job_id} is being printed by {self.holds[job_id].holder_name}")
            for _ in range(RETRIES):
                try:
                    _doc, rev = await self._read(job_id)
                except NotFound:
                    break
                if (await self._send(core.plan_delete(self.keys, job_id, rev))).succeeded:
                    removed += 1
                    break
        return removed

    async def reset_jobs(self, job_ids: Sequence[str]) -> int:
        done = 0
        for job_id in job_ids:
            with contextlib.suppress(NotFound):
                await self._update(job_id, lambda d: replace(d, job=reset_job(d.job)))
                done += 1
        return done

    async def move_within(self, job_id: str, after_id: str | None) -> None:
        ordered = [d.job for d, _ in sorted(self.docs.values(), key=lambda v: v[0].job.rank) if d.job.id != job_id]
        if after_id is None:
            rank = rank_between(None, ordered[0].rank if ordered else None)
        else:
            index = next((i for i, j in enumerate(ordered) if j.id == after_id), None)
            if index is None:
                raise NotFound(f"no job {after_id} in etcd queue {self.name}")
            following = ordered[index + 1].rank if index + 1 < len(ordered) else None
            rank = rank_between(ordered[index].rank, following)
        await self._update(job_id, lambda d: replace(d, job=replace(d.job, rank=rank)))

    async def export_job(self, job_id: str) -> PortableJob:
        doc, _ = await self._read(job_id)
        if job_id in self.holds:
            raise Conflict(f"job {job_id} is being printed and cannot leave its queue now")
        sets = []
        for s, digest in zip(doc.job.sets, doc.hashes, strict=True):
            path = await self._local_file(digest, s.path)
            if path is None:
                raise Unavailable(f"the file {s.path} of job {job_id} cannot be had from any node")
            sets.append(PortableSet(path=path, count=s.count, materials=tuple(s.materials),
                                    profiles=tuple(s.profiles), metadata=s.metadata))
        return PortableJob(name=doc.job.name, count=doc.job.count, draft=doc.job.draft,
                           created=doc.job.created, sets=tuple(sets))

    async def import_job(self, job: PortableJob) -> str:
        sets = []
        for p in job.sets:
            s = self._set_from_fields({"path": p.path, "count": p.count, "materials": list(p.materials),
                                       "profiles": list(p.profiles), "metadata": p.metadata})
            sets.append((s, await self._digest(p.path)))
        doc = await self._new_job(job.name, job.count, job.draft, sets)
        return str(doc.job.id)

    # --- the driver's side --------------------------------------------------------------------------

    async def hold_next(self, profile: str, loaded: Sequence[str | None], strategy: Strategy,
                        fits: Callable[[PrintSet], bool] | None = None) -> Pick:
        if not self.reachable or not self.lease_valid():
            return Pick(None)
        free = [d.job for job_id, (d, _) in self.docs.items() if job_id not in self.holds and job_id not in self.fences]
        waiting = 0
        while free:
            choice = choose_next(free, profile, loaded, strategy, fits)
            if choice is None:
                break
            job, chosen = choice
            free.remove(job)
            job_id = str(job.id)
            doc, rev = self.docs[job_id]
            index = job.sets.index(chosen)
            path = await self._local_file(doc.hashes[index], doc.job.sets[index].path)
            if path is None:
                waiting += 1
                continue
            hold = core.Hold(self.ctx.node_id, self.ctx.node_name, index)
            result = await self._send(core.plan_grant(self.keys, job_id, rev, hold, self._print_lease, self._fence_lease))
            if not result.succeeded:
                continue
            token = result.revision  # the hold key's create revision
            await self._remember_held(job_id, token)
            return Pick(JobRef(self.name, job_id, job.name, chosen.id, path, tuple(chosen.materials), token), waiting)
        return Pick(None, waiting)

    async def finish(self, ref: JobRef, result: str, run_id: int) -> None:
        """End the run and, on success, queue the completion, in one local transaction."""
        index = int(str(ref.set_id).rsplit("_", 1)[1])
        key = f"{self.ctx.node_id}:{ref.token}:{uuid.uuid4().hex}"

        async def work(db: Any) -> None:
            await db.execute("UPDATE runs SET end=?, result=? WHERE id=? AND end IS NULL", (time.time(), result, run_id))
            if result == "success":
                await db.execute(
                    "INSERT INTO etcd_outbox(queue, job_id, token, set_index, key, result) VALUES (?, ?, ?, ?, ?, ?)",
                    (self.name, str(ref.job_id), ref.token or 0, index, key, result))

        await self.ctx.store.transaction(work)
        if result == "success":
            self._outbox_kick.set()
            with contextlib.suppress(EtcdError, TimeoutError):
                await asyncio.wait_for(self._deliver_all(), 5)

    async def release(self, ref: JobRef) -> None:
        job_id = str(ref.job_id)
        if ref.token is None or await self._pending_completion(job_id, ref.token):
            return  # the completion's own transaction lets go of the hold
        with contextlib.suppress(EtcdError):
            await self._send(core.plan_release(self.keys, job_id, ref.token))
        await self._forget_held(job_id)

    async def _remember_held(self, job_id: str, token: int) -> None:
        """Durable before the print starts: after a crash the node knows what it held."""

        async def work(db: Any) -> None:
            await db.execute("INSERT OR REPLACE INTO etcd_held(queue, job_id, token) VALUES (?, ?, ?)",
                             (self.name, job_id, token))

        await self.ctx.store.transaction(work)

    async def _forget_held(self, job_id: str) -> None:
        await self.ctx.store.transaction(lambda db: db.execute(
            "DELETE FROM etcd_held WHERE queue=? AND job_id=?", (self.name, job_id)))

    async def _pending_completion(self, job_id: str, token: int) -> bool:
        rows = await self.ctx.store.fetchall(
            "SELECT 1 FROM etcd_outbox WHERE queue=? AND job_id=? AND token=?", (self.name, job_id, token))
        return bool(rows)

    # --- the outbox -----------------------------------------------------------------------------------

    async def _outbox_loop(self) -> None:
        while True:
            await self._outbox_kick.wait()
            self._outbox_kick.clear()
            try:
                await self._deliver_all()
            except EtcdError as e:
                self._set_reachable(str(e))
                await asyncio.sleep(1.0)
                self._outbox_kick.set()

    async def _deliver_all(self) -> None:
        rows = await self.ctx.store.fetchall(
            "SELECT id, job_id, token, set_index, key FROM etcd_outbox WHERE queue=? ORDER BY id", (self.name,))
        for row in rows:
            await self._deliver(row["job_id"], row["token"], row["set_index"], row["key"])

            async def forget(db: Any, r: Any = row) -> None:
                await db.execute("DELETE FROM etcd_outbox WHERE id=?", (r["id"],))
                await db.execute("DELETE FROM etcd_held WHERE queue=? AND job_id=? AND token=?",
                                 (self.name, r["job_id"], r["token"]))

            await self.ctx.store.transaction(forget)

    async def _deliver(self, job_id: str, token: int, index: int, key: str) -> str:
        """Count the completion once if its hold is still current, else record a conflict."""
        report = json.dumps({"node": self.ctx.node_id, "name": self.ctx.node_name, "token": token, "set": index}).encode()
        for _ in range(RETRIES):
            try:
                doc, rev = await self._read(job_id)
            except NotFound:
                return "job deleted"
            done, _ = await self.client.range(self.keys.done(job_id, key))
            if done:
                return "already applied"
            result = await self.client.txn(*_parts(core.plan_complete(self.keys, doc, rev, token, key, index, report)))
            if result.succeeded:
                return "counted"
            holds, _ = await self.client.range(self.keys.hold(job_id))
            if holds and holds[0].create_revision == token:
                continue  # the job changed meanwhile: read again
            conflict = {"reason": "completion after its hold was lost (lease expired or released)",
                        "node": self.ctx.node_id, "node_name": self.ctx.node_name, "token": token,
                        "set": index, "at": int(time.time())}
            if (await self.client.txn(*_parts(core.plan_conflict(self.keys, doc, rev, key, conflict, report)))).succeeded:
                log.warning("etcd queue %s: completion of %s (token %d) not counted: its hold was lost",
                            self.name, job_id[:8], token)
                return "conflict"
        raise EtcdError(f"completion of {job_id} could not be applied; will retry")

    # --- files --------------------------------------------------------------------------------------

    async def _local_file(self, digest: str, name: str) -> str | None:
        path = await self.ctx.store.file_by_digest(digest)
        if path is not None and self.ctx.files.exists(path):
            return path
        return await self._fetch(digest, name)

    def _want_files(self, doc: core.JobDoc) -> None:
        """Fetch the files of queued jobs ahead of time, so a job outlives the node it came from."""
        if doc.job.remaining > 0:
            for s, digest in zip(doc.job.sets, doc.hashes, strict=True):
                self._wanted.put_nowait((digest, s.path))

    async def _prefetch_loop(self) -> None:
        while True:
            digest, name = await self._wanted.get()
            try:
                if await self._local_file(digest, name) is None:
                    await asyncio.sleep(1.0)  # no member has it yet: ask again later
                    if any(digest in d.hashes for d, _ in self.docs.values()):
                        self._wanted.put_nowait((digest, name))
            except Exception as e:  # noqa: BLE001 - a failed prefetch is retried at use
                log.info("prefetching %s failed: %s", digest[:12], e)

    async def _fetch(self, digest: str, name: str) -> str | None:
        target = f"etcd/{digest[:16]}-{Path(name).name}"
        headers = {SIGNATURE_HEADER: file_signature(self._secret, self.name, digest)}
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=2, sock_read=30))
        for node_id, n in list(self.nodes.items()):
            if node_id == self.ctx.node_id or not isinstance(n.get("url"), str) or not self._secret:
                continue
            url = n["url"] + FILE_ROUTE.format(queue=self.name, digest=digest)
            try:
                async with self._session.get(url, headers=headers) as resp:
                    if resp.status != 200:
                        log.info("fetching %s from %s: %d", digest[:12], node_id[:8], resp.status)
                        continue
                    staged = await self.ctx.files.stage(target, resp.content.iter_chunked(64 * 1024))
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                log.info("fetching %s from %s failed: %s", digest[:12], node_id[:8], e)
                continue
            if staged.sha256 != digest:
                log.warning("file %s from %s does not match its digest; rejected", digest[:12], node_id[:8])
                self.ctx.files.discard(staged)
                continue
            stored = await self.ctx.files.async_commit(staged)
            await self.ctx.store.record_file(stored.path, stored.sha256, stored.size)
            return stored.path
        return None

    def file_secret(self) -> bytes:
        return self._secret


def _parts(plan: core.Plan) -> tuple[Any, Any, Any]:
    return plan.compare, plan.success, plan.failure
