"""The printer driver: firmware protocol core, serial transport, virtual Marlin, and the service.

The rest of the node uses `PrinterService` and the events; the rest is public for tests and tools.
"""

from __future__ import annotations

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
from .virtual import (
    Faults,
    VirtualMarlin,
    VirtualPrinterPty,
    run_virtual_printer_on_pty,
)

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
