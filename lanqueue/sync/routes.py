"""The peer-to-peer HTTP routes (/lanqueue/peer/v1/...), authenticated with the queue secret.

A request without a valid signature for a joined queue is rejected (403) and logged; nothing in
it is read further, stored or answered with data. Answers are signed as well (transport.py).
"""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

from aiohttp import web

from . import codec
from .auth import AuthError, SignedRequest, StaleAudience, Verifier
from .errors import RemoteProtocolError
from .service import EDIT_PATH, FILE_PATH, MESSAGE_PATH, LanService
from .transport import RESPONDER, RESPONSE_SIGNATURE, sign_response

__all__ = ["FARM_ACTION_PATH", "FARM_SUMMARY_PATH", "FARM_THUMBNAIL_PATH", "FarmPeer", "LanBox", "install"]

log = logging.getLogger(__name__)
MAX_BODY = 4 * 1024 * 1024
routes = web.RouteTableDef()
FARM_SUMMARY_PATH = "/lanqueue/peer/v1/farm/summary"
FARM_ACTION_PATH = "/lanqueue/peer/v1/farm/action"
FARM_THUMBNAIL_PATH = "/lanqueue/peer/v1/farm/thumbnail/"


class FarmPeer(Protocol):
    """What the farm view's peer routes need from the node (farm.FarmService)."""

    async def summary(self) -> dict[str, Any]: ...

    async def act(self, action: str) -> None: ...

    def thumbnail(self, name: str) -> bytes | None: ...


class LanBox:
    """Holds the LAN service, which starts after the application is built (it needs the open
    store); until then peer requests get 503."""

    def __init__(self) -> None:
        self.service: LanService | None = None
        self.verifier = Verifier({})
        self.farm: FarmPeer | None = None

    def get(self) -> LanService:
        if self.service is None:
            raise web.HTTPServiceUnavailable(text="LAN queues are starting")
        return self.service


LAN_BOX: web.AppKey[LanBox] = web.AppKey("lan_box", LanBox)


def install(app: web.Application, box: LanBox) -> None:
    app[LAN_BOX] = box
    app.add_routes(routes)


def _reject(request: web.Request, why: str) -> web.Response:
    log.warning("rejected peer request %s %s from %s: %s", request.method, request.path, request.remote, why)
    return web.json_response({"error": f"not authenticated: {why}"}, status=403)


async def _verified(request: web.Request, body: bytes) -> SignedRequest | web.Response:
    box = request.app[LAN_BOX]
    service, verifier = box.get(), box.verifier
    for name, q in service.queues.items():
        verifier.set_secret(name, q.secret)
    verifier.instance = service.instance
    try:
        return verifier.verify(request.method, request.path_qs, body, request.headers)
    except StaleAudience as e:
        # Signed for an earlier run of this node: a replay, or a peer that has not heard of the
        # restart. Nothing in it is used; the signed answer tells an honest peer the current run.
        log.info("peer request from %s signed for an earlier run of this node", e.signed.node_id[:8])
        return _signed(request, e.signed, {"error": e.message, "instance": e.current}, status=401)
    except AuthError as e:
        return _reject(request, e.message)


def _signed(request: web.Request, signed: SignedRequest, data: object, status: int = 200) -> web.Response:
    service = request.app[LAN_BOX].get()
    secret = service.secret(signed.queue) or b""
    body = json.dumps(data).encode()
    responder = "" if status != 200 else service.instance
    return web.Response(body=body, content_type="application/json", status=status,
                        headers={RESPONSE_SIGNATURE: sign_response(secret, signed.binding, body, responder),
                                 RESPONDER: responder})


async def _body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
    return await request.read()


@routes.post(MESSAGE_PATH)
async def message(request: web.Request) -> web.Response:
    body = await _body(request)
    signed = await _verified(request, body)
    if isinstance(signed, web.Response):
        return signed
    try:
        msg = codec.loads(body)
        replies = await request.app[LAN_BOX].get().receive(signed.queue, msg, signed.node_id, signed.instance)
    except RemoteProtocolError as e:
        log.warning("bad message from %s: %s", signed.node_id[:8], e)
        return _signed(request, signed, {"error": str(e)})
    return _signed(request, signed, [codec.encode(r) for r in replies])


@routes.post(EDIT_PATH)
async def edit(request: web.Request) -> web.Response:
    body = await _body(request)
    signed = await _verified(request, body)
    if isinstance(signed, web.Response):
        return signed
    service = request.app[LAN_BOX].get()
    try:
        doc = json.loads(body)
        if not isinstance(doc, dict) or not isinstance(doc.get("job_id"), str) or not isinstance(doc.get("fields", {}), dict):
            raise ValueError("bad edit request")
        record = await service.apply_edit(signed.queue, str(doc.get("op")), doc["job_id"], doc.get("fields", {}))
    except (ValueError, KeyError) as e:
        return _signed(request, signed, {"error": str(e)})
    except Exception as e:  # noqa: BLE001 - LanqueueError and friends travel back as text
        return _signed(request, signed, {"error": getattr(e, "message", str(e))})
    return _signed(request, signed, {"record": codec.encode(record)})


@routes.get(FILE_PATH + "{digest}")
async def file(request: web.Request) -> web.StreamResponse:
    signed = await _verified(request, b"")
    if isinstance(signed, web.Response):
        return signed
    try:
        path = await request.app[LAN_BOX].get().file_for_peer(request.match_info["digest"])
    except Exception as e:  # noqa: BLE001 - NotFound/BadRequest: a plain 404 to the peer
        return web.json_response({"error": getattr(e, "message", str(e))}, status=404)
    return web.FileResponse(path)


async def _farm_request(request: web.Request) -> tuple[bytes, SignedRequest, FarmPeer] | web.Response:
    """A farm route's checks: signed for a queue this node has joined, and a farm view to ask."""
    body = await _body(request)
    signed = await _verified(request, body)
    if isinstance(signed, web.Response):
        return signed
    farm = request.app[LAN_BOX].farm
    if farm is None:
        return _signed(request, signed, {"error": "this node has no farm view"})
    return body, signed, farm


@routes.post(FARM_SUMMARY_PATH)
async def farm_summary(request: web.Request) -> web.Response:
    """This node's printer, for the farm view of a member of a queue it shares."""
    checked = await _farm_request(request)
    if isinstance(checked, web.Response):
        return checked
    _, signed, farm = checked
    return _signed(request, signed, await farm.summary())


@routes.post(FARM_ACTION_PATH)
async def farm_action(request: web.Request) -> web.Response:
    """An action on this node's printer from a member's farm view. The signature proves the
    sender holds the secret of a queue this node has joined; nothing else is trusted."""
    checked = await _farm_request(request)
    if isinstance(checked, web.Response):
        return checked
    body, signed, farm = checked
    try:
        doc = json.loads(body)
        action = doc.get("action") if isinstance(doc, dict) else None
        if not isinstance(action, str):
            raise ValueError("give an action")
        await farm.act(action)
    except Exception as e:  # noqa: BLE001 - BadRequest/Conflict and friends travel back as text
        log.info("farm action from %s refused: %s", signed.node_id[:8], e)
        return _signed(request, signed, {"error": getattr(e, "message", str(e))})
    log.info("farm action %r from %s", action, signed.node_id[:8])
    return _signed(request, signed, {"ok": True})


@routes.post(FARM_THUMBNAIL_PATH + "{name}")
async def farm_thumbnail(request: web.Request) -> web.Response:
    """The slicer's picture of the file this node prints, for a member's farm view. The answer
    is signed like every other (the picture carries no digest of its own to check)."""
    checked = await _farm_request(request)
    if isinstance(checked, web.Response):
        return checked
    _, signed, farm = checked
    data = farm.thumbnail(request.match_info["name"])
    if data is None:
        return web.json_response({"error": "no such thumbnail"}, status=404)
    service = request.app[LAN_BOX].get()
    secret = service.secret(signed.queue) or b""
    return web.Response(body=data, content_type="application/octet-stream",
                        headers={RESPONSE_SIGNATURE: sign_response(secret, signed.binding, data, service.instance),
                                 RESPONDER: service.instance})
