"""OctoPrint's file routes (`/api/files...`), which slicers and simple clients use to upload.

Uploads are read part by part from the multipart stream and written straight to disk by the
FileStore; nothing holds a whole file in memory. `print=true` on upload means "add this file to
the local queue as a new job" (documented in the README): on a queue-managed printer, that is
what a slicer's "upload and print" should do. `select`/`print` through the file's own command
route is OctoPrint's direct print.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote

from aiohttp import BodyPartReader, web

from ..errors import BadRequest, Conflict, NotFound
from ..files import StagedFile, sanitize_path
from ..textvalues import parse_bool
from .app import json_response
from .forms import read_json
from .keys import NODE

__all__ = ["routes", "file_entry"]

routes = web.RouteTableDef()
MAX_FIELD = 4096  # bytes of one non-file form field of an upload


def file_entry(request: web.Request, path: str, size: int | None, sha256: str | None, date: float | None) -> dict[str, Any]:
    base = f"{request.scheme}://{request.host}"
    name = path.rsplit("/", 1)[-1]
    is_job = path.lower().endswith(".gjob")
    return {
        "name": name,
        "display": name,
        "path": path,
        "origin": "local",
        "type": "machinecode" if not is_job else "model",
        "typePath": ["machinecode", "gcode"] if not is_job else ["model", "gjob"],
        "size": size,
        "date": int(date) if date else None,
        "hash": sha256,
        "refs": {
            "resource": f"{base}/api/files/local/{path}",
            "download": f"{base}/downloads/files/local/{path}",
        },
    }


def _flag(value: str | None) -> bool:
    return parse_bool(value) is True  # OctoPrint's upload flags: anything else is no


def _target(filename: str, fields: dict[str, str]) -> str:
    """Where an uploaded file goes: its name inside the optional `path` folder."""
    folder = fields.get("path", "").strip("/")
    return sanitize_path(f"{folder}/{filename}" if folder else filename)


async def _chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(1 << 16):
        yield chunk


@routes.post("/api/files/local")
async def upload(request: web.Request) -> web.Response:
    node = request.app[NODE]
    if request.content_type != "multipart/form-data":
        raise BadRequest("upload a file as multipart/form-data with a field named 'file'")
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError, KeyError):
        raise BadRequest("malformed multipart body") from None
    fields: dict[str, str] = {}
    staged: StagedFile | None = None
    filename = ""
    try:  # the file is staged, and only put in place once the whole body proved good
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise BadRequest("nested multipart bodies are not accepted")
            if part.name == "file":
                if staged is not None:
                    raise BadRequest("one file per upload")
                # aiohttp and some other clients percent-encode the name in Content-Disposition
                filename = unquote(part.filename or fields.get("filename") or "")
                staged = await node.files.stage(_target(filename, fields), _chunks(part))
            elif part.name:
                value = bytearray()
                while chunk := await part.read_chunk(MAX_FIELD):
                    value += chunk
                    if len(value) > MAX_FIELD:
                        raise BadRequest(f"form field {part.name!r} too long")
                fields[part.name] = part.decode(bytes(value)).decode("utf-8", "replace")
        if staged is None:
            raise BadRequest("no file in the upload (field 'file')")
        # a `path` field may come after the file part (curl -F keeps the order it is given)
        staged = dataclasses.replace(staged, path=_target(filename, fields))
        if node.printing_path() == staged.path:
            raise Conflict(f"{staged.path!r} is being printed; it cannot be replaced now")
    except BaseException as e:
        if staged is not None:
            node.files.discard(staged)
        if isinstance(e, ValueError):  # malformed multipart framing
            raise BadRequest(f"malformed multipart body: {e}") from None
        raise
    stored = await node.files.async_commit(staged)
    await node.store.record_file(stored.path, stored.sha256, stored.size)
    queued = None
    if _flag(fields.get("print")):
        queued = await node.queue_uploaded_file(stored.path)
    elif _flag(fields.get("select")):
        node.selected_file = stored.path
    entry = file_entry(request, stored.path, stored.size, stored.sha256, None)
    body: dict[str, Any] = {
        "files": {"local": entry},
        "done": True,
        "effectiveSelect": _flag(fields.get("select")),
        "effectivePrint": queued is not None,
    }
    if queued is not None:
        body["lanqueue_job_id"] = queued
    return json_response(body, status=201, headers={"Location": entry["refs"]["resource"]})


@routes.get("/api/files")
@routes.get("/api/files/local")
async def list_files(request: web.Request) -> web.Response:
    node = request.app[NODE]
    known = await node.store.files()
    entries = []
    for f in node.files.list():
        info = known.get(f.path, {})
        entries.append(file_entry(request, f.path, f.size, info.get("sha256"), info.get("uploaded")))
    usage = node.disk_usage()
    return json_response({"files": entries, "free": usage[0], "total": usage[1]})


@routes.get("/api/files/local/{path:.+}")
async def file_info(request: web.Request) -> web.Response:
    node = request.app[NODE]
    path = sanitize_path(request.match_info["path"])
    full = node.files.resolve(path)
    info = (await node.store.files()).get(path, {})
    return json_response(file_entry(request, path, full.stat().st_size, info.get("sha256"), info.get("uploaded")))


@routes.get("/downloads/files/local/{path:.+}")
async def download(request: web.Request) -> web.StreamResponse:
    """A stored file's bytes: the `refs.download` link of every file entry (OctoPrint's route)."""
    full = request.app[NODE].files.resolve(sanitize_path(request.match_info["path"]))
    return web.FileResponse(full, headers={"Content-Type": "application/octet-stream",
                                           "Content-Disposition": f'attachment; filename="{full.name}"'})


@routes.get("/lanqueue/thumbnail/{name}")
async def thumbnail(request: web.Request) -> web.StreamResponse:
    """The slicer's picture of a file, by content digest: the `thumbnail` of a set's `gcode`.
    Named by digest, so it never changes: browsers may keep it."""
    meta = request.app[NODE].files.meta
    full = meta.thumbnail(request.match_info["name"]) if meta is not None else None
    if full is None:
        raise NotFound("no such thumbnail")
    kind = "image/png" if full.suffix == ".png" else "image/jpeg"
    return web.FileResponse(full, headers={"Content-Type": kind, "Cache-Control": "private, max-age=31536000, immutable"})


@routes.delete("/api/files/local/{path:.+}")
async def delete_file(request: web.Request) -> web.Response:
    node = request.app[NODE]
    path = sanitize_path(request.match_info["path"])
    node.files.resolve(path)
    if node.printing_path() == path:
        raise Conflict("the file is being printed")
    node.files.delete(path)
    await node.store.forget_file(path)
    return web.Response(status=204)


@routes.post("/api/files/local/{path:.+}")
async def file_command(request: web.Request) -> web.Response:
    """OctoPrint's `{"command": "select", "print": true}`: select a file, optionally print it
    directly (no queue, no scripts)."""
    node = request.app[NODE]
    path = sanitize_path(request.match_info["path"])
    node.files.resolve(path)
    body = await read_json(request)
    if not isinstance(body, dict) or body.get("command") not in ("select",):
        raise BadRequest("supported command: select")
    do_print = body.get("print", False)
    if not isinstance(do_print, bool):
        raise BadRequest("'print' must be true or false")
    await node.select_file(path, print_now=do_print)
    return web.Response(status=204)
