"""The Continuous Print routes under /plugin/continuousprint/: the four public ones and the
internal ones the original's page and scripts use, with the same names, methods and encodings.

Handlers read and validate the whole request first and only then ask the node's services to
act, so a bad request changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from aiohttp import web

from ..errors import BadRequest, NotFound
from ..files import sanitize_path
from ..model import LOCAL, Strategy
from ..queues import Queue, is_no_id, move_between, one_job
from . import fields
from .app import json_response
from .forms import Form, loads, read_form, read_json
from .keys import NODE
from .views import job_view, set_view, state_json

__all__ = ["routes", "BASE", "parse_set_fields"]

BASE = "/plugin/continuousprint"
routes = web.RouteTableDef()
MAX_METADATA = fields.MAX_METADATA
_SET_ADD = fields.by_name(fields.SET_ADD)


# --- reading sets and jobs ---------------------------------------------------------------


def parse_set_fields(form: Form, *, partial: bool = False) -> dict[str, Any]:
    """Validated set fields (declared in fields.SET); with `partial`, only those present (for edits)."""
    out: dict[str, Any] = {}
    for f in fields.SET:
        if f.name == "metadata":
            if form.has("metadata"):
                out["metadata"] = _metadata(form.raw("metadata"))
            continue
        value = (replace(f, required=False) if partial else f).read(form)
        if value is not None:
            out[f.name] = value
    if "path" in out:
        out["path"] = sanitize_path(out["path"])
    if not partial:
        out.setdefault("count", 1)
        out.setdefault("sd", False)
        out.setdefault("remaining", out["count"])
    if "remaining" in out and "count" in out and out["remaining"] > out["count"]:
        raise BadRequest("a set's remaining cannot exceed its count")
    return out


def _metadata(raw: Any) -> Any:
    if isinstance(raw, str):
        if len(raw) > MAX_METADATA:
            raise BadRequest("metadata too large")
        try:
            return loads(raw) if raw else None
        except RecursionError:
            raise BadRequest("metadata is nested too deeply") from None
        except ValueError:
            return raw
    if len(json.dumps(raw)) > MAX_METADATA:
        raise BadRequest("metadata too large")
    return raw


def parse_job_changes(obj: Any) -> dict[str, Any]:
    """The changed fields of a `job/edit` document, validated; `sets` is the new full list."""
    form = Form.from_object(obj)
    out: dict[str, Any] = {}
    for f in fields.JOB_EDIT:
        value = f.read(form)
        if value is not None:
            out[f.name] = value
    if "remaining" in out and "count" in out and out["remaining"] > out["count"]:
        raise BadRequest("a job's remaining cannot exceed its count")
    sets = form.raw("sets")
    if sets is not None:
        if not isinstance(sets, list) or len(sets) > 1000:
            raise BadRequest("sets must be a list")
        out["sets"] = [_parse_edited_set(s) for s in sets]
    return out


def _parse_edited_set(obj: Any) -> dict[str, Any]:
    form = Form.from_object(obj, "each set")
    sid = form.raw("id")
    fields = parse_set_fields(form, partial=sid is not None)
    if sid is not None:
        if isinstance(sid, (dict, list)):
            raise BadRequest("set id must be an integer or a string")
        fields["id"] = sid  # the queue says whether it names one of its sets
    return fields


def _job_ids(form: Form, queue: Queue, name: str = "job_ids") -> list[str]:
    """A list of job ids in the queue's form; an id no job can have is a bad request here."""
    ids = []
    for item in form.list_items(name):
        try:
            ids.append(queue.parse_job_id(item))
        except NotFound:
            raise BadRequest(f"field {name!r} holds an id out of range: {item!r}") from None
        except BadRequest:
            raise BadRequest(f"field {name!r} holds a bad id: {item!r}") from None
    return ids


def _queue_name(form: Form, field: str = "queue", default: str | None = LOCAL) -> str:
    name = replace(fields.QUEUE_NAME, name=field, required=default is None).read(form, default)
    assert name is not None
    return name


# --- public routes -----------------------------------------------------------------------


@routes.get(BASE + "/state/get")
async def state_get(request: web.Request) -> web.Response:
    return _state_response(await state_json(request.app[NODE]))


@routes.post(BASE + "/set_active")
async def set_active(request: web.Request) -> web.Response:
    form = await read_form(request)
    active = fields.ACTIVE.read(form)
    node = request.app[NODE]
    await node.runner.async_set_active(bool(active))
    return _state_response(await state_json(node))


def _state_response(text: str) -> web.Response:
    return web.Response(text=text, content_type="application/json")


@routes.post(BASE + "/set/add")
async def set_add(request: web.Request) -> web.Response:
    form = await read_form(request)
    if form.has("json"):
        form = Form.from_object(form.json_field())
    fields = parse_set_fields(form)
    job_raw = form.raw("job")
    job_name = _SET_ADD["jobName"].read(form)
    job_draft = _SET_ADD["jobDraft"].read(form, True)
    queue = request.app[NODE].queues.get(_queue_name(form))
    job_id = None if is_no_id(job_raw) else queue.parse_job_id(job_raw)
    jid, added = await queue.add_set(fields, job_id=job_id, job_name=job_name, job_draft=bool(job_draft))
    # a draft is never printed: say which it is, or a script's set/add then set_active prints
    # nothing with no hint why (a new job is a draft unless jobDraft=false, as the original)
    draft = bool(job_draft) if job_id is None else (await one_job(queue, str(jid))).draft
    return json_response({"job_id": jid, "draft": draft, "set_": set_view(added)})


@routes.post(BASE + "/automation/external")
async def automation_external(request: web.Request) -> web.Response:
    body = await read_json(request, "the body", MAX_METADATA)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    if len(json.dumps(body)) > MAX_METADATA:
        raise BadRequest("external data too large")
    await request.app[NODE].set_external(body)
    return json_response("OK")


# --- jobs --------------------------------------------------------------------------------


@routes.post(BASE + "/job/add")
async def job_add(request: web.Request) -> web.Response:
    form = await read_form(request)
    doc = Form.from_object(form.json_field())
    name_field, queue_field = fields.JOB_ADD
    name = name_field.read(doc)
    queue = request.app[NODE].queues.get(queue_field.read(doc, LOCAL) or LOCAL)
    return json_response(job_view(await queue.add_job(name or "")))


@routes.post(BASE + "/job/edit")
async def job_edit(request: web.Request) -> web.Response:
    form = await read_form(request)
    doc = form.json_field()
    if not isinstance(doc, dict):
        raise BadRequest("json must be an object")
    name = doc.get("queue", LOCAL)
    if not isinstance(name, str):
        raise BadRequest("queue must be a string")
    queue = request.app[NODE].queues.get(name)
    job_id = queue.parse_job_id(doc.get("id"))
    changes = parse_job_changes({k: v for k, v in doc.items() if k not in ("id", "queue")})
    return json_response(job_view(await queue.edit_job(job_id, changes)))


@routes.post(BASE + "/job/mv")
async def job_mv(request: web.Request) -> web.Response:
    form = await read_form(request)
    queues = request.app[NODE].queues
    src = queues.get(_queue_name(form, "src_queue"))
    dest = queues.get(_queue_name(form, "dest_queue", src.name))
    mv = fields.by_name(fields.JOB_MV)
    job_id = src.parse_job_id(mv["id"].read(form))
    after = mv["after_id"].read(form)
    if dest is src:
        await src.move_within(job_id, None if is_no_id(after) else after)
    else:  # another queue, of any kind: the job goes to its end
        await move_between(src, dest, job_id)
    return json_response("OK")


@routes.post(BASE + "/job/rm")
async def job_rm(request: web.Request) -> web.Response:
    form = await read_form(request)
    queue = request.app[NODE].queues.get(_queue_name(form))
    return json_response({"jobs_deleted": await queue.remove_jobs(_job_ids(form, queue))})


@routes.post(BASE + "/job/reset")
async def job_reset(request: web.Request) -> web.Response:
    form = await read_form(request)
    queue = request.app[NODE].queues.get(_queue_name(form))
    return json_response({"num_updated": await queue.reset_jobs(_job_ids(form, queue))})


@routes.post(BASE + "/job/export")
async def job_export(request: web.Request) -> web.Response:
    form = await read_form(request)
    paths, errors = await request.app[NODE].export_jobs(form.id_list("job_ids"))
    return json_response({"paths": paths, "errors": errors})


@routes.post(BASE + "/job/import")
async def job_import(request: web.Request) -> web.Response:
    form = await read_form(request)
    queue = _queue_name(form)
    path = fields.by_name(fields.JOB_IMPORT)["path"].read(form)
    assert path is not None
    job = await request.app[NODE].import_job(sanitize_path(path), queue)
    return json_response(job_view(job) if not isinstance(job, dict) else job)


# --- history and queues ------------------------------------------------------------------


@routes.get(BASE + "/history/get")
async def history_get(request: web.Request) -> web.Response:
    runs = await request.app[NODE].store.history()
    return json_response([r.to_json() for r in runs])


@routes.post(BASE + "/history/reset")
async def history_reset(request: web.Request) -> web.Response:
    await request.app[NODE].store.reset_history()
    return json_response("OK")


@routes.get(BASE + "/queues/get")
async def queues_get(request: web.Request) -> web.Response:
    # a queue's addr is this node's address in it, as state/get shows it
    return json_response([{"name": q.name, "addr": (await q.info()).addr, "strategy": row["strategy"]}
                          for q, row in await request.app[NODE].queues.listed()])


@routes.post(BASE + "/queues/edit")
async def queues_edit(request: web.Request) -> web.Response:
    form = await read_form(request)
    doc = form.json_field()
    if not isinstance(doc, list) or len(doc) > 32:
        raise BadRequest("json must be a list of queues")
    queues = []
    seen = set()
    q_fields = fields.by_name(fields.QUEUE)
    for item in doc:
        f = Form.from_object(item, "each queue")
        name = q_fields["name"].read(f)
        strategy = q_fields["strategy"].read(f, Strategy.IN_ORDER.value)
        if name in seen or name == "archive":
            raise BadRequest(f"queue name {name!r} is repeated or reserved")
        seen.add(name)
        queues.append({"name": name, "strategy": strategy, "addr": q_fields["addr"].read(f),
                       "secret": q_fields["secret"].read(f)})
    await request.app[NODE].set_queues(queues)
    return json_response("OK")
