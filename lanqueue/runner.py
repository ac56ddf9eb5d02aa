"""The continuous-print driver: a state machine without I/O that keeps one printer busy.

Events come in (the user activates, a script finished, a print ended, the bed cooled, a timer
ticked, the adapter found the next job) and actions come out (run the scripts of an event, find
the next job, start a print, record a result, release a job). The asyncio adapter in
`driving.py` performs the actions and feeds their outcomes back, so every decision lives here and
can be tested by feeding events, without a printer, a database or a clock.

One cycle, as the original plugin runs it:

    INACTIVE -activate-> ACTIVATING (activate scripts) -> FINDING (ask for the next job)
    FINDING -job found-> STARTING (start_print scripts) -> PRINTING
    PRINTING -done-> [COOLING (cooldown scripts, wait for the bed)] -> CLEARING (success scripts,
        by default a pause until a person says the bed is clear) -> FINDING ...
    FINDING -nothing printable-> FINISHING (finish scripts, once after work) -> IDLE
    IDLE -queue changed or periodic re-check-> FINDING
    PRINTING -failed-> retry after clearing, up to `max_retries`; then stop and ask for help
    PRINTING -cancelled by the user-> cancel scripts, then INACTIVE

Deactivating during a print leaves the print running; it finishes unmanaged, its result is still
recorded and its job released, but nothing new starts.

Every entry of TRANSITIONS names the handler for (state, event type); an event with no entry in
the current state is dropped and (unless it is mere news, like a tick) counted in `ignored`.
A failed print waits in RECOVERING until the printer is back before the bed is cleared and the
print retried, so a halted or unplugged printer is never sent a retry.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from .model import (
    JobRef,  # the driver's handle on a held set; defined with the queue model
)

__all__ = [
    "DriverState",
    "StatusType",
    "JobRef",
    "DriverSettings",
    "Event",
    "Activate",
    "Deactivate",
    "PrinterReady",
    "PrinterLost",
    "ScriptsDone",
    "WaitingForPerson",
    "PersonContinued",
    "JobFound",
    "NoJob",
    "PrintStarted",
    "PrintSucceeded",
    "PrintFailed",
    "PrintCancelled",
    "BedTemperature",
    "QueueChanged",
    "Tick",
    "Action",
    "RunScripts",
    "FindJob",
    "StartPrint",
    "RecordResult",
    "ReleaseJob",
    "Driver",
]


class DriverState(enum.Enum):
    INACTIVE = "inactive"
    WAITING_PRINTER = "waiting_printer"
    ACTIVATING = "activating"
    FINDING = "finding"
    IDLE = "idle"
    STARTING = "starting"
    PRINTING = "printing"
    COOLING = "cooling"
    CLEARING = "clearing"
    FINISHING = "finishing"
    STOPPING = "stopping"
    RECOVERING = "recovering"  # a print failed and the printer must come back before a retry


class StatusType(str, enum.Enum):
    NORMAL = "NORMAL"
    NEEDS_ACTION = "NEEDS_ACTION"
    ERROR = "ERROR"
    INIT = "INIT"


@dataclass(frozen=True)
class DriverSettings:
    max_retries: int = 3
    cooldown: bool = False
    cooldown_below: float = 35.0  # degrees C on the bed
    cooldown_timeout: float = 30 * 60.0
    recheck_every: float = 5.0  # seconds between looks at the queues while idle


# --- events ------------------------------------------------------------------------------


class Event:
    """Base of everything fed into the driver."""


@dataclass(frozen=True)
class Activate(Event):
    pass


@dataclass(frozen=True)
class Deactivate(Event):
    pass


@dataclass(frozen=True)
class PrinterReady(Event):
    pass


@dataclass(frozen=True)
class PrinterLost(Event):
    reason: str = ""


@dataclass(frozen=True)
class ScriptsDone(Event):
    event: str
    error: str | None = None  # the printer rejected or lost the script


@dataclass(frozen=True)
class WaitingForPerson(Event):
    """A script reached `@pause`: the rest runs after PersonContinued."""

    event: str


@dataclass(frozen=True)
class PersonContinued(Event):
    pass


@dataclass(frozen=True)
class JobFound(Event):
    job: JobRef


@dataclass(frozen=True)
class NoJob(Event):
    reason: str = ""


@dataclass(frozen=True)
class PrintStarted(Event):
    pass


@dataclass(frozen=True)
class PrintSucceeded(Event):
    pass


@dataclass(frozen=True)
class PrintFailed(Event):
    reason: str


@dataclass(frozen=True)
class PrintCancelled(Event):
    pass


@dataclass(frozen=True)
class BedTemperature(Event):
    celsius: float


@dataclass(frozen=True)
class QueueChanged(Event):
    pass


@dataclass(frozen=True)
class Tick(Event):
    now: float


# --- actions -----------------------------------------------------------------------------


class Action:
    """Base of everything the driver asks its adapter to do."""


@dataclass(frozen=True)
class RunScripts(Action):
    """Render and send the scripts attached to `event`; answer with ScriptsDone."""

    event: str
    job: JobRef | None = None


@dataclass(frozen=True)
class FindJob(Action):
    """Choose (and for LAN jobs, acquire) the next printable set; answer JobFound or NoJob."""


@dataclass(frozen=True)
class StartPrint(Action):
    """Begin a run in history and start streaming; answer PrintStarted or PrintFailed."""

    job: JobRef


@dataclass(frozen=True)
class RecordResult(Action):
    """Close the run; `success` also counts the print (in the same transaction)."""

    job: JobRef
    result: str  # success | failure | aborted
    reason: str = ""


@dataclass(frozen=True)
class ReleaseJob(Action):
    """Give the job back (LAN: release the lease); nothing for local jobs."""

    job: JobRef


# --- the machine -------------------------------------------------------------------------

S = DriverState
EV_ACTIVATE = "continuousprint_activate"
EV_START = "continuousprint_start_print"
EV_SUCCESS = "continuousprint_success"
EV_CANCEL = "continuousprint_cancel"
EV_COOLDOWN = "continuousprint_cooldown"
EV_FINISH = "continuousprint_finish"
EV_AWAITING_MATERIAL = "continuousprint_awaiting_material"
EV_DEACTIVATE = "continuousprint_deactivate"


@dataclass
class Driver:
    """The driver of one printer. Feed events with `handle`; it returns actions to perform."""

    settings: DriverSettings = field(default_factory=DriverSettings)
    state: DriverState = DriverState.INACTIVE
    printer_ready: bool = False
    job: JobRef | None = None  # the set being started, printed or cleared after
    printing_unmanaged: bool = False  # deactivated while a print runs
    failures: int = 0
    worked_since_finish: bool = False
    last_error: str = ""
    waiting_for_person: str | None = None
    idle_reason: str = ""
    cool_since: float | None = None
    last_check: float = 0.0
    now: float = 0.0
    ignored: int = 0
    awaiting_material_announced: bool = False
    last_failure: str = ""
    failed_prints: int = 0  # every failed print ever (notifications watch it move)
    ran_dry: int = 0  # times the queues ran out of printable work after printing

    # -- status as clients see it ---------------------------------------------------------

    @property
    def active(self) -> bool:
        return self.state not in (S.INACTIVE, S.STOPPING)

    @property
    def status(self) -> str:
        return self._status()[0]

    @property
    def status_type(self) -> str:
        return self._status()[1].value

    def _status(self) -> tuple[str, StatusType]:
        if self.waiting_for_person:
            what = "clear the bed" if self.waiting_for_person == EV_SUCCESS else "continue"
            return f"Waiting for a person to {what} (then press Continue)", StatusType.NEEDS_ACTION
        st = self.state
        if st == S.INACTIVE:
            if self.last_error:
                return f"Stopped: {self.last_error}", StatusType.ERROR
            if self.printing_unmanaged:
                return "Inactive (the current print finishes unmanaged)", StatusType.NORMAL
            return "Inactive (start managing to print from the queue)", StatusType.NORMAL
        if st == S.WAITING_PRINTER:
            return "Waiting for the printer to be ready", StatusType.INIT
        if st == S.IDLE:
            extra = f": {self.idle_reason}" if self.idle_reason else ""
            return f"Idle (awaiting printable job){extra}", StatusType.NORMAL
        if st == S.PRINTING and self.job:
            return f"Printing {self.job.path}", StatusType.NORMAL
        if st == S.COOLING:
            return "Cooling down the bed", StatusType.NORMAL
        if st == S.RECOVERING:
            return (f"Print failed ({self.last_failure}); retry {self.failures} of "
                    f"{self.settings.max_retries} once the printer is back"), StatusType.NEEDS_ACTION
        texts = {
            S.ACTIVATING: "Starting to manage the printer",
            S.FINDING: "Looking for the next job",
            S.STARTING: "Starting print",
            S.CLEARING: "Clearing the bed",
            S.FINISHING: "Finishing up",
            S.STOPPING: "Stopping",
        }
        return texts.get(st, st.value), StatusType.NORMAL

    # -- dispatch -------------------------------------------------------------------------

    def handle(self, event: Event) -> list[Action]:
        if isinstance(event, Tick):
            self.now = event.now
        if isinstance(event, PrinterReady):
            self.printer_ready = True
        elif isinstance(event, PrinterLost):
            self.printer_ready = False
        handler = TRANSITIONS.get((self.state, type(event)))
        if handler is None:
            handler = ANY_STATE.get(type(event))
        if handler is None:
            if not isinstance(event, _INFORMATIONAL):
                self.ignored += 1
            return []
        return handler(self, event)

    def _go(self, state: DriverState) -> None:
        self.state = state

    # -- activation -----------------------------------------------------------------------

    def _activate(self, _: Event) -> list[Action]:
        self.last_error = ""
        self.failures = 0
        self.worked_since_finish = False
        if self.printing_unmanaged:
            return []  # the unmanaged print must end first; see _unmanaged_end
        if not self.printer_ready:
            self._go(S.WAITING_PRINTER)
            return []
        self._go(S.ACTIVATING)
        return [RunScripts(EV_ACTIVATE)]

    def _printer_ready_again(self, _: Event) -> list[Action]:
        self._go(S.ACTIVATING)
        return [RunScripts(EV_ACTIVATE)]

    def _deactivate(self, _: Event) -> list[Action]:
        self.waiting_for_person = None
        if self.state == S.INACTIVE:
            return []
        if self.state == S.PRINTING:
            self.printing_unmanaged = True
            self._go(S.INACTIVE)
            return []
        actions: list[Action] = []
        if self.job is not None and self.state in (S.STARTING, S.COOLING, S.CLEARING, S.RECOVERING):
            if self.state == S.STARTING:
                actions.append(ReleaseJob(self.job))
            self.job = None
        self._go(S.INACTIVE)
        if self.printer_ready:
            actions.append(RunScripts(EV_DEACTIVATE))
        return actions

    # -- finding and starting -------------------------------------------------------------

    def _find(self) -> list[Action]:
        self._go(S.FINDING)
        self.last_check = self.now
        return [FindJob()]

    def _after_activate_scripts(self, e: Event) -> list[Action]:
        return self._find()

    def _job_found(self, e: Event) -> list[Action]:
        assert isinstance(e, JobFound)
        self.job = e.job
        self.idle_reason = ""
        self.awaiting_material_announced = False
        self._go(S.STARTING)
        return [RunScripts(EV_START, e.job)]

    def _no_job(self, e: Event) -> list[Action]:
        assert isinstance(e, NoJob)
        self.idle_reason = e.reason
        actions: list[Action] = []
        if e.reason and not self.awaiting_material_announced:
            self.awaiting_material_announced = True
            actions.append(RunScripts(EV_AWAITING_MATERIAL))
        if self.worked_since_finish:
            self.worked_since_finish = False
            self.ran_dry += 1
            self._go(S.FINISHING)
            return [RunScripts(EV_FINISH), *actions]
        self._go(S.IDLE)
        return actions

    def _after_start_scripts(self, e: Event) -> list[Action]:
        assert isinstance(e, ScriptsDone) and self.job is not None
        if e.error:
            return self._failed(PrintFailed(f"start script failed: {e.error}"))
        self._go(S.PRINTING)
        return [StartPrint(self.job)]

    def _recheck(self, e: Event) -> list[Action]:
        if isinstance(e, Tick) and self.now - self.last_check < self.settings.recheck_every:
            return []
        return self._find()

    def _idle_after_finish(self, _: Event) -> list[Action]:
        self._go(S.IDLE)
        return []

    # -- printing -------------------------------------------------------------------------

    def _started(self, _: Event) -> list[Action]:
        self.worked_since_finish = True
        return []

    def _done(self, _: Event) -> list[Action]:
        assert self.job is not None
        self.failures = 0
        actions: list[Action] = [RecordResult(self.job, "success"), ReleaseJob(self.job)]
        if self.settings.cooldown:
            self._go(S.COOLING)
            self.cool_since = self.now
            return [*actions, RunScripts(EV_COOLDOWN, self.job)]
        self._go(S.CLEARING)
        return [*actions, RunScripts(EV_SUCCESS, self.job)]

    def _failed(self, e: Event) -> list[Action]:
        assert isinstance(e, PrintFailed) and self.job is not None
        self.failures += 1
        self.failed_prints += 1
        job = self.job
        actions: list[Action] = [RecordResult(job, "failure", e.reason), ReleaseJob(job)]
        self.last_failure = e.reason
        if self.failures > self.settings.max_retries:
            self.last_error = f"{e.reason} (after {self.failures} failed attempt(s)); fix the printer and start again"
            self.job = None
            self._go(S.INACTIVE)
            return actions
        if not self.printer_ready:
            self._go(S.RECOVERING)
            return actions
        self._go(S.CLEARING)
        return [*actions, RunScripts(EV_SUCCESS, job)]

    def _recovered(self, _: Event) -> list[Action]:
        """The printer is back after a failed print: clear the bed, then retry."""
        self._go(S.CLEARING)
        return [RunScripts(EV_SUCCESS, self.job)]

    def _cancelled(self, _: Event) -> list[Action]:
        assert self.job is not None
        job = self.job
        self.job = None
        self._go(S.STOPPING)
        return [RecordResult(job, "aborted", "cancelled by the user"), ReleaseJob(job), RunScripts(EV_CANCEL, job)]

    def _stopped(self, _: Event) -> list[Action]:
        self._go(S.INACTIVE)
        return []

    def _unmanaged_end(self, e: Event) -> list[Action]:
        """A print that was running when the user deactivated has ended."""
        if not self.printing_unmanaged or self.job is None:
            self.ignored += 1
            return []
        job = self.job
        self.job = None
        self.printing_unmanaged = False
        if isinstance(e, PrintSucceeded):
            return [RecordResult(job, "success"), ReleaseJob(job)]
        reason = e.reason if isinstance(e, PrintFailed) else "cancelled by the user"
        result = "failure" if isinstance(e, PrintFailed) else "aborted"
        return [RecordResult(job, result, reason), ReleaseJob(job)]

    # -- after a print --------------------------------------------------------------------

    def _after_cooldown_scripts(self, e: Event) -> list[Action]:
        return self._check_bed(None)

    def _check_bed(self, celsius: float | None) -> list[Action]:
        timed_out = self.cool_since is not None and self.now - self.cool_since >= self.settings.cooldown_timeout
        if (celsius is not None and celsius < self.settings.cooldown_below) or timed_out:
            self._go(S.CLEARING)
            self.cool_since = None
            return [RunScripts(EV_SUCCESS, self.job)]
        return []

    def _bed_temperature(self, e: Event) -> list[Action]:
        assert isinstance(e, BedTemperature)
        return self._check_bed(e.celsius)

    def _cooling_tick(self, e: Event) -> list[Action]:
        return self._check_bed(None)

    def _after_clearing(self, e: Event) -> list[Action]:
        assert isinstance(e, ScriptsDone)
        self.waiting_for_person = None
        self.job = None
        if e.error:
            self.last_error = f"bed clearing failed: {e.error}"
            self._go(S.INACTIVE)
            return []
        return self._find()

    def _waiting(self, e: Event) -> list[Action]:
        assert isinstance(e, WaitingForPerson)
        self.waiting_for_person = e.event
        return []

    def _person_continued(self, _: Event) -> list[Action]:
        self.waiting_for_person = None
        return []

    def _printer_lost_while_waiting(self, e: Event) -> list[Action]:
        self._go(S.WAITING_PRINTER)
        return []


Handler = Callable[[Driver, Event], list[Action]]

# News that most states have no use for; not counted as ignored when a state drops them.
_INFORMATIONAL = (PrinterReady, PrinterLost, Tick, BedTemperature, QueueChanged)

# (state, event type) -> handler. Everything the driver does is listed here.
TRANSITIONS: dict[tuple[DriverState, type[Event]], Handler] = {
    (S.INACTIVE, Activate): Driver._activate,
    (S.INACTIVE, PrintSucceeded): Driver._unmanaged_end,
    (S.INACTIVE, PrintFailed): Driver._unmanaged_end,
    (S.INACTIVE, PrintCancelled): Driver._unmanaged_end,
    (S.WAITING_PRINTER, PrinterReady): Driver._printer_ready_again,
    (S.ACTIVATING, ScriptsDone): Driver._after_activate_scripts,
    (S.FINDING, JobFound): Driver._job_found,
    (S.FINDING, NoJob): Driver._no_job,
    (S.IDLE, QueueChanged): Driver._recheck,
    (S.IDLE, Tick): Driver._recheck,
    (S.IDLE, PrinterLost): Driver._printer_lost_while_waiting,
    (S.FINISHING, ScriptsDone): Driver._idle_after_finish,
    (S.STARTING, ScriptsDone): Driver._after_start_scripts,
    (S.PRINTING, PrintStarted): Driver._started,
    (S.PRINTING, PrintSucceeded): Driver._done,
    (S.PRINTING, PrintFailed): Driver._failed,
    (S.PRINTING, PrintCancelled): Driver._cancelled,
    (S.COOLING, ScriptsDone): Driver._after_cooldown_scripts,
    (S.COOLING, BedTemperature): Driver._bed_temperature,
    (S.COOLING, Tick): Driver._cooling_tick,
    (S.CLEARING, ScriptsDone): Driver._after_clearing,
    (S.STOPPING, ScriptsDone): Driver._stopped,
    (S.RECOVERING, PrinterReady): Driver._recovered,
}

# Events handled the same way in every active state.
ANY_STATE: dict[type[Event], Handler] = {
    Deactivate: Driver._deactivate,
    WaitingForPerson: Driver._waiting,
    PersonContinued: Driver._person_continued,
}
