"""Queues, jobs, sets and runs, and the counting rules of Continuous Print.

Pure data and pure functions: no I/O, no clock, no imports from the rest of lanqueue. The store
persists these objects and the driver asks this module what to print next, so the rules of
reference-behaviour.md ("Counting semantics") live in exactly one place:

- a job prints all its sets in rank order, `count` times; a set prints `count` copies per job run;
- a successful print takes one from the set's `remaining` and adds one to its `completed`;
- when no set of the job has anything remaining, the job's `remaining` drops by one and, if runs
  remain, every set starts again at `remaining = count`;
- a draft job is never printed, a job with `remaining == 0` is done.

`completed` counts every successful print of a set over the job's life (it is not reset when a
new job run starts); `job/reset` sets it back to zero.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "LOCAL",
    "ARCHIVE",
    "Strategy",
    "RunResult",
    "PrintSet",
    "Job",
    "Replica",
    "JobRef",
    "Run",
    "next_set",
    "SetCounts",
    "count_print",
    "apply_success",
    "reset_job",
    "set_printable",
    "job_printable",
    "choose_next",
    "rank_between",
    "parse_material",
]

LOCAL = "local"
ARCHIVE = "archive"


class Strategy(str, enum.Enum):
    """How the driver picks among printable jobs of one queue."""

    IN_ORDER = "IN_ORDER"
    LEAST_MANUAL = "LEAST_MANUAL"


class RunResult(str, enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    ABORTED = "aborted"
    CANCELLED = "cancelled"


@dataclass
class PrintSet:
    """One file of a job, printed `count` times per job run."""

    id: int | str
    path: str
    count: int = 1
    remaining: int = 1
    completed: int = 0
    rank: float = 0.0
    sd: bool = False
    materials: list[str | None] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)
    metadata: Any = None
    missing_file: bool = False
    gcode: dict[str, Any] | None = None  # what the slicer wrote in the file (gcodemeta), if known
    #: sha256 of the file's content where the queue tracks it (LAN sets travel by digest)
    hash: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Job:
    """A named group of sets printed `count` times; lives in one queue."""

    id: int | str
    queue: str
    name: str
    count: int = 1
    remaining: int = 1
    draft: bool = False
    created: int = 0
    rank: float = 0.0
    sets: list[PrintSet] = field(default_factory=list)
    acquired: bool = False
    #: facts of a job replicated between nodes (LAN queues); None for a job only this node has
    replica: Replica | None = None

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k != "sets"}
        out["sets"] = [s.to_json() for s in self.sets]
        return out

    @property
    def done(self) -> bool:
        return self.remaining <= 0


@dataclass(frozen=True)
class Replica:
    """What a replicated (LAN) job adds to a job: who holds its lease, which node is its home
    and whether that node is reachable, the record's (epoch, version), its file digest and the
    completion reports its home could not count. Node ids are the keys of the queue's peers."""

    acquired_by: str | None
    acquired_by_name: str | None
    home: str
    home_name: str
    home_online: bool
    epoch: int
    version: int
    hash: str | None
    conflicts: tuple[dict[str, Any], ...] = ()
    waiting_reason: str | None = None


@dataclass(frozen=True)
class JobRef:
    """The set the driver prints: enough to record its run and count it, in any queue."""

    queue: str
    job_id: int | str
    job_name: str
    set_id: int | str
    path: str
    materials: tuple[str | None, ...] = ()
    token: int | None = None  # LAN lease fencing token


@dataclass(frozen=True)
class Run:
    """One print attempt as history records it."""

    run_id: int
    queue_name: str
    job_name: str
    set_path: str
    start: float
    end: float | None
    result: str | None

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["active"] = self.end is None
        return out


def next_set(job: Job) -> PrintSet | None:
    """The set this job prints next, or None if it prints nothing (draft or done)."""
    if job.draft or job.remaining <= 0:
        return None
    for s in sorted(job.sets, key=lambda s: s.rank):
        if s.remaining > 0:
            return s
    return None


SetCounts = tuple[int, int, int]
"""A set's (count, remaining, completed), what the counting rule reads and writes."""


def count_print(job_remaining: int, sets: Sequence[SetCounts], index: int) -> tuple[int, list[SetCounts]]:
    """The counting rule, for jobs of every queue (local rows and replicated LAN records alike):
    one successful print of set `index` takes one from its remaining and adds one to its
    completed; when no set of the run remains, the job's remaining drops by one and, if runs
    remain, every set starts again at its count. Returns the job's remaining and the sets."""
    out = list(sets)
    count, remaining, completed = out[index]
    out[index] = (count, max(0, remaining - 1), completed + 1)
    if all(r <= 0 for _, r, _ in out):
        job_remaining = max(0, job_remaining - 1)
        if job_remaining > 0:
            out = [(c, c, done) for c, _, done in out]
    return job_remaining, out


def apply_success(job: Job, set_id: int | str) -> Job:
    """Count one successful print of `set_id`; returns the updated job (the input is not changed)."""
    job = _copy(job)
    index = next((i for i, s in enumerate(job.sets) if s.id == set_id), None)
    if index is None:
        raise KeyError(f"set {set_id} is not in job {job.id}")
    job.remaining, counts = count_print(job.remaining, [(s.count, s.remaining, s.completed) for s in job.sets], index)
    for s, (_, remaining, completed) in zip(job.sets, counts):
        s.remaining, s.completed = remaining, completed
    return job


def reset_job(job: Job) -> Job:
    """Start the job over: every run and every copy left to print again."""
    job = _copy(job)
    job.remaining = job.count
    for s in job.sets:
        s.remaining = s.count
        s.completed = 0
    return job


def parse_material(spec: str) -> tuple[str, str, str]:
    """Split `"PLA_red_#ff0000"` into (material, colour name, hex); missing parts are ''."""
    parts = spec.split("_")
    while len(parts) < 3:
        parts.append("")
    return parts[0], parts[1], "_".join(parts[2:])


def set_printable(s: PrintSet, profile: str, loaded: Sequence[str | None]) -> bool:
    """Whether this printer (its profile name, the material loaded per tool) can print the set.

    An empty or null material entry means "any"; a constrained tool must hold exactly that
    material. An empty profile list means "any printer". A set that names no materials needs
    what its file says (the slicer's filament type per tool it uses), on each tool whose loaded
    material is known: a printer that never said what it holds is not stopped by a file.
    """
    if s.missing_file or (s.profiles and profile not in s.profiles):
        return False
    for tool, wanted in enumerate(s.materials):
        if not wanted:
            continue
        have = loaded[tool] if tool < len(loaded) else None
        if have != wanted:
            return False
    if not any(s.materials):
        return _file_materials_loaded(s.gcode, loaded)
    return True


def _file_materials_loaded(gcode: dict[str, Any] | None, loaded: Sequence[str | None]) -> bool:
    """The file's filament type on every tool it extrudes with matches the loaded material's
    type (`PLA` of `PLA_red_#ff0000`, any case)."""
    if not gcode:
        return True
    types = gcode.get("filament_type") or []
    used = gcode.get("filament_mm") or []
    for tool, wanted in enumerate(types):
        if tool < len(used) and not used[tool]:
            continue  # configured but unused (Orca and Bambu list every loaded filament)
        have = loaded[tool] if tool < len(loaded) else None
        if have and wanted and parse_material(have)[0].lower() != str(wanted).lower():
            return False
    return True


def job_printable(job: Job, profile: str, loaded: Sequence[str | None]) -> bool:
    """A job is taken only if the set it would print next is printable here."""
    s = next_set(job)
    return s is not None and set_printable(s, profile, loaded)


def _needs_no_change(job: Job, profile: str, loaded: Sequence[str | None]) -> bool:
    """Every set still to print in this job runs with the materials loaded now."""
    return all(set_printable(s, profile, loaded) for s in job.sets if s.count > 0)


def choose_next(
    jobs: Iterable[Job],
    profile: str,
    loaded: Sequence[str | None],
    strategy: Strategy = Strategy.IN_ORDER,
    fits: Callable[[PrintSet], bool] | None = None,
) -> tuple[Job, PrintSet] | None:
    """Pick the job and set to print next from `jobs` (one queue, any order).

    IN_ORDER takes the first printable job by rank. LEAST_MANUAL prefers jobs that can run to
    their end without anyone swapping material, then falls back to rank order; ties keep rank
    order, so the choice is stable. `fits` (the printer's own limits now, such as attended
    hours) passes over jobs whose next set it refuses: a later job that fits is taken instead.
    """
    ordered = [j for j in sorted(jobs, key=lambda j: j.rank) if job_printable(j, profile, loaded)
               and (fits is None or fits(next_set(j)))]  # type: ignore[arg-type]
    if not ordered:
        return None
    if strategy == Strategy.LEAST_MANUAL:
        ordered.sort(key=lambda j: not _needs_no_change(j, profile, loaded))
    job = ordered[0]
    chosen = next_set(job)
    assert chosen is not None  # job_printable guaranteed it
    return job, chosen


def rank_between(before: float | None, after: float | None) -> float:
    """A rank that sorts between two neighbours (None = no neighbour on that side)."""
    if before is None and after is None:
        return 1.0
    if before is None:
        assert after is not None
        return after - 1.0
    if after is None:
        return before + 1.0
    return (before + after) / 2.0


def _copy(job: Job) -> Job:
    return dataclasses.replace(job, sets=[dataclasses.replace(s) for s in job.sets])
