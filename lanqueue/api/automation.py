"""Automation and driver routes: scripts, preprocessors, events, the bed-cleared button,
loaded materials and driver settings.

`automation/get|edit|simulate` keep the original's shapes; `runner/continue`, `materials/*` and
`driver/*` are lanqueue's own (the original delegated materials to another plugin and resumed a
bed-clearing pause through OctoPrint's resume button).
"""

from __future__ import annotations

from dataclasses import asdict

from aiohttp import web

from ..automation import Automation, async_simulate
from ..errors import BadRequest, Conflict
from ..runner import DriverSettings
from . import fields
from .app import json_response
from .continuousprint import BASE
from .forms import Form, read_form
from .keys import NODE

__all__ = ["routes"]

routes = web.RouteTableDef()
@routes.get(BASE + "/automation/get")
async def automation_get(request: web.Request) -> web.Response:
    return json_response((await request.app[NODE].automation()).to_json())


@routes.post(BASE + "/automation/edit")
async def automation_edit(request: web.Request) -> web.Response:
    form = await read_form(request)
    automation = Automation.from_json(form.json_field())
    await request.app[NODE].set_automation(automation)
    return json_response("OK")


@routes.post(BASE + "/automation/simulate")
async def automation_simulate(request: web.Request) -> web.Response:
    form = await read_form(request)
    symtable = form.json_field("symtable", required=False)
    if symtable is None:
        symtable = {}
    attachments = form.json_field("automation")
    node = request.app[NODE]
    return json_response(await async_simulate(symtable, attachments, engine=node.evaluator))


@routes.post(BASE + "/runner/continue")
async def runner_continue(request: web.Request) -> web.Response:
    """A person cleared the bed (or did what a script's `@pause` asked)."""
    if not await request.app[NODE].runner.async_continue():
        raise Conflict("nothing is waiting for a person")
    return json_response("OK")


@routes.get(BASE + "/materials/get")
async def materials_get(request: web.Request) -> web.Response:
    return json_response(await request.app[NODE].store.get_setting("materials", []))


@routes.post(BASE + "/materials/set")
async def materials_set(request: web.Request) -> web.Response:
    """The material loaded in each tool, e.g. `materials=["PLA_red_#ff0000", null]`."""
    form = await read_form(request)
    materials = fields.MATERIALS.read(form, [])
    node = request.app[NODE]
    await node.store.set_setting("materials", materials)
    return json_response(materials)


@routes.get(BASE + "/driver/get")
async def driver_get(request: web.Request) -> web.Response:
    return json_response(asdict(request.app[NODE].runner.driver.settings))


@routes.post(BASE + "/driver/edit")
async def driver_edit(request: web.Request) -> web.Response:
    """Retries, managed cooldown (threshold, timeout); applied from the next cycle on."""
    form = await read_form(request)
    doc = Form.from_object(form.json_field())
    node = request.app[NODE]
    current = asdict(node.runner.driver.settings)
    unknown = set(doc.names()) - set(current)
    if unknown:
        raise BadRequest(f"unknown driver settings: {', '.join(sorted(unknown))}")
    for f in fields.DRIVER:
        if doc.has(f.name):
            current[f.name] = f.read(doc)
    settings = DriverSettings(**current)
    await node.store.set_setting("driver", current)
    node.runner.driver.settings = settings
    return json_response(current)
