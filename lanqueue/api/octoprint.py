"""The subset of OctoPrint's REST API that slicers and simple clients use.

Status codes and state texts follow OctoPrint (409 when the printer cannot do what was asked),
so a node can be added in a slicer or a dashboard as an OctoPrint host. Direct prints started
here send the file's commands only; the queue's scripts belong to prints the driver starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .. import __version__
from ..errors import BadRequest, Conflict
from ..printer.events import PrintDone, PrinterEvent, PrintStarted
from .app import json_response
from .forms import read_json
from .keys import NODE

__all__ = ["routes", "setup", "version_info"]

routes = web.RouteTableDef()
MAX_COMMANDS = 100


@dataclass
class _Finished:
    """The last print that ran to its end: OctoPrint keeps its file selected and shows it at
    completion 100 until another file is selected or printed."""

    name: str
    size: int | None
    elapsed: float


class _PrintTracker:
    def __init__(self, node: Any) -> None:
        self.node = node
        self.finished: _Finished | None = None

    def on_event(self, event: PrinterEvent) -> None:
        if isinstance(event, PrintStarted):
            # the printed file becomes the selected one (a later "start" reprints it), whoever
            # started it: this API or the queue's driver
            self.node.selected_file = event.name
            self.finished = None
        elif isinstance(event, PrintDone):
            try:
                size: int | None = os.path.getsize(event.path)
            except OSError:
                size = None
            self.finished = _Finished(event.name, size, event.elapsed)


TRACKER: web.AppKey[_PrintTracker] = web.AppKey("octoprint_prints", _PrintTracker)


def setup(app: web.Application) -> None:
    """Follow the printer's events once it is up (after the node's services started)."""

    async def track(app: web.Application) -> None:
        node = app[NODE]
        app[TRACKER] = tracker = _PrintTracker(node)
        if node.printer is not None:
            node.printer.add_listener(tracker.on_event)

    app.on_startup.append(track)


def version_info() -> dict[str, str]:
    return {"api": "0.1", "server": "1.11.0", "text": f"OctoPrint (lanqueue {__version__})"}


@routes.get("/api/version")
async def version(request: web.Request) -> web.Response:
    return json_response(version_info())


@routes.get("/api/server")
async def server(request: web.Request) -> web.Response:
    return json_response({"version": "1.11.0", "safemode": None})


@routes.get("/api/settings")
async def settings(request: web.Request) -> web.Response:
    """Slicers read a few fields here; answer the harmless minimum."""
    return json_response({"api": {"allowCrossOrigin": False}, "feature": {"sdSupport": False}, "plugins": {}})


@routes.get("/api/printerprofiles")
async def printer_profiles(request: web.Request) -> web.Response:
    """Cura's OctoPrint connection reads the current profile (heated bed, extruder count) here."""
    profile = request.app[NODE].options.profile
    return json_response({"profiles": {"_default": {
        "id": "_default", "name": profile, "model": profile, "default": True, "current": True,
        "resource": f"{request.scheme}://{request.host}/api/printerprofiles/_default",
        "heatedBed": True, "heatedChamber": False, "extruder": {"count": 1},
    }}})


def _flags(state: Any) -> dict[str, bool]:
    name = state.name
    connected = state.is_connected
    return {
        "operational": connected,
        "printing": name == "PRINTING",
        "pausing": name == "PAUSING",
        "paused": name == "PAUSED",
        "cancelling": name == "CANCELLING",
        "sdReady": connected,
        "error": name == "ERROR",
        "ready": name == "OPERATIONAL",
        "closedOrError": not connected,
        "finishing": False,
        "resuming": False,
    }


def _temperatures(printer: Any) -> dict[str, Any]:
    return {
        key: {"actual": actual, "target": target, "offset": 0}
        for key, (actual, target) in printer.temperatures.items()
    }


@routes.get("/api/printer")
async def printer_state(request: web.Request) -> web.Response:
    printer = request.app[NODE].printer
    if not printer.state.is_connected:
        raise Conflict("Printer is not operational")
    return json_response(
        {
            "temperature": _temperatures(printer),
            "sd": {"ready": True},
            "state": {"text": printer.state.text, "flags": _flags(printer.state), "error": printer.error or ""},
        }
    )


@routes.post("/api/printer/command")
async def printer_command(request: web.Request) -> web.Response:
    body = await _json_object(request)
    if "commands" in body:
        commands = body["commands"]
        if not isinstance(commands, list) or not all(isinstance(c, str) for c in commands):
            raise BadRequest("'commands' must be a list of strings")
    elif "command" in body:
        if not isinstance(body["command"], str):
            raise BadRequest("'command' must be a string")
        commands = [body["command"]]
    else:
        raise BadRequest("give 'command' or 'commands'")
    if len(commands) > MAX_COMMANDS or any(len(c) > 256 or "\n" in c or "\r" in c for c in commands):
        raise BadRequest("too many or too long commands")
    printer = request.app[NODE].printer
    if not printer.state.is_connected:
        raise Conflict("Printer is not operational")
    await printer.async_send_commands([c for c in commands if c.strip()])
    return web.Response(status=204)


@routes.get("/api/connection")
async def connection_get(request: web.Request) -> web.Response:
    node = request.app[NODE]
    opts = node.options
    return json_response(
        {
            "current": {
                "state": node.printer.state.text,
                "port": opts.printer,
                "baudrate": opts.baudrate,
                "printerProfile": "_default",
            },
            "options": {
                "ports": [opts.printer],
                "baudrates": [opts.baudrate],
                "printerProfiles": [{"id": "_default", "name": opts.profile}],
                "portPreference": opts.printer,
                "baudratePreference": opts.baudrate,
                "printerProfilePreference": "_default",
                "autoconnect": True,
            },
        }
    )


@routes.post("/api/connection")
async def connection_post(request: web.Request) -> web.Response:
    body = await _json_object(request)
    command = body.get("command")
    printer = request.app[NODE].printer
    if command == "connect":
        await printer.async_connect()
    elif command == "disconnect":
        if printer.state.is_printing:
            raise Conflict("cannot disconnect while printing")
        await printer.async_disconnect()
    elif command == "fake_ack":
        pass
    else:
        raise BadRequest("command must be connect, disconnect or fake_ack")
    return web.Response(status=204)


@routes.get("/api/job")
async def job_get(request: web.Request) -> web.Response:
    node = request.app[NODE]
    printer = node.printer
    progress = printer.progress()
    name = progress.name if progress else node.selected_file
    file_info: dict[str, Any] = {"name": None, "path": None, "origin": None, "size": None, "date": None, "display": None}
    if name:
        file_info = {"name": name.rsplit("/", 1)[-1], "display": name.rsplit("/", 1)[-1], "path": name,
                     "origin": "local", "size": progress.bytes_total if progress else None, "date": None}
    body: dict[str, Any] = {
        "job": {"file": file_info, "estimatedPrintTime": None, "lastPrintTime": None,
                "filament": None, "user": None},
        "progress": {"completion": None, "filepos": None, "printTime": None,
                     "printTimeLeft": None, "printTimeLeftOrigin": None},
        "state": printer.state.text,
    }
    tracker = request.app.get(TRACKER)
    finished = tracker.finished if tracker is not None else None
    if progress is None and finished is not None and finished.name == node.selected_file:
        body["job"]["file"]["size"] = finished.size
        body["job"]["lastPrintTime"] = round(finished.elapsed, 1)
        body["progress"] = {"completion": 100.0, "filepos": finished.size, "printTime": int(finished.elapsed),
                            "printTimeLeft": 0, "printTimeLeftOrigin": None}
    if progress is not None:
        total = progress.bytes_total or 0
        body["progress"] = {
            "completion": 100.0 * progress.bytes_done / total if total else None,
            "filepos": progress.bytes_done,
            "printTime": int(progress.elapsed),
            "printTimeLeft": int(progress.estimated_remaining) if progress.estimated_remaining is not None else None,
            "printTimeLeftOrigin": "linear" if progress.estimated_remaining is not None else None,
        }
    if printer.error:
        body["error"] = printer.error
    return json_response(body)


@routes.post("/api/job")
async def job_post(request: web.Request) -> web.Response:
    body = await _json_object(request)
    command = body.get("command")
    node = request.app[NODE]
    printer = node.printer
    state = printer.state.name
    if command == "start":
        if not node.selected_file:
            raise Conflict("no file is selected")
        await node.select_file(node.selected_file, print_now=True)
    elif command == "cancel":
        if not printer.state.is_printing:
            raise Conflict("no print is active")
        await printer.async_cancel()
    elif command == "restart":
        if state != "PAUSED" or not node.selected_file:
            raise Conflict("restart needs a paused print")
        await printer.async_cancel()
        await node.select_file(node.selected_file, print_now=True)
    elif command == "pause":
        action = body.get("action", "toggle")
        if action not in ("pause", "resume", "toggle"):
            raise BadRequest("action must be pause, resume or toggle")
        if action == "toggle":
            action = "resume" if state == "PAUSED" else "pause"
        if action == "pause":
            if state != "PRINTING":
                raise Conflict("no print is running")
            await printer.async_pause()
        else:
            if state != "PAUSED":
                raise Conflict("the print is not paused")
            await printer.async_resume()
    else:
        raise BadRequest("command must be start, cancel, restart or pause")
    return web.Response(status=204)


async def _json_object(request: web.Request) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body
