"""A stand-in for a Spoolman server, written from Spoolman's public REST API description, just
enough for Moonraker's `[spoolman]` component: its websocket at /api/v1/spool (Moonraker needs it
connected before it proxies anything), GET /api/v1/health and GET /api/v1/spool/{id}.

Spoolman itself is a web application not packaged on PyPI or Debian, hence the stand-in; Moonraker
and the lanqueue node talking to it are real.

    python tests/spoolman_standin.py PORT '{"7": {"material": "PETG", "color_hex": "00FF00"}}'
"""

from __future__ import annotations

import json
import sys

from aiohttp import web


def make_app(spools: dict[str, dict[str, str]]) -> web.Application:
    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "healthy"})

    async def spool(request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        if sid not in spools:
            return web.json_response({"message": f"No spool with ID {sid} found."}, status=404)
        f = spools[sid]
        return web.json_response({
            "id": int(sid), "registered": "2025-01-01T00:00:00Z", "used_weight": 0.0,
            "remaining_weight": 1000.0, "archived": False,
            "filament": {"id": int(sid), "name": f.get("name", f["material"]), "material": f["material"],
                         "color_hex": f.get("color_hex"), "density": 1.24, "diameter": 1.75},
        })

    async def updates(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=10)
        await ws.prepare(request)
        async for _ in ws:  # Moonraker only listens; nothing changes here
            pass
        return ws

    app = web.Application()
    app.router.add_get("/api/v1/health", health)
    app.router.add_get("/api/v1/spool", updates)
    app.router.add_get("/api/v1/spool/{id}", spool)
    return app


if __name__ == "__main__":
    web.run_app(make_app(json.loads(sys.argv[2])), host="127.0.0.1", port=int(sys.argv[1]), print=None)
