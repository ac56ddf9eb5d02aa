"""Operator routes for the farm: peers, drain, adopt (lanqueue's own, under /lanqueue/)."""

from __future__ import annotations

from aiohttp import web

from ..errors import BadRequest
from . import fields
from .app import json_response
from .forms import read_form
from .keys import NODE

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.get("/lanqueue/peers")
async def peers(request: web.Request) -> web.Response:
    node = request.app[NODE]
    return json_response({"node_id": node.node_id, "name": node.options.name,
                          "peers": node.discovery.snapshot() if node.discovery else [],
                          # per LAN queue: "ok", "syncing" or "identity_clash", with what to do
                          "lan_standing": node.lan.standing() if node.lan else {}})


@routes.post("/lanqueue/lan/drain")
async def drain(request: web.Request) -> web.Response:
    node = request.app[NODE]
    if node.lan is None:
        raise BadRequest("this node has joined no LAN queue")
    moved = await node.lan.async_drain()
    return json_response({"moved": moved, "unconfirmed": node.lan.unconfirmed_handoffs,
                          "kept": node.lan.homed_here()})


@routes.post("/lanqueue/lan/adopt")
async def adopt(request: web.Request) -> web.Response:
    form = await read_form(request)
    (gone_field,) = fields.ADOPT
    gone = gone_field.read(form)
    node = request.app[NODE]
    if node.lan is None:
        raise BadRequest("this node has joined no LAN queue")
    assert gone is not None
    return json_response({"adopted": await node.lan.async_adopt(gone)})
