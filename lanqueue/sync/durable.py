"""Durable state of one node for one LAN queue, and the action buffer that orders outputs.

`DurableState` is exactly what the adapter keeps on disk (see `protocol` for when each part is
written); `DurableState.apply(persist)` folds one `Persist` action into it, so a test or an
adapter can check that what it wrote equals `LanNodeCore.durable_state()`.

`_Out` collects everything one call of the core produces and emits it in the only safe order:
one merged `Persist` (one transaction), then events, then sends, then record pushes to peers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .messages import Action, Event, HeldLease, OutboxEntry, Persist, RecordPush, Send
from .records import JobRecord

__all__ = ["DurableState"]


@dataclass
class DurableState:
    """What one node keeps on disk for one LAN queue; `apply` folds in a `Persist` action."""

    records: dict[str, JobRecord] = field(default_factory=dict)
    held: dict[str, HeldLease] = field(default_factory=dict)
    outbox: dict[int, OutboxEntry] = field(default_factory=dict)
    next_seq: int = 1
    boot: int = 0

    def apply(self, p: Persist) -> None:
        for r in p.records:
            self.records[r.id] = r
        for h in p.held_put:
            self.held[h.job_id] = h
        for j in p.held_delete:
            self.held.pop(j, None)
        for e in p.outbox_put:
            self.outbox[e.seq] = e
        for s in p.outbox_delete:
            self.outbox.pop(s, None)
        if p.next_seq is not None:
            self.next_seq = p.next_seq
        if p.boot is not None:
            self.boot = p.boot

    def copy(self) -> DurableState:
        return DurableState(dict(self.records), dict(self.held), dict(self.outbox), self.next_seq, self.boot)


class _Out:
    """Collects one call's effects and emits them as persist -> events -> sends."""

    def __init__(self, sender: str = "", peers: Sequence[str] = ()) -> None:
        self.sender = sender
        self.peers = peers
        self.persists: list[Persist] = []
        self.records: dict[str, JobRecord] = {}  # to persist: written here or merged from peers
        self.written: dict[str, JobRecord] = {}  # written by this node: pushed to every peer
        self.events: list[Event] = []
        self.sends: list[Send] = []

    def add(self, actions: Iterable[Action]) -> None:
        for a in actions:
            if isinstance(a, Persist):
                self.persists.append(a)
            elif isinstance(a, Send):
                self.sends.append(a)
            elif isinstance(a, Event):
                self.events.append(a)
            else:  # pragma: no cover - a new action type must be placed deliberately
                raise TypeError(a)

    def actions(self) -> list[Action]:
        out: list[Action] = []
        if self.records or self.persists:
            merged = Persist(records=tuple(self.records.values()))
            for p in self.persists:
                merged = Persist(
                    records=merged.records,
                    held_put=merged.held_put + p.held_put,
                    held_delete=merged.held_delete + p.held_delete,
                    outbox_put=merged.outbox_put + p.outbox_put,
                    outbox_delete=merged.outbox_delete + p.outbox_delete,
                    next_seq=p.next_seq if p.next_seq is not None else merged.next_seq,
                    boot=p.boot if p.boot is not None else merged.boot,
                )
            out.append(merged)
        out.extend(self.events)
        out.extend(self.sends)
        if self.written:
            pushed = tuple(self.written.values())
            out.extend(Send(peer, RecordPush(self.sender, pushed)) for peer in self.peers)
        return out
