"""The node's queues by name: the one place a queue name becomes a `Queue`.

Providers are asked in the order they were added; the store's queue list (names, rank order,
strategies) says which queues exist and in what order the driver and the page see them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import NotFound
from ..model import LOCAL
from .base import Queue, QueueProvider
from .local import LocalQueue

if TYPE_CHECKING:
    from ..files import FileStore
    from ..store import Store

__all__ = ["LocalProvider", "QueueRegistry"]


class LocalProvider:
    """The node's own queue, `local`."""

    def __init__(self, store: Store, files: FileStore) -> None:
        self.local = LocalQueue(store, files, LOCAL)

    def queue(self, name: str) -> Queue | None:
        return self.local if name == LOCAL else None


class QueueRegistry:
    """Every queue of the node. `get` resolves a name once per request; `listed` gives the
    queues in the order of the node's queue list, with their rows (strategy, rank)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._providers: list[QueueProvider] = []
        self._listeners: list[Callable[[], None]] = []

    def add_listener(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` when a queue whose jobs change outside this node's store (kept in
        etcd) says so; returns the function that removes it."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    def changed(self) -> None:
        for callback in list(self._listeners):
            callback()

    def add(self, provider: QueueProvider) -> None:
        self._providers.append(provider)

    def remove(self, provider: QueueProvider) -> None:
        if provider in self._providers:
            self._providers.remove(provider)

    def find(self, name: str) -> Queue | None:
        for provider in self._providers:
            q = provider.queue(name)
            if q is not None:
                return q
        return None

    def get(self, name: str) -> Queue:
        """The queue named `name`; `NotFound` if no provider keeps one of that name."""
        q = self.find(name)
        if q is None:
            raise NotFound(f"no queue named {name!r}")
        return q

    async def listed(self) -> list[tuple[Queue, dict[str, Any]]]:
        """The queues of the node's list that a provider keeps, in rank order, with their rows."""
        out = []
        for row in await self.store.queues():
            q = self.find(row["name"])
            if q is not None:
                out.append((q, row))
        return out
