"""The LAN queues' durable state in the node's SQLite file.

The core (protocol.py) says what to persist with `Persist` actions; each one becomes one
transaction here, committed with the store's durability (WAL, synchronous=FULL) before the
adapter performs any later action of the same list: a grant is on disk before its reply leaves
(S2), a completion is in the outbox before it is reported (S5).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiosqlite

from ..store import Store
from . import codec
from .messages import HeldLease, OutboxEntry, Persist
from .protocol import DurableState
from .records import JobRecord

__all__ = ["DB_FILE", "NODE_ID_FILE", "LanPersistence", "end_run_in", "reset_identity"]

#: Names inside a node's data directory (node.py and `lanqueue check` use the same).
NODE_ID_FILE = "node_id"
DB_FILE = "lanqueue.sqlite3"


async def _v1(db: aiosqlite.Connection) -> None:
    for statement in (
        "CREATE TABLE lan_records (queue TEXT NOT NULL, job_id TEXT NOT NULL, body TEXT NOT NULL, "
        "PRIMARY KEY (queue, job_id))",
        "CREATE TABLE lan_held (queue TEXT NOT NULL, job_id TEXT NOT NULL, token INTEGER NOT NULL, "
        "PRIMARY KEY (queue, job_id))",
        "CREATE TABLE lan_outbox (queue TEXT NOT NULL, seq INTEGER NOT NULL, body TEXT NOT NULL, "
        "PRIMARY KEY (queue, seq))",
        "CREATE TABLE lan_meta (queue TEXT NOT NULL, key TEXT NOT NULL, value INTEGER NOT NULL, "
        "PRIMARY KEY (queue, key))",
    ):
        await db.execute(statement)


class LanPersistence:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def async_setup(self) -> None:
        await self.store.migrate_component("lan", [_v1])

    async def load(self, queue: str) -> DurableState:
        state = DurableState()
        for row in await self.store.fetchall("SELECT body FROM lan_records WHERE queue=?", (queue,)):
            record = codec.decode(json.loads(row["body"]), JobRecord)
            state.records[record.id] = record
        for row in await self.store.fetchall("SELECT job_id, token FROM lan_held WHERE queue=?", (queue,)):
            state.held[row["job_id"]] = HeldLease(row["job_id"], row["token"])
        for row in await self.store.fetchall("SELECT seq, body FROM lan_outbox WHERE queue=?", (queue,)):
            state.outbox[row["seq"]] = codec.decode(json.loads(row["body"]), OutboxEntry)
        for row in await self.store.fetchall("SELECT key, value FROM lan_meta WHERE queue=?", (queue,)):
            if row["key"] == "next_seq":
                state.next_seq = row["value"]
            elif row["key"] == "boot":
                state.boot = row["value"]
        return state

    async def apply(self, queue: str, p: Persist,
                    also: Callable[[aiosqlite.Connection], Awaitable[None]] | None = None) -> None:
        """One Persist action = one committed transaction (with `also`'s writes, if given: a
        finished run's history row goes with the completion it puts in the outbox)."""

        async def work(db: aiosqlite.Connection) -> None:
            if also is not None:
                await also(db)
            for r in p.records:
                await db.execute(
                    "INSERT INTO lan_records(queue, job_id, body) VALUES (?, ?, ?) "
                    "ON CONFLICT(queue, job_id) DO UPDATE SET body=excluded.body",
                    (queue, r.id, json.dumps(codec.encode(r))),
                )
            for h in p.held_put:
                await db.execute(
                    "INSERT INTO lan_held(queue, job_id, token) VALUES (?, ?, ?) "
                    "ON CONFLICT(queue, job_id) DO UPDATE SET token=excluded.token",
                    (queue, h.job_id, h.token),
                )
            for job_id in p.held_delete:
                await db.execute("DELETE FROM lan_held WHERE queue=? AND job_id=?", (queue, job_id))
            for e in p.outbox_put:
                await db.execute(
                    "INSERT OR REPLACE INTO lan_outbox(queue, seq, body) VALUES (?, ?, ?)",
                    (queue, e.seq, json.dumps(codec.encode(e))),
                )
            for seq in p.outbox_delete:
                await db.execute("DELETE FROM lan_outbox WHERE queue=? AND seq=?", (queue, seq))
            for key, value in (("next_seq", p.next_seq), ("boot", p.boot)):
                if value is not None:
                    await db.execute(
                        "INSERT INTO lan_meta(queue, key, value) VALUES (?, ?, ?) "
                        "ON CONFLICT(queue, key) DO UPDATE SET value=excluded.value",
                        (queue, key, value),
                    )

        await self.store.transaction(work)


def end_run_in(run_id: int, result: str) -> Callable[[aiosqlite.Connection], Awaitable[None]]:
    """The history row of a finished run, for `LanPersistence.apply(also=...)` (the same update
    as `Store.end_run`, inside the completion's own transaction)."""

    async def close(db: aiosqlite.Connection) -> None:
        await db.execute("UPDATE runs SET end=?, result=? WHERE id=? AND end IS NULL", (time.time(), result, run_id))

    return close


def reset_identity(data_dir: Path) -> tuple[str, str]:
    """Give the node in `data_dir` a new node id (run it while that node is stopped).

    For a copied SD card: the copy keeps the queue's records (they are the farm's, and any node
    may hold them) but drops what belonged to the node it was copied from, as a holder: the
    leases it held and the finished prints it had not reported yet (the original reports them),
    and its sequence numbers. Returns (old id, new id).
    """
    id_file = data_dir / NODE_ID_FILE
    old = id_file.read_text().strip() if id_file.exists() else ""
    new = str(uuid.uuid4())
    db = data_dir / DB_FILE
    if db.exists():
        with contextlib.closing(sqlite3.connect(db)) as conn, conn:
            for statement in ("DELETE FROM lan_held", "DELETE FROM lan_outbox",
                              "DELETE FROM lan_meta WHERE key IN ('next_seq', 'boot')"):
                with contextlib.suppress(sqlite3.OperationalError):  # no LAN tables yet
                    conn.execute(statement)
    tmp = id_file.with_suffix(".new")
    tmp.write_text(new + "\n")
    os.replace(tmp, id_file)
    return old, new
