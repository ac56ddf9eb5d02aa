"""The farm view's asyncio adapter: this node's printer summary, the peers' summaries, actions.

Every node serves a summary of its own printer to the members of the LAN queues it shares, over
the signed peer protocol (sync/routes.py: the request is signed with a shared queue's secret, so
only a member can ask). While someone watches the farm view (a page's event stream is open or
`/lanqueue/farm` was asked lately), the node asks each member for its summary every `POLL`
seconds and feeds the answers to the pure board (farmview.py), which decides connecting / on /
off. Actions (bed cleared, pause, resume, cancel, start and stop managing) go to the printer's
node the same way; that node performs them only when the request is signed for a queue it has
joined, i.e. for a peer of a queue it shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .driving import loaded_materials
from .errors import BadRequest, Conflict, LanqueueError, NotFound, Unavailable
from .farmview import ACTIONS, FarmBoard, Member, check_summary, offered_actions
from .sync.routes import FARM_ACTION_PATH, FARM_SUMMARY_PATH, FARM_THUMBNAIL_PATH
from .sync.transport import PeerRequestFailed

if TYPE_CHECKING:
    from .discovery.events import Peer
    from .services import CoreServices as Node

__all__ = ["POLL", "WATCH_FOR", "FarmService"]

log = logging.getLogger(__name__)

POLL = 1.0  # seconds between summary rounds while watched
WATCH_FOR = 30.0  # a round keeps running this long after the last look
ASK_TIMEOUT = 2.0
MAX_THUMBNAIL = 1 << 20  # bytes; a slicer's thumbnail is a few kB
THUMBNAILS_KEPT = 64  # named by content digest, so a kept one never goes stale


class FarmService:
    """One per node. `touch()` whenever someone looks; `cards()` for the page."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.board = FarmBoard(node.node_id)
        self._watched_until = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[], None]] = []
        self._thumbnails: OrderedDict[str, bytes] = OrderedDict()
        self.rounds = 0

    # --- this node ------------------------------------------------------------------------

    def shared_queues(self) -> list[str]:
        lan = self.node.lan
        return sorted(lan.queues) if lan is not None else []

    async def summary(self) -> dict[str, Any]:
        """What this node tells its peers (and its own page) about its printer."""
        node = self.node
        printer, runner = node.printer, node.runner
        out: dict[str, Any] = {
            "node_id": node.node_id, "name": node.options.name, "profile": node.options.profile,
            "queues": self.shared_queues(), "backend": None,
            "state": "Offline", "error": "", "temperatures": {}, "file": None, "job": None,
            "progress": None, "elapsed_s": None, "left_s": None, "thumbnail": None, "estimate_s": None,
            "managing": False, "status": "", "status_type": "", "needs": None, "materials": [],
        }
        if printer is not None:
            # the backend a node drives, as state/get names it (kind and address, never a secret)
            out["backend"] = {"kind": printer.kind, "where": printer.target}
            out["state"] = printer.state.text
            out["error"] = printer.error or ""
            out["temperatures"] = {k: [a, t] for k, (a, t) in printer.temperatures.items()}
            with contextlib.suppress(Exception):
                model = printer.capabilities.model
                if model:
                    out["backend"]["model"] = model
            self._progress(out)
            # what each tool holds, as the driver matches it (the timeline uses the same rule)
            out["materials"] = loaded_materials(list(await node.store.get_setting("materials", [])), printer)
        if runner is not None:
            out.update(managing=runner.active, status=runner.status, status_type=runner.status_type)
            job = runner.driver.job
            if job is not None:
                out["job"] = {"id": str(job.job_id), "name": job.job_name, "queue": job.queue, "path": job.path}
        out["needs"] = _needs(out)
        out["actions"] = offered_actions(out)
        return out

    def _progress(self, out: dict[str, Any]) -> None:
        progress = self.node.printer.progress()
        if progress is None:
            return
        out["file"] = progress.name or progress.path
        # the driver's job names the file in the store (the printer may know it by another name)
        runner = self.node.runner
        job = runner.driver.job if runner is not None else None
        path = job.path if job is not None else progress.name
        gcode = self.node.files.gcode(path) if path else None
        estimate = gcode.get("estimated_time_s") if isinstance(gcode, dict) else None
        done = progress.completion
        out["progress"] = None if done is None else round(100 * done, 1)
        out["elapsed_s"] = round(progress.elapsed, 1)
        out["estimate_s"] = estimate
        out["thumbnail"] = gcode.get("thumbnail") if isinstance(gcode, dict) else None
        if isinstance(estimate, (int, float)) and done is not None:
            out["left_s"] = round(max(0.0, estimate * (1 - done)), 1)  # the slicer knows better
        elif progress.estimated_remaining is not None:
            out["left_s"] = round(progress.estimated_remaining, 1)

    async def act(self, action: str) -> None:
        """Perform an action on this node's printer or driver; Conflict when it does not apply."""
        if action not in ACTIONS:
            raise BadRequest(f"action must be one of {', '.join(ACTIONS)}")
        printer, runner = self.node.printer, self.node.runner
        state = printer.state.name
        if action == "continue":
            if not await runner.async_continue():
                raise Conflict("nothing is waiting for a person")
        elif action == "pause":
            if state != "PRINTING":
                raise Conflict("no print is running")
            await printer.async_pause()
        elif action == "resume":
            if state != "PAUSED":
                raise Conflict("the print is not paused")
            await printer.async_resume()
        elif action == "cancel":
            if not printer.state.is_printing:
                raise Conflict("no print is active")
            await printer.async_cancel()
        else:
            await runner.async_set_active(action == "start")

    def thumbnail(self, name: str) -> bytes | None:
        """A thumbnail this node holds, by its digest name (for a member's farm view)."""
        meta = self.node.files.meta
        full = meta.thumbnail(name) if meta is not None else None
        if full is None or full.stat().st_size > MAX_THUMBNAIL:
            return None
        return full.read_bytes()

    async def thumbnail_of(self, node_id: str, name: str) -> bytes | None:
        """A thumbnail for the page: this node's own, else asked of `node_id` (and kept)."""
        own = self.thumbnail(name)
        if own is not None or node_id == self.node.node_id:
            return own
        if name in self._thumbnails:
            self._thumbnails.move_to_end(name)
            return self._thumbnails[name]
        member = self._members().get(node_id)
        if member is None:
            raise NotFound("no node of a shared LAN queue has that id")
        peer, shared = member
        try:
            data = await self._post(peer, shared[0], FARM_THUMBNAIL_PATH + name, b"")
        except (PeerRequestFailed, TimeoutError):
            return None
        if len(data) > MAX_THUMBNAIL:
            return None
        self._thumbnails[name] = data
        while len(self._thumbnails) > THUMBNAILS_KEPT:
            self._thumbnails.popitem(last=False)
        return data

    # --- other nodes ----------------------------------------------------------------------

    def _members(self) -> dict[str, tuple[Peer, list[str]]]:
        """Trusted peers of the queues this node shares, with the queues shared with each."""
        discovery, mine = self.node.discovery, set(self.shared_queues())
        out: dict[str, tuple[Peer, list[str]]] = {}
        if discovery is None or not mine:
            return out
        for p in discovery.peers:
            shared = sorted(mine & set(p.info.queues))
            if p.trusted and shared:
                out[p.node_id] = (p, shared)
        return out

    async def _post(self, peer: Peer, queue: str, path: str, body: bytes, timeout: float = ASK_TIMEOUT) -> bytes:
        """A signed POST to a member; the answer's signature is checked by the client."""
        lan = self.node.lan
        secret = lan.secret(queue) if lan is not None else None
        if lan is None or secret is None or not peer.base_url:
            raise PeerRequestFailed("no address or secret for the node")
        return await asyncio.wait_for(lan.client.post(peer.base_url, path, body, queue=queue, secret=secret), timeout)

    async def _ask(self, peer: Peer, queue: str, path: str, doc: dict[str, Any]) -> dict[str, Any]:
        body = await self._post(peer, queue, path, json.dumps(doc).encode(),
                                ASK_TIMEOUT if path == FARM_SUMMARY_PATH else 10.0)
        answer = json.loads(body)
        if not isinstance(answer, dict):
            raise PeerRequestFailed("the answer is not a JSON object")
        return answer

    async def act_on(self, node_id: str, action: str) -> None:
        """An action from this node's page, on this node's printer or a peer's."""
        if action not in ACTIONS:
            raise BadRequest(f"action must be one of {', '.join(ACTIONS)}")
        if node_id == self.node.node_id:
            await self.act(action)
            return
        member = self._members().get(node_id)
        if member is None:
            raise NotFound("no node of a shared LAN queue has that id")
        peer, shared = member
        try:
            answer = await self._ask(peer, shared[0], FARM_ACTION_PATH, {"action": action})
        except (PeerRequestFailed, TimeoutError, ValueError) as e:
            raise Unavailable(f"{peer.info.name} did not take the action: {e}") from None
        if "error" in answer:
            raise Conflict(f"{peer.info.name}: {answer['error']}")
        self._wake.set()  # show the result soon

    # --- polling --------------------------------------------------------------------------

    def touch(self) -> None:
        """Someone looks at the farm view: keep the summaries fresh for a while."""
        idle = time.monotonic() >= self._watched_until
        self._watched_until = time.monotonic() + WATCH_FOR
        if idle:
            self._wake.set()

    async def cards(self) -> list[dict[str, Any]]:
        """Every printer of the shared queues, this node's first."""
        now = time.time()
        self.board.members(self._roster(now), now)
        own = {**await self.summary(), "farm_state": "on", "since": None, "stale": False, "reason": "", "own": True}
        return [own, *self.board.cards()]

    def _roster(self, now: float) -> list[Member]:
        mono = time.monotonic()
        return [Member(p.node_id, p.info.name, p.online, now - max(0.0, mono - p.last_seen), tuple(shared))
                for p, shared in self._members().values()]

    def add_listener(self, callback: Callable[[], None]) -> Callable[[], None]:
        self._listeners.append(callback)

        def remove() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return remove

    def _changed(self) -> None:
        for callback in list(self._listeners):
            try:
                callback()
            except Exception:
                log.exception("farm listener failed")

    async def async_start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="farm-view")

    async def async_close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            if time.monotonic() < self._watched_until:
                try:
                    await self.run_round()
                except Exception:
                    log.exception("farm round failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL)

    async def run_round(self) -> None:
        """Ask every member for its summary at once; feed the board; tell listeners on change."""
        self.rounds += 1
        now = time.time()
        members = self._members()
        changed = self.board.members(self._roster(now), now)
        results = await asyncio.gather(*(self._summary_of(p, shared) for p, shared in members.values()))
        now = time.time()
        for (peer, _), (summary, error) in zip(members.values(), results, strict=True):
            if summary is not None:
                changed |= self.board.got(peer.node_id, summary, now)
            else:
                changed |= self.board.failed(peer.node_id, error, now)
        if changed:
            self._changed()

    async def _summary_of(self, peer: Peer, shared: list[str]) -> tuple[dict[str, Any] | None, str]:
        if not peer.online:
            return None, "offline"
        try:
            answer = await self._ask(peer, shared[0], FARM_SUMMARY_PATH, {})
            return check_summary(answer, peer.node_id), ""
        except (PeerRequestFailed, TimeoutError, LanqueueError) as e:
            log.debug("no farm summary from %s: %s", peer.info.name, e)
            return None, "not answering"
        except ValueError as e:
            return None, f"a bad answer: {e}"


def _needs(s: dict[str, Any]) -> str | None:
    """What the printer needs from a person now, in words; None when nothing."""
    if s["status_type"] == "NEEDS_ACTION":
        return str(s["status"])
    if s["error"]:
        return f"printer error: {s['error']}"
    if s["status_type"] == "ERROR":
        return str(s["status"])
    return None
