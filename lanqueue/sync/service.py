"""The asyncio adapter of the LAN queues: runs one protocol core per joined queue.

It does only I/O around `LanNodeCore`: persists what the core says (before anything after it),
delivers the core's messages over signed HTTP, feeds received messages and timer ticks back,
fetches and verifies job files, and answers what the rest of the node asks (the driver: "what
can I print?", the API: "show me the queue", "add or change a job"). Each queue has one lock:
a core call and the persisting of its results happen under it, so no message leaves before the
state it depends on is durable, and the core never sees two inputs at once.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BadRequest, Conflict, NotFound, Unavailable
from ..files import FileStore
from ..model import LOCAL, PrintSet, set_printable
from ..runner import JobRef
from ..store import Store
from . import codec
from .errors import LocalProtocolError, RemoteProtocolError
from .messages import (
    AcquireFailed,
    Action,
    ConflictRecorded,
    CompletionApplied,
    DigestRequest,
    Event,
    GrantEnded,
    GrantLive,
    LeaseAcquired,
    LeaseLost,
    Message,
    Persist,
    RecordChanged,
    Send,
)
from . import views
from .fetch import FILE_PATH, FileFetcher
from .persistence import LanPersistence
from .protocol import LanNodeCore
from .records import JobRecord, SetRecord, Timings
from .transport import PeerClient, PeerRequestFailed

__all__ = ["LanService", "LanQueue", "PeerDirectory", "MESSAGE_PATH", "EDIT_PATH", "FILE_PATH"]

log = logging.getLogger(__name__)
MESSAGE_PATH = "/lanqueue/peer/v1/message"
EDIT_PATH = "/lanqueue/peer/v1/edit"
TICK = 0.5
ACQUIRE_WAIT = 5.0


class PeerDirectory:
    """Where peers are: node id -> base URL of the online, trusted peers of a queue."""

    def __init__(self, discovery: Any) -> None:
        self.discovery = discovery

    def online(self, queue: str) -> dict[str, str]:
        if self.discovery is None:
            return {}
        return {p.node_id: p.base_url for p in self.discovery.online_peers(queue) if p.base_url}

    def name_of(self, node_id: str) -> str:
        if self.discovery is not None:
            for p in self.discovery.peers:
                if p.node_id == node_id:
                    return p.info.name
        return node_id[:8]

    def snapshot(self) -> list[dict[str, Any]]:
        return self.discovery.snapshot() if self.discovery is not None else []


@dataclass
class LanQueue:
    name: str
    secret: bytes
    core: LanNodeCore
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class LanService:
    """Every LAN queue this node has joined."""

    def __init__(
        self,
        node_id: str,
        store: Store,
        files: FileStore,
        secrets: dict[str, str],
        *,
        directory: PeerDirectory,
        timings: Timings | None = None,
        history_file: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node_id = node_id
        self.store = store
        self.files = files
        self.directory = directory
        self.timings = timings or Timings()
        self.persistence = LanPersistence(store)
        self.client = PeerClient(node_id)
        self.fetcher = FileFetcher(store, files, self.client, directory)
        self.queues: dict[str, LanQueue] = {}
        self._secrets = {name: secret.encode() for name, secret in secrets.items()}
        self._clock = clock
        self._waiters: dict[tuple[str, str], asyncio.Future[int | None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._fetching: set[str] = set()
        self._listeners: list[Callable[[], None]] = []
        self._history = history_file
        self._counts = {"grants": 0, "conflicts": 0, "completions_applied": 0}

    # --- life ------------------------------------------------------------------------------

    async def async_start(self) -> None:
        await self.persistence.async_setup()
        for name, secret in self._secrets.items():
            await self._join(name, secret)
        self._spawn(self._ticker())

    async def _join(self, name: str, secret: bytes) -> None:
        state = await self.persistence.load(name)
        core, actions = LanNodeCore.restore(self.node_id, name, state, self._clock(), self.timings,
                                            peers=self.directory.online(name))
        q = LanQueue(name, secret, core)
        self.queues[name] = q
        await self.store.ensure_queue(name)
        async with q.lock:
            await self._perform(q, actions)
        self._prefetch_all(q)

    async def async_close(self, *, drain: bool = True) -> None:
        if drain:
            try:
                await asyncio.wait_for(self.async_drain(), timeout=10)
            except (TimeoutError, Exception) as e:  # noqa: BLE001 - shutting down regardless
                log.warning("drain on shutdown incomplete: %s", e)
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.client.async_close()

    async def configure(self, queues: list[dict[str, Any]]) -> None:
        """`queues/edit`: join listed LAN queues (a new one needs its `secret`), leave the others.
        Leaving keeps the queue's records on disk, so joining again brings them back."""
        wanted = {q["name"]: q for q in queues if q["name"] != LOCAL}
        for name, q in wanted.items():
            if name in self.queues:
                if q.get("secret") and q["secret"].encode() != self.queues[name].secret:
                    raise BadRequest(f"leave {name!r} before joining it with another secret")
                continue
            if not q.get("secret"):
                raise BadRequest(f"joining the LAN queue {name!r} needs its secret")
            if len(q["secret"]) < 8:
                raise BadRequest("a LAN queue secret needs at least 8 characters")
        for name in list(self.queues):
            if name not in wanted:
                del self.queues[name]
        for name, q in wanted.items():
            if name not in self.queues:
                await self._join(name, q["secret"].encode())

    @property
    def counters(self) -> dict[str, int]:
        """Running totals since start, for /metrics."""
        return {**self._counts, "files_rejected": self.fetcher.rejected}

    def add_listener(self, callback: Callable[[], None]) -> Callable[[], None]:
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    def has_queue(self, name: str) -> bool:
        return name in self.queues

    def queue(self, name: str) -> LanQueue:
        q = self.queues.get(name)
        if q is None:
            raise NotFound(f"no LAN queue named {name!r}")
        return q

    def secret(self, name: str) -> bytes | None:
        q = self.queues.get(name)
        return q.secret if q else None

    # --- performing the core's actions ------------------------------------------------------

    async def _call(self, q: LanQueue, fn: Callable[[float], list[Action]], reply_to: str | None = None) -> list[Message]:
        async with q.lock:
            q.core.set_peers(self.directory.online(q.name))
            try:
                actions = fn(self._clock())
            except LocalProtocolError as e:
                raise Conflict(str(e)) from None
            return await self._perform(q, actions, reply_to)

    async def _perform(self, q: LanQueue, actions: list[Action], reply_to: str | None = None) -> list[Message]:
        """Run actions in order (the caller holds q.lock); messages to `reply_to` are returned
        to travel back in the HTTP answer instead of a request of their own."""
        replies: list[Message] = []
        for action in actions:
            if isinstance(action, Persist):
                await self.persistence.apply(q.name, action)
            elif isinstance(action, Send):
                if action.to == reply_to:
                    replies.append(action.message)
                else:
                    self._spawn(self._deliver(q, action))
            elif isinstance(action, Event):
                self._on_event(q, action)
        return replies

    async def _deliver(self, q: LanQueue, send: Send) -> None:
        url = self.directory.online(q.name).get(send.to)
        if url is None:
            return  # the core retries what matters once the peer is back
        try:
            answer = json.loads(await self.client.post(url, MESSAGE_PATH, codec.dumps(send.message), queue=q.name, secret=q.secret))
            if not isinstance(answer, list):
                raise RemoteProtocolError(str(answer.get("error") if isinstance(answer, dict) else answer))
            replies = [codec.decode(r) for r in answer]
        except (PeerRequestFailed, RemoteProtocolError, ValueError) as e:
            log.debug("delivery to %s failed: %s", send.to[:8], e)
            return
        for reply in replies:
            try:
                for follow_up in await self.receive(q.name, reply, send.to):  # e.g. a deferred release
                    self._spawn(self._deliver(q, Send(send.to, follow_up)))
            except RemoteProtocolError as e:
                log.warning("bad reply from %s: %s", send.to[:8], e)

    async def receive(self, queue: str, message: Message, signed_by: str) -> list[Message]:
        """A message from a peer (already authenticated as `signed_by`); returns the replies."""
        q = self.queue(queue)
        if not isinstance(message, tuple(codec.MESSAGE_TYPES.values())) or message.sender != signed_by:
            raise RemoteProtocolError("message sender does not match its signature")
        try:
            return await self._call(q, lambda now: q.core.handle(message, now), reply_to=signed_by)
        except Conflict as e:
            raise RemoteProtocolError(str(e)) from None

    def _on_event(self, q: LanQueue, event: Event) -> None:
        if isinstance(event, LeaseAcquired):
            self._resolve(q.name, event.job_id, event.token)
        elif isinstance(event, AcquireFailed):
            self._resolve(q.name, event.job_id, None)
        elif isinstance(event, RecordChanged):
            for cb in list(self._listeners):
                cb()
            self._prefetch(q, event.record)
        elif isinstance(event, LeaseLost):
            log.warning("lease on %s lost: %s", event.job_id[:8], event.reason)
        if isinstance(event, GrantLive):
            self._counts["grants"] += 1
        elif isinstance(event, ConflictRecorded):
            self._counts["conflicts"] += 1
            log.warning("conflict on LAN job %s: %s", event.job_id[:8], event.entry.detail or event.entry.kind.value)
        elif isinstance(event, CompletionApplied):
            self._counts["completions_applied"] += 1
        if isinstance(event, (GrantLive, GrantEnded, CompletionApplied, ConflictRecorded)):
            self._log_history(q.name, event)

    def _log_history(self, queue: str, event: Event) -> None:
        """Append the home's decisions to a JSON-lines file: the cluster tests check the
        guarantees from these histories (wall time, for comparing nodes on one machine)."""
        if self._history is None:
            return
        row = {"t": time.time(), "mono": self._clock(), "node": self.node_id, "queue": queue,
               "event": type(event).__name__, **codec.encode(event)}
        if isinstance(event, GrantLive):
            row["live_for"] = event.live_until - self._clock()
        with open(self._history, "a") as f:
            f.write(json.dumps(row) + "\n")

    def _resolve(self, queue: str, job_id: str, token: int | None) -> None:
        waiter = self._waiters.pop((queue, job_id), None)
        if waiter is not None and not waiter.done():
            waiter.set_result(token)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            for q in list(self.queues.values()):
                try:
                    await self._call(q, q.core.tick)
                except Exception:  # noqa: BLE001 - one bad tick must not stop the timers
                    log.exception("LAN tick failed")

    # --- the driver's side (lanqueue.driving.LanSource) -----------------------------------

    async def acquire_next(self, queue: str, profile: str, loaded: list[str | None]) -> JobRef | None:
        q = self.queues.get(queue)
        if q is None:
            return None
        online = self.directory.online(queue)
        for rec in views.ordered(q):
            index = rec.next_set()
            if index is None or (rec.home != self.node_id and rec.home not in online):
                continue
            if rec.lease_holder not in (None, self.node_id):
                continue
            s = rec.sets[index]
            if not set_printable(_as_print_set(rec, index), profile, loaded):
                continue
            path = await self._local_file(q, s)
            if path is None:
                continue
            token = await self._acquire(q, rec.id)
            if token is None:
                continue
            try:
                async with q.lock:
                    index = q.core.start_print(rec.id, self._clock())
            except LocalProtocolError as e:
                log.info("acquired %s but cannot start: %s", rec.id[:8], e)
                await self._call(q, lambda now: q.core.release(rec.id, now))
                continue
            s = q.core.records[rec.id].sets[index]
            path = await self._local_file(q, s)
            if path is None:
                await self._abort_and_release(q, rec.id)
                continue
            return JobRef(queue, rec.id, rec.name, f"{rec.id}_{index}", path, tuple(s.materials), token)
        return None

    async def _acquire(self, q: LanQueue, job_id: str) -> int | None:
        waiter: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._waiters[(q.name, job_id)] = waiter
        try:
            await self._call(q, lambda now: q.core.want_to_print(job_id, now))
        except Conflict:
            self._waiters.pop((q.name, job_id), None)
            return None
        try:
            return await asyncio.wait_for(waiter, ACQUIRE_WAIT)
        except TimeoutError:
            self._waiters.pop((q.name, job_id), None)
            return None

    async def _abort_and_release(self, q: LanQueue, job_id: str) -> None:
        async with q.lock:
            q.core.abort_print(job_id)
        await self._call(q, lambda now: q.core.release(job_id, now))

    async def report_result(self, job: JobRef, result: str) -> None:
        q = self.queue(job.queue)
        job_id = str(job.job_id)
        if result == "success":
            await self._call(q, lambda now: q.core.report_complete(job_id, now))
        else:
            async with q.lock:
                q.core.abort_print(job_id)

    async def release(self, job: JobRef) -> None:
        q = self.queue(job.queue)
        await self._call(q, lambda now: q.core.release(str(job.job_id), now))

    # --- files ----------------------------------------------------------------------------

    async def _local_file(self, q: LanQueue, s: SetRecord) -> str | None:
        return await self.fetcher.local_file(q, s)

    def _prefetch(self, q: LanQueue, rec: JobRecord) -> None:
        if not rec.acquirable:
            return
        for s in rec.sets:
            if s.hash and s.hash not in self._fetching:
                self._fetching.add(s.hash)
                self._spawn(self._prefetch_one(q, s))

    async def _prefetch_one(self, q: LanQueue, s: SetRecord) -> None:
        try:
            await self._local_file(q, s)
        finally:
            self._fetching.discard(s.hash)

    def _prefetch_all(self, q: LanQueue) -> None:
        for rec in list(q.core.records.values()):
            self._prefetch(q, rec)

    async def file_for_peer(self, digest: str) -> Path:
        return await self.fetcher.file_for_peer(digest)

    # --- the API's side -------------------------------------------------------------------

    async def queue_view(self, name: str) -> dict[str, Any] | None:
        q = self.queues.get(name)
        return None if q is None else views.queue_view(q, self.node_id, self.directory)

    def job_view(self, q: LanQueue, r: JobRecord) -> dict[str, Any]:
        return views.job_view(q, r, self.node_id, self.directory)

    async def add_set(self, queue: str, fields: dict[str, Any], *, job_id: str | None, job_name: str | None, job_draft: bool) -> dict[str, Any]:
        if job_id:
            raise BadRequest("sets cannot be added to a LAN job; build the job in the local queue and move it")
        if fields.get("count", 1) < 1:  # _set_record would print it once anyway
            raise BadRequest("a LAN set prints at least one copy: count must be 1 or more")
        q = self.queue(queue)
        s = await self._set_record(fields)
        new_id = str(uuid.uuid4())
        name = job_name or Path(s.path).stem
        await self._call(q, lambda now: q.core.submit_job(new_id, name, [s], 1, now, draft=bool(job_draft),
                                                          created=time.time(), rank=self._last_rank(q)))
        view = self.job_view(q, q.core.records[new_id])
        return {"job_id": new_id, "set_": view["sets"][0]}

    async def add_job(self, queue: str, name: str | None) -> dict[str, Any]:
        raise BadRequest("create LAN jobs with set/add or by moving a local job into the LAN queue")

    async def _set_record(self, f: dict[str, Any]) -> SetRecord:
        if f.get("sd"):
            raise BadRequest("SD card files cannot be shared on a LAN queue")
        path = f["path"]
        digest = (await self.store.files()).get(path, {}).get("sha256")
        if digest is None or not self.files.exists(path):
            raise BadRequest(f"upload {path!r} first: a LAN job's file travels with it")
        count = max(1, int(f.get("count", 1)))
        materials = tuple(m or "" for m in f.get("materials") or [])
        return SetRecord(path=path, count=count, remaining=count, materials=materials,
                         profiles=tuple(f.get("profiles") or []), hash=digest)

    def _last_rank(self, q: LanQueue) -> float:
        ranks = [r.rank for r in q.core.records.values() if not r.tombstone]
        return (max(ranks) + 1.0) if ranks else 1.0

    async def submit_local_job(self, queue: str, local_job_id: int) -> str:
        """job/mv from the local queue into a LAN queue: the job (and its files) become shared."""
        q = self.queue(queue)
        job = await self.store.job(local_job_id)
        if not job.sets:
            raise BadRequest("the job has no sets")
        sets = [await self._set_record({"path": s.path, "count": s.count, "materials": s.materials,
                                        "profiles": s.profiles, "sd": s.sd}) for s in job.sets]
        new_id = str(uuid.uuid4())
        count = max(1, job.count)
        await self._call(q, lambda now: q.core.submit_job(new_id, job.name, sets, count, now, draft=job.draft,
                                                          created=float(job.created), rank=self._last_rank(q)))
        await self.store.remove_jobs([local_job_id])
        return new_id

    async def move_job(self, src: str, dest: str, job_id: str, after: str | None) -> None:
        if src == LOCAL:
            try:
                local_id = int(job_id)
            except ValueError:
                raise BadRequest("a local job id is an integer") from None
            await self.submit_local_job(dest, local_id)
            return
        q = self.queue(src)
        rec = self._record(q, job_id)
        if dest == LOCAL:
            await self._move_to_local(q, rec)
            return
        if dest != src:
            raise BadRequest("move a LAN job to the local queue first")
        ordered = [r for r in views.ordered(q) if r.id != job_id]
        ids = [r.id for r in ordered]
        if after in (None, "", "null", "None"):
            rank = (ordered[0].rank - 1.0) if ordered else 1.0
        else:
            if after not in ids:
                raise NotFound(f"no job {after} in {src}")
            i = ids.index(after)
            rank = (ordered[i].rank + ordered[i + 1].rank) / 2 if i + 1 < len(ordered) else ordered[i].rank + 1.0
        await self._edit_at_home(q, rec, "update", {"rank": rank})

    async def _move_to_local(self, q: LanQueue, rec: JobRecord) -> None:
        if rec.lease_holder is not None:
            raise Conflict("the job is being printed; wait until it is released")
        paths = []
        for s in rec.sets:
            path = await self._local_file(q, s)
            if path is None:
                raise Unavailable(f"the file {s.path} is not available from any peer")
            paths.append(path)
        await self._edit_at_home(q, rec, "delete", {})
        local = await self.store.add_job(rec.name, draft=rec.draft, count=rec.count)
        for s, path in zip(rec.sets, paths):
            await self.store.add_set({"path": path, "count": s.count, "remaining": s.count,
                                      "materials": [m or None for m in s.materials], "profiles": list(s.profiles)},
                                     job_id=int(local.id), job_name=None, job_draft=rec.draft)

    async def edit_job(self, queue: str, job_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        q = self.queue(queue)
        rec = self._record(q, job_id)
        editable = ("name", "draft", "count")
        unsupported = set(changes) - set(editable)
        if unsupported:
            raise BadRequest(f"on a LAN job only {', '.join(editable)} can be edited, not {sorted(unsupported)}")
        allowed: dict[str, Any] = {k: changes[k] for k in editable if k in changes}
        if allowed:
            await self._edit_at_home(q, rec, "update", allowed)
        return self.job_view(q, q.core.records[job_id])

    async def remove_jobs(self, queue: str, job_ids: list[str]) -> int:
        q = self.queue(queue)
        n = 0
        for job_id in job_ids:
            rec = q.core.records.get(job_id)
            if rec is None or rec.tombstone:
                continue
            await self._edit_at_home(q, rec, "delete", {})
            n += 1
        return n

    async def reset_jobs(self, queue: str, job_ids: list[str]) -> int:
        q = self.queue(queue)
        n = 0
        for job_id in job_ids:
            rec = q.core.records.get(job_id)
            if rec is None or rec.tombstone:
                continue
            await self._edit_at_home(q, rec, "reset", {})
            n += 1
        return n

    def _record(self, q: LanQueue, job_id: str) -> JobRecord:
        rec = q.core.records.get(job_id)
        if rec is None or rec.tombstone:
            raise NotFound(f"no job {job_id} in {q.name}")
        return rec

    async def _edit_at_home(self, q: LanQueue, rec: JobRecord, op: str, fields: dict[str, Any]) -> None:
        """Changes to a LAN job are made by its home; forward them when that is another node."""
        if rec.home == self.node_id:
            await self.apply_edit(q.name, op, rec.id, fields)
            return
        url = self.directory.online(q.name).get(rec.home)
        if url is None:
            raise Unavailable(f"the job's home {self.directory.name_of(rec.home)} is offline; adopt its jobs or wait")
        body = json.dumps({"op": op, "job_id": rec.id, "fields": fields}).encode()
        try:
            answer = await self.client.post(url, EDIT_PATH, body, queue=q.name, secret=q.secret)
        except PeerRequestFailed as e:
            raise Unavailable(f"the job's home did not answer: {e}") from None
        result = json.loads(answer)
        if "error" in result:
            raise Conflict(result["error"])
        record = codec.decode(result["record"], JobRecord)
        async with q.lock:
            if record.key > q.core.records[rec.id].key:
                actions = q.core.handle(_push(rec.home, record), self._clock())
                await self._perform(q, actions)

    async def apply_edit(self, queue: str, op: str, job_id: str, fields: dict[str, Any]) -> JobRecord:
        """At the home: apply an edit (from this node's API or forwarded by a peer)."""
        q = self.queue(queue)
        if op == "update":
            clean: dict[str, Any] = {}
            if "name" in fields:
                if not isinstance(fields["name"], str) or not fields["name"] or len(fields["name"]) > 1000:
                    raise BadRequest("bad name")
                clean["name"] = fields["name"]
            if "draft" in fields:
                if not isinstance(fields["draft"], bool):
                    raise BadRequest("bad draft")
                clean["draft"] = fields["draft"]
            if "rank" in fields:
                if isinstance(fields["rank"], bool) or not isinstance(fields["rank"], (int, float)):
                    raise BadRequest("bad rank")
                clean["rank"] = float(fields["rank"])
            if "count" in fields:
                if isinstance(fields["count"], bool) or not isinstance(fields["count"], int) or not 1 <= fields["count"] <= 100_000:
                    raise BadRequest("a LAN job's count must be between 1 and 100000")
                clean["count"] = fields["count"]
            await self._call(q, lambda now: q.core.update_job(job_id, now, **clean))
        elif op == "delete":
            await self._call(q, lambda now: q.core.delete_job(job_id, now))
        elif op == "reset":
            await self._call(q, lambda now: q.core.reset_job(job_id, now))
        else:
            raise BadRequest(f"unknown edit {op!r}")
        return q.core.records[job_id]

    async def async_drain(self) -> int:
        """Hand every job this node is home of to live peers (graceful shutdown)."""
        moved = 0
        for q in self.queues.values():
            targets = sorted(self.directory.online(q.name))
            # Learn first what the peers know: a job adopted while this node was away is no longer
            # ours to hand over (handing it over would make two homes at one epoch).
            await self._catch_up(q, targets)
            mine = [r for r in q.core.records.values() if r.home == self.node_id and not r.tombstone]
            if not mine:
                continue
            if not targets:
                log.warning("no live peer to drain %d job(s) of %s to; they wait for this node", len(mine), q.name)
                continue
            async with q.lock:
                actions = q.core.drain(targets, self._clock())
                sends = [a for a in actions if isinstance(a, Send)]
                await self._perform(q, [a for a in actions if not isinstance(a, Send)])
            # deliver the hand-over now, not in the background: we may be about to exit
            await asyncio.gather(*(self._deliver(q, s) for s in sends), return_exceptions=True)
            moved += len(mine)
        return moved

    def homed_here(self) -> int:
        """LAN jobs this node is home of (what a drain could not hand over, afterwards)."""
        return sum(1 for q in self.queues.values() for r in q.core.records.values()
                   if r.home == self.node_id and not r.tombstone)

    async def _catch_up(self, q: LanQueue, targets: list[str]) -> None:
        """One anti-entropy round with each target, awaited (replies are merged on arrival)."""
        digest = tuple((j, r.epoch, r.version) for j, r in sorted(q.core.records.items()))
        request = DigestRequest(self.node_id, digest)
        await asyncio.gather(*(self._deliver(q, Send(t, request)) for t in targets), return_exceptions=True)

    async def async_adopt(self, gone: str) -> int:
        """Become home of the jobs of a node that is gone (by id or name)."""
        homes = {r.home for q in self.queues.values() for r in q.core.records.values() if not r.tombstone}
        # An exact id or name wins; otherwise an id prefix must name exactly one node. Every
        # check is made before anything changes: a refused adopt adopts nothing.
        match = {h for h in homes if h == gone or self.directory.name_of(h) == gone}
        if not match:
            match = {h for h in homes if h.startswith(gone)}
        if len(match) > 1:
            raise BadRequest(f"{gone!r} names {len(match)} nodes ({', '.join(sorted(h[:8] for h in match))}); "
                             "give the whole node id")
        if self.node_id in match:
            raise BadRequest("this node cannot adopt its own jobs")
        for q in self.queues.values():
            for home in match & set(self.directory.online(q.name)):
                raise Conflict(f"{self.directory.name_of(home)} is online; ask it to drain instead")
        adopted = 0
        for q in self.queues.values():
            for home in match:
                before = sum(1 for r in q.core.records.values() if r.home == home and not r.tombstone)
                if before:
                    await self._call(q, functools.partial(_adopt, q.core, home))
                    adopted += before
        if not adopted:
            raise NotFound(f"no LAN jobs whose home is {gone!r}")
        return adopted


def _adopt(core: LanNodeCore, home: str, now: float) -> list[Action]:
    return core.adopt(home, now)


def _push(sender: str, record: JobRecord) -> Message:
    from .messages import RecordPush

    return RecordPush(sender, (record,))


def _as_print_set(rec: JobRecord, index: int) -> PrintSet:
    s = rec.sets[index]
    return PrintSet(id=index, path=s.path, materials=[m or None for m in s.materials], profiles=list(s.profiles))

