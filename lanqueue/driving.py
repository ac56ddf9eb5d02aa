"""The asyncio adapter around the driver (runner.py): performs its actions, feeds back outcomes.

All driver decisions stay in `runner.Driver`; this module only does the I/O: it renders and sends
scripts, asks the node's queues (one interface, `lanqueue.queues.Queue`, whatever their kind) for
the next printable set and holds it, starts prints on the printer, records results durably
through the queue that holds the set and listens to the printer. Events are processed one at a time
from a queue, so the driver never sees two events at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from . import runner as r
from .attended import AttendedHours
from .hostcmd import split_at_pauses
from .model import PrintSet, Strategy
from .printer.backend import PrinterBackend
from .printer.events import PrinterState

if TYPE_CHECKING:
    from .files import FileStore
    from .queues.registry import QueueRegistry
    from .store import Store

__all__ = ["QueueDriver", "ScriptRenderer"]

log = logging.getLogger(__name__)



class ScriptRenderer(Protocol):
    async def __call__(self, event: str, job: r.JobRef | None) -> str: ...


class QueueDriver:
    """Runs the driver for one printer; `async_start`/`async_close` bracket its life."""

    def __init__(
        self,
        store: Store,
        files: FileStore,
        printer: PrinterBackend,
        render_scripts: ScriptRenderer,
        *,
        profile: str,
        settings: r.DriverSettings | None = None,
        queues: QueueRegistry,
        clock: Callable[[], float] = time.monotonic,
        attended: AttendedHours | None = None,
        clears_by_hand: Callable[[], Awaitable[bool]] | None = None,
        local_time: Callable[[], datetime] = datetime.now,
    ) -> None:
        self.store = store
        self.files = files
        self.printer = printer
        self.render_scripts = render_scripts
        self.profile = profile
        self.queues = queues
        self.attended = attended
        self._clears_by_hand = clears_by_hand
        self._local_time = local_time
        self.driver = r.Driver(settings or r.DriverSettings())
        self._clock = clock
        self._events: asyncio.Queue[r.Event] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._main: asyncio.Task[None] | None = None
        self._run_id: int | None = None
        self._our_print = False
        self._continue = asyncio.Event()
        self._settled = asyncio.Event()
        self._unsubscribe: Callable[[], None] | None = None

    # --- life ------------------------------------------------------------------------------

    async def async_start(self, *, activate: bool = False) -> None:
        aborted = await self.store.abort_open_runs()
        if aborted:
            log.warning("%d print(s) were interrupted by a restart; recorded as aborted", aborted)
        self._unsubscribe = self.printer.add_listener(self._on_printer_event)
        if _printer_ready(self.printer):
            self.driver.handle(r.PrinterReady())
        self._main = asyncio.create_task(self._loop(), name="queue-driver")
        self._spawn(self._ticker())
        if activate:
            await self.async_set_active(True)

    async def async_close(self) -> None:
        if self._unsubscribe:
            self._unsubscribe()
            self._unsubscribe = None
        tasks = [t for t in (self._main, *self._tasks) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._main = None
        self._tasks.clear()

    # --- what the API asks -----------------------------------------------------------------

    @property
    def active(self) -> bool:
        return self.driver.active

    @property
    def status(self) -> str:
        return self.driver.status

    @property
    def status_type(self) -> str:
        return self.driver.status_type

    def active_set_id(self, queue: str) -> Any:
        job = self.driver.job
        return job.set_id if job is not None and job.queue == queue else None

    async def async_set_active(self, active: bool) -> None:
        """Activate or deactivate and return once the driver has taken the event, so the
        answer of `set_active` reflects the new state."""
        await self.store.set_setting("active", active)
        await self._feed_and_settle(r.Activate() if active else r.Deactivate())

    async def async_continue(self) -> bool:
        """A person cleared the bed (or did what a `@pause` asked); False if nothing waited."""
        if not self.driver.waiting_for_person:
            return False
        self._continue.set()
        return True

    def queue_changed(self) -> None:
        self.feed(r.QueueChanged())

    def feed(self, event: r.Event) -> None:
        self._events.put_nowait(event)

    async def _feed_and_settle(self, event: r.Event) -> None:
        self._settled.clear()
        self.feed(event)
        await self._settled.wait()

    # --- the loop --------------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            event = await self._events.get()
            try:
                for action in self.driver.handle(event):
                    await self._perform(action)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("driver action failed after %r", event)
            if self._events.empty():
                self._settled.set()

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.feed(r.Tick(self._clock()))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _perform(self, action: r.Action) -> None:
        if isinstance(action, r.RunScripts):
            self._spawn(self._run_scripts(action))
        elif isinstance(action, r.FindJob):
            try:
                found = await self._find_job()
            except Exception as e:  # noqa: BLE001 - the driver must hear an answer, or it waits forever
                log.exception("looking for the next job failed")
                found = r.NoJob(f"could not read the queues: {e}")
            self.feed(found)
        elif isinstance(action, r.StartPrint):
            try:
                await self._start_print(action.job)
            except Exception as e:  # noqa: BLE001 - same: a failed start is a failed print
                log.exception("starting %s failed", action.job.path)
                self.feed(r.PrintFailed(f"could not start {action.job.path}: {e}"))
        elif isinstance(action, r.RecordResult):
            await self._record(action)
        elif isinstance(action, r.ReleaseJob):
            queue = self.queues.find(action.job.queue)
            if queue is not None:  # a queue left meanwhile has nothing of ours to release
                await queue.release(action.job)
        else:  # pragma: no cover - a new action type without an adapter is a programming error
            raise TypeError(f"unknown action {action!r}")

    # --- actions ---------------------------------------------------------------------------

    async def _run_scripts(self, action: r.RunScripts) -> None:
        """Send the event's scripts; at each `@pause` line wait for a person to continue."""
        error = None
        try:
            gcode = await self.render_scripts(action.event, action.job)
            parts = split_at_pauses(gcode)
            for i, part in enumerate(parts):
                if i > 0:
                    self._continue.clear()
                    self.feed(r.WaitingForPerson(action.event))
                    await self._continue.wait()
                    self.feed(r.PersonContinued())
                if part.strip():
                    await self.printer.async_run_script(part)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the printer went away or refused: the driver decides
            log.warning("scripts of %s failed: %s", action.event, e)
            error = str(e) or type(e).__name__
        self.feed(r.ScriptsDone(action.event, error))

    async def _find_job(self) -> r.Event:
        loaded = loaded_materials(list(await self.store.get_setting("materials", [])), self.printer)
        waiting = 0
        fits = await self._fits()
        limits = {"fits": fits} if fits is not None else {}  # only asked of queues when set
        for queue, row in await self.queues.listed():
            pick = await queue.hold_next(self.profile, loaded, _strategy(row["strategy"]), **limits)
            if pick.ref is not None:
                return r.JobFound(pick.ref)
            waiting += pick.waiting
        what = "another material, profile or a missing file"
        if fits is not None and self.attended is not None:
            what += f", or would end outside the attended hours ({self.attended.text})"
        reason = f"{waiting} job(s) need {what}" if waiting else ""
        return r.NoJob(reason)

    async def _fits(self) -> Callable[[PrintSet], bool] | None:
        """Attended hours limit what starts only while a person clears the bed (an `@pause`
        in the bed-clearing scripts); a set fits if the slicer's estimate ends it while
        someone is there (attended.py)."""
        attended = self.attended
        if attended is None or (self._clears_by_hand is not None and not await self._clears_by_hand()):
            return None
        now = self._local_time()

        def fits(s: PrintSet) -> bool:
            estimate = (s.gcode or {}).get("estimated_time_s")
            return attended.fits(now, float(estimate) if isinstance(estimate, (int, float)) else None)

        return fits

    async def _start_print(self, job: r.JobRef) -> None:
        self._run_id = await self.store.begin_run(job.queue, job.job_id, job.job_name, job.set_id, job.path)
        try:
            full = self.files.resolve(job.path)
            self._our_print = True
            await self.printer.async_print_file(full, job.path)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self._our_print = False
            self.feed(r.PrintFailed(f"could not start {job.path}: {getattr(e, 'message', e)}"))
            return
        self.feed(r.PrintStarted())

    async def _record(self, action: r.RecordResult) -> None:
        if self._run_id is None:
            return
        run_id, self._run_id = self._run_id, None
        queue = self.queues.find(action.job.queue)
        if queue is None:  # the queue was left while its job printed: history still says how it ended
            await self.store.end_run(run_id, action.result)
            return
        await queue.finish(action.job, action.result, run_id)

    # --- printer events --------------------------------------------------------------------

    def _on_printer_event(self, event: Any) -> None:
        from . import printer as p  # the printer package defines the event classes

        if isinstance(event, p.StateChanged):
            self.feed(r.PrinterReady() if _printer_ready(self.printer) else r.PrinterLost(str(event.state)))
        elif isinstance(event, p.TemperaturesChanged):
            bed = event.temps.get("bed") if hasattr(event, "temps") else None
            if bed is not None:
                self.feed(r.BedTemperature(bed[0]))
        elif self._our_print and isinstance(event, p.PrintDone):
            self._our_print = False
            self.feed(r.PrintSucceeded())
        elif self._our_print and isinstance(event, p.PrintFailed):
            self._our_print = False
            self.feed(r.PrintFailed(event.reason))
        elif self._our_print and isinstance(event, p.PrintCancelled):
            self._our_print = False
            self.feed(r.PrintCancelled())

    def printing_path(self) -> str | None:
        return self.driver.job.path if self._our_print and self.driver.job else None


def _strategy(name: str) -> Strategy:
    try:
        return Strategy(name)
    except ValueError:
        return Strategy.IN_ORDER


def _printer_ready(printer: PrinterBackend) -> bool:
    return printer.state is PrinterState.OPERATIONAL


def loaded_materials(stored: list[str | None], printer: PrinterBackend) -> list[str | None]:
    """What each tool holds for material matching: what the printer itself reports (AMS, MMU,
    Spoolman), else what a person entered in the settings for that tool."""
    try:
        reported = printer.capabilities.materials()
    except Exception:  # noqa: BLE001 - a backend that cannot say falls back to the settings
        reported = []
    width = max(len(stored), len(reported))
    out: list[str | None] = []
    for i in range(width):
        mine = reported[i] if i < len(reported) else None
        out.append(mine if mine else (stored[i] if i < len(stored) else None))
    return out
