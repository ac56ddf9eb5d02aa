"""The queue's timeline: which printer is expected to print each job, and when it should be done.

Pure: fed the jobs of a queue (as `state/get` shows them) and the printers that take work from it
(with how long their current print still runs), it returns one forecast per job. The page shows it;
no decision of the driver depends on it, so it may simplify where the driver is exact:

- A job is given whole to one printer (a LAN job's lease is held by one printer at a time), in
  queue order, to the printer that is free first and can print each of its sets by the driver's
  own rule (model.set_printable: the profile, the materials loaded per tool).
- A job some printer holds now goes to that printer first; its copy in progress is counted in
  that printer's current work (`busy_s`), not again in the job.
- A duration comes from the slicer's estimate of each set's file (`gcode.estimated_time_s`),
  times the copies still to print. Without an estimate the job's end is unknown, and so is the
  time its printer is free again: later jobs on that printer have an unknown start and end, and
  printers with a known free time are preferred.
- Drafts, finished jobs and printers that are off or not managed are left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .model import PrintSet, set_printable

__all__ = ["Forecast", "PrinterLoad", "job_seconds", "plan"]


@dataclass(frozen=True)
class PrinterLoad:
    """A printer that takes work from the queue, and what it is doing now."""

    node_id: str
    name: str
    busy_s: float | None = 0.0  # until its current print ends; None: printing, end unknown
    profile: str | None = None
    holding: frozenset[str] = frozenset()  # ids (as text) of the jobs it holds now
    materials: tuple[str | None, ...] = ()  # loaded per tool, as the driver matches them


@dataclass(frozen=True)
class Forecast:
    """Where and when one job is expected to print. Times are seconds from now; None: unknown."""

    job_id: str
    name: str
    node_id: str | None  # None: no printer can take it
    printer: str | None
    start_s: float | None
    end_s: float | None
    unknown: bool  # some set has no estimate

    def to_json(self, now: float) -> dict[str, Any]:
        """The wire form; `done_at` is a Unix time (now + end_s) for the page's clock."""
        return {
            "job_id": self.job_id, "name": self.name, "node_id": self.node_id, "printer": self.printer,
            "start_s": _round(self.start_s), "end_s": _round(self.end_s),
            "done_at": None if self.end_s is None else round(now + self.end_s, 1),
            "unknown": self.unknown,
        }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def _estimate(s: Mapping[str, Any]) -> float | None:
    gcode = s.get("gcode")
    value = gcode.get("estimated_time_s") if isinstance(gcode, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        return None
    return float(value)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def job_seconds(job: Mapping[str, Any], *, in_progress: bool = False) -> tuple[float, bool]:
    """The printing time the job still needs: (seconds of the sets with estimates, whether some
    set to print has none). This run prints each set's `remaining` copies; each later run its
    `count`. `in_progress`: one copy is being printed now and counted elsewhere."""
    runs_after = max(0, _int(job.get("remaining")) - 1)
    total, unknown = 0.0, False
    sets = [s for s in job.get("sets") or () if isinstance(s, Mapping)]
    skip = 1 if in_progress else 0
    for s in sets:
        copies = _int(s.get("remaining")) + runs_after * _int(s.get("count"))
        if skip and copies:
            copies, skip = copies - 1, 0
        if not copies:
            continue
        est = _estimate(s)
        if est is None:
            unknown = True
        else:
            total += est * copies
    return total, unknown


def _allowed(job: Mapping[str, Any], printer: PrinterLoad) -> bool:
    """The printer can print every set of the job still to print (the driver's rule). Whether
    the file is in this node's store does not count: a LAN printer fetches it by digest."""
    for s in job.get("sets") or ():
        if not isinstance(s, Mapping) or _int(s.get("count")) == 0:
            continue
        as_set = PrintSet(id=s.get("id", 0), path=str(s.get("path", "")),
                          materials=list(s.get("materials") or []), profiles=list(s.get("profiles") or []),
                          gcode=s.get("gcode") if isinstance(s.get("gcode"), dict) else None)
        if not set_printable(as_set, printer.profile or "", printer.materials):
            return False
    return True


def _key(free: float | None) -> tuple[int, float]:
    return (0, free) if free is not None else (1, 0.0)


def plan(jobs: Iterable[Mapping[str, Any]], printers: Sequence[PrinterLoad]) -> list[Forecast]:
    """One forecast per job still to print, in queue order (see the module's rules)."""
    free: dict[str, float | None] = {p.node_id: p.busy_s for p in printers}
    todo = [j for j in jobs if not j.get("draft") and _int(j.get("remaining")) > 0]
    out: dict[int, Forecast] = {}

    def place(i: int, job: Mapping[str, Any], p: PrinterLoad, held: bool) -> None:
        seconds, unknown = job_seconds(job, in_progress=held)
        start = 0.0 if held else free[p.node_id]
        known_start = free[p.node_id] if held else start
        end = None if unknown or known_start is None else known_start + seconds
        free[p.node_id] = end
        out[i] = Forecast(str(job.get("id")), str(job.get("name", "")), p.node_id, p.name,
                          start, end, unknown)

    # first what printers hold now, then the rest in order
    for i, job in enumerate(todo):
        holder = next((p for p in printers if str(job.get("id")) in p.holding), None)
        if holder is not None:
            place(i, job, holder, held=True)
    for i, job in enumerate(todo):
        if i in out:
            continue
        fits = [p for p in printers if _allowed(job, p)]
        if not fits:
            _, unknown = job_seconds(job)
            out[i] = Forecast(str(job.get("id")), str(job.get("name", "")), None, None, None, None, unknown)
            continue
        place(i, job, min(fits, key=lambda p: _key(free[p.node_id])), held=False)
    return [out[i] for i in range(len(todo))]
