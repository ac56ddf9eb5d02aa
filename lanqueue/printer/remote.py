"""What the PrusaLink and Bambu backends share: following a print from outside the printer.

Both learn about a print only from what the printer reports (polled statuses, pushed reports),
judged by a pure tracker into `Outcome`s; both run event scripts as files to print; both must
decide what a print means when the printer cannot be reached. That is kept here once:

- `_apply` turns a tracker's outcomes into print events, or, while an event script prints,
  into that script's end (a script is no job: it sends no print events);
- `_unreachable` / `_reached` keep the OFFLINE state and apply `lost_after`: a print whose
  printer stays out of reach that long ends failed, never done, because the node cannot tell
  a power cut from a long network outage and a queue must not wait forever on a copy that may
  never finish;
- `_wait` waits for a condition on what the printer reported, with a deadline.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import SplitResult, parse_qsl

from ..errors import Unavailable
from .backend import BackendBase, BackendSettings, UnknownBackend
from .events import PrinterState
from .scriptfile import script_file

__all__ = ["Outcome", "RemoteBackend", "url_options"]


def url_options(split: SplitResult, numbers: dict[str, float], texts: tuple[str, ...] = ()) -> dict[str, float | str]:
    """The options in a printer URL's query (`bambu://HOST?ftp_port=990&lost_after=300`): the
    defaults in `numbers` for those not given; an unknown name or a number that is not a
    positive finite one is refused with the reason (serve stops and says it)."""
    options: dict[str, float | str] = dict(numbers)
    for name, value in parse_qsl(split.query, keep_blank_values=True):
        if name in texts:
            options[name] = value
            continue
        if name not in numbers:
            raise UnknownBackend(f"unknown option {name!r} in the printer URL; known: {', '.join(sorted([*numbers, *texts]))}")
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or number <= 0:
            raise UnknownBackend(f"printer URL option {name} must be a positive number, not {value!r}")
        options[name] = number
    return options


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a report meant for the print we follow: `started`, `paused`, `resumed`, or an end
    (`done`, `failed`, `cancelled`) with its reason."""

    kind: str
    reason: str = ""

    @property
    def is_end(self) -> bool:
        return self.kind in ("done", "failed", "cancelled")


class RemoteBackend(BackendBase):
    """A printer followed through its reports; subclasses feed `_apply` with their outcomes."""

    def __init__(self, target: str, settings: BackendSettings, *, lost_after: float = 120.0) -> None:
        super().__init__(target, settings)
        self.lost_after = lost_after
        self._changed = asyncio.Event()
        self._offline_since: float | None = None
        self._script_end: asyncio.Future[Outcome] | None = None
        self._task: asyncio.Task[None] | None = None

    async def _close_task(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # --- what the printer said
    def _apply(self, outcome: Outcome) -> None:
        if self._script_end is not None:
            if outcome.is_end and not self._script_end.done():
                self._script_end.set_result(outcome)
            return
        if outcome.kind == "paused":
            self._paused()
        elif outcome.kind == "resumed":
            self._resumed()
        elif outcome.is_end:
            self._ended(outcome.kind, outcome.reason)

    def _reached(self) -> None:
        self._offline_since = None

    def _unreachable(self, reason: str, forget: Callable[[], None]) -> None:
        """The printer cannot be reached; `forget` drops the tracker's print if it is given up."""
        self._set_state(PrinterState.OFFLINE, reason)
        now = self._now()
        if self._offline_since is None:
            self._offline_since = now
        if self.ends.open and now - self._offline_since >= self.lost_after:
            forget()
            self._ended("failed", f"the printer was out of reach for {self.lost_after:.0f} s: the print is counted lost")
        self._changed.set()

    async def _wait(self, pred: Callable[[], bool], timeout: float, what: str) -> None:
        async def waiter() -> None:
            while not pred():
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(waiter(), timeout)
        except TimeoutError:
            raise Unavailable(f"The printer did not {what} within {timeout:.0f} s") from None

    # --- event scripts
    async def _print_script(
        self, gcode: str, start: Callable[[str, bytes], Awaitable[None]], forget: Callable[[], None]
    ) -> None:
        """Upload and print `gcode` as a file (`start(name, data)` does both) and wait for it."""
        script = script_file(gcode)
        if script is None:
            return
        self._require_operational()
        self._script_end = asyncio.get_running_loop().create_future()
        try:
            await start(*script)
            outcome = await self._script_end
        finally:
            self._script_end = None
            forget()
        if outcome.kind != "done":
            raise Unavailable(f"The event script did not finish on the printer ({outcome.kind})")
