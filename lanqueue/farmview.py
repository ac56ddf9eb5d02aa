"""The farm view's core: what one node knows of every printer of the LAN queues it shares.

Pure (no I/O, time passed in), so the rules are tested without a network:

- Each member node is `connecting` until its first summary arrives, `on` while summaries keep
  coming, and `off` once discovery says it is offline or `OFF_AFTER` summary requests in a row
  failed. `since` is when it entered its state (for `off`: when it was last heard, so the page
  says "off since 14:02"). An `off` card keeps the last summary, marked stale.
- Which actions a printer offers follows from its summary (`offered_actions`), by one table.

The asyncio adapter (farm.py) polls the peers' summaries over the signed peer protocol, feeds
the answers here, and carries actions to the printer's node.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ACTIONS", "OFF_AFTER", "FarmBoard", "Member", "check_summary", "offered_actions"]

OFF_AFTER = 2
"""Failed summary requests in a row before a node that discovery still thinks online is off."""

ACTIONS: dict[str, str] = {
    "continue": "Bed cleared – continue",
    "pause": "Pause",
    "resume": "Resume",
    "cancel": "Cancel",
    "start": "Start managing",
    "stop": "Stop managing",
}
"""Every action the farm view carries, with the words of its button."""

MAX_SUMMARY_KEYS = 64


def offered_actions(summary: Mapping[str, Any]) -> list[str]:
    """The actions that make sense for a printer now, in button order."""
    state = str(summary.get("state") or "")
    managing = bool(summary.get("managing"))
    rules = (
        ("continue", summary.get("status_type") == "NEEDS_ACTION"),
        ("pause", state == "Printing"),
        ("resume", state == "Paused"),
        ("cancel", state in ("Printing", "Paused", "Pausing")),
        ("start", not managing),
        ("stop", managing),
    )
    return [name for name, applies in rules if applies]


def check_summary(doc: Any, node_id: str) -> dict[str, Any]:
    """A peer's summary as received: a JSON object of the node it came from. Raises ValueError
    for anything else (the adapter counts it as a failed request)."""
    if not isinstance(doc, dict) or len(doc) > MAX_SUMMARY_KEYS:
        raise ValueError("a summary is a JSON object")
    if doc.get("node_id") != node_id:
        raise ValueError("the summary is of another node")
    return doc


@dataclass
class Member:
    """A node of a shared LAN queue as discovery sees it."""

    node_id: str
    name: str
    online: bool
    last_seen: float | None  # Unix time discovery last heard it
    queues: tuple[str, ...] = ()


@dataclass
class _Card:
    node_id: str
    name: str
    queues: tuple[str, ...]
    state: str = "connecting"
    since: float | None = None
    summary: dict[str, Any] | None = None
    heard: float | None = None  # when the last summary came
    failures: int = 0
    reason: str = ""
    discovered_online: bool = True


class FarmBoard:
    """The cards of the other nodes (this node's own card is built fresh by the adapter)."""

    def __init__(self, own_id: str, *, off_after: int = OFF_AFTER) -> None:
        self.own_id = own_id
        self.off_after = off_after
        self._cards: dict[str, _Card] = {}

    def members(self, members: list[Member], now: float) -> bool:
        """The roster from discovery: adds, updates and drops cards. True if anything shown changed."""
        changed = False
        seen = set()
        for m in members:
            if m.node_id == self.own_id:
                continue
            seen.add(m.node_id)
            card = self._cards.get(m.node_id)
            if card is None:
                card = self._cards[m.node_id] = _Card(m.node_id, m.name, m.queues, since=now)
                changed = True
            if (card.name, card.queues) != (m.name, m.queues):
                card.name, card.queues = m.name, m.queues
                changed = True
            card.discovered_online = m.online
            if not m.online and card.state != "off":
                changed |= self._off(card, m.last_seen if m.last_seen is not None else now, "offline")
        for gone in set(self._cards) - seen:
            del self._cards[gone]
            changed = True
        return changed

    def got(self, node_id: str, summary: dict[str, Any], now: float) -> bool:
        """A summary arrived from the node. True if anything shown changed."""
        card = self._cards.get(node_id)
        if card is None:
            return False
        changed = card.state != "on" or card.summary != summary
        if card.state != "on":
            card.state, card.since = "on", now
        card.summary, card.heard, card.failures, card.reason = summary, now, 0, ""
        return changed

    def failed(self, node_id: str, reason: str, now: float) -> bool:
        """A summary request failed. True if the card changed."""
        card = self._cards.get(node_id)
        if card is None:
            return False
        card.failures += 1
        card.reason = reason
        if card.failures >= self.off_after and card.state != "off":
            return self._off(card, card.heard if card.heard is not None else now, reason)
        return False

    def _off(self, card: _Card, since: float, reason: str) -> bool:
        card.state, card.since, card.reason = "off", since, reason
        return True

    def targets(self) -> list[str]:
        """Nodes to ask for a summary: all of them (an off node is asked too, to see it return)."""
        return list(self._cards)

    def cards(self) -> list[dict[str, Any]]:
        """The cards of the other nodes, sorted by name, as the page shows them."""
        out = []
        for c in sorted(self._cards.values(), key=lambda c: (c.name, c.node_id)):
            summary = dict(c.summary or {})
            out.append({
                **summary,
                "node_id": c.node_id,
                "name": c.name,
                "queues": list(c.queues),
                "farm_state": c.state,
                "since": c.since,
                "stale": c.state != "on" and c.summary is not None,
                "reason": c.reason,
                "actions": offered_actions(summary) if c.state == "on" else [],
                "own": False,
            })
        return out
