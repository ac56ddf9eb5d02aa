"""The cache behind `state/get`: each queue's jobs as JSON text, brought up to date once per
committed change, re-encoding only the jobs that changed.

Why it is built this way:

- Clients poll `state/get`, and reading, shaping and encoding every job was its whole cost (330 kB
  of JSON at 1,000 jobs, ~30 ms of CPU). Without coordination every write made every waiting
  reader rebuild the same text at once (50 readers: p99 8 s, writes starved, the printer's stream
  slowed by 64 %). Here one rebuild runs at a time per queue and every reader that arrived before
  it began takes its result (single flight).
- A rebuild after one write should not cost the whole queue: the entry keeps each job's JSON text
  with the stamp it was made at, and a queue that can tell which jobs changed (`ChangedJobs`: the
  local queue by a version on each job row) hands over only those; the answer is the fragments
  joined in the queue's order. `json.dumps` of a list is its items' texts joined by ", " in
  brackets, so the spliced text is byte for byte a full rebuild's (a property test checks it).
  Other queues (LAN, etcd) are rebuilt whole from `jobs()`.
- The key is the queue's `cache_key()`, which for the local queue is made of committed
  generations only (the store bumps its generation after a commit, never for a rollback, and its
  readers see committed state only), so a cached text can never hold a refused write.
- The key is read before the jobs are: a write landing during the rebuild makes the entry older
  than its content, never newer, so nothing acknowledged is missed by a later reader. Keys that
  are tuples of counters are compared part by part: an entry at least as new as the reader's key
  is good for it (read-your-writes, without a rebuild per reader).
- Encoding many jobs (a first build, a file appearing) runs in a worker thread, so the event loop
  (and the printer's stream on it) keeps running; a few changed jobs are encoded in place.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Protocol

from ..model import Job
from ..queues import ChangedJobs

__all__ = ["cached_jobs_text", "covers", "encode_all"]

#: changed jobs past which encoding moves to a worker thread
ENCODE_OFF_LOOP = 50


class _Queue(Protocol):
    def cache_key(self) -> Hashable | None: ...

    async def jobs(self) -> list[Job]: ...


#: one job's JSON text (the presenter's view of it, encoded)
JobEncoder = Callable[[Job], str]


class _Entry:
    __slots__ = ("fragments", "key", "lock", "stamps", "text")

    def __init__(self) -> None:
        self.key: Hashable | None = None
        self.text = ""
        self.lock = asyncio.Lock()
        #: job id -> stamp / JSON text of what `text` holds (only for `ChangedJobs` queues)
        self.stamps: dict[str, Hashable] = {}
        self.fragments: dict[str, str] = {}


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


def encode_all(jobs: Sequence[Job], encode: JobEncoder) -> str:
    """The JSON list of `jobs`, exactly as `json.dumps` writes a list of their views."""
    return "[" + ", ".join(encode(j) for j in jobs) + "]"


async def cached_jobs_text(queue: _Queue, encode: JobEncoder) -> str:
    """`encode_all(await queue.jobs(), encode)`, kept until the queue's key moves past it."""
    want = queue.cache_key()
    if want is None:  # the queue cannot tell when it changes: build every time
        return await asyncio.to_thread(encode_all, await queue.jobs(), encode)
    entry = _entries.get(queue)
    if entry is None:
        entry = _entries[queue] = _Entry()
    if covers(entry.key, want):
        return entry.text
    async with entry.lock:
        if covers(entry.key, want):  # the rebuild we waited for is good for us
            return entry.text
        key = queue.cache_key()  # the newest: this rebuild serves everyone waiting behind us
        if isinstance(queue, ChangedJobs):
            await _splice(entry, queue, encode)
        else:
            entry.text = await asyncio.to_thread(encode_all, await queue.jobs(), encode)
        entry.key = key
        return entry.text


async def _splice(entry: _Entry, queue: ChangedJobs, encode: JobEncoder) -> None:
    """Bring `entry` up to date by re-encoding only the jobs whose stamp moved."""
    changes = await queue.changed_jobs(entry.stamps)
    if len(changes.jobs) > ENCODE_OFF_LOOP:
        encoded = await asyncio.to_thread(_encode_each, changes.jobs, encode)
    else:
        encoded = _encode_each(changes.jobs, encode)
    old_stamps, old_fragments = entry.stamps, entry.fragments
    stamps: dict[str, Hashable] = {}
    fragments: dict[str, str] = {}
    for jid, stamp in changes.stamps:
        text = encoded.get(jid)
        if text is None:
            if old_stamps.get(jid) != stamp:  # the queue broke its promise: never serve a stale job
                raise RuntimeError(f"queue {getattr(queue, 'name', '?')} left out changed job {jid}")
            text = old_fragments[jid]
        stamps[jid] = stamp
        fragments[jid] = text
    entry.text = "[" + ", ".join(fragments.values()) + "]"
    entry.stamps, entry.fragments = stamps, fragments


def _encode_each(jobs: Sequence[Job], encode: JobEncoder) -> dict[str, str]:
    return {str(j.id): encode(j) for j in jobs}
