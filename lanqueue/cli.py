"""The `lanqueue` command: `serve` runs a node; the other commands are clients of a node's API.

Client commands find the node from `--url`/`--api-key`, else from the same config file,
environment and data dir `serve` uses, so on the printer's own computer `lanqueue status` just works.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from .config import ConfigError, Options, add_serve_arguments, resolve_options

__all__ = ["main"]


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from .node import Node  # only cli imports node

    options = resolve_options(args)
    _setup_logging(options.log_level)
    node = Node(options)
    node.prepare()
    app = node.make_app()
    print(f"lanqueue: node {options.name!r} on http://{options.host}:{options.port}/ "
          f"(printer: {options.printer}, data: {options.data_dir})", flush=True)
    try:
        web.run_app(app, host=options.host, port=options.port, print=None, access_log=None,
                    shutdown_timeout=10.0)
    except OSError as e:
        if e.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            raise
        print(f"lanqueue: cannot listen on {options.host}:{options.port}: {e.strerror}", file=sys.stderr)
        return 2
    return 0


def _setup_logging(level: str) -> None:
    try:
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(show_path=False, rich_tracebacks=False)
        fmt = "%(name)s: %(message)s"
    except ImportError:  # pragma: no cover - rich is a dependency
        handler = logging.StreamHandler()
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    if not sys.stderr.isatty():
        handler = logging.StreamHandler()
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level.upper(), format=fmt, handlers=[handler])


# --- client commands -----------------------------------------------------------------------


def _client_target(args: argparse.Namespace) -> tuple[str, str]:
    """(base URL, API key) of the node a client command talks to."""
    options: Options = resolve_options(None, config_file=args.config)
    data_dir = Path(args.data_dir) if args.data_dir else Path(options.data_dir)
    host = options.host if options.host not in ("", "0.0.0.0", "::") else "127.0.0.1"  # where serve listens
    host = f"[{host}]" if ":" in host else host
    url = args.url or os.environ.get("LANQUEUE_URL") or f"http://{host}:{options.port}"
    key = args.api_key or options.api_key
    if not key:
        key_file = data_dir / "api_key"
        if key_file.exists():
            key = key_file.read_text().strip()
    if not key:
        raise ConfigError("no API key: pass --api-key, or run on the node's machine")
    return url.rstrip("/"), key


def _run_client(args: argparse.Namespace) -> int:
    from . import client

    url, key = _client_target(args)
    return asyncio.run(client.run(args.command, url, key, args))


def _virtual_printer(args: argparse.Namespace) -> int:
    from .printer.virtual import main as virtual_main

    return int(virtual_main(args.rest) or 0)


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return asyncio.run(run_demo(args.nodes, args.base_port, args.speed))


def _copies(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 1 <= value <= 100_000:
        raise argparse.ArgumentTypeError("the count is 1 to 100000 copies")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lanqueue", description="Keep every printer of a farm busy.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run a node for one printer")
    add_serve_arguments(serve)
    serve.set_defaults(func=_serve)

    def client_parser(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--url", help="node URL (default: the local node)")
        p.add_argument("--api-key", help="the node's API key (default: from its data dir)")
        p.add_argument("--config", help="config file of the local node")
        p.add_argument("--data-dir", help="data dir of the local node (to find its key and port)")
        p.add_argument("--json", action="store_true", help="print raw JSON")
        p.set_defaults(func=_run_client)
        return p

    add = client_parser("add", "upload a file and queue it as a job")
    add.add_argument("file", type=Path)
    add.add_argument("--count", type=_copies, default=1, help="copies to print (1 or more)")
    add.add_argument("--queue", default="local", help="queue name (default local)")
    add.add_argument("--job", help="job name (default: the file name)")
    client_parser("status", "show queues, printer and peers")
    client_parser("start", "start managing the queue")
    client_parser("stop", "stop managing the queue (the current print finishes)")
    client_parser("continue", "tell the node the bed is clear")
    client_parser("drain", "hand this node's LAN jobs to live peers")
    adopt = client_parser("adopt", "take over the LAN jobs of a node that is gone")
    adopt.add_argument("node", help="node id or name of the gone node")

    vp = sub.add_parser("virtual-printer", help="run the virtual printer on a pseudo-terminal",
                        add_help=False)  # its own options and --help live in printer/virtual.py
    vp.set_defaults(func=_virtual_printer)

    demo = sub.add_parser("demo", help="several nodes with virtual printers sharing a LAN queue")
    demo.add_argument("--nodes", type=int, default=3)
    demo.add_argument("--base-port", type=int, default=5101)
    demo.add_argument("--speed", type=float, default=20.0)
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "virtual-printer":
        args.rest = rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        print(f"lanqueue: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def dump(data: Any) -> str:
    return json.dumps(data, indent=2)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
