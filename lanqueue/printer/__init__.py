"""The printer driver: firmware protocol core, serial transport, virtual Marlin, and the service.

The rest of the node uses `PrinterService` and the events; the rest is public for tests and tools.
"""

from __future__ import annotations

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
from .service import PrinterService, PrintProgress
from .virtual import Faults, VirtualMarlin, VirtualPrinterPty, run_virtual_printer_on_pty

__all__ = [
    "ActionRequested",
    "DEFAULT_CANCEL_SCRIPT",
    "Faults",
    "FirmwareInfo",
    "FirmwareProtocol",
    "LocalProtocolError",
    "PrintCancelled",
    "PrintDone",
    "PrinterEvent",
    "PrinterService",
    "PrinterState",
    "PrintFailed",
    "PrintPaused",
    "PrintProgress",
    "PrintResumed",
    "PrintStarted",
    "ProtocolError",
    "RemoteProtocolError",
    "ScriptDone",
    "SdFilesListed",
    "StateChanged",
    "TemperaturesChanged",
    "Timeouts",
    "VirtualMarlin",
    "VirtualPrinterPty",
    "run_virtual_printer_on_pty",
]
