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
import contextlib
import functools
import json
import logging
import secrets as secrets_module
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import BadRequest, Conflict, LanqueueError, NotFound, Unavailable
from ..files import FileStore
from ..model import LOCAL, JobRef, PrintSet
from ..store import Store
from . import codec, gossip, spread, views
from .directory import LanQueue, PeerDirectory
from .edits import OPS, clean_update
from .errors import (
    InvalidEdit,
    LocalProtocolError,
    NotHomeError,
    ProtocolError,
    RemoteProtocolError,
)
from .fetch import FILE_PATH, FileFetcher
from .history import HistoryLog
from .messages import (
    AcquireFailed,
    Action,
    Alert,
    CompletionApplied,
    ConflictRecorded,
    DigestRequest,
    Event,
    GrantEnded,
    GrantLive,
    LeaseAcquired,
    LeaseLost,
    Message,
    Persist,
    RecordChanged,
    RecordPush,
    Send,
)
from .persistence import LanPersistence, end_run_in
from .protocol import LanNodeCore
from .records import JobRecord, SetRecord, Timings
from .transport import PeerClient, PeerRequestFailed

__all__ = [
    "EDIT_PATH",
    "FILE_PATH",
    "MESSAGE_PATH",
    "LanQueue",
    "LanService",
    "NotHomeConflict",
    "PeerDirectory",
    "http_error",
]

log = logging.getLogger(__name__)
MESSAGE_PATH = "/lanqueue/peer/v1/message"
EDIT_PATH = "/lanqueue/peer/v1/edit"
TICK = 0.5
ACQUIRE_WAIT = 5.0
FANOUT = 3
"""Peers a new record version is pushed to by its writer, and forwarded to by each node it is new
to: it reaches all N nodes in about log3(N) hops, and no node sends more than this many pushes
per version whatever N (docs/lan-queues.md, "Membership and dissemination at scale")."""
GOSSIP_ABOVE = 32
"""Up to this many online peers a writer pushes each version to all of them itself (batched): one
hop, and N-1 requests per version in all, where forwarding costs up to 3 per node; measured on
one machine hosting 24 nodes, forwarding made bursts of submissions 5x slower (bench/RESULTS-lan.md).
Past it each node's cost must stop growing with the farm: fan-out and forwarding take over."""
PUSH_BATCH = 0.02
"""Record pushes to one peer within this many seconds travel as one request (the newest version of
each record): a burst of submissions costs each peer a few requests, not one per job."""
PUSH_BATCH_MAX = 64


class NotHomeConflict(Conflict):
    """Only the job's home may do what was asked; `home` is that node's id."""

    def __init__(self, message: str, home: str | None) -> None:
        super().__init__(message)
        self.home = home


def http_error(e: ProtocolError) -> LanqueueError:
    """The one place a protocol error becomes an error of the API: a value a job cannot take is
    a bad request, a peer's bad message too; anything else the protocol state refuses is a
    conflict (the home's id travels along when only the home may act)."""
    if isinstance(e, (InvalidEdit, RemoteProtocolError)):
        return BadRequest(e.message)
    if isinstance(e, NotHomeError):
        return NotHomeConflict(e.message, e.home)
    return Conflict(e.message)


@contextlib.contextmanager
def _for_api() -> Iterator[None]:
    """Around what the API (and the driver) ask: protocol errors leave as API errors."""
    try:
        yield
    except ProtocolError as e:
        raise http_error(e) from None


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
        history: HistoryLog | None = None,
        clock: Callable[[], float] = time.monotonic,
        gossip_above: int = GOSSIP_ABOVE,
    ) -> None:
        self.node_id = node_id
        self.gossip_above = gossip_above
        self.store = store
        self.files = files
        self.directory = directory
        self.timings = timings or Timings()
        self.persistence = LanPersistence(store)
        #: This run's id: in every signature, so peers tell a restart from a second node that
        #: uses this node id (a cloned SD card), and refuse requests signed for an older run.
        self.instance = secrets_module.token_hex(8)
        self.client = PeerClient(node_id, instance=self.instance)
        self.fetcher = FileFetcher(store, files, self.client, directory)
        self.queues: dict[str, LanQueue] = {}
        self._secrets = {name: secret.encode() for name, secret in secrets.items()}
        self._clock = clock
        self._waiters: dict[tuple[str, str], asyncio.Future[int | None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._fetching: set[str] = set()
        self._listeners: list[Callable[[], None]] = []
        self._history = history  # opt-in (--lan-history): the cluster tests' record of decisions
        self._counts = {"grants": 0, "conflicts": 0, "completions_applied": 0,
                        # dissemination: record pushes made (writes, anti-entropy answers), the
                        # requests that carried them, and pushes of versions new here forwarded on
                        "record_broadcasts": 0, "record_pushes": 0, "record_forwards": 0}
        self.unconfirmed_handoffs = 0  # of the last drain
        #: Called (queue, job id) when the lease of a copy being printed lapses: stop the printer.
        self.on_lease_lapsed: Callable[[str, str], Awaitable[None]] | None = None
        self._stopping: set[tuple[str, str]] = set()
        self._fanouts: dict[str, gossip.Fanout] = {}
        self._push_box: dict[tuple[str, str], dict[str, JobRecord]] = {}  # (queue, peer) -> records
        self._push_flush: asyncio.TimerHandle | None = None

    # --- life ------------------------------------------------------------------------------

    async def async_start(self) -> None:
        await self.persistence.async_setup()
        for name, secret in self._secrets.items():
            await self._join(name, secret)
        self._spawn(self._ticker())

    async def _join(self, name: str, secret: bytes) -> None:
        state = await self.persistence.load(name)
        core, actions = LanNodeCore.restore(self.node_id, name, state, self._clock(), self.timings,
                                            peers=self.directory.online(name), instance=self.instance)
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
        if self._push_flush is not None:
            self._push_flush.cancel()
            self._push_flush = None
        self._push_box.clear()  # what it held reaches the peers by anti-entropy
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
        """Feed the core one input and perform what it returns; its errors leave unchanged
        (nothing was applied), for the caller to answer in its own terms."""
        async with q.lock:
            q.core.set_peers(self.directory.online(q.name))
            actions = fn(self._clock())
            return await self._perform(q, actions, reply_to)

    async def _perform(self, q: LanQueue, actions: list[Action], reply_to: str | None = None,
                       also: Callable[[Any], Awaitable[None]] | None = None) -> list[Message]:
        """Run actions in order (the caller holds q.lock); messages to `reply_to` are returned
        to travel back in the HTTP answer instead of a request of their own. `also` is written
        in the transaction of the first Persist."""
        replies: list[Message] = []
        for action in self._thin_broadcasts(q, actions):
            if isinstance(action, Persist):
                await self.persistence.apply(q.name, action, also)
                also = None
            elif isinstance(action, Send):
                if action.to == reply_to:
                    replies.append(action.message)
                elif isinstance(action.message, RecordPush) and action.message.sender == self.node_id:
                    self._queue_push(q, action.to, action.message.records)
                else:
                    self._spawn(self._deliver(q, action))
            elif isinstance(action, Event):
                self._on_event(q, action)
        return replies

    def _fanout(self, q: LanQueue) -> gossip.Fanout:
        """FANOUT peers once the queue has more than `gossip_above` online; all of them below
        (then nothing is thinned and nothing forwarded: spread.py does neither when the fan-out
        covers every member)."""
        fan = self._fanouts.get(q.name)
        if fan is None:
            fan = self._fanouts[q.name] = gossip.Fanout(self.node_id, FANOUT)
        online = len(self.directory.online(q.name))
        fan.fanout = FANOUT if online > self.gossip_above else max(FANOUT, online + 1)
        return fan

    def _thin_broadcasts(self, q: LanQueue, actions: list[Action]) -> list[Action]:
        """The core's push of what this node writes goes to FANOUT random peers, not to all
        (sync/spread.py): the writer's cost per change, and so its submissions per second, no
        longer depend on the farm's size."""
        actions, pushes, requests = spread.thin_broadcasts(self.node_id, actions, self._fanout(q))
        self._counts["record_broadcasts"] += pushes
        self._counts["record_pushes"] += requests
        return actions

    def _queue_push(self, q: LanQueue, peer: str, records: tuple[JobRecord, ...]) -> None:
        """Push `records` to `peer` within PUSH_BATCH seconds, with whatever else goes there."""
        box = self._push_box.setdefault((q.name, peer), {})
        for r in records:
            cur = box.get(r.id)
            if cur is None or r.key > cur.key:
                box[r.id] = r
        if len(box) >= PUSH_BATCH_MAX:
            self._send_box(q.name, peer)
        elif self._push_flush is None:
            self._push_flush = asyncio.get_running_loop().call_later(PUSH_BATCH, self._flush_pushes)

    def _flush_pushes(self) -> None:
        self._push_flush = None
        for queue, peer in list(self._push_box):
            self._send_box(queue, peer)

    def _send_box(self, queue: str, peer: str) -> None:
        records = self._push_box.pop((queue, peer), {})
        q = self.queues.get(queue)
        if q is not None and records:
            self._spawn(self._deliver(q, Send(peer, RecordPush(self.node_id, tuple(records.values())))))

    def _forward(self, q: LanQueue, push: RecordPush, before: dict[str, tuple[int, int]]) -> None:
        """Versions new here go on to FANOUT peers other than the sender, once (sync/spread.py)."""
        members = sorted(self.directory.online(q.name))
        for send in spread.forwards(self.node_id, push, before, q.core.records, members, self._fanout(q)):
            if isinstance(send.message, RecordPush):
                self._counts["record_forwards"] += 1
                self._queue_push(q, send.to, send.message.records)

    async def _ask(self, q: LanQueue, node_id: str, path: str, body: bytes) -> Any:
        """The one way this node calls a peer of `q`: a signed request, the peer's signed JSON
        answer decoded. `PeerRequestFailed` if the peer is offline or does not answer;
        `ValueError` if the answer is not JSON."""
        url = self.directory.online(q.name).get(node_id)
        if url is None:
            raise PeerRequestFailed(f"{self.directory.name_of(node_id)} is offline")
        return json.loads(await self.client.post(url, path, body, queue=q.name, secret=q.secret))

    async def _deliver(self, q: LanQueue, send: Send) -> bool:
        """Send one message and process the replies; True if the peer answered it."""
        url = self.directory.online(q.name).get(send.to)
        if url is None:
            return False  # the core retries what matters once the peer is back
        try:
            raw, responder = await self.client.post_signed(url, MESSAGE_PATH, codec.dumps(send.message),
                                                           queue=q.name, secret=q.secret)
            answer = json.loads(raw)
            if not isinstance(answer, list):
                raise RemoteProtocolError(str(answer.get("error") if isinstance(answer, dict) else answer))
            replies = [codec.decode(r) for r in answer]
        except (PeerRequestFailed, RemoteProtocolError, ValueError) as e:
            log.debug("delivery to %s failed: %s", send.to[:8], e)
            return False
        for reply in replies:
            try:
                for follow_up in await self.receive(q.name, reply, send.to, responder):  # e.g. a deferred release
                    self._spawn(self._deliver(q, Send(send.to, follow_up)))
            except RemoteProtocolError as e:
                log.warning("bad reply from %s: %s", send.to[:8], e)
        return True

    async def receive(self, queue: str, message: Message, signed_by: str, instance: str = "") -> list[Message]:
        """A message from a peer (already authenticated as `signed_by`, run `instance`); returns
        the replies."""
        q = self.queue(queue)
        if not isinstance(message, tuple(codec.MESSAGE_TYPES.values())) or message.sender != signed_by:
            raise RemoteProtocolError("message sender does not match its signature")
        before = None
        if isinstance(message, RecordPush):
            before = spread.held_keys(message, q.core.records)
        try:
            replies = await self._call(q, lambda now: q.core.handle(message, now, instance), reply_to=signed_by)
        except LocalProtocolError as e:  # the message asked for what this node cannot do
            raise RemoteProtocolError(e.message) from None
        if isinstance(message, RecordPush) and before is not None:
            self._forward(q, message, before)
        return replies

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
        elif isinstance(event, Alert):
            log.error("LAN queue %s: %s", q.name, event.detail)
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
        self._history.write(row)

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
                self._stop_lapsed_prints(q)

    def _stop_lapsed_prints(self, q: LanQueue) -> None:
        """A LAN copy is printed only under a valid lease (issue 11, case 6): once the lease has
        lapsed on this node's own clock (a freeze included: the first tick after a thaw is
        overdue and runs at once), no further line of it may be sent. `on_lease_lapsed` (the
        node stops the printer) makes the copy end as cancelled, so nothing is counted and the
        lease is given back; whatever the printer did meanwhile is fenced by the home."""
        now = self._clock()
        for job_id, lease in list(q.core.holder.leases.items()):
            if lease.printing is None:
                self._stopping.discard((q.name, job_id))
            elif not q.core.lease_valid(job_id, now) and (q.name, job_id) not in self._stopping:
                self._stopping.add((q.name, job_id))
                log.warning("lease on LAN job %s lapsed while printing it: stopping the print", job_id[:8])
                if self.on_lease_lapsed is not None:
                    self._spawn(self.on_lease_lapsed(q.name, job_id))

    # --- the driver's side (lanqueue.driving.LanSource) -----------------------------------

    async def acquire_next(self, queue: str, profile: str, loaded: list[str | None],
                           fits: Callable[[PrintSet], bool] | None = None) -> JobRef | None:
        q = self.queues.get(queue)
        if q is None:
            return None
        online = self.directory.online(queue)
        for rec in views.ordered(q):
            index = views.printable_set(rec, self.node_id, online, profile, loaded, fits)
            if index is None:
                continue
            path = await self.local_file(q, rec.sets[index])
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
                await self._call(q, functools.partial(_release, q.core, rec.id))
                continue
            s = q.core.records[rec.id].sets[index]
            path = await self.local_file(q, s)
            if path is None:
                await self._abort_and_release(q, rec.id)
                continue
            return JobRef(queue, rec.id, rec.name, views.set_id(rec.id, index), path, tuple(s.materials), token)
        return None

    async def _acquire(self, q: LanQueue, job_id: str) -> int | None:
        waiter: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._waiters[(q.name, job_id)] = waiter
        try:
            await self._call(q, lambda now: q.core.want_to_print(job_id, now))
        except LocalProtocolError:
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

    async def finish_run(self, job: JobRef, result: str, run_id: int) -> None:
        """A print of a LAN job ended. A success goes into the outbox in the SAME transaction as
        its history row (issue 11): a crash between two transactions left a copy on the plate
        that nobody reported, and the job printed it again."""
        q = self.queue(job.queue)
        job_id = str(job.job_id)
        if result != "success":
            await self.store.end_run(run_id, result)
            async with q.lock:
                q.core.abort_print(job_id)
            return
        close = end_run_in(run_id, result)
        with _for_api():
            async with q.lock:
                q.core.set_peers(self.directory.online(q.name))
                try:
                    actions = q.core.report_complete(job_id, self._clock())
                except LocalProtocolError:
                    await self.store.end_run(run_id, result)  # nothing to report: the row still ends
                    raise
                if not any(isinstance(a, Persist) for a in actions):  # pragma: no cover - always one
                    await self.store.end_run(run_id, result)
                await self._perform(q, actions, also=close)

    async def release(self, job: JobRef) -> None:
        q = self.queue(job.queue)
        with _for_api():
            await self._call(q, lambda now: q.core.release(str(job.job_id), now))

    # --- files ----------------------------------------------------------------------------

    async def local_file(self, q: LanQueue, s: SetRecord) -> str | None:
        """The set's file in this node's file store (fetched from a peer if need be), or None."""
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
            await self.local_file(q, s)
        finally:
            self._fetching.discard(s.hash)

    def _prefetch_all(self, q: LanQueue) -> None:
        for rec in list(q.core.records.values()):
            self._prefetch(q, rec)

    async def file_for_peer(self, digest: str) -> Path:
        return await self.fetcher.file_for_peer(digest)

    # --- the API's side (lanqueue.queues.lan) ----------------------------------------------

    async def set_record(self, f: dict[str, Any]) -> SetRecord:
        """A set to share: its file must be in this node's file store (it travels by digest)."""
        if f.get("sd"):
            raise BadRequest("SD card files cannot be shared on a LAN queue")
        path = f["path"]
        digest = (await self.store.files()).get(path, {}).get("sha256")
        if digest is None or not self.files.exists(path):
            raise BadRequest(f"upload {path!r} first: a LAN job's file travels with it")
        count = max(1, int(f.get("count", 1)))
        materials = tuple(m or "" for m in f.get("materials") or [])
        meta = self.files.gcode(path)
        return SetRecord(path=path, count=count, remaining=count, materials=materials,
                         profiles=tuple(f.get("profiles") or []), hash=digest,
                         gcode=json.dumps(meta) if meta else "")

    async def submit(self, queue: str, job_id: str, name: str, sets: list[SetRecord], count: int, *,
                     draft: bool, created: float) -> None:
        """A new job homed here, after the queue's last job."""
        q = self.queue(queue)
        with _for_api():
            await self._call(q, lambda now: q.core.submit_job(job_id, name, sets, count, now, draft=draft,
                                                              created=created, rank=_last_rank(q)))

    async def edit(self, queue: str, job_id: str, op: str, fields: dict[str, Any]) -> None:
        """Change a job (op: update, delete, reset) where it is made: at its home."""
        q = self.queue(queue)
        rec = q.core.records.get(job_id)
        if rec is None or rec.tombstone:
            raise NotFound(f"no job {job_id} in {q.name}")
        with _for_api():
            await self._edit_at_home(q, rec, op, fields)

    async def _edit_at_home(self, q: LanQueue, rec: JobRecord, op: str, fields: dict[str, Any]) -> None:
        """Changes to a LAN job are made by its home; forward them when that is another node."""
        if rec.home == self.node_id:
            await self.apply_edit(q.name, op, rec.id, fields)
            return
        if rec.home not in self.directory.online(q.name):
            raise Unavailable(f"the job's home {self.directory.name_of(rec.home)} is offline; adopt its jobs or wait")
        body = json.dumps({"op": op, "job_id": rec.id, "fields": fields}).encode()
        try:
            result = await self._ask(q, rec.home, EDIT_PATH, body)
        except (PeerRequestFailed, ValueError) as e:
            raise Unavailable(f"the job's home did not answer: {e}") from None
        if not isinstance(result, dict) or ("record" not in result and "error" not in result):
            raise Unavailable("the job's home gave no answer this node understands")
        if "error" in result:
            raise Conflict(result["error"])
        record = codec.decode(result["record"], JobRecord)
        async with q.lock:
            if record.key > q.core.records[rec.id].key:
                actions = q.core.handle(_push(rec.home, record), self._clock())
                await self._perform(q, actions)

    async def apply_edit(self, queue: str, op: str, job_id: str, fields: dict[str, Any]) -> JobRecord:
        """At the home: apply an edit (from this node's API or forwarded by a peer). Raises
        protocol errors (`InvalidEdit` for a bad value): the caller answers in its terms."""
        q = self.queue(queue)
        if op not in OPS:
            raise InvalidEdit(f"unknown edit {op!r}")
        if op == "update":
            clean = clean_update(fields)
            await self._call(q, lambda now: q.core.update_job(job_id, now, **clean))
        elif op == "delete":
            await self._call(q, lambda now: q.core.delete_job(job_id, now))
        else:
            await self._call(q, lambda now: q.core.reset_job(job_id, now))
        return q.core.records[job_id]

    async def async_drain(self) -> int:
        """Hand every job this node is home of to live peers (graceful shutdown). Returns how
        many jobs a new home confirmed receiving; the others (`unconfirmed_handoffs`) were given
        away here but their new home has not answered: it learns of them from any peer that
        got the push, or from this node when it runs again."""
        moved = 0
        self.unconfirmed_handoffs = 0
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
            answered = await asyncio.gather(*(self._deliver(q, s) for s in sends), return_exceptions=True)
            handed = {r.id for s, ok in zip(sends, answered) if ok is True and isinstance(s.message, RecordPush)
                      for r in s.message.records if r.home == s.to}
            moved += len(handed)
            self.unconfirmed_handoffs += len({r.id for r in mine} - handed)
        return moved

    def standing(self) -> dict[str, dict[str, object]]:
        """Per LAN queue: is this node acting normally, catching up after a restart, or refusing
        to act because its node id is in use by another node (with the command that fixes it)?
        For the page (/lanqueue/peers), `lanqueue status` and the log."""
        now = self._clock()
        return {name: q.core.status(now) for name, q in self.queues.items()}

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
            # A catch-up round first: adopt from the newest copy any live peer holds. A peer
            # that still holds a newer copy afterwards (cut off now) raises the divergence later.
            await self._catch_up(q, sorted(self.directory.online(q.name)))
            for home in match:
                before = sum(1 for r in q.core.records.values() if r.home == home and not r.tombstone)
                if before:
                    with _for_api():
                        await self._call(q, functools.partial(_adopt, q.core, home))
                    adopted += before
        if not adopted:
            raise NotFound(f"no LAN jobs whose home is {gone!r}")
        return adopted


def _last_rank(q: LanQueue) -> float:
    ranks = [r.rank for r in q.core.records.values() if not r.tombstone]
    return (max(ranks) + 1.0) if ranks else 1.0


def _release(core: LanNodeCore, job_id: str, now: float) -> list[Action]:
    return core.release(job_id, now)


def _adopt(core: LanNodeCore, home: str, now: float) -> list[Action]:
    return core.adopt(home, now)


def _push(sender: str, record: JobRecord) -> Message:
    from .messages import RecordPush

    return RecordPush(sender, (record,))
