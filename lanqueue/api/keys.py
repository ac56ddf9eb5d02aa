"""Typed keys for the services the node puts into the aiohttp application.

Route modules read services through these keys (`request.app[NODE]`), never through module
globals, so a test can build an application around any set of real services. The node is seen
through `NodeServices`, the part of it the routes use, so `api/` never imports `node` (not even
for the type checker: that would be an import cycle, node wiring the routes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from aiohttp import web

from ..services import CoreServices

if TYPE_CHECKING:
    from ..farm import FarmService

__all__ = ["NODE", "NodeServices"]


class NodeServices(CoreServices, Protocol):
    """What the routes and the page use of a running node (`node.Node`): its services and the
    farm view built over them."""

    farm: FarmService | None


NODE: web.AppKey[NodeServices] = web.AppKey("node")
