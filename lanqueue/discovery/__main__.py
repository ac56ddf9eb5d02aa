"""`python -m lanqueue.discovery`: discovery alone, as a real process, for tests and benches.

Runs one or more nodes (`--count`), each an aiohttp server with the hello route and
`GET /peers` (the peer table as JSON), and a DiscoveryService. Prints one line
`READY {"node_id": ..., "port": ...}` per node once it is registered, so a test knows when and
where to poll. SIGTERM/SIGINT unregister cleanly; SIGKILL is the crash case.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import socket
import sys
import uuid
from collections import Counter
from typing import Any

from aiohttp import web

from .service import DiscoveryService

_SERVICE: web.AppKey[DiscoveryService] = web.AppKey("discovery_service")
_EVENTS: web.AppKey[Counter[str]] = web.AppKey("discovery_event_counts")


async def _peers(request: web.Request) -> web.Response:
    service = request.app[_SERVICE]
    counts: Counter[str] = request.app[_EVENTS]
    return web.json_response(
        {
            "node_id": service.own.node_id,
            "peers": service.snapshot(),
            "dropped": service.table.dropped,
            "events": dict(counts),
        }
    )


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m lanqueue.discovery", description=__doc__)
    p.add_argument("--id", default=None, help="node id (default: random); with --count, a prefix")
    p.add_argument("--name", default=None)
    p.add_argument("--host", default="127.0.0.1", help="address the HTTP server binds")
    p.add_argument("--port", type=int, default=0, help="0 = any free port")
    p.add_argument("--count", type=int, default=1, help="nodes in this process")
    p.add_argument("--profile", default="Generic")
    p.add_argument("--queue", action="append", default=[])
    p.add_argument("--peer", action="append", default=[], help="static peer HOST:PORT")
    p.add_argument("--no-mdns", action="store_true")
    p.add_argument("--interface", action="append", default=None, help="IPv4 address or name")
    p.add_argument("--protocol", type=int, default=1)
    p.add_argument("--interval", type=float, default=2.0, help="heartbeat interval, s")
    p.add_argument("--missed", type=int, default=3, help="missed heartbeats before offline")
    p.add_argument(
        "--control",
        default=None,
        help="also serve on this unix socket (with --count, PATH.N): lets a test in another "
        "network namespace poll GET /peers without any network traffic",
    )
    p.add_argument("--log-level", default="WARNING")
    return p.parse_args(argv)


async def _start_node(
    args: argparse.Namespace, index: int
) -> tuple[DiscoveryService, web.AppRunner]:
    base = args.id or uuid.uuid4().hex
    node_id = base if args.count == 1 else f"{base}-{index}"
    name = args.name or f"node-{node_id[:8]}"
    if args.count > 1:
        name = f"{name}-{index}"
    # Bind first so the advertised port is the real one even with --port 0.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port + index if args.port else 0))
    port = sock.getsockname()[1]
    service = DiscoveryService(
        node_id,
        name,
        port,
        args.profile,
        args.queue,
        mdns=not args.no_mdns,
        interfaces=args.interface,
        static_peers=args.peer,
        protocol_version=args.protocol,
        heartbeat_interval=args.interval,
        max_missed=args.missed,
    )
    app = web.Application()
    app[_SERVICE] = service
    counts: Counter[str] = Counter()
    app[_EVENTS] = counts
    service.add_listener(lambda event: counts.update([type(event).__name__]))
    service.install(app)
    app.router.add_get("/peers", _peers)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    if args.control:
        path = args.control if args.count == 1 else f"{args.control}.{index}"
        await web.UnixSite(runner, path).start()
    await service.async_start()
    ready: dict[str, Any] = {"node_id": node_id, "name": name, "port": port}
    print("READY " + json.dumps(ready), flush=True)
    return service, runner


async def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    nodes = await asyncio.gather(*(_start_node(args, i) for i in range(args.count)))
    await stop.wait()
    await asyncio.gather(*(service.async_close() for service, _ in nodes))
    await asyncio.gather(*(runner.cleanup() for _, runner in nodes))


if __name__ == "__main__":
    asyncio.run(main())
