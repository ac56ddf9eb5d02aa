"""Telling one node that restarted from two nodes that share a node id (a cloned SD card).

Every run of a node has a random instance id. A restart makes a new instance speak and the old
one fall silent for good; a clone makes two instances speak in turns. Messages of a dead run can
still arrive for a short while (retries, delays), so two instances count as two live nodes only
when both are heard more than `grace` after both were first heard. The clash lasts while both
keep being heard within `hold`.

Pure: fed (sender, instance, now) with `now` on this node's monotonic clock.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["IdentityWatch"]

#: Instances remembered per sender (oldest dropped) and senders remembered (least recent dropped).
MAX_INSTANCES = 4
MAX_SENDERS = 1024


@dataclass
class _Seen:
    first: float
    last: float


class IdentityWatch:
    def __init__(self, grace: float, hold: float) -> None:
        self.grace = grace
        self.hold = hold
        self._seen: dict[str, dict[str, _Seen]] = {}

    def heard(self, sender: str, instance: str, now: float) -> None:
        if not instance:
            return
        runs = self._seen.pop(sender, {})
        self._seen[sender] = runs  # most recent sender last
        seen = runs.get(instance)
        if seen is None:
            runs[instance] = _Seen(now, now)
            if len(runs) > MAX_INSTANCES:
                del runs[min(runs, key=lambda i: runs[i].last)]
        else:
            seen.last = now
        if len(self._seen) > MAX_SENDERS:
            del self._seen[next(iter(self._seen))]

    def clash(self, sender: str, now: float) -> tuple[str, str] | None:
        """(older, newer) instances of `sender` that are both alive, or None."""
        runs = self._seen.get(sender, {})
        for a, sa in runs.items():
            for b, sb in runs.items():
                # Both heard again, `grace` after both were known: a run that died can only be
                # heard until its last messages arrive, less than `grace` after its successor's
                # first one, whichever of the two this watcher happened to hear first.
                if a != b and sa.first <= sb.first and min(sa.last, sb.last) > sb.first + self.grace \
                        and now - sa.last <= self.hold and now - sb.last <= self.hold:
                    return a, b
        return None

    def vouch(self, sender: str, instance: str, now: float, span: float) -> bool:
        """Has `instance` been the only live run of `sender` for at least `span`? A watcher that
        has not heard it that long (it restarted itself, or the run is new) cannot tell yet: a
        second run speaking as often would have shown up as a clash within that time."""
        seen = self._seen.get(sender, {}).get(instance)
        return seen is not None and now - seen.first >= span and self.clash(sender, now) is None

    def other_than(self, sender: str, instance: str, now: float) -> str:
        """Another live instance of `sender` clashing with `instance` (empty if none)."""
        pair = self.clash(sender, now)
        if pair is None or instance not in pair:
            return ""
        return pair[0] if pair[1] == instance else pair[1]
