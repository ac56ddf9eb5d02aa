"""The one queue interface: the local queue on a real SQLite file, the generic move between
queues, the presenter's declared fields, the one counting rule, and the LAN core refusing a
whole message when one of its records is bad."""

from __future__ import annotations

from dataclasses import replace

import pytest
from conftest import CP
from hypothesis import given, settings
from hypothesis import strategies as st

from lanqueue.api.views import JOB_FIELDS, SET_FIELDS, job_view
from lanqueue.errors import BadRequest, NotFound, Unavailable
from lanqueue.files import FileStore
from lanqueue.model import Job, PrintSet, Replica, Strategy, apply_success
from lanqueue.queues import Queue, move_between
from lanqueue.queues.local import LocalQueue
from lanqueue.queues.registry import LocalProvider, QueueRegistry
from lanqueue.store import Store
from lanqueue.sync.errors import RemoteProtocolError
from lanqueue.sync.messages import Persist, RecordPush
from lanqueue.sync.protocol import LanNodeCore
from lanqueue.sync.records import (
    CompletionOutcome,
    JobRecord,
    SetRecord,
    Timings,
    apply_completion,
)

T = Timings(ttl=60.0, renew_every=20.0, lock_delay=60.0, retry_every=5.0, anti_entropy_every=30.0)


@pytest.fixture
async def parts(tmp_path):
    store = await Store.open(tmp_path / "db.sqlite3")
    files = FileStore(tmp_path / "files", 1 << 20)
    (tmp_path / "files" / "a.gcode").write_text("G28\n")
    yield store, files
    await store.async_close()


async def add(q: Queue, name: str, count: int = 1, path: str = "a.gcode") -> str:
    jid, _ = await q.add_set({"path": path, "count": count, "remaining": count}, job_id=None, job_name=name,
                             job_draft=False)
    return str(jid)


# --- the local queue and the registry -----------------------------------------------------


async def test_registry_resolves_names_once_and_refuses_unknown_ones(parts):
    store, files = parts
    reg = QueueRegistry(store)
    reg.add(LocalProvider(store, files))
    local = reg.get("local")
    assert isinstance(local, Queue) and reg.get("local") is local
    with pytest.raises(NotFound):
        reg.get("farm")
    assert [q.name for q, _ in await reg.listed()] == ["local"]


async def test_local_ids_cross_as_strings_and_stay_integers_on_the_wire(parts):
    q = LocalQueue(*parts)
    jid = await add(q, "A")
    assert q.parse_job_id(int(jid)) == q.parse_job_id(jid) == jid
    for bad in ("x", None, True, "1.5"):
        with pytest.raises(BadRequest):
            q.parse_job_id(bad)
    with pytest.raises(NotFound):
        q.parse_job_id(0)
    (job,) = await q.jobs()
    assert job_view(job)["id"] == int(jid) and isinstance(job_view(job)["sets"][0]["id"], int)


async def test_the_held_local_job_shows_acquired_until_released(parts):
    """state/get shows `acquired: true` for the local job being printed, as the original does;
    the cache key moves with it, so a cached view is never stale."""
    q = LocalQueue(*parts)
    await add(q, "A")
    b = await add(q, "B")
    await q.edit_job(b, {"draft": True})
    key = q.cache_key()
    pick = await q.hold_next("Generic", [], Strategy.IN_ORDER)
    assert pick.ref is not None and pick.ref.job_name == "A"
    assert [(j.name, j.acquired) for j in await q.jobs()] == [("A", True), ("B", False)]
    assert q.cache_key() != key
    await q.release(pick.ref)
    assert [j.acquired for j in await q.jobs()] == [False, False]


async def test_finish_counts_a_success_by_the_counting_rule(parts):
    store, files = parts
    q = LocalQueue(store, files)
    await add(q, "A", count=2)
    pick = await q.hold_next("Generic", [], Strategy.IN_ORDER)
    assert pick.ref is not None
    run = await store.begin_run(q.name, pick.ref.job_id, pick.ref.job_name, pick.ref.set_id, pick.ref.path)
    await q.finish(pick.ref, "success", run)
    (job,) = await q.jobs()
    assert (job.sets[0].remaining, job.sets[0].completed, job.acquired) == (1, 1, False)
    assert [r.result for r in await store.history()] == ["success"]


async def test_a_job_that_needs_what_is_not_loaded_is_counted_as_waiting(parts):
    q = LocalQueue(*parts)
    await q.add_set({"path": "a.gcode", "count": 1, "remaining": 1, "materials": ["PETG"]}, job_id=None,
                    job_name="P", job_draft=False)
    pick = await q.hold_next("Generic", ["PLA"], Strategy.IN_ORDER)
    assert pick.ref is None and pick.waiting == 1


# --- moving between queues: one generic path ----------------------------------------------


async def test_a_job_moves_between_queues_of_any_kind_through_one_path(parts):
    store, files = parts
    await store.ensure_queue("other")
    src, dest = LocalQueue(store, files), LocalQueue(store, files, "other")
    jid = await add(src, "Mover", count=3)
    new_id = await move_between(src, dest, jid)
    assert [j.name for j in await src.jobs()] == []
    (moved,) = await dest.jobs()
    assert (str(moved.id), moved.name, moved.sets[0].count, moved.sets[0].remaining) == (new_id, "Mover", 3, 3)


async def test_a_failed_removal_from_the_source_undoes_the_move(parts):
    """Export, import, then remove: if the source cannot let go, the copy goes again and the
    job stays where it was (never lost, never in both)."""
    store, files = parts
    await store.ensure_queue("other")

    class StuckSource(LocalQueue):  # fault injection: a source whose removal fails
        async def remove_jobs(self, job_ids):
            raise Unavailable("the job's home is offline")

    src, dest = StuckSource(store, files), LocalQueue(store, files, "other")
    jid = await add(src, "Stays")
    with pytest.raises(Unavailable):
        await move_between(src, dest, jid)
    assert [j.name for j in await src.jobs()] == ["Stays"]
    assert await dest.jobs() == []


async def test_the_job_being_printed_cannot_be_moved(parts):
    store, files = parts
    await store.ensure_queue("other")
    src, dest = LocalQueue(store, files), LocalQueue(store, files, "other")
    jid = await add(src, "Busy")
    await src.hold_next("Generic", [], Strategy.IN_ORDER)
    with pytest.raises(Exception, match="being printed"):
        await move_between(src, dest, jid)
    assert [j.name for j in await src.jobs()] == ["Busy"] and await dest.jobs() == []


# --- one presenter, its fields declared once ----------------------------------------------


def _jobs() -> tuple[Job, Job]:
    local = Job(id=1, queue="local", name="L", sets=[PrintSet(id=2, path="a.gcode")])
    replica = Replica(acquired_by=None, acquired_by_name=None, home="n1", home_name="this node", home_online=False,
                      epoch=1, version=2, hash="h", waiting_reason="waiting for its home")
    lan = Job(id="u", queue="farm", name="F", sets=[PrintSet(id="u_0", path="a.gcode", hash="h")], replica=replica)
    return local, lan


def test_the_presenter_writes_exactly_the_declared_fields() -> None:
    local, lan = _jobs()
    own_job = {f.name for f in JOB_FIELDS if not f.replica}
    own_set = {f.name for f in SET_FIELDS if not f.replica}
    assert set(job_view(local)) == own_job
    assert set(job_view(local)["sets"][0]) == own_set
    assert set(job_view(lan)) == {f.name for f in JOB_FIELDS}
    assert set(job_view(lan)["sets"][0]) == {f.name for f in SET_FIELDS}
    lan_view = job_view(lan)
    assert (lan_view["peer_"], lan_view["home"], lan_view["acquired_by_"], lan_view["hash"]) == ("n1", "n1", None, "h")


_JSON_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "array": list,
               "object": dict, "null": type(None)}


def _conforms(value: object, schema: dict) -> list[str]:
    """Where `value` breaks `schema` (the subset fields_schema writes: type, properties,
    required, items); empty if it conforms."""
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        ok = any(isinstance(value, _JSON_TYPES[k]) and not (k in ("integer", "number") and isinstance(value, bool))
                 for k in kinds)
        if not ok:
            return [f"{value!r:.40} is not {kinds}"]
    problems = []
    if isinstance(value, dict) and "properties" in schema:
        problems += [f"missing {k}" for k in schema.get("required", []) if k not in value]
        problems += [f"undeclared {k}" for k in value if k not in schema["properties"]]
        for k, sub in schema["properties"].items():
            if k in value:
                problems += [f"{k}: {p}" for p in _conforms(value[k], sub)]
    if isinstance(value, list) and "items" in schema:
        for item in value:
            problems += _conforms(item, schema["items"])
    return problems


def test_answers_conform_to_the_schema_derived_from_the_field_tables() -> None:
    from lanqueue.api.views import job_schema

    local, lan = _jobs()
    for job in (local, lan):
        assert _conforms(job_view(job), job_schema()) == []
    broken = {**job_view(local), "count": "2"}
    assert _conforms(broken, job_schema()) == ["count: '2' is not ['integer']"]
    del broken["name"]
    assert "missing name" in _conforms(broken, job_schema())


async def test_state_get_conforms_to_the_queue_schema(api):
    from lanqueue.api.views import queue_schema

    form = __import__("aiohttp").FormData()
    form.add_field("file", b"G28\n", filename="a.gcode")
    assert (await api.post("/api/files/local", data=form)).status == 201
    await api.post(CP + "/set/add", data={"path": "a.gcode", "count": "2", "materials": "PLA"})
    await api.post(CP + "/set/add", data={"path": "gone.gcode", "sd": "true"})
    state = await (await api.get(CP + "/state/get")).json()
    assert sum(len(q["jobs"]) for q in state["queues"]) == 2
    for q in state["queues"]:
        assert _conforms(q, queue_schema()) == []


# --- one counting rule --------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3), st.lists(st.integers(1, 3), min_size=1, max_size=3), st.lists(st.integers(0, 2), max_size=12))
def test_local_and_lan_jobs_count_prints_alike(runs: int, counts: list[int], picks: list[int]) -> None:
    """A local job and a LAN record fed the same successful prints hold the same counts."""
    job = Job(id=1, queue="local", name="J", count=runs, remaining=runs,
              sets=[PrintSet(id=i, path=f"{i}.gcode", count=c, remaining=c) for i, c in enumerate(counts)])
    rec = JobRecord(id="j", queue="farm", home="h", epoch=1, version=1, name="J", count=runs, remaining=runs,
                    sets=tuple(SetRecord(f"{i}.gcode", count=c, remaining=c) for i, c in enumerate(counts)),
                    lease_holder="p", lease_token=5)
    for seq, pick in enumerate(picks):
        index = pick % len(counts)
        if job.remaining <= 0 or job.sets[index].remaining <= 0:
            continue
        job = apply_success(job, index)
        outcome, rec = apply_completion(rec, "p", 5, seq, index)
        assert outcome is CompletionOutcome.APPLIED
        assert rec.remaining == job.remaining
        assert [(s.remaining, s.completed) for s in rec.sets] == [(s.remaining, s.completed) for s in job.sets]


# --- the LAN core takes a whole message or nothing of it ----------------------------------


@pytest.mark.parametrize("spoil", ["wrong queue", "negative count", "one too many"])
def test_a_lan_message_with_one_bad_record_among_good_ones_changes_nothing_and_persists_nothing(spoil: str) -> None:
    small = Timings(ttl=60.0, renew_every=20.0, lock_delay=60.0, retry_every=5.0, anti_entropy_every=30.0, max_jobs=3)
    home = LanNodeCore("h", "farm", small, ["p"])
    peer = LanNodeCore("p", "farm", small, ["h"])
    for i in range(3):
        home.submit_job(f"j{i}", f"job {i}", [SetRecord("a.gcode", count=1, remaining=1, hash="a" * 64)], 1, 0.0)
    good = [home.records[f"j{i}"] for i in range(3)]
    if spoil == "wrong queue":
        bad = replace(good[1], queue="other")
    elif spoil == "negative count":
        bad = replace(good[1], remaining=-1)
    else:
        bad = replace(good[1], id="j9")  # a fourth job in a queue of at most three
    message = (good[0], bad, good[2]) if spoil != "one too many" else (*good, bad)
    before = peer.durable_state()
    with pytest.raises(RemoteProtocolError):
        peer.handle(RecordPush("h", message), 1.0)
    assert peer.records == {} and peer.durable_state() == before
    # the same records without the bad one are taken, and persisted (the check can pass)
    actions = peer.handle(RecordPush("h", tuple(good)), 1.0)
    persisted = [r.id for a in actions if isinstance(a, Persist) for r in a.records]
    assert sorted(peer.records) == sorted(persisted) == ["j0", "j1", "j2"]


async def test_state_get_shows_the_local_job_being_printed_as_acquired(node_factory):
    """Issue 10's compatibility point, through real HTTP and the virtual printer: while the
    driver prints a local job, state/get says `acquired: true` for it (and only for it)."""
    from test_driving_e2e import (
        NO_WAIT,
        gcode,
        printer_ready,
        set_automation,
        state,
        upload,
        wait_for,
    )

    api, node = await node_factory()
    await printer_ready(node)
    await set_automation(api, NO_WAIT)
    await upload(api, "slow.gcode", gcode("S", moves=3000))
    await api.post(CP + "/set/add", data={"path": "slow.gcode", "jobName": "Printing", "jobDraft": "false"})
    await api.post(CP + "/set/add", data={"path": "slow.gcode", "jobName": "Waiting", "jobDraft": "false"})
    await api.post(CP + "/set_active", data={"active": "true"})

    async def printing():
        jobs = (await state(api))["queues"][0]["jobs"]
        return any(j["acquired"] for j in jobs) and jobs
    jobs = await wait_for(printing)
    assert [(j["name"], j["acquired"]) for j in jobs] == [("Printing", True), ("Waiting", False)]
    await api.post(CP + "/set_active", data={"active": "false"})


async def test_a_gjob_is_imported_into_a_lan_queue_through_the_same_interface(node_factory):
    """job/import takes any queue: the .gjob's job becomes a LAN job (its files recorded and
    hashed, so they can travel), shown by the one presenter with the LAN fields."""
    import aiohttp

    api, _ = await node_factory(lan=("farm=farm-secret-1",))
    form = aiohttp.FormData()
    form.add_field("file", b"G28\n", filename="p.gcode")
    assert (await api.post("/api/files/local", data=form)).status == 201
    jid = (await (await api.post(CP + "/set/add", data={"path": "p.gcode", "count": "2", "jobName": "Boxed"})).json())["job_id"]
    gjob = (await (await api.post(CP + "/job/export", data={"job_ids[]": str(jid)})).json())["paths"][0]
    r = await api.post(CP + "/job/import", data={"path": gjob, "queue": "farm"})
    assert r.status == 200, await r.text()
    job = await r.json()
    assert (job["queue"], job["name"], job["draft"], [s["count"] for s in job["sets"]]) == ("farm", "Boxed", True, [2])
    assert isinstance(job["id"], str) and job["home_name"] == "this node" and job["sets"][0]["hash"]
    farm = next(q for q in (await (await api.get(CP + "/state/get")).json())["queues"] if q["name"] == "farm")
    assert [j["id"] for j in farm["jobs"]] == [job["id"]]


def test_protocol_errors_carry_no_http_and_are_mapped_once() -> None:
    from lanqueue.errors import Conflict, LanqueueError
    from lanqueue.sync.errors import InvalidEdit, LocalProtocolError, NotHomeError
    from lanqueue.sync.service import NotHomeConflict, http_error

    for err in (LocalProtocolError("x"), RemoteProtocolError("x"), NotHomeError("x", "n2"), InvalidEdit("x")):
        assert not isinstance(err, LanqueueError) and not hasattr(err, "http_status")
    mapped = http_error(NotHomeError("only the home may", "n2"))
    assert isinstance(mapped, NotHomeConflict) and mapped.home == "n2" and mapped.http_status == 409
    assert type(http_error(LocalProtocolError("queue is full"))) is Conflict
    assert http_error(InvalidEdit("bad name")).http_status == 400
    assert http_error(RemoteProtocolError("bad message")).http_status == 400


# --- LAN edits, checked without I/O -------------------------------------------------------


def _recs(*ranks: float) -> list[JobRecord]:
    return [JobRecord(id=f"j{i}", queue="farm", home="h", epoch=1, version=1, name=f"J{i}", count=1, remaining=1,
                      sets=(), rank=r) for i, r in enumerate(ranks)]


def test_rank_after_puts_a_job_between_its_new_neighbours() -> None:
    from lanqueue.sync.edits import rank_after

    recs = _recs(1.0, 2.0, 3.0)
    assert rank_after(recs, "j2", None) == 0.0  # first
    assert rank_after(recs, "j2", "j0") == 1.5  # between j0 and j1
    assert rank_after(recs, "j0", "j2") == 4.0  # last
    assert rank_after(recs, "j0", "j1") == 2.5  # j0 leaves its place: between j1 and j2
    assert rank_after(recs, "j0", "gone") is None
    assert rank_after(_recs(5.0), "j0", None) == 1.0  # alone in the queue


@pytest.mark.parametrize(("fields", "clean"), [
    ({"name": "N", "draft": False, "count": 3, "rank": 2}, {"name": "N", "draft": False, "count": 3, "rank": 2.0}),
    ({"colour": "red"}, {}),
])
def test_a_lan_update_keeps_only_good_values(fields, clean) -> None:
    from lanqueue.sync.edits import clean_update

    assert clean_update(fields) == clean


@pytest.mark.parametrize("fields", [
    {"name": ""}, {"name": "x" * 1001}, {"name": 5}, {"draft": "yes"}, {"rank": float("nan")},
    {"rank": float("inf")}, {"rank": True}, {"count": 0}, {"count": 100_001}, {"count": 2.0}, {"count": True},
])
def test_a_bad_lan_update_is_refused_whole(fields) -> None:
    from lanqueue.sync.edits import clean_update
    from lanqueue.sync.errors import InvalidEdit

    with pytest.raises(InvalidEdit):
        clean_update({"name": "fine", **fields})


async def test_one_job_is_looked_up_not_scanned_where_the_queue_can(parts):
    """set/add to an existing job answers its draft flag: the local queue finds that job by its
    index (a scan of every job per set/add grew with the queue)."""
    from lanqueue.queues import JobLookup, one_job

    q = LocalQueue(*parts)
    a, b = await add(q, "A"), await add(q, "B")
    assert isinstance(q, JobLookup)
    assert (await one_job(q, b)) == (await q.jobs())[1]
    await q.remove_jobs([a])
    with pytest.raises(NotFound):
        await one_job(q, a)  # archived: not a job of the queue any more

    class ScanOnly:  # a queue without the lookup is still answered, by a scan
        name = "scan"

        async def jobs(self):
            return await q.jobs()

    assert (await one_job(ScanOnly(), b)).name == "B"
