"""The cache behind `state/get`: each queue's jobs as JSON text, rebuilt once per committed change.

Why it is built this way:

- Clients poll `state/get`, and reading, shaping and encoding every job is its whole cost (330 kB
  of JSON at 1,000 jobs). Without coordination every write made every waiting reader rebuild the
  same text at once (50 readers: p99 8 s, writes starved, the printer's stream slowed by 64 %).
  Here one rebuild runs at a time per queue and every reader that arrived before it began takes
  its result (single flight).
- The key is the queue's `cache_key()`, which for the local queue is made of committed
  generations only (the store bumps its generation after a commit, never for a rollback, and its
  readers see committed state only), so a cached text can never hold a refused write.
- The key is read before the jobs are: a write landing during the rebuild makes the entry older
  than its content, never newer, so nothing acknowledged is missed by a later reader. Keys that
  are tuples of counters are compared part by part: an entry at least as new as the reader's key
  is good for it (read-your-writes, without a rebuild per reader).
- Shaping and encoding run in a worker thread, so the event loop (and the printer's stream on
  it) keeps running; the cycle collector is left alone (pausing it is process-wide and was held
  across an await).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Protocol

from ..model import Job

__all__ = ["cached_jobs_text", "covers"]


class _Queue(Protocol):
    def cache_key(self) -> Hashable | None: ...

    async def jobs(self) -> list[Job]: ...


Encoder = Callable[[Sequence[Job]], str]


class _Entry:
    __slots__ = ("key", "lock", "text")

    def __init__(self) -> None:
        self.key: Hashable | None = None
        self.text = ""
        self.lock = asyncio.Lock()


_entries: weakref.WeakKeyDictionary[Any, _Entry] = weakref.WeakKeyDictionary()


def covers(have: Hashable | None, want: Hashable) -> bool:
    """Is an entry made at key `have` good for a reader that arrived at key `want`?"""
    if have is None:
        return False
    if isinstance(have, tuple) and isinstance(want, tuple) and len(have) == len(want) and all(
        isinstance(h, int) and isinstance(w, int) for h, w in zip(have, want)
    ):
        return all(h >= w for h, w in zip(have, want))
    return have == want


async def cached_jobs_text(queue: _Queue, encode: Encoder) -> str:
    """`encode(await queue.jobs())`, kept until the queue's key moves past it."""
    want = queue.cache_key()
    if want is None:  # the queue cannot tell when it changes: build every time
        return await asyncio.to_thread(encode, await queue.jobs())
    entry = _entries.get(queue)
    if entry is None:
        entry = _entries[queue] = _Entry()
    if covers(entry.key, want):
        return entry.text
    async with entry.lock:
        if covers(entry.key, want):  # the rebuild we waited for is good for us
            return entry.text
        key = queue.cache_key()  # the newest: this rebuild serves everyone waiting behind us
        jobs = await queue.jobs()
        entry.text = await asyncio.to_thread(encode, jobs)
        entry.key = key
        return entry.text
