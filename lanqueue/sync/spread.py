"""Record dissemination applied to the LAN core's actions (pure; the service and the simulator
both run it, so the seeded simulator checks what the nodes do).

The core (`protocol.py`) pushes every record version this node writes to every online peer: one
`Send` per peer, each `RecordPush` carrying the same tuple of records. That costs the writer N-1 requests per change.
Here that broadcast is thinned to `gossip.Fanout.fanout` random peers, and a node to which a
pushed version is new forwards it once to as many others (not back to the sender); anti-entropy
(the core's digests) repairs what a lost push missed. A version reaches all N nodes in about
log_fanout(N) hops and no node sends more than `fanout` pushes per version, whatever N.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .gossip import Fanout
from .messages import Action, RecordPush, Send
from .records import JobRecord

__all__ = ["forwards", "held_keys", "thin_broadcasts"]

Key = tuple[int, int]


def thin_broadcasts(me: str, actions: list[Action], fan: Fanout) -> tuple[list[Action], int, int]:
    """`actions` with each push of this node's own records sent to at most `fan.fanout` of its
    addressees; also how many pushes there were and how many requests now carry them."""
    groups: dict[int, list[Send]] = {}
    for a in actions:
        if isinstance(a, Send) and isinstance(a.message, RecordPush) and a.message.sender == me:
            groups.setdefault(id(a.message.records), []).append(a)  # one broadcast, one tuple
    drop: set[int] = set()
    for sends in groups.values():
        if len(sends) > fan.fanout:
            chosen = set(fan.push_targets([s.to for s in sends]))
            drop.update(id(s) for s in sends if s.to not in chosen)
    kept = sum(len(sends) for sends in groups.values()) - len(drop)
    return ([a for a in actions if id(a) not in drop] if drop else actions), len(groups), kept


def forwards(me: str, push: RecordPush, before: Mapping[str, Key], now_held: Mapping[str, JobRecord],
             members: Sequence[str], fan: Fanout) -> list[Send]:
    """The records of `push` that were new here (`before`: what was held when it arrived) and are
    now held at the pushed version, sent on to `fan.fanout` members other than the sender and the
    records' homes (their writers have them). Nothing in a farm of at most `fanout` + 1 nodes:
    there the writer pushed to every peer itself."""
    if len(members) <= fan.fanout:
        return []
    newer = tuple(r for r in push.records if r.key > before.get(r.id, (-1, -1))
                  and (cur := now_held.get(r.id)) is not None and cur.key == r.key)
    if not newer:
        return []
    skip = {push.sender, *(r.home for r in newer)}
    return [Send(peer, RecordPush(me, newer)) for peer in fan.push_targets(members, exclude=skip)]


def held_keys(push: RecordPush, records: Mapping[str, JobRecord]) -> dict[str, Key]:
    """What this node holds of the records in `push`, taken before it is handled."""
    return {r.id: cur.key for r in push.records if (cur := records.get(r.id)) is not None}
