"""`/metrics`: the node in Prometheus' text exposition format (version 0.0.4).

Needs the API key like every data route (a scrape config sets it with `authorization` or
`params: {apikey: [...]}`). Everything is read from the services at scrape time: counters of
finished prints come from the runs table, so they survive restarts (and drop when the history is
reset, which Prometheus treats as a counter reset). LAN counters appear once the node's LAN
service exposes them (`counters`, a mapping or a method returning one).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..model import LOCAL, RunResult
from ..printer.events import PrinterState
from .keys import NODE
from .web import LIVE

if TYPE_CHECKING:
    from .keys import NodeServices as Node

__all__ = ["routes", "render_metrics"]

routes = web.RouteTableDef()
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATUS_TYPES = ("NORMAL", "NEEDS_ACTION", "ERROR", "INIT")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str, samples: Iterable[tuple[dict[str, str], float]]) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            if labels:
                inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
                self.lines.append(f"{name}{{{inner}}} {_number(value)}")
            else:
                self.lines.append(f"{name} {_number(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


async def _other_queue_lengths(node: Node, counted: Iterable[str]) -> dict[str, dict[str, int]]:
    """Lengths of the queues the store's counts do not cover (LAN queues), through the queue
    interface."""
    out: dict[str, dict[str, int]] = {}
    skip = set(counted) | {LOCAL}
    for q, _ in await node.queues.listed():
        if q.name in skip:
            continue
        jobs = await q.jobs()
        pending = sum(1 for j in jobs if not j.draft and j.remaining > 0)
        out[q.name] = {"total": len(jobs), "pending": pending}
    return out


def _lan_counters(node: Node) -> Mapping[str, Any]:
    counters = getattr(node.lan, "counters", None)
    if callable(counters):
        counters = counters()
    return counters if isinstance(counters, Mapping) else {}


async def render_metrics(node: Node) -> str:
    w = _Writer()
    counts = await node.store.metric_counts()
    runs = counts["runs"]
    results = [r.value for r in RunResult] + sorted(set(runs) - {r.value for r in RunResult})
    w.family("lanqueue_prints_total", "counter", "Prints that ended, by result (from the run history).",
             (({"result": r}, runs.get(r, 0)) for r in results))

    queues = {name: {"total": 0, "pending": 0} for name in [q["name"] for q in await node.store.queues()]}
    queues.update(counts["jobs"])
    queues.update(await _other_queue_lengths(node, counts["jobs"]))
    w.family("lanqueue_queue_jobs", "gauge", "Jobs in each queue.",
             (({"queue": name}, c["total"]) for name, c in queues.items()))
    w.family("lanqueue_queue_jobs_pending", "gauge", "Jobs in each queue that still have prints to do (not drafts).",
             (({"queue": name}, c["pending"]) for name, c in queues.items()))

    printer = node.printer
    current = printer.state if printer is not None else PrinterState.OFFLINE
    w.family("lanqueue_printer_state", "gauge", "The printer's state (1 for the current one).",
             (({"state": s.name}, 1 if s is current else 0) for s in PrinterState))
    if printer is not None:
        temps = printer.temperatures
        w.family("lanqueue_printer_temperature_celsius", "gauge", "Heater temperatures (actual and target).",
                 [({"heater": h, "kind": "actual"}, a) for h, (a, _t) in sorted(temps.items())]
                 + [({"heater": h, "kind": "target"}, t) for h, (_a, t) in sorted(temps.items()) if t is not None])
        progress = printer.progress()
        completion = progress.completion if progress is not None else None
        w.family("lanqueue_print_progress_ratio", "gauge", "Fraction of the current print sent (0 when idle).",
                 [({}, completion or 0.0)])
        resends = getattr(printer, "resends", None)
        if resends is None:
            resends = getattr(getattr(printer, "core", None), "resends", None)
        if isinstance(resends, int) and not isinstance(resends, bool):
            w.family("lanqueue_printer_resends_total", "counter", "Lines the firmware asked to resend.",
                     [({}, resends)])

    runner = node.runner
    w.family("lanqueue_driver_active", "gauge", "1 while the queue manages the printer.",
             [({}, bool(runner is not None and runner.active))])
    status_type = runner.status_type if runner is not None else "INIT"
    w.family("lanqueue_driver_status", "gauge", "The driver's status type (1 for the current one).",
             (({"type": t}, 1 if t == status_type else 0) for t in STATUS_TYPES))

    lan = _lan_counters(node)
    numeric = {k: v for k, v in lan.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if numeric:
        w.family("lanqueue_lan_events_total", "counter",
                 "LAN queue protocol counters (lease grants, conflicts, ...).",
                 (({"event": str(k)}, v) for k, v in sorted(numeric.items())))
    return w.text()


def _web_metrics(app: web.Application) -> str:
    hub = app.get(LIVE)  # the page's live-update hub, when the app has one
    if hub is None:
        return ""
    w = _Writer()
    w.family("lanqueue_web_streams_open", "gauge", "Open live-update streams of the web page.", [({}, hub.open_streams)])
    w.family("lanqueue_web_events_total", "counter", "Live-update events sent to web pages.", [({}, hub.events_sent)])
    return w.text()


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    text = await render_metrics(request.app[NODE]) + _web_metrics(request.app)
    return web.Response(text=text, headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-cache"})
