"""States, events and errors of the printer driver, in one module (the wsproto `events.py` shape).

The protocol core returns these events and the service hands the same objects to its listeners,
so the queue driver and the API see exactly what the state machine decided.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "PrintProgress",
    "PrinterState",
    "PrinterEvent",
    "StateChanged",
    "FirmwareInfo",
    "TemperaturesChanged",
    "PrintStarted",
    "PrintPaused",
    "PrintResumed",
    "PrintDone",
    "PrintFailed",
    "PrintCancelled",
    "ActionRequested",
    "ScriptDone",
    "SdFilesListed",
    "ProtocolError",
    "LocalProtocolError",
    "RemoteProtocolError",
]


class PrinterState(enum.Enum):
    """Where the printer is; `.text` is the string OctoPrint shows for it (clients match on it)."""

    OFFLINE = "Offline"
    CONNECTING = "Connecting"
    OPERATIONAL = "Operational"
    PRINTING = "Printing"
    PAUSING = "Pausing"
    PAUSED = "Paused"
    CANCELLING = "Cancelling"
    ERROR = "Error"

    @property
    def text(self) -> str:
        return self.value

    @property
    def is_connected(self) -> bool:
        return self not in (PrinterState.OFFLINE, PrinterState.CONNECTING, PrinterState.ERROR)

    @property
    def is_printing(self) -> bool:
        """A print is under way (possibly paused): its file must not be swapped or restarted."""
        return self in (
            PrinterState.PRINTING,
            PrinterState.PAUSING,
            PrinterState.PAUSED,
            PrinterState.CANCELLING,
        )


@dataclass(frozen=True, slots=True)
class PrinterEvent:
    """Base of everything the driver reports."""


@dataclass(frozen=True, slots=True)
class StateChanged(PrinterEvent):
    state: PrinterState
    error: str | None = None


@dataclass(frozen=True, slots=True)
class FirmwareInfo(PrinterEvent):
    """The M115 answer: firmware name and the `Cap:` flags that change how the host talks."""

    name: str
    capabilities: Mapping[str, bool]


@dataclass(frozen=True, slots=True)
class TemperaturesChanged(PrinterEvent):
    temps: Mapping[str, tuple[float, float | None]]


@dataclass(frozen=True, slots=True)
class PrintStarted(PrinterEvent):
    path: str
    name: str
    origin: str = "local"  # "local" (streamed by the host) or "sdcard"


@dataclass(frozen=True, slots=True)
class PrintPaused(PrinterEvent):
    path: str
    name: str


@dataclass(frozen=True, slots=True)
class PrintResumed(PrinterEvent):
    path: str
    name: str


@dataclass(frozen=True, slots=True)
class PrintDone(PrinterEvent):
    path: str
    name: str
    elapsed: float


@dataclass(frozen=True, slots=True)
class PrintFailed(PrinterEvent):
    path: str
    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class PrintCancelled(PrinterEvent):
    path: str
    name: str


@dataclass(frozen=True, slots=True)
class ActionRequested(PrinterEvent):
    """`//action:<name>` from the printer (its own screen asked for pause, resume, cancel...)."""

    name: str


@dataclass(frozen=True, slots=True)
class ScriptDone(PrinterEvent):
    """Every line of a script (run_script token) was acknowledged, or it was dropped (ok False)."""

    token: int
    ok: bool = True


@dataclass(frozen=True, slots=True)
class SdFilesListed(PrinterEvent):
    files: tuple[tuple[str, int], ...]


class ProtocolError(Exception):
    """Base of the two protocol error kinds."""


class LocalProtocolError(ProtocolError):
    """The caller asked for something the current state does not allow (our bug or a race)."""


class RemoteProtocolError(ProtocolError):
    """The printer sent something the protocol cannot accept (e.g. an endless line)."""


@dataclass(frozen=True, slots=True)
class PrintProgress:
    """Where the current print is; remaining time is extrapolated from the part done so far."""

    path: str
    name: str
    bytes_done: int
    bytes_total: int
    lines_done: int
    elapsed: float
    estimated_remaining: float | None

    @property
    def completion(self) -> float | None:
        """Fraction done (0..1), None while the size is unknown."""
        return self.bytes_done / self.bytes_total if self.bytes_total > 0 else None
