"""What the printer test modules share: an event recorder and the leaked-task guard."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from lanqueue.printer import PrinterEvent

__all__ = ["Recorder", "no_leaked_tasks"]


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Every test leaves the loop as it found it: no background task outlives its service."""
    yield
    for _ in range(3):
        await asyncio.sleep(0)
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    assert others == []


class Recorder:
    """Listener that keeps events and lets a test wait for one of them."""

    def __init__(self) -> None:
        self.events: list[PrinterEvent] = []
        self._changed = asyncio.Event()

    def __call__(self, event: PrinterEvent) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait_for(
        self, pred: Callable[[PrinterEvent], bool], timeout: float = 30.0, start: int = 0
    ) -> PrinterEvent:
        """The first event from index `start` on that matches (waiting for it if needed)."""

        async def waiter() -> PrinterEvent:
            seen = start
            while True:
                for event in self.events[seen:]:
                    if pred(event):
                        return event
                seen = len(self.events)
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(waiter(), timeout)

    def of(self, kind: type) -> list[PrinterEvent]:
        return [e for e in self.events if isinstance(e, kind)]
