"""The printer driver: firmware protocol core, serial transport, virtual Marlin, and the service.

The rest of the node uses `PrinterService` and the events; the rest is public for tests and tools.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .backend import (
    BackendSettings,
    Capabilities,
    Filament,
    PrinterBackend,
    PrintProgress,
    ScriptSupport,
    UnknownBackend,
    open_backend,
)
from .events import (
    ActionRequested,
    FirmwareInfo,
    LocalProtocolError,
    PrintCancelled,
    PrintDone,
    PrinterEvent,
    PrinterState,
    PrintFailed,
    PrintPaused,
    PrintResumed,
    PrintStarted,
    ProtocolError,
    RemoteProtocolError,
    ScriptDone,
    SdFilesListed,
    StateChanged,
    TemperaturesChanged,
)
from .protocol import DEFAULT_CANCEL_SCRIPT, FirmwareProtocol, Timeouts
from .service import PrinterService

if TYPE_CHECKING:
    from .virtual import Faults, VirtualMarlin
    from .virtual_pty import VirtualPrinterPty, run_virtual_printer_on_pty

# The virtual printer is loaded on first use (a node on a real printer never needs it).
_LAZY = {"Faults": "virtual", "VirtualMarlin": "virtual", "VirtualPrinterPty": "virtual_pty",
         "run_virtual_printer_on_pty": "virtual_pty"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "DEFAULT_CANCEL_SCRIPT",
    "ActionRequested",
    "BackendSettings",
    "Capabilities",
    "Faults",
    "Filament",
    "FirmwareInfo",
    "FirmwareProtocol",
    "LocalProtocolError",
    "PrintCancelled",
    "PrintDone",
    "PrintFailed",
    "PrintPaused",
    "PrintProgress",
    "PrintResumed",
    "PrintStarted",
    "PrinterBackend",
    "PrinterEvent",
    "PrinterService",
    "PrinterState",
    "ProtocolError",
    "RemoteProtocolError",
    "ScriptDone",
    "ScriptSupport",
    "SdFilesListed",
    "StateChanged",
    "TemperaturesChanged",
    "Timeouts",
    "UnknownBackend",
    "VirtualMarlin",
    "VirtualPrinterPty",
    "open_backend",
    "run_virtual_printer_on_pty",
]
