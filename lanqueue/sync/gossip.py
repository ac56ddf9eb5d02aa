"""Record dissemination with bounded fan-out, and anti-entropy by bucketed digests (pure).

Pushing every new record version to every peer costs the writer O(N) requests per change and
makes a submission wait for the slowest peer. Instead:

- **Push with fan-out.** The home sends a new version to `fanout` random members; a node that
  receives a version newer than its own forwards it to `fanout` random members other than the
  sender, and nothing when it already had it ("infect and forward once"). A version reaches
  every live node in about log_fanout(N) hops; each node sends at most `fanout` pushes per
  change, whatever N.
- **Anti-entropy, push-pull.** Each round a node compares its replica with ONE member, first by
  a summary of `BUCKETS` digests (each over the (id, epoch, version) of the records whose id
  falls in that bucket: a fixed-size message whatever the queue's length), then by the entries
  of the buckets that differ only. Each side takes what is newer. The cost is proportional to
  what differs, and anything a lost push missed arrives within a few rounds.

Highest (epoch, version) wins, as before: the single writer per job (its home) is what makes the
order of arrival irrelevant. Nothing here does I/O or reads a clock; `rng` is passed in so the
simulator is deterministic.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "BUCKETS",
    "Fanout",
    "bucket_of",
    "summary",
    "differing",
    "entries",
    "compare",
]

BUCKETS = 64
Version = tuple[int, int]  # (epoch, version)


def bucket_of(job_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(job_id.encode(), digest_size=4).digest(), "big") % BUCKETS


def summary(versions: Mapping[str, Version]) -> list[str]:
    """One short digest per bucket over the (id, epoch, version) of its records."""
    parts: list[list[str]] = [[] for _ in range(BUCKETS)]
    for job_id, (epoch, version) in versions.items():
        parts[bucket_of(job_id)].append(f"{job_id}:{epoch}:{version}")
    return [hashlib.blake2b("\n".join(sorted(p)).encode(), digest_size=8).hexdigest() if p else "" for p in parts]


def differing(mine: Sequence[str], theirs: Sequence[str]) -> list[int]:
    """Buckets whose digests differ (a malformed summary differs everywhere)."""
    if len(theirs) != BUCKETS:
        return list(range(BUCKETS))
    return [i for i in range(BUCKETS) if mine[i] != theirs[i]]


def entries(versions: Mapping[str, Version], buckets: Iterable[int]) -> dict[str, Version]:
    wanted = set(buckets)
    return {j: v for j, v in versions.items() if bucket_of(j) in wanted}


def compare(mine: Mapping[str, Version], theirs: Mapping[str, Version]) -> tuple[list[str], list[str]]:
    """(ids the other side has newer, ids this side has newer), over the entries exchanged."""
    pull = [j for j, v in theirs.items() if v > mine.get(j, (-1, -1))]
    push = [j for j, v in mine.items() if v > theirs.get(j, (-1, -1))]
    return pull, push


@dataclass
class Fanout:
    """Who to push to, and which member to compare with next."""

    me: str
    fanout: int = 3
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self._order: list[str] = []

    def push_targets(self, members: Sequence[str], exclude: Iterable[str] = ()) -> list[str]:
        """`fanout` random members, never this node nor `exclude` (the sender of the version)."""
        skip = {self.me, *exclude}
        pool = [m for m in members if m not in skip]
        return self.rng.sample(pool, min(self.fanout, len(pool)))

    def partner(self, members: Sequence[str]) -> str | None:
        """The member to run anti-entropy with this round: round-robin over a shuffled list, so
        every member is compared with within N rounds and none twice before the others."""
        alive = set(members) - {self.me}
        while self._order:
            m = self._order.pop()
            if m in alive:
                return m
        self._order = sorted(alive)
        self.rng.shuffle(self._order)
        return self._order.pop() if self._order else None
