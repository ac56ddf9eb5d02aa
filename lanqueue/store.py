"""Durable state of one node: queues, jobs, sets, runs, files and settings in one SQLite file.

Every write is one transaction committed with WAL and `synchronous=FULL` before the caller gets
an answer, so anything the API acknowledged survives kill -9 and power loss.

The write model (why it is built this way):

- One writer task owns the writing connection. Callers hand it a unit of work and wait for the
  answer; the task runs each unit inside its own SAVEPOINT, so a unit that is refused (a
  `BadRequest` raised half-way, after some UPDATEs) rolls back to exactly where it began and
  changes nothing, while the units queued next to it still commit. Units that arrive while the
  disk syncs are committed together (group commit): one fsync answers many clients, which is
  what makes durable writes fast on a real disk. Units never interleave, so read-modify-write
  code (ranks, counts) stays sound without locks in the callers.
- Reads never touch the writing connection. They go to separate read-only connections, and in
  WAL mode a reader sees only committed transactions. Before this, reads shared the writer's
  connection and could see a refused edit's changes before its rollback (state/get served them
  and the driver started a draft job on a refused `draft: false`). Reads that must agree with
  each other (jobs and their sets) run in one read transaction: `snapshot()`.
- `generation` is bumped only after a commit that changed something, so a cache keyed by it can
  never hold a state that was rolled back: the readers could not see one in the first place.

Damage and full disks are errors with a clear meaning: `DataDirError` names the file and what to
do (the node exits with it), `InsufficientStorage` (507) says the disk is full and nothing was
written.

The schema is versioned with `PRAGMA user_version` and one migration step per version. Other
components (the LAN queues) keep their tables in the same file and register their own steps
under their own name in the `migrations` table.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from .errors import BadRequest, InsufficientStorage, NotFound
from .model import (
    ARCHIVE,
    LOCAL,
    Job,
    PrintSet,
    Run,
    Strategy,
    apply_success,
    rank_between,
    reset_job,
)

__all__ = ["DataDirError", "Migration", "Store", "check_database"]

Migration = Callable[[aiosqlite.Connection], Awaitable[None]]

HISTORY_LIMIT = 100
READERS = 2  # aiosqlite read connections: snapshots (a whole queue for the driver) and small reads
GROUP_LIMIT = 64  # units of work committed together at most
ASSEMBLE_OFF_LOOP = 500  # rows past which jobs are built from rows in a worker thread
DIRECT_READERS = 8  # plain read connections kept for one-hand-off reads (state/get's rebuild, one job)
_IDS_PER_QUERY = 500  # ids bound in one `IN (...)` (SQLite's limit on variables is far above)

log = logging.getLogger(__name__)

_T = TypeVar("_T")

# the read connection of the current task's snapshot(), if it has one
_SNAPSHOT: contextvars.ContextVar[aiosqlite.Connection | None] = contextvars.ContextVar(
    "lanqueue_store_snapshot", default=None
)


class DataDirError(Exception):
    """The database cannot be used as it is (damaged, not a database, read-only): the message
    is one line naming the file and what to do, for the log and the exit status."""


async def _v1(db: aiosqlite.Connection) -> None:
    await _run_script(
        db,
        """
        CREATE TABLE queues (
            name TEXT PRIMARY KEY,
            strategy TEXT NOT NULL DEFAULT 'IN_ORDER',
            addr TEXT,
            rank REAL NOT NULL
        );
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            queue TEXT NOT NULL REFERENCES queues(name),
            name TEXT NOT NULL,
            count INTEGER NOT NULL,
            remaining INTEGER NOT NULL,
            draft INTEGER NOT NULL,
            created INTEGER NOT NULL,
            rank REAL NOT NULL
        );
        CREATE INDEX jobs_by_queue ON jobs(queue, rank);
        CREATE TABLE sets (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
            path TEXT NOT NULL,
            sd INTEGER NOT NULL,
            count INTEGER NOT NULL,
            remaining INTEGER NOT NULL,
            completed INTEGER NOT NULL,
            rank REAL NOT NULL,
            materials TEXT NOT NULL,
            profiles TEXT NOT NULL,
            metadata TEXT
        );
        CREATE INDEX sets_by_job ON sets(job_id, rank);
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            queue TEXT NOT NULL,
            job_id TEXT,
            job_name TEXT NOT NULL,
            set_id TEXT,
            set_path TEXT NOT NULL,
            start REAL NOT NULL,
            end REAL,
            result TEXT
        );
        CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE files (
            path TEXT PRIMARY KEY,
            sha256 TEXT NOT NULL,
            size INTEGER NOT NULL,
            uploaded REAL NOT NULL
        );
        CREATE INDEX files_by_digest ON files(sha256);
        INSERT INTO queues(name, strategy, addr, rank) VALUES ('local', 'IN_ORDER', NULL, 0.0);
        INSERT INTO queues(name, strategy, addr, rank) VALUES ('archive', 'IN_ORDER', NULL, -1.0);
        """
    )


async def _v2(db: aiosqlite.Connection) -> None:
    """Every job row carries a `version` that moves whenever the job or one of its sets is
    written, kept by triggers so no write path can forget it: state/get's cache re-reads and
    re-encodes only the jobs whose version moved (api/state.py). A rolled-back write takes its
    bump with it, and ids are never reused (AUTOINCREMENT), so (id, version) names one content."""
    await db.execute("ALTER TABLE jobs ADD COLUMN version INTEGER NOT NULL DEFAULT 0")
    bump = "UPDATE jobs SET version = version + 1 WHERE id"
    for statement in (
        # `version` itself is not in the column list, so the trigger does not fire itself
        "CREATE TRIGGER jobs_version AFTER UPDATE OF queue, name, count, remaining, draft, created, rank "
        f"ON jobs BEGIN {bump} = NEW.id; END",
        f"CREATE TRIGGER sets_added_version AFTER INSERT ON sets BEGIN {bump} = NEW.job_id; END",
        f"CREATE TRIGGER sets_removed_version AFTER DELETE ON sets BEGIN {bump} = OLD.job_id; END",
        f"CREATE TRIGGER sets_changed_version AFTER UPDATE ON sets BEGIN {bump} IN (OLD.job_id, NEW.job_id); END",
    ):
        await db.execute(statement)


MIGRATIONS: list[Migration] = [_v1, _v2]


async def _run_script(db: aiosqlite.Connection, script: str) -> None:
    """Run `;`-separated statements inside the caller's transaction (executescript would
    commit first and break the migration's atomicity)."""
    for statement in script.split(";"):
        if statement.strip():
            await db.execute(statement)



async def _run_migrations(
    steps: Sequence[Migration],
    version: int,
    record: Callable[[aiosqlite.Connection, int], Awaitable[None]],
    run: Callable[[Callable[[aiosqlite.Connection], Awaitable[Any]]], Awaitable[Any]],
) -> None:
    """The one migration runner: the steps after `version`, each with its version `record` in
    one transaction (`run`), so a crash between steps leaves a database at a step's version."""
    for number, step in enumerate(steps[version:], start=version + 1):

        async def work(db: aiosqlite.Connection, step: Migration = step, number: int = number) -> None:
            await step(db)
            await record(db, number)

        await run(work)

class Store:
    """The node's SQLite database. Open with `await Store.open(path)`, close with `async_close()`."""

    def __init__(self, db: aiosqlite.Connection, readers: Sequence[aiosqlite.Connection], path: Path) -> None:
        self._db = db
        self.path = path
        self.generation = 0  # bumped after every commit that changed something; caches key by it
        self._listeners: list[Callable[[], None]] = []
        self._readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._all_readers = list(readers)
        for r in readers:
            self._readers.put_nowait(r)
        self._pending: asyncio.Queue[tuple[Callable[[aiosqlite.Connection], Awaitable[Any]], asyncio.Future[Any]]]
        self._pending = asyncio.Queue()
        self._writer_task: asyncio.Task[None] | None = None
        self._queues_cache: tuple[int, list[dict[str, Any]]] | None = None
        #: plain read-only connections for `changed_jobs`, used in worker threads only
        self._direct: asyncio.Queue[sqlite3.Connection] = asyncio.Queue()

    # --- lifecycle -------------------------------------------------------------------------

    @classmethod
    async def open(cls, path: Path) -> Store:
        """Open (creating or migrating) the database; a damaged or unusable file raises
        `DataDirError` with every connection closed again (no thread is left to hold the
        process open)."""
        opened: list[aiosqlite.Connection] = []
        try:
            db = await _connect(path, opened)
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=FULL")
            await db.execute("PRAGMA foreign_keys=ON")
            await _quick_check(db, path)
            readers = []
            for _ in range(READERS):
                reader = await _connect(path, opened)
                await reader.execute("PRAGMA query_only=ON")
                readers.append(reader)
            store = cls(db, readers, path)
            await store._migrate()
            await _write_probe(db)
        except (sqlite3.Error, OSError) as e:
            for conn in opened:
                with contextlib.suppress(Exception):
                    await conn.close()
            raise DataDirError(_damage_advice(path, e)) from e
        store._writer_task = asyncio.create_task(store._writer_loop(), name="lanqueue-store-writer")
        return store

    async def async_close(self) -> None:
        if self._db is None:
            return
        if self._writer_task is not None:
            self._writer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer_task
        while not self._pending.empty():
            _, future = self._pending.get_nowait()
            if not future.done():
                future.set_exception(RuntimeError("the store was closed before this write ran"))
        db, self._db = self._db, None  # type: ignore[assignment]
        while not self._direct.empty():  # those in use are closed when given back
            self._direct.get_nowait().close()
        for conn in [db, *self._all_readers]:
            with contextlib.suppress(Exception):
                await conn.close()

    @property
    def db(self) -> aiosqlite.Connection:
        """The writing connection, for inspection (pragmas) only: writes go through
        `transaction()`, reads through `fetchall()`."""
        return self._db

    async def _migrate(self) -> None:
        """Run before the writer task starts, so nothing else uses the connection yet: each step
        in a transaction of its own on this connection, the version in `PRAGMA user_version`."""
        async with self._db.execute("PRAGMA user_version") as cur:
            (version,) = await cur.fetchone()  # type: ignore[misc]

        async def in_transaction(work: Callable[[aiosqlite.Connection], Awaitable[Any]]) -> None:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                await work(self._db)
                await self._db.commit()
            except BaseException:
                await self._db.rollback()
                raise

        async def record(db: aiosqlite.Connection, number: int) -> None:
            await db.execute(f"PRAGMA user_version={number}")

        await _run_migrations(MIGRATIONS, version, record, in_transaction)

    async def migrate_component(self, component: str, steps: Sequence[Migration]) -> None:
        """Run the migration steps of another component that keeps tables in this database
        (each step with its version record in one transaction)."""

        async def version_of(db: aiosqlite.Connection) -> int:
            await db.execute(
                "CREATE TABLE IF NOT EXISTS migrations (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )
            rows = await self._fetchall("SELECT version FROM migrations WHERE component=?", (component,))
            return int(rows[0][0]) if rows else 0

        async def record(db: aiosqlite.Connection, number: int) -> None:
            await db.execute(
                "INSERT INTO migrations(component, version) VALUES (?, ?) "
                "ON CONFLICT(component) DO UPDATE SET version=excluded.version",
                (component, number),
            )

        await _run_migrations(steps, await self._write(version_of), record, self._write)

    # --- transactions ----------------------------------------------------------------------

    def add_listener(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` after every committed write (the web page's live updates use it)."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    async def _write(self, work: Callable[[aiosqlite.Connection], Awaitable[Any]]) -> Any:
        """Run `work` in a transaction of its own (see the module's write model); the answer
        comes after the commit (fsync). Work may read with `self._fetchall` (it then reads its
        own uncommitted changes) but must not call `_write` itself."""
        if self._writer_task is None or self._writer_task.done():
            raise RuntimeError("the store is closed")
        if asyncio.current_task() is self._writer_task:
            raise RuntimeError("a unit of work cannot queue another one (it would wait for itself)")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.put_nowait((work, future))
        return await future

    async def transaction(self, work: Callable[[aiosqlite.Connection], Awaitable[Any]]) -> Any:
        """For components with their own tables: everything `work` writes commits together,
        or (when it raises) none of it."""
        return await self._write(work)

    async def _writer_loop(self) -> None:
        while True:
            batch = [await self._pending.get()]
            while len(batch) < GROUP_LIMIT and not self._pending.empty():
                batch.append(self._pending.get_nowait())
            batch = [(w, f) for w, f in batch if not f.done()]  # callers cancelled while queued
            try:
                if batch:
                    await self._commit_group(batch)
            except asyncio.CancelledError:  # closing mid-group: no caller waits for ever
                for _, future in batch:
                    if not future.done():
                        future.set_exception(RuntimeError("the store was closed during this write"))
                raise

    async def _commit_group(
        self, batch: list[tuple[Callable[[aiosqlite.Connection], Awaitable[Any]], asyncio.Future[Any]]]
    ) -> None:
        """One transaction for the batch: each unit in a savepoint, one commit for all."""
        db = self._db
        outcomes: list[tuple[bool, Any]] = []
        try:
            await db.execute("BEGIN IMMEDIATE")
            if len(batch) == 1:  # alone, the unit's failure may take the whole transaction
                outcomes.append(await self._run_alone(db, batch[0][0]))
            for work, _ in batch if len(batch) > 1 else ():
                outcomes.append(await self._run_unit(db, work))
            if any(ok for ok, _ in outcomes):
                await db.commit()
            else:
                await db.rollback()
        except Exception as e:  # noqa: BLE001 - BEGIN or COMMIT failed (disk full, I/O error): nothing is kept
            if db.in_transaction:
                with contextlib.suppress(Exception):
                    await db.rollback()
            error = _storage_error(e)
            outcomes = [(False, error)] * len(batch)
        if any(ok for ok, _ in outcomes):
            self.generation += 1
        for (_, future), (ok, value) in zip(batch, outcomes):
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        if any(ok for ok, _ in outcomes):
            for callback in list(self._listeners):
                try:
                    callback()
                except Exception:  # a listener must not stop the writer
                    log.exception("store listener failed")

    async def _run_alone(self, db: aiosqlite.Connection, work: Callable[[aiosqlite.Connection], Awaitable[Any]]) -> tuple[bool, Any]:
        try:
            return True, await work(db)
        except Exception as e:  # noqa: BLE001 - any failure of a unit is its answer
            return False, _storage_error(e)

    async def _run_unit(self, db: aiosqlite.Connection, work: Callable[[aiosqlite.Connection], Awaitable[Any]]) -> tuple[bool, Any]:
        await db.execute("SAVEPOINT unit")
        try:
            result = await work(db)
        except Exception as e:  # noqa: BLE001 - any failure of a unit is its answer
            try:
                await db.execute("ROLLBACK TO unit")
                await db.execute("RELEASE unit")
            except sqlite3.Error:
                # SQLite already rolled the whole transaction back (disk full, I/O error):
                # the units before this one are gone too, so the group fails as one
                raise e from None
            return False, _storage_error(e)
        await db.execute("RELEASE unit")
        return True, result

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[None]:
        """Reads made by this task inside the block all see the same committed state."""
        if asyncio.current_task() is self._writer_task or _SNAPSHOT.get() is not None:
            yield
            return
        reader = await self._readers.get()
        token = _SNAPSHOT.set(reader)
        try:
            await reader.execute("BEGIN")
            try:
                yield
            finally:
                await reader.execute("COMMIT")
        finally:
            _SNAPSHOT.reset(token)
            self._readers.put_nowait(reader)

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        return await self._fetchall(sql, args)

    async def _fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        """Rows from committed state, or (inside a unit of work) from the writer's transaction."""
        if asyncio.current_task() is self._writer_task:
            return await _rows(self._db, sql, args)
        held = _SNAPSHOT.get()
        if held is not None:
            return await _rows(held, sql, args)
        reader = await self._readers.get()
        try:
            return await _rows(reader, sql, args)
        finally:
            self._readers.put_nowait(reader)

    # --- settings --------------------------------------------------------------------------

    async def get_setting(self, key: str, default: Any = None) -> Any:
        rows = await self._fetchall("SELECT value FROM settings WHERE key=?", (key,))
        return json.loads(rows[0]["value"]) if rows else default

    async def set_setting(self, key: str, value: Any) -> None:
        text = json.dumps(value)

        async def work(db: aiosqlite.Connection) -> None:
            await db.execute(
                "INSERT INTO settings(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (key, text),
            )

        await self._write(work)

    # --- queues ----------------------------------------------------------------------------

    async def queues(self) -> list[dict[str, Any]]:
        """Every queue but the archive, in rank order. Every state/get asks: the rows are kept
        until the next commit (the generation is read first, so they can be older than their
        key, never newer)."""
        generation = self.generation
        cached = self._queues_cache
        if cached is None or cached[0] != generation or asyncio.current_task() is self._writer_task:
            rows = await self._fetchall(
                "SELECT name, strategy, addr, rank FROM queues WHERE name != ? ORDER BY rank", (ARCHIVE,)
            )
            cached = (generation, [dict(r) for r in rows])
            if asyncio.current_task() is not self._writer_task:  # never keep uncommitted rows
                self._queues_cache = cached
        return [dict(r) for r in cached[1]]

    async def set_queues(self, queues: Sequence[dict[str, Any]]) -> None:
        """Replace the queue list (rank = position). `local` must stay; jobs of a removed queue
        would be orphaned, so a queue that still holds jobs cannot be removed."""
        names = [q["name"] for q in queues]
        if LOCAL not in names:
            raise BadRequest("the local queue cannot be removed")

        async def work(db: aiosqlite.Connection) -> None:
            existing = {r["name"] for r in await self._fetchall("SELECT name FROM queues")}
            for gone in existing - set(names) - {ARCHIVE}:
                rows = await self._fetchall("SELECT COUNT(*) AS n FROM jobs WHERE queue=?", (gone,))
                if rows[0]["n"]:
                    raise BadRequest(f"queue {gone!r} still holds jobs; move or delete them first")
                await db.execute("DELETE FROM queues WHERE name=?", (gone,))
            for rank, q in enumerate(queues):
                await db.execute(
                    "INSERT INTO queues(name, strategy, addr, rank) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET strategy=excluded.strategy, "
                    "addr=excluded.addr, rank=excluded.rank",
                    (q["name"], q.get("strategy", Strategy.IN_ORDER.value), q.get("addr"), float(rank)),
                )

        await self._write(work)

    async def ensure_queue(self, name: str) -> None:
        """Add a queue (a joined LAN queue) after the others, if it is not there yet."""

        async def work(db: aiosqlite.Connection) -> None:
            rows = await self._fetchall("SELECT MAX(rank) AS r FROM queues")
            await db.execute(
                "INSERT INTO queues(name, strategy, addr, rank) VALUES (?, 'IN_ORDER', NULL, ?) "
                "ON CONFLICT(name) DO NOTHING",
                (name, (rows[0]["r"] or 0.0) + 1.0),
            )

        if not await self._fetchall("SELECT name FROM queues WHERE name=?", (name,)):
            await self._write(work)

    # --- jobs and sets: reading -----------------------------------------------------------

    async def jobs(self, queue: str | None = None) -> list[Job]:
        """Jobs with their sets in rank order; every queue but the archive when `queue` is None."""
        async with self.snapshot():
            return await self._jobs(queue)

    async def _jobs(self, queue: str | None) -> list[Job]:
        if queue is None:
            job_rows = await self._fetchall(
                "SELECT * FROM jobs WHERE queue != ? ORDER BY rank, id", (ARCHIVE,)
            )
            set_rows = await self._fetchall(
                "SELECT sets.* FROM sets JOIN jobs ON jobs.id = sets.job_id "
                "WHERE jobs.queue != ? ORDER BY sets.rank, sets.id",
                (ARCHIVE,),
            )
        else:
            job_rows = await self._fetchall(
                "SELECT * FROM jobs WHERE queue = ? ORDER BY rank, id", (queue,)
            )
            set_rows = await self._fetchall(
                "SELECT sets.* FROM sets JOIN jobs ON jobs.id = sets.job_id "
                "WHERE jobs.queue = ? ORDER BY sets.rank, sets.id",
                (queue,),
            )
        if len(job_rows) + len(set_rows) > ASSEMBLE_OFF_LOOP:  # keep the event loop (the printer) going
            return await asyncio.to_thread(_assemble, job_rows, set_rows)
        return _assemble(job_rows, set_rows)

    async def changed_jobs(self, queue: str, pick: Callable[[list[tuple[int, int]]], Sequence[int]]) -> list[Job]:
        """state/get's cache asks which jobs changed: `pick` gets every job of `queue` as
        (id, version) in rank order and names the ids to read; those jobs (with their sets,
        in no particular order) come back, all from one committed state. `pick` runs in the
        worker thread (see `_direct_read`), so it must only read what the caller no longer
        changes."""
        return await self._direct_read(lambda conn: _changed_jobs(conn, queue, pick))

    async def _direct_read(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """`work` in one read transaction on a plain read-only connection, in one call to a
        worker thread. The same reads through aiosqlite take a hand-off per statement plus
        BEGIN and COMMIT; under load each hand-off waits for the GIL (up to the 5 ms switch
        interval) behind the event loop, and whoever waits for the read waits for all of them."""
        if self._db is None:
            raise RuntimeError("the store is closed")
        try:
            conn: sqlite3.Connection | None = self._direct.get_nowait()
        except asyncio.QueueEmpty:
            conn = None
        return await asyncio.to_thread(self._run_direct, asyncio.get_running_loop(), conn, work)

    def _run_direct(self, loop: asyncio.AbstractEventLoop, conn: sqlite3.Connection | None,
                    work: Callable[[sqlite3.Connection], _T]) -> _T:
        """In the worker thread: the connection goes back to the pool from here, when this
        thread is done with it (not when a cancelled caller stops waiting)."""
        if conn is None:
            conn = _direct_reader(self.path)  # a failure here holds no connection
        try:
            conn.execute("BEGIN")
            try:
                return work(conn)
            finally:
                conn.execute("COMMIT")
        finally:
            try:
                loop.call_soon_threadsafe(self._give_back, conn)
            except RuntimeError:  # the loop is gone (the node stopped mid-read): nobody gets it back
                conn.close()

    def _give_back(self, conn: sqlite3.Connection) -> None:
        if self._db is None or self._direct.qsize() >= DIRECT_READERS:
            conn.close()
        else:
            self._direct.put_nowait(conn)

    async def job(self, job_id: int) -> Job:
        if asyncio.current_task() is self._writer_task or _SNAPSHOT.get() is not None:
            return await self._job(job_id)  # inside a unit of work or a snapshot: read there
        return await self._direct_read(lambda conn: _job_of(conn, job_id))

    async def _job(self, job_id: int) -> Job:
        job_rows = await self._fetchall("SELECT * FROM jobs WHERE id=?", (job_id,))
        if not job_rows:
            raise NotFound(f"no job with id {job_id}")
        set_rows = await self._fetchall(
            "SELECT * FROM sets WHERE job_id=? ORDER BY rank, id", (job_id,)
        )
        return _assemble(job_rows, set_rows)[0]

    # --- jobs and sets: writing -----------------------------------------------------------

    async def add_job(
        self, name: str, *, queue: str = LOCAL, draft: bool = True, count: int = 1,
        sets: Sequence[dict[str, Any]] = (),
    ) -> Job:
        """A new job, with `sets` (validated set fields, in rank order) in the same transaction:
        a crash never leaves a job with only some of its sets."""

        async def work(db: aiosqlite.Connection) -> int:
            jid = await self._insert_job(db, queue, name, draft, count)
            for fields in sets:
                await self._insert_set(db, jid, fields)
            return jid

        return await self.job(await self._write(work))

    async def add_set(
        self,
        fields: dict[str, Any],
        *,
        job_id: int | None,
        job_name: str | None,
        job_draft: bool,
        queue: str = LOCAL,
    ) -> tuple[int, PrintSet]:
        """Add one set to an existing job, or to a new job created in the same transaction."""

        async def work(db: aiosqlite.Connection) -> tuple[int, PrintSet]:
            jid = job_id
            if jid is None:
                jid = await self._insert_job(db, queue, job_name or _job_name(fields["path"]), job_draft, 1)
            elif not await self._fetchall("SELECT id FROM jobs WHERE id=? AND queue != ?", (jid, ARCHIVE)):
                raise NotFound(f"no job with id {jid}")
            # the answer is the row as inserted (RETURNING): exactly what commits, no extra read
            return jid, _set_of(await self._insert_set_row(db, jid, fields, first=job_id is None))

        return await self._write(work)  # type: ignore[no-any-return]

    async def edit_job(self, job_id: int, changes: dict[str, Any]) -> Job:
        """Apply validated changes; `sets`, when given, is the complete new list of sets
        (entries with an `id` update that set, entries without create one, absent ones go)."""

        async def work(db: aiosqlite.Connection) -> None:
            rows = await self._fetchall("SELECT * FROM jobs WHERE id=?", (job_id,))
            if not rows or rows[0]["queue"] == ARCHIVE:
                raise NotFound(f"no job with id {job_id}")
            cols = {k: changes[k] for k in ("name", "count", "remaining", "draft") if k in changes}
            if "count" in cols and "remaining" not in cols:
                # keep the number of runs already done when the count changes
                done = rows[0]["count"] - rows[0]["remaining"]
                cols["remaining"] = max(0, cols["count"] - done)
            for col, value in cols.items():
                await db.execute(f"UPDATE jobs SET {col}=? WHERE id=?", (_sql_value(value), job_id))
            if "sets" in changes:
                await self._replace_sets(db, job_id, changes["sets"])
            # remaining may be edited alone: check it against the count it ends up with
            # (the transaction rolls back, so a refused edit changes nothing)
            if await self._fetchall("SELECT id FROM jobs WHERE id=? AND remaining > count", (job_id,)):
                raise BadRequest("a job's remaining cannot exceed its count")
            if await self._fetchall("SELECT id FROM sets WHERE job_id=? AND remaining > count", (job_id,)):
                raise BadRequest("a set's remaining cannot exceed its count")

        await self._write(work)
        return await self.job(job_id)

    async def move_job(self, job_id: int, after_id: int | None, dest_queue: str) -> None:
        """Put a job right after `after_id` (None = to the front) in `dest_queue`."""

        async def work(db: aiosqlite.Connection) -> None:
            if not await self._fetchall("SELECT id FROM jobs WHERE id=? AND queue != ?", (job_id, ARCHIVE)):
                raise NotFound(f"no job with id {job_id}")
            if not await self._fetchall("SELECT name FROM queues WHERE name=?", (dest_queue,)):
                raise NotFound(f"no queue named {dest_queue!r}")
            rank = await self._rank_after(dest_queue, after_id, exclude=job_id)
            await db.execute("UPDATE jobs SET queue=?, rank=? WHERE id=?", (dest_queue, rank, job_id))

        await self._write(work)

    async def remove_jobs(self, job_ids: Sequence[int]) -> int:
        """Local jobs go to the archive (as the original); archived jobs are deleted for good."""

        async def work(db: aiosqlite.Connection) -> int:
            n = 0
            for jid in job_ids:
                rows = await self._fetchall("SELECT queue FROM jobs WHERE id=?", (jid,))
                if not rows:
                    continue
                if rows[0]["queue"] == ARCHIVE:
                    await db.execute("DELETE FROM jobs WHERE id=?", (jid,))
                else:
                    await db.execute("UPDATE jobs SET queue=? WHERE id=?", (ARCHIVE, jid))
                n += 1
            return n

        return await self._write(work)

    async def reset_jobs(self, job_ids: Sequence[int]) -> int:
        async def work(db: aiosqlite.Connection) -> int:
            n = 0
            for jid in job_ids:
                try:
                    job = await self.job(jid)
                except NotFound:
                    continue
                await self._save_counts(db, reset_job(job))
                n += 1
            return n

        return await self._write(work)

    # --- runs (history) --------------------------------------------------------------------

    async def begin_run(self, queue: str, job_id: Any, job_name: str, set_id: Any, set_path: str) -> int:
        async def work(db: aiosqlite.Connection) -> int:
            cur = await db.execute(
                "INSERT INTO runs(queue, job_id, job_name, set_id, set_path, start) VALUES (?, ?, ?, ?, ?, ?)",
                (queue, str(job_id), job_name, str(set_id), set_path, time.time()),
            )
            return int(cur.lastrowid or 0)

        return await self._write(work)

    async def end_run(self, run_id: int, result: str, *, count_success_of: tuple[int, int] | None = None) -> None:
        """Close a run; with `count_success_of=(job_id, set_id)` the success is counted in the
        same transaction, so a crash can never leave a finished run without its count or a
        count without its run."""

        async def work(db: aiosqlite.Connection) -> None:
            await db.execute(
                "UPDATE runs SET end=?, result=? WHERE id=? AND end IS NULL", (time.time(), result, run_id)
            )
            if count_success_of is not None:
                job_id, set_id = count_success_of
                job = await self.job(job_id)
                await self._save_counts(db, apply_success(job, set_id))

        await self._write(work)

    async def abort_open_runs(self) -> int:
        """On start: runs left open by a crash were interrupted; record them aborted, once."""

        async def work(db: aiosqlite.Connection) -> int:
            cur = await db.execute(
                "UPDATE runs SET end=?, result='aborted' WHERE end IS NULL", (time.time(),)
            )
            return cur.rowcount

        return await self._write(work)

    async def history(self) -> list[Run]:
        rows = await self._fetchall(
            "SELECT * FROM runs ORDER BY id DESC LIMIT ?", (HISTORY_LIMIT,)
        )
        return [
            Run(r["id"], r["queue"], r["job_name"], r["set_path"], r["start"], r["end"], r["result"])
            for r in rows
        ]

    async def reset_history(self) -> None:
        async def work(db: aiosqlite.Connection) -> None:
            await db.execute("DELETE FROM runs WHERE end IS NOT NULL")

        await self._write(work)

    # --- files -----------------------------------------------------------------------------

    async def record_file(self, path: str, sha256: str, size: int) -> None:
        async def work(db: aiosqlite.Connection) -> None:
            await db.execute(
                "INSERT INTO files(path, sha256, size, uploaded) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(path) DO UPDATE SET sha256=excluded.sha256, size=excluded.size, "
                "uploaded=excluded.uploaded",
                (path, sha256, size, time.time()),
            )

        await self._write(work)

    async def forget_file(self, path: str) -> None:
        async def work(db: aiosqlite.Connection) -> None:
            await db.execute("DELETE FROM files WHERE path=?", (path,))

        await self._write(work)

    async def files(self) -> dict[str, dict[str, Any]]:
        rows = await self._fetchall("SELECT * FROM files ORDER BY path")
        return {r["path"]: dict(r) for r in rows}

    async def file_by_digest(self, sha256: str) -> str | None:
        rows = await self._fetchall("SELECT path FROM files WHERE sha256=? LIMIT 1", (sha256,))
        return rows[0]["path"] if rows else None

    # --- helpers ---------------------------------------------------------------------------

    async def _insert_job(self, db: aiosqlite.Connection, queue: str, name: str, draft: bool, count: int) -> int:
        """The queue must exist: the foreign key refuses the row otherwise (checked by SQLite in
        the INSERT, not by a read before it: one hand-off fewer for every new job)."""
        rank = await self._rank_after(queue, _LAST, exclude=None)
        try:
            cur = await db.execute(
                "INSERT INTO jobs(queue, name, count, remaining, draft, created, rank) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (queue, name, count, count, int(draft), int(time.time()), rank),
            )
        except sqlite3.IntegrityError as e:
            if "FOREIGN KEY" not in str(e):
                raise
            raise NotFound(f"no queue named {queue!r}") from None
        return int(cur.lastrowid or 0)

    async def _insert_set(self, db: aiosqlite.Connection, job_id: int, f: dict[str, Any], *, first: bool = False) -> int:
        """`first`: the job was made in this transaction and has no sets yet (no rank to read)."""
        return int((await self._insert_set_row(db, job_id, f, first=first))["id"])

    async def _insert_set_row(self, db: aiosqlite.Connection, job_id: int, f: dict[str, Any], *,
                              first: bool = False) -> sqlite3.Row:
        """`_insert_set`, answering the whole stored row (one hand-off to the writer's thread
        fewer than reading it back: each one is paid by every durable write)."""
        if first:
            rank = rank_between(None, None)
        else:
            rows = await self._fetchall("SELECT MAX(rank) AS r FROM sets WHERE job_id=?", (job_id,))
            rank = rank_between(rows[0]["r"], None)
        count = f.get("count", 1)
        inserted = await db.execute_fetchall(
            "INSERT INTO sets(job_id, path, sd, count, remaining, completed, rank, materials, profiles, metadata) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
            (
                job_id,
                f["path"],
                int(bool(f.get("sd", False))),
                count,
                f.get("remaining", count),
                f.get("completed", 0),
                rank,
                json.dumps(f.get("materials", [])),
                json.dumps(f.get("profiles", [])),
                json.dumps(f.get("metadata")),
            ),
        )
        return next(iter(inserted))

    async def _replace_sets(self, db: aiosqlite.Connection, job_id: int, sets: Sequence[dict[str, Any]]) -> None:
        existing = {r["id"] for r in await self._fetchall("SELECT id FROM sets WHERE job_id=?", (job_id,))}
        keep = {s["id"] for s in sets if s.get("id") is not None}
        unknown = keep - existing
        if unknown:
            raise NotFound(f"no set with id {min(unknown)} in job {job_id}")
        for sid in existing - keep:
            await db.execute("DELETE FROM sets WHERE id=?", (sid,))
        for rank, s in enumerate(sets, start=1):
            if s.get("id") is None:
                sid = await self._insert_set(db, job_id, s)
            else:
                sid = s["id"]
                for col in ("path", "sd", "count", "remaining", "completed", "materials", "profiles", "metadata"):
                    if col in s:
                        await db.execute(f"UPDATE sets SET {col}=? WHERE id=?", (_sql_value(s[col], col), sid))
                if "count" in s and "remaining" not in s:
                    await db.execute("UPDATE sets SET remaining=MIN(remaining, count) WHERE id=?", (sid,))
            await db.execute("UPDATE sets SET rank=? WHERE id=?", (float(rank), sid))

    async def _save_counts(self, db: aiosqlite.Connection, job: Job) -> None:
        await db.execute("UPDATE jobs SET remaining=? WHERE id=?", (job.remaining, job.id))
        for s in job.sets:
            await db.execute(
                "UPDATE sets SET remaining=?, completed=? WHERE id=?", (s.remaining, s.completed, s.id)
            )

    async def _rank_after(self, queue: str, after_id: int | object | None, *, exclude: int | None) -> float:
        if after_id is _LAST or after_id is None:  # the ends: one index lookup, not a queue scan
            edge = "MAX" if after_id is _LAST else "MIN"
            if exclude is None:  # the plain form gets SQLite's min/max optimisation
                rows = await self._fetchall(f"SELECT {edge}(rank) AS r FROM jobs WHERE queue=?", (queue,))
            else:
                rows = await self._fetchall(
                    f"SELECT {edge}(rank) AS r FROM jobs WHERE queue=? AND id != ?", (queue, exclude)
                )
            r = rows[0]["r"]
            return rank_between(r, None) if after_id is _LAST else rank_between(None, r)
        rows = await self._fetchall(
            "SELECT id, rank FROM jobs WHERE queue=? AND id IS NOT ? ORDER BY rank, id", (queue, exclude)
        )
        ranks = [r["rank"] for r in rows]
        if after_id is _LAST:
            return rank_between(ranks[-1] if ranks else None, None)
        if after_id is None:
            return rank_between(None, ranks[0] if ranks else None)
        ids = [r["id"] for r in rows]
        if after_id not in ids:
            raise NotFound(f"no job with id {after_id} in queue {queue!r}")
        i = ids.index(after_id)
        return rank_between(ranks[i], ranks[i + 1] if i + 1 < len(ranks) else None)

    # --- counts for /metrics ---------------------------------------------------------------

    async def metric_counts(self) -> dict[str, Any]:
        """Finished runs by result and jobs per queue (total, and still to print), by SQL
        counts rather than loading every job."""
        runs = await self._fetchall("SELECT result, COUNT(*) AS n FROM runs WHERE end IS NOT NULL GROUP BY result")
        jobs = await self._fetchall(
            "SELECT queue, COUNT(*) AS n, SUM(CASE WHEN draft = 0 AND remaining > 0 THEN 1 ELSE 0 END) AS pending "
            "FROM jobs WHERE queue != ? GROUP BY queue",
            (ARCHIVE,),
        )
        return {
            "runs": {str(r["result"]): int(r["n"]) for r in runs},
            "jobs": {r["queue"]: {"total": int(r["n"]), "pending": int(r["pending"] or 0)} for r in jobs},
        }


_LAST = object()


def _job_name(path: str) -> str:
    return Path(path).stem or path


def _sql_value(value: Any, col: str = "") -> Any:
    if col in ("materials", "profiles", "metadata"):
        return json.dumps(value)
    if isinstance(value, bool):
        return int(value)
    return value


def _json_column(text: str | None) -> Any:
    # most sets carry empty lists and no metadata: skip the decoder for those
    if text == "[]":
        return []
    if text is None or text == "null":
        return None
    try:
        return json.loads(text)
    except RecursionError:  # stored before the limits existed: show that, keep state/get working
        return "<value nested too deeply to show; edit it>"


def _set_of(r: aiosqlite.Row) -> PrintSet:
    return PrintSet(id=r["id"], path=r["path"], sd=bool(r["sd"]), count=r["count"], remaining=r["remaining"],
                    completed=r["completed"], rank=r["rank"], materials=_json_column(r["materials"]),
                    profiles=_json_column(r["profiles"]), metadata=_json_column(r["metadata"]))


def _assemble(job_rows: Sequence[aiosqlite.Row], set_rows: Sequence[aiosqlite.Row]) -> list[Job]:
    """Jobs with their sets, from rows already in rank order (state/get reads every job: this
    loop is its hot path, hence the plain tuple access)."""
    jobs: dict[int, Job] = {}
    if job_rows:
        jk = job_rows[0].keys()
        ji = [jk.index(c) for c in ("id", "queue", "name", "count", "remaining", "draft", "created", "rank")]
        for r in job_rows:
            jid, queue, name, count, remaining, draft, created, rank = (r[i] for i in ji)
            jobs[jid] = Job(id=jid, queue=queue, name=name, count=count, remaining=remaining,
                            draft=bool(draft), created=created, rank=rank)
    if set_rows:
        sk = set_rows[0].keys()
        si = [sk.index(c) for c in ("job_id", "id", "path", "sd", "count", "remaining", "completed", "rank",
                                    "materials", "profiles", "metadata")]
        for r in set_rows:
            job_id, sid, path, sd, count, remaining, completed, rank, materials, profiles, metadata = (r[i] for i in si)
            job = jobs.get(job_id)
            if job is None:
                continue
            job.sets.append(
                PrintSet(id=sid, path=path, sd=bool(sd), count=count, remaining=remaining, completed=completed,
                         rank=rank, materials=_json_column(materials), profiles=_json_column(profiles),
                         metadata=_json_column(metadata))
            )
    return list(jobs.values())

def _direct_reader(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA query_only=ON")
    return conn


def _job_of(conn: sqlite3.Connection, job_id: int) -> Job:
    """`Store.job`'s reads, inside the caller's read transaction."""
    job_rows = conn.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchall()
    if not job_rows:
        raise NotFound(f"no job with id {job_id}")
    set_rows = conn.execute("SELECT * FROM sets WHERE job_id=? ORDER BY rank, id", (job_id,)).fetchall()
    return _assemble(job_rows, set_rows)[0]


def _changed_jobs(conn: sqlite3.Connection, queue: str,
                  pick: Callable[[list[tuple[int, int]]], Sequence[int]]) -> list[Job]:
    """`Store.changed_jobs`'s reads, inside the caller's read transaction."""
    versions = [(r[0], r[1]) for r in conn.execute(
        "SELECT id, version FROM jobs WHERE queue = ? ORDER BY rank, id", (queue,))]
    ids = list(pick(versions))
    if not ids:
        return []
    if len(ids) > len(versions) // 2:  # mostly new (a first build): one scan beats many lookups
        wanted = set(ids)
        job_rows = conn.execute("SELECT * FROM jobs WHERE queue = ? ORDER BY rank, id", (queue,)).fetchall()
        set_rows = conn.execute(
            "SELECT sets.* FROM sets JOIN jobs ON jobs.id = sets.job_id WHERE jobs.queue = ? "
            "ORDER BY sets.rank, sets.id", (queue,)).fetchall()
        return [j for j in _assemble(job_rows, set_rows) if j.id in wanted]
    jobs: list[Job] = []
    for at in range(0, len(ids), _IDS_PER_QUERY):
        chunk = ids[at:at + _IDS_PER_QUERY]
        marks = ",".join("?" * len(chunk))
        job_rows = conn.execute(f"SELECT * FROM jobs WHERE id IN ({marks})", chunk).fetchall()
        set_rows = conn.execute(f"SELECT * FROM sets WHERE job_id IN ({marks}) ORDER BY rank, id", chunk).fetchall()
        jobs += _assemble(job_rows, set_rows)
    return jobs


async def _rows(conn: aiosqlite.Connection, sql: str, args: Sequence[Any]) -> list[aiosqlite.Row]:
    """One hand-off to the connection's thread (execute, fetch and close there together), not
    three: a unit of work reads several times and the writer runs units one after another, so
    each hand-off (waiting for the GIL under load) is paid by every durable write."""
    return list(await conn.execute_fetchall(sql, args))


async def _connect(path: Path, opened: list[aiosqlite.Connection]) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None)
    opened.append(conn)
    conn.row_factory = aiosqlite.Row
    await conn.execute("PRAGMA busy_timeout=5000")
    return conn


async def _write_probe(db: aiosqlite.Connection) -> None:
    """A read-only file opens and reads fine; find out now, not at the first client's write:
    rewrite the schema version (same value) in one committed transaction."""
    async with db.execute("PRAGMA user_version") as cur:
        (version,) = await cur.fetchone()  # type: ignore[misc]
    await db.execute("BEGIN IMMEDIATE")
    try:
        await db.execute(f"PRAGMA user_version={int(version)}")
        await db.commit()
    except BaseException:
        if db.in_transaction:
            await db.rollback()
        raise


async def _quick_check(db: aiosqlite.Connection, path: Path) -> None:
    """A truncated file often opens and fails only at the first page it lacks: look at every
    page once at start (milliseconds for a farm's database) instead of failing mid-request."""
    async with db.execute("PRAGMA quick_check") as cur:
        rows = [r[0] for r in await cur.fetchall()]
    if rows != ["ok"]:
        raise sqlite3.DatabaseError(f"database disk image is malformed ({rows[0]})")


def _damage_advice(path: Path, e: BaseException) -> str:
    """One line: which file, what is wrong, what to do."""
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    lowered = text.lower()
    if "readonly" in lowered or "read-only" in lowered or "permission" in lowered or "unable to open" in lowered:
        advice = (f"the data directory {path.parent} or the file must be writable by this user "
                  "(check its permissions and that its filesystem is mounted read-write)")
    elif "full" in lowered or "no space" in lowered:
        advice = f"free some space on the disk of {path.parent}"
    else:
        advice = (f"run `lanqueue check --data-dir {path.parent}` to see what can be saved; "
                  f"to start empty, move {path.name} away (the node creates a new one)")
    return f"cannot use the database {path}: {text}; {advice}"


def _storage_error(e: Exception) -> Exception:
    """A full disk becomes a 507 a client can understand; a value the door's limits should have
    refused (lanqueue.limits) a 400 rather than a 500; other errors pass unchanged."""
    if isinstance(e, UnicodeEncodeError):
        return BadRequest("text must be valid Unicode (no lone UTF-16 surrogates)")
    if isinstance(e, RecursionError):
        return BadRequest("a value is nested too deeply to store")
    if isinstance(e, sqlite3.OperationalError) and "full" in str(e).lower():
        return InsufficientStorage("the node's disk is full: nothing was written; "
                                   "free space on the node and retry")
    if isinstance(e, OSError) and e.errno == 28:
        return InsufficientStorage("the node's disk is full: nothing was written; "
                                   "free space on the node and retry")
    return e


def check_database(path: Path) -> tuple[bool, list[str]]:
    """`lanqueue check`: open the file read-only and run SQLite's integrity check. Returns
    (healthy, report lines); changes nothing."""
    if not path.exists():
        return True, [f"{path}: no database yet (the node creates one)"]
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as e:
        return False, [_damage_advice(path, e)]
    try:
        rows = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if rows != ["ok"]:
            return False, [f"{path}: {line}" for line in rows[:20]] + [
                _damage_advice(path, sqlite3.DatabaseError("integrity check failed"))]
        jobs = conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] if version else 0
        return True, [f"{path}: ok (schema version {version}, {jobs} jobs)"]
    except sqlite3.Error as e:
        return False, [_damage_advice(path, e)]
    finally:
        conn.close()
