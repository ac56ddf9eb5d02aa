"""The web page (static files under lanqueue/web/) and its live updates.

`/` and `/static/{name}` are public (the page asks for the API key itself and keeps it in the
browser); `/lanqueue/events` needs the key like every other data route. EventSource cannot send
headers, so the page passes the key as `?apikey=`, which the auth middleware accepts.

Live updates are server-sent events. One `LiveHub` per app fans changes out to every open stream:
it listens to the store (every committed write), the LAN queues, peer discovery and the printer
service (state, temperatures, prints), and polls the driver's status and the print's progress once a second, emitting only on
change. Each stream coalesces what happened into at most one event per `MIN_INTERVAL`, with the
kinds of change (`queues`, `driver`, `printer`, `peers`, `farm`) as data, so the page re-fetches only what moved.
The hub attaches to the services while at least one stream is open and detaches after the last
one; on shutdown it ends every stream so the server does not wait for them. While a stream is
open the farm view is kept fresh (the peers' summaries are polled, farm.py).

`/lanqueue/farm` is the farm view's data: one card per printer of the LAN queues this node shares
and each queue's timeline (timeline.py); `/lanqueue/farm/action` carries an action to a printer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import mimetypes
import re
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .. import timeline
from ..errors import BadRequest, NotFound
from . import fields
from .app import json_response
from .forms import read_form
from .keys import NODE
from .views import state_json

if TYPE_CHECKING:
    from .keys import NodeServices as Node

__all__ = ["LIVE", "WEB_DIR", "LiveHub", "routes", "setup"]

log = logging.getLogger(__name__)

routes = web.RouteTableDef()
WEB_DIR = Path(__file__).resolve().parent.parent / "web"
_STATIC_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_THUMBNAIL_NAME = re.compile(r"^[0-9a-f]{64}\.(png|jpg)$")

MIN_INTERVAL = 0.2  # at most ~5 events per second per stream
KEEPALIVE = 15.0  # seconds between comment lines on an idle stream
POLL = 1.0  # driver status / progress sampling period
MAX_STREAMS = 64  # a bound on open streams; more are refused with 503

_PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # the page's address may carry ?apikey= for a moment: never send it on as a referrer
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
}


# --- static files --------------------------------------------------------------------------


def _file_response(path: Path) -> web.StreamResponse:
    ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if path.suffix == ".js":
        ctype = "text/javascript"
    response = web.FileResponse(path, headers={**_PAGE_HEADERS, "Content-Type": ctype})
    return response


@routes.get("/")
@routes.get("/index.html")
async def index(request: web.Request) -> web.StreamResponse:
    return _file_response(WEB_DIR / "index.html")


@routes.get("/favicon.ico")
async def favicon(request: web.Request) -> web.StreamResponse:
    return _file_response(WEB_DIR / "favicon.svg")


@routes.get("/static/{name}")
async def static(request: web.Request) -> web.StreamResponse:
    """Only plain file names directly inside lanqueue/web/: no folders, no dot files."""
    name = request.match_info["name"]
    if not _STATIC_NAME.match(name) or ".." in name:
        raise web.HTTPNotFound(text="no such file")
    path = (WEB_DIR / name).resolve()
    if path.parent != WEB_DIR or not path.is_file():
        raise web.HTTPNotFound(text="no such file")
    return _file_response(path)


# --- live updates --------------------------------------------------------------------------


class _Stream:
    """One open event stream: what changed since its last event, and a wake-up."""

    __slots__ = ("closed", "kinds", "request", "wake")

    def __init__(self, request: web.Request) -> None:
        self.kinds: set[str] = set()
        self.wake = asyncio.Event()
        self.closed = False
        self.request = request

    def notify(self, kind: str) -> None:
        self.kinds.add(kind)
        self.wake.set()

    def close(self) -> None:
        self.closed = True
        self.wake.set()

    @property
    def gone(self) -> bool:
        transport = self.request.transport
        return transport is None or transport.is_closing()


class LiveHub:
    """Fans node changes out to the open event streams of one app."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._streams: set[_Stream] = set()
        self._detach: list[Callable[[], None]] = []
        self._poller: asyncio.Task[None] | None = None
        self._closed = False
        self.events_sent = 0

    @property
    def node(self) -> Node:
        return self._app[NODE]

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def _broadcast(self, kind: str) -> None:
        for stream in self._streams:
            stream.notify(kind)

    def _attach(self) -> None:
        node = self.node
        if node.store is not None:
            self._detach.append(node.store.add_listener(lambda: self._broadcast("queues")))
        if node.printer is not None:
            self._detach.append(node.printer.add_listener(lambda event: self._broadcast("printer")))
        # LAN queues live in their own records, and peers come and go: both when present
        if node.lan is not None:
            self._detach.append(node.lan.add_listener(lambda *_: self._broadcast("queues")))
        if node.queues is not None:  # queues kept elsewhere (etcd) change without a local write
            self._detach.append(node.queues.add_listener(lambda: self._broadcast("queues")))
        if node.discovery is not None:
            self._detach.append(node.discovery.add_listener(lambda *_: self._broadcast("peers")))
        if node.farm is not None:
            self._detach.append(node.farm.add_listener(lambda: self._broadcast("farm")))
            node.farm.touch()
        self._poller = asyncio.create_task(self._poll(), name="web-live-poll")

    def _release(self) -> None:
        for undo in self._detach:
            with contextlib.suppress(ValueError):
                undo()
        self._detach.clear()
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None

    def _driver_signature(self) -> tuple[Any, ...]:
        runner = self.node.runner
        if runner is None:
            return ()
        return (runner.active, runner.status, runner.status_type)

    def _printer_signature(self) -> tuple[Any, ...]:
        printer = self.node.printer
        if printer is None:
            return ()
        progress = printer.progress()
        done = None
        if progress is not None:
            c = progress.completion
            done = (progress.name, round(c * 1000) if c is not None else progress.lines_done)
        return (printer.state, done)

    async def _poll(self) -> None:
        """Driver status and print progress have no events of their own: sample them."""
        driver, printer = self._driver_signature(), self._printer_signature()
        while True:
            await asyncio.sleep(POLL)
            try:
                now_driver, now_printer = self._driver_signature(), self._printer_signature()
            except Exception:  # a service half torn down at shutdown: try again next time
                log.debug("live poll failed", exc_info=True)
                continue
            if now_driver != driver:
                driver = now_driver
                self._broadcast("driver")
            if now_printer != printer:
                printer = now_printer
                self._broadcast("printer")
            if self.node.farm is not None:
                self.node.farm.touch()  # an open page watches the farm
            for stream in list(self._streams):
                if stream.gone:
                    stream.close()

    def subscribe(self, request: web.Request) -> _Stream:
        if self._closed:
            raise web.HTTPServiceUnavailable(text="the node is shutting down")
        if len(self._streams) >= MAX_STREAMS:
            raise web.HTTPServiceUnavailable(text="too many open event streams")
        stream = _Stream(request)
        if not self._streams:
            self._attach()
        self._streams.add(stream)
        return stream

    def unsubscribe(self, stream: _Stream) -> None:
        self._streams.discard(stream)
        if not self._streams:
            self._release()

    async def async_close(self) -> None:
        """End every stream (their handlers return) and detach from the services."""
        self._closed = True
        for stream in list(self._streams):
            stream.close()
        self._release()


LIVE = web.AppKey("lanqueue_live", LiveHub)


def setup(app: web.Application) -> None:
    """Give the app its hub and end open streams on shutdown (called by Node.make_app)."""
    app[LIVE] = LiveHub(app)

    async def on_shutdown(app: web.Application) -> None:
        await app[LIVE].async_close()

    app.on_shutdown.append(on_shutdown)


def _event(kinds: set[str]) -> bytes:
    return f"event: change\ndata: {json.dumps({'kinds': sorted(kinds)})}\n\n".encode()


@routes.get("/lanqueue/events", allow_head=False)  # a HEAD would hold a stream open for nothing
async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: `change` with `{"kinds": [...]}` whenever something moved."""
    hub = request.app.get(LIVE)
    if hub is None:  # an app built without `setup`: no live updates, say so clearly
        raise web.HTTPServiceUnavailable(text="live updates are not enabled on this app")
    stream = hub.subscribe(request)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    try:
        await response.prepare(request)
        # `hello` tells a (re)connected page to fetch everything it may have missed
        await response.write(b"retry: 2000\nevent: hello\ndata: {}\n\n")
        loop = asyncio.get_running_loop()
        last = 0.0
        while not stream.closed:
            try:
                await asyncio.wait_for(stream.wake.wait(), KEEPALIVE)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if stream.closed:
                break
            pause = last + MIN_INTERVAL - loop.time()
            if pause > 0:
                await asyncio.sleep(pause)  # coalesce: later changes join this event
            stream.wake.clear()
            kinds, stream.kinds = stream.kinds, set()
            if kinds:
                await response.write(_event(kinds))
                hub.events_sent += 1
                last = loop.time()
    except ConnectionError:  # the client went away mid-write
        pass
    finally:
        hub.unsubscribe(stream)
    with contextlib.suppress(ConnectionError, RuntimeError):
        await response.write_eof()
    return response


# --- the farm view -------------------------------------------------------------------------


def _loads(cards: list[dict[str, Any]], queue: str) -> list[timeline.PrinterLoad]:
    """The printers that take work from `queue` now (on, managed, members), with their work."""
    out = []
    for c in cards:
        in_queue = c.get("own") if queue == "local" else queue in (c.get("queues") or ())
        if not in_queue or c.get("farm_state") != "on" or not c.get("managing"):
            continue
        busy = c.get("left_s") if c.get("state") in ("Printing", "Paused", "Pausing") else 0.0
        job = c.get("job") or {}
        holding = frozenset({str(job["id"])}) if job.get("queue") == queue and "id" in job else frozenset()
        materials = tuple(m if isinstance(m, str) else None for m in c.get("materials") or ())
        out.append(timeline.PrinterLoad(str(c["node_id"]), str(c.get("name") or ""), busy, c.get("profile"),
                                        holding, materials))
    return out


_parsed_queues: weakref.WeakKeyDictionary[Any, tuple[str, list[dict[str, Any]]]] = weakref.WeakKeyDictionary()


async def _queues(node: Node) -> list[dict[str, Any]]:
    """The queues as state/get shows them, parsed once per change of its text (an open page asks
    for the farm view on every printer update; parsing 1,000 jobs each time was most of its cost)."""
    text = await state_json(node)
    cached = _parsed_queues.get(node)
    if cached is None or cached[0] != text:
        cached = (text, json.loads(text)["queues"])
        _parsed_queues[node] = cached
    return cached[1]


@routes.get("/lanqueue/farm")
async def farm(request: web.Request) -> web.Response:
    """Every printer of the shared LAN queues (this node's first) and each queue's timeline."""
    node = request.app[NODE]
    if node.farm is None:
        raise web.HTTPServiceUnavailable(text="the farm view is starting")
    node.farm.touch()
    cards = await node.farm.cards()
    now = time.time()
    timelines = []
    for q in await _queues(node):
        forecasts = timeline.plan(q["jobs"], _loads(cards, q["name"]))
        timelines.append({"queue": q["name"], "jobs": [f.to_json(now) for f in forecasts]})
    return json_response({"node_id": node.node_id, "now": now, "cards": cards, "timelines": timelines})


@routes.get("/lanqueue/farm/thumbnail/{node}/{name}")
async def farm_thumbnail(request: web.Request) -> web.Response:
    """The slicer's picture of what a printer of the farm prints: this node's own, else relayed
    from the printer's node over the signed peer protocol (the page may only load from here)."""
    node = request.app[NODE]
    name = request.match_info["name"]
    if not _THUMBNAIL_NAME.match(name):
        raise NotFound("no such thumbnail")
    if node.farm is None:
        raise web.HTTPServiceUnavailable(text="the farm view is starting")
    data = await node.farm.thumbnail_of(request.match_info["node"], name)
    if data is None:
        raise NotFound("no such thumbnail")
    kind = "image/png" if name.endswith(".png") else "image/jpeg"
    return web.Response(body=data, headers={"Content-Type": kind, "Cache-Control": "private, max-age=31536000, immutable"})


@routes.post("/lanqueue/farm/action")
async def farm_action(request: web.Request) -> web.Response:
    """An action on any printer of the farm; a peer's goes over the signed peer protocol."""
    form = await read_form(request)
    target, action = (f.read(form) for f in fields.FARM_ACTION)
    node = request.app[NODE]
    if node.farm is None:
        raise web.HTTPServiceUnavailable(text="the farm view is starting")
    if not target or not action:
        raise BadRequest("give node and action")
    await node.farm.act_on(target, action)
    return json_response({"ok": True})
