"""One node: the composition root that builds every service of a printer and the HTTP app.

Each resource (database, printer connection, queue driver, mDNS, LAN sync) is set up and torn
down by its own aiohttp cleanup context, in order; aiohttp runs a teardown only if its setup
finished, so a failed start never leaves a half-open port or database behind.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .api import automation as automation_routes
from .api import continuousprint, docroutes, octoprint
from .api import files as file_routes
from .api import lan as lan_routes
from .api import metrics as metrics_routes
from .api import web as web_routes
from .api.app import auth_middleware, error_middleware
from .api.keys import NODE
from .attended import parse_attended, waits_for_person
from .automation import Automation, async_render_event
from .config import Options
from .discovery import DiscoveryService
from .discovery.service import next_incarnation
from .driving import QueueDriver
from .errors import BadRequest, Conflict, NotFound
from .etcd.routes import file_routes as etcd_file_routes
from .farm import FarmService
from .files import FileStore, sha256_of
from .memory import release_freed_memory
from .model import LOCAL, Job, JobRef
from .preprocess import Evaluator
from .printer import BackendSettings, PrinterBackend, open_backend
from .queues import PortableJob, PortableSet, one_job
from .queues.lan import LanProvider
from .queues.registry import LocalProvider, QueueRegistry
from .runner import EV_SUCCESS, DriverSettings
from .store import Store
from .sync import routes as peer_routes
from .sync.history import HISTORY_FILE, HistoryLog
from .sync.records import Timings
from .sync.service import LanService, PeerDirectory

if TYPE_CHECKING:
    from .etcd.provider import EtcdProvider
    from .notify import Notifier, Snapshot

__all__ = ["Node"]

log = logging.getLogger(__name__)


class Node:
    """Everything one `lanqueue serve` process runs. Build with Options, then `make_app()`."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.data_dir = options.data_dir
        self.node_id = ""
        self.api_key = ""
        self.store: Store = None  # type: ignore[assignment]  # set up by _store_ctx
        self.files: FileStore = None  # type: ignore[assignment]  # set by prepare()
        self.printer: PrinterBackend = None  # type: ignore[assignment]
        self.runner: QueueDriver = None  # type: ignore[assignment]
        self.lan: LanService | None = None
        self.etcd: EtcdProvider | None = None
        self.queues: QueueRegistry = None  # type: ignore[assignment]  # set up by _store_ctx
        self.discovery: DiscoveryService | None = None
        self.selected_file: str | None = None
        self.evaluator: Evaluator | None = None
        self.notifier: Notifier | None = None
        self.farm: FarmService | None = None
        self._lan_box = peer_routes.LanBox()

    # --- identity --------------------------------------------------------------------------

    def prepare(self) -> None:
        """Create the data dir, load or create the node id and the API key (printed once)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        id_file = self.data_dir / "node_id"
        if not id_file.exists():
            _write_private(id_file, str(uuid.uuid4()))
        self.node_id = id_file.read_text().strip()
        if self.options.api_key:
            self.api_key = self.options.api_key
        else:
            key_file = self.data_dir / "api_key"
            if not key_file.exists():
                _write_private(key_file, secrets.token_hex(16).upper())
                print(f"lanqueue: generated API key {key_file.read_text().strip()} (stored in {key_file})", flush=True)
            self.api_key = key_file.read_text().strip()
        self.files = FileStore(self.data_dir / "files", self.options.max_upload_mb * 1024 * 1024,
                               meta_dir=self.data_dir / "gcodemeta")

    # --- the application -------------------------------------------------------------------

    def make_app(self) -> web.Application:
        if not self.node_id:
            self.prepare()
        app = web.Application(
            middlewares=[error_middleware, auth_middleware],
            client_max_size=self.options.max_upload_mb * 1024 * 1024 + 65536,
        )
        app[NODE] = self
        app.add_routes(continuousprint.routes)
        app.add_routes(automation_routes.routes)
        app.add_routes(file_routes.routes)
        app.add_routes(octoprint.routes)
        octoprint.setup(app)  # /api/job follows prints (the file stays selected when done)
        app.add_routes(docroutes.routes)
        app.add_routes(web_routes.routes)
        app.add_routes(metrics_routes.routes)
        app.add_routes(lan_routes.routes)
        app.add_routes(etcd_file_routes(lambda name: self.etcd.queue(name) if self.etcd else None))
        web_routes.setup(app)  # live updates: ends open event streams on shutdown
        peer_routes.install(app, self._lan_box)
        app.cleanup_ctx.append(self._store_ctx)
        app.cleanup_ctx.append(self._evaluator_ctx)
        app.cleanup_ctx.append(self._discovery_ctx(app))
        app.cleanup_ctx.append(self._lan_ctx)
        app.cleanup_ctx.append(self._etcd_ctx)
        app.cleanup_ctx.append(self._printer_ctx)
        app.cleanup_ctx.append(self._driver_ctx)
        app.cleanup_ctx.append(self._notify_ctx)
        app.cleanup_ctx.append(self._farm_ctx)
        app.on_startup.append(self._announce)
        return app

    async def _announce(self, app: web.Application) -> None:
        log.info("node %s (%s) ready, printer %s", self.options.name, self.node_id, self.options.printer)
        release_freed_memory()  # what start-up freed goes back to the system (idle memory)

    async def _store_ctx(self, app: web.Application) -> AsyncIterator[None]:
        self.store = await Store.open(self.data_dir / "lanqueue.sqlite3")
        if self.files.meta is not None:  # which stored file holds which content, for its metadata
            digests = {path: row["sha256"] for path, row in (await self.store.files()).items()}
            await self.files.meta.async_load(digests, self.files.root)
        self.store.add_listener(self._on_store_write)
        self.queues = QueueRegistry(self.store)
        self.queues.add(LocalProvider(self.store, self.files))
        yield
        await self.store.async_close()

    def _discovery_ctx(self, app: web.Application) -> Any:
        """Discovery is built before the app starts, so its hello route can be mounted."""
        opts = self.options
        self.discovery = discovery = DiscoveryService(
            self.node_id,
            opts.name,
            opts.port,
            opts.profile,
            sorted(opts.lan_queues),
            mdns=not opts.no_mdns,
            interfaces=list(opts.interface) or None,
            static_peers=opts.peer,
            status_provider=self._status_for_peers,
            incarnation=next_incarnation(self.data_dir),
        )
        discovery.install(app)

        async def ctx(app: web.Application) -> AsyncIterator[None]:
            await discovery.async_start()
            yield
            await discovery.async_close()

        return ctx

    def _status_for_peers(self) -> dict[str, Any]:
        """What the public hello answer says about this printer: its state only. Which job it
        prints is LAN data, visible to members through the records (`lease_holder`), not to
        anyone who asks without the secret."""
        return {"status": self.printer.state.text if self.printer else "Offline", "current_job": None}

    async def _lan_ctx(self, app: web.Application) -> AsyncIterator[None]:
        secrets_ = self.options.lan_queues
        ttl = self.options.lease_ttl
        lock_delay = self.options.lock_delay if self.options.lock_delay is not None else ttl
        timings = Timings(ttl=ttl, renew_every=ttl / 3, lock_delay=lock_delay,
                          retry_every=min(5.0, ttl / 6), anti_entropy_every=min(30.0, ttl / 2),
                          identity_grace=min(15.0, ttl))
        history = HistoryLog(self.data_dir / HISTORY_FILE) if self.options.lan_history else None
        self.lan = LanService(
            self.node_id, self.store, self.files, secrets_,
            directory=PeerDirectory(self.discovery), timings=timings, history=history,
            gossip_above=self.options.lan_gossip_above,
        )
        self.lan.on_lease_lapsed = self._stop_lapsed_print
        await self.lan.async_start()
        self._lan_box.service = self.lan
        self.lan.add_listener(self._on_store_write)
        provider = LanProvider(self.lan)
        self.queues.add(provider)
        yield
        self.queues.remove(provider)
        self._lan_box.service = None
        await self.lan.async_close(drain=True)  # hand our jobs to a live peer before exiting
        if history is not None:
            history.close()

    async def _etcd_ctx(self, app: web.Application) -> AsyncIterator[None]:
        """Queues kept in etcd (`--lan NAME=etcd://...`); nothing runs without one."""
        specs = self.options.etcd_queues
        if not specs:
            yield
            return
        from .etcd.provider import EtcdCredentials, EtcdProvider  # only a node that joins one loads etcd
        from .etcd.queue import EtcdContext

        opts = self.options
        ttl = opts.lease_ttl
        ctx = EtcdContext(
            node_id=self.node_id, node_name=opts.name, node_url=self._reachable_url(specs),
            store=self.store, files=self.files, ttl=ttl,
            lock_delay=opts.lock_delay if opts.lock_delay is not None else ttl, on_change=self._on_queue_change,
            on_lease_lapsed=self._stop_lapsed_print,
        )
        creds = EtcdCredentials(opts.etcd_user, opts.etcd_password, opts.etcd_ca, opts.etcd_cert, opts.etcd_key)
        self.etcd = EtcdProvider(specs, ctx, creds)
        for name in specs:
            await self.store.ensure_queue(name)
        await self.etcd.async_start()
        self.queues.add(self.etcd)
        yield
        self.queues.remove(self.etcd)
        await self.etcd.async_close()
        self.etcd = None

    def _reachable_url(self, specs: dict[str, str]) -> str:
        """This node's address as the other members of its etcd queues reach it (for files)."""
        from .etcd.provider import endpoints_of, local_address_towards

        host = self.options.host
        if host in ("0.0.0.0", "::", ""):
            host = local_address_towards(endpoints_of(next(iter(specs.values())))[0])
        return f"http://{host}:{self.options.port}"

    async def _evaluator_ctx(self, app: web.Application) -> AsyncIterator[None]:
        async with Evaluator() as engine:
            self.evaluator = engine
            yield
            self.evaluator = None

    async def _printer_ctx(self, app: web.Application) -> AsyncIterator[None]:
        opts = self.options
        settings = BackendSettings(
            key=opts.printer_key, user=opts.printer_user, serial=opts.printer_serial,
            baudrate=opts.baudrate, virtual_speed=opts.virtual_speed, data_dir=self.data_dir,
        )
        self.printer = open_backend(opts.printer, settings)
        await self.printer.async_start()
        yield
        await self.printer.async_close()

    async def _driver_ctx(self, app: web.Application) -> AsyncIterator[None]:
        settings = await self.store.get_setting("driver", {})
        self.runner = QueueDriver(
            self.store,
            self.files,
            self.printer,
            self.render_scripts,
            profile=self.options.profile,
            settings=DriverSettings(**settings),
            queues=self.queues,
            attended=parse_attended(self.options.attended_hours) if self.options.attended_hours else None,
            clears_by_hand=self.clears_by_hand,
        )
        resume = self.options.resume and bool(await self.store.get_setting("active", False))
        await self.runner.async_start(activate=resume)
        yield
        await self.runner.async_close()

    async def _notify_ctx(self, app: web.Application) -> AsyncIterator[None]:
        """MQTT (with Home Assistant discovery) and webhooks, when configured (notify.py)."""
        opts = self.options
        if not (opts.webhook or opts.mqtt):
            yield  # nothing to notify: notify.py (and its MQTT client) is never loaded
            return
        from .notify import MqttSink, Notifier, WebhookSink, parse_broker

        sinks: list[Any] = [WebhookSink(url, opts.webhook_secret, {"node_id": self.node_id, "node": opts.name})
                            for url in opts.webhook]
        if opts.mqtt:
            sinks.append(MqttSink(parse_broker(opts.mqtt), self.node_id, opts.name, opts.profile,
                                  user=opts.mqtt_user, password=opts.mqtt_password, cafile=opts.mqtt_ca,
                                  snapshot=self._driver_snapshot))
        self.notifier = Notifier(self._driver_snapshot, sinks) if sinks else None
        if self.notifier is not None:
            await self.notifier.async_start()
        yield
        if self.notifier is not None:
            await self.notifier.async_close()

    def _driver_snapshot(self) -> Snapshot | None:
        from .notify import driver_snapshot

        return driver_snapshot(self.runner.driver) if self.runner is not None else None

    async def _farm_ctx(self, app: web.Application) -> AsyncIterator[None]:
        """The farm view: this printer's summary for the peers, theirs for the page."""
        self.farm = FarmService(self)
        await self.farm.async_start()
        self._lan_box.farm = self.farm
        yield
        self._lan_box.farm = None
        await self.farm.async_close()

    def _on_store_write(self) -> None:
        if self.runner is not None:
            self.runner.queue_changed()

    def _on_queue_change(self) -> None:
        """A queue kept elsewhere (etcd) changed: the driver looks again, the page refreshes."""
        self._on_store_write()
        self.queues.changed()

    # --- services the routes ask for -------------------------------------------------------

    async def automation(self) -> Automation:
        stored = await self.store.get_setting("automation")
        return Automation.from_json(stored) if stored is not None else Automation.defaults()

    async def clears_by_hand(self) -> bool:
        """A person clears the bed after each print: the bed-clearing event's scripts pause."""
        auto = await self.automation()
        return waits_for_person(auto.scripts.get(a.script, "") for a in auto.events.get(EV_SUCCESS, ()))

    async def set_automation(self, automation: Automation) -> None:
        await self.store.set_setting("automation", automation.to_json())

    async def external(self) -> dict[str, Any]:
        return dict(await self.store.get_setting("external", {}))

    async def set_external(self, data: dict[str, Any]) -> None:
        await self.store.set_setting("external", data)

    async def render_scripts(self, event: str, job: JobRef | None) -> str:
        """The G-code to send for `event`, after running each attachment's preprocessor."""
        bed = self.printer.temperatures.get("bed") if self.printer else None
        symbols = {
            "current": {
                "path": job.path if job else None,
                "materials": list(job.materials) if job else [],
                "bed_temp": bed[0] if bed else None,
                "state": self.runner.driver.state.value if self.runner else "inactive",
            },
            "external": await self.external(),
            "metadata": {},
        }
        result = await async_render_event(await self.automation(), event, symbols, engine=self.evaluator)
        for outcome in result.outcomes:
            if outcome.status == "error":
                log.warning("automation %s, script %r: %s", event, outcome.script, outcome.message)
        return result.gcode

    async def set_queues(self, queues: list[dict[str, Any]]) -> None:
        if LOCAL not in [q["name"] for q in queues]:
            raise BadRequest("the local queue cannot be removed")
        if self.lan is not None:
            await self.lan.configure(queues)
            if self.discovery is not None:
                await self.discovery.async_update(queues=sorted(self.lan.queues))
        await self.store.set_queues([{k: q.get(k) for k in ("name", "strategy", "addr")} for q in queues])

    async def queue_uploaded_file(self, path: str) -> int:
        """A slicer's "upload and print": a new, ready job of one set in the local queue."""
        job_id, _ = await self.queues.get(LOCAL).add_set({"path": path, "count": 1, "remaining": 1}, job_id=None,
                                                         job_name=None, job_draft=False)
        return int(job_id)

    async def select_file(self, path: str, *, print_now: bool) -> None:
        if print_now:  # a refused print (409) leaves the selection as it was
            if self.runner.active:
                raise Conflict("the queue is being managed; stop managing before printing directly")
            await self.printer.async_print_file(self.files.resolve(path), path)
        self.selected_file = path

    async def _stop_lapsed_print(self, queue: str, job_id: str) -> None:
        """The lease of the copy being printed (LAN or etcd queue) lapsed (a freeze, a lost network):
        the printer gets no further line of it. The copy ends as cancelled and is not counted."""
        runner = self.runner
        job = runner.driver.job if runner is not None else None
        if job is not None and job.queue == queue and str(job.job_id) == job_id and self.printer is not None:
            await self.printer.async_cancel()

    def printing_path(self) -> str | None:
        progress = self.printer.progress() if self.printer else None
        return getattr(progress, "name", None) if progress else None

    def disk_usage(self) -> tuple[int, int]:
        usage = shutil.disk_usage(self.files.root)
        return usage.free, usage.total

    async def export_jobs(self, job_ids: list[int]) -> tuple[list[str], list[str]]:
        from . import gjob  # rarely used: loaded on first use

        paths, errors = [], []
        for jid in job_ids:
            try:
                job = await self.store.job(jid)
                for s in job.sets:
                    self.files.resolve(s.path)
                name = f"{_slug(job.name)}.gjob"
                target = self.files.location(name)
                await asyncio.get_running_loop().run_in_executor(None, gjob.write_gjob, job, self.files.root, target)
                await self.store.record_file(name, await sha256_of(target), target.stat().st_size)
                paths.append(name)
            except (NotFound, BadRequest) as e:
                errors.append(f"job {jid}: {e.message}")
        return paths, errors

    async def import_job(self, path: str, queue_name: str) -> Job:
        """A `.gjob` file's job, as a new draft at the end of the queue (of any kind)."""
        from . import gjob  # rarely used: loaded on first use

        queue = self.queues.get(queue_name)
        source = self.files.resolve(path)
        # unzip (and CRC-check) every member off the loop, before anything is written
        content, members = await asyncio.get_running_loop().run_in_executor(None, gjob.read_gjob, source,
                                                                            self.files.max_size)
        stored_paths = []
        for s, data in zip(content.sets, members):
            target = f"{Path(path).stem}/{s['safe_path']}"

            async def one_chunk(data: bytes = data) -> AsyncIterator[bytes]:
                yield data

            stored = await self.files.save(target, one_chunk())
            await self.store.record_file(stored.path, stored.sha256, stored.size)
            stored_paths.append(stored.path)
        portable = PortableJob(
            name=content.name, count=content.count, draft=True, created=time.time(),
            sets=tuple(PortableSet(path=p, count=s["count"], materials=tuple(s["materials"]),
                                   profiles=tuple(s["profiles"]), metadata=s["metadata"])
                       for s, p in zip(content.sets, stored_paths)),
        )
        new_id = await queue.import_job(portable)
        return await one_job(queue, new_id)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
        f.flush()
        os.fsync(f.fileno())


def _slug(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_" else "_" for c in name).strip("_")
    return keep or "job"
