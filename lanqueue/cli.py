"""The `lanqueue` command: `serve` runs a node; the other commands are clients of a node's API.

Client commands find the node from `--url`/`--api-key`, else from the same config file,
environment and data dir `serve` uses, so on the printer's own computer `lanqueue status` just works.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

from . import __version__
from .config import OPTIONS, ConfigError, Options, add_serve_arguments, resolve_options
from .logsafe import install as install_safe_log

__all__ = ["main"]


def _serve(args: argparse.Namespace) -> int:
    from .api.app import serve
    from .node import Node  # only cli imports node
    from .store import DataDirError

    options = resolve_options(args)
    _setup_logging(options.log_level)
    _check_can_listen(options.host, options.port)  # before the data dir and key are written
    key_file = options.data_dir / "api_key"
    fresh_key = not options.api_key and not key_file.exists()
    node = Node(options)
    try:
        node.prepare()
    except OSError as e:  # a read-only or unreadable data directory: one line, no traceback
        print(f"lanqueue: cannot use the data directory {options.data_dir}: {e.strerror or e} "
              f"({e.filename or options.data_dir}); it must be writable by this user", file=sys.stderr)
        return 3
    app = node.make_app()
    url = local_url(options.host, options.port)
    _write_url_file(options.data_dir, url)
    # the key is printed once, when it is made; later only where to find it
    key = node.api_key if fresh_key else "<the --api-key given>" if options.api_key else f"<the key in {key_file}>"
    print(f"lanqueue: node {options.name!r} (printer: {options.printer}, data: {options.data_dir}); "
          f"open {url}/?apikey={key}", flush=True)
    try:
        asyncio.run(serve(app, options.host, options.port, shutdown_timeout=10.0))
    except OSError as e:
        if e.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            raise
        print(f"lanqueue: cannot listen on {options.host}:{options.port}: {e.strerror}", file=sys.stderr)
        return 2
    except DataDirError as e:  # exit at once (status 3) so a service manager's restart policy sees it
        print(f"lanqueue: {e}", file=sys.stderr)
        return 3
    return 0


def _check(args: argparse.Namespace) -> int:
    """`lanqueue check`: is the data directory's database sound? Changes nothing."""
    from .store import check_database

    data_dir = Path(args.data_dir) if args.data_dir else Path(resolve_options(None, config_file=args.config).data_dir)
    healthy, lines = check_database(data_dir / "lanqueue.sqlite3")
    for line in lines:
        print(line, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


def _reset_identity(args: argparse.Namespace) -> int:
    """`lanqueue reset-identity`: a new node id for a node whose SD card was copied from another
    (the node must be stopped). Its LAN peers then see two nodes instead of one id twice."""
    from .sync.persistence import reset_identity

    data_dir = Path(args.data_dir) if args.data_dir else Path(resolve_options(None, config_file=args.config).data_dir)
    if not (data_dir / "node_id").exists():
        print(f"lanqueue: {data_dir} is not a node's data directory (no node_id file)", file=sys.stderr)
        return 2
    old, new = reset_identity(data_dir)
    print(f"node id {old} -> {new}")
    print("the LAN leases and unreported prints of the old id were dropped here (the original node keeps them);"
          " start the node again")
    return 0


def _check_can_listen(host: str, port: int) -> None:
    """Bind the address once (as aiohttp will, with SO_REUSEADDR) and let it go: a port in use
    is reported before anything is written, instead of after the node said it was ready."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as e:
            hint = {errno.EADDRINUSE: " (another lanqueue serve? choose another --port)",
                    errno.EACCES: " (ports below 1024 need root; choose another --port)"}.get(e.errno or 0, "")
            raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror}{hint}") from None


def local_url(host: str, port: int) -> str:
    """The node's URL as seen from its own machine: `localhost` when it listens everywhere."""
    if host in ("", "0.0.0.0", "::", "127.0.0.1", "::1", "localhost"):
        return f"http://localhost:{port}"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


URL_FILE = "url"


def _write_url_file(data_dir: Path, url: str) -> None:
    """Where client commands on this machine find the node (its port may not be the default)."""
    with contextlib.suppress(OSError):
        tmp = data_dir / (URL_FILE + ".tmp")
        tmp.write_text(url + "\n")
        os.replace(tmp, data_dir / URL_FILE)


def _setup_logging(level: str) -> None:
    """Plain lines to a file or a journal; rich's colours only on a terminal (rich is imported
    only then: a service never holds it in memory)."""
    handler: logging.Handler = logging.StreamHandler()
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler = RichHandler(show_path=False, rich_tracebacks=False)
        fmt = "%(name)s: %(message)s"
    install_safe_log(handler)  # client text escaped, floods of one line rate-limited
    logging.basicConfig(level=level.upper(), format=fmt, handlers=[handler])


# --- client commands -----------------------------------------------------------------------


def _client_target(args: argparse.Namespace) -> tuple[str, str]:
    """(base URL, API key) of the node a client command talks to: flags, else the environment,
    else what `serve` left in its data dir (its URL and key), else the options' host and port."""
    options: Options = resolve_options(None, config_file=args.config)
    data_dir = Path(args.data_dir).expanduser() if args.data_dir else Path(options.data_dir)
    url = args.url or os.environ.get("LANQUEUE_URL") or _read(data_dir / URL_FILE)
    if not url:
        host = options.host if options.host not in ("", "0.0.0.0", "::") else "127.0.0.1"  # where serve listens
        host = f"[{host}]" if ":" in host else host
        url = f"http://{host}:{options.port}"
    key = args.api_key or options.api_key or _read(data_dir / "api_key")
    if not key:
        raise ConfigError(f"no API key: none given (--api-key or LANQUEUE_API_KEY) and no node's key in "
                          f"{data_dir} (searched {data_dir / 'api_key'}); start `lanqueue serve` there first, "
                          "or point --data-dir (LANQUEUE_DATA_DIR) at the node's data folder")
    return url.rstrip("/"), key


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _run_client(args: argparse.Namespace) -> int:
    from . import client

    url, key = _client_target(args)
    return asyncio.run(client.run(args.command, url, key, args))


def _virtual_printer(args: argparse.Namespace) -> int:
    from .printer.virtual_cli import main as virtual_main

    return int(virtual_main(args.rest) or 0)


def _farm(args: argparse.Namespace) -> int:
    from .farmfile import run_farm

    return run_farm(args.file)


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
    parser.add_argument("--version", action="version", version=f"lanqueue {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run a node for one printer",
                           description="Run a node. Every option can also be set as LANQUEUE_<NAME> "
                                       "in the environment or in a TOML file (--config).")
    add_serve_arguments(serve)
    _show_defaults(serve, {opt.name: opt.default for opt in OPTIONS})
    serve.set_defaults(func=_serve)

    check = sub.add_parser("check", help="check a node's data directory (the node should be stopped)")
    check.add_argument("--data-dir", help="the data directory (default: as serve would use)")
    check.add_argument("--config", help="config file of the node")
    check.set_defaults(func=_check)

    reset = sub.add_parser("reset-identity", help="give a node a new id (for a copied SD card; the node must be stopped)")
    reset.add_argument("--data-dir", help="the data directory (default: as serve would use)")
    reset.add_argument("--config", help="config file of the node")
    reset.set_defaults(func=_reset_identity)

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
                        add_help=False)  # its own options and --help live in printer/virtual_cli.py
    vp.set_defaults(func=_virtual_printer)

    farm = sub.add_parser("farm", help="run one node per printer listed in a TOML farm file",
                          description="Run a full node (own port, data dir, mDNS name) for every [[printer]] "
                                      "entry of FILE; SIGTERM stops them all. See docs/printers.md.")
    farm.add_argument("file", type=Path, help="the farm file")
    farm.set_defaults(func=_farm)

    demo = sub.add_parser("demo", help="several nodes with virtual printers sharing a LAN queue")
    demo.add_argument("--nodes", type=int, default=3, help="how many nodes")
    demo.add_argument("--base-port", type=int, default=5101, help="port of the first node; the others follow")
    demo.add_argument("--speed", type=float, default=20.0, help="how many times faster than real time the printers run")
    demo.set_defaults(func=_demo)

    samples = sub.add_parser("samples", help="copy the sample G-code files (one per slicer) to a folder")
    samples.add_argument("folder", nargs="?", type=Path, default=Path("lanqueue-samples"), help="where to put them")
    samples.set_defaults(func=_samples)
    for action in sub.choices.values():
        if action is not serve:
            _show_defaults(action, {})
    return parser


def _show_defaults(parser: argparse.ArgumentParser, defaults: dict[str, Any]) -> None:
    """Append "(default: X)" to each option's help that has a default and does not say it.
    `serve`'s options resolve their defaults later (file < environment < flags), so theirs come
    from the options table."""
    for action in parser._actions:
        value = defaults.get(action.dest, action.default)
        if action.help in (None, argparse.SUPPRESS) or "default" in (action.help or ""):
            continue
        if value in (None, False, [], (), argparse.SUPPRESS):
            continue
        action.help = f"{action.help} (default: {value})"


def _samples(args: argparse.Namespace) -> int:
    """Small prints with each slicer's comments (time, filament, thumbnail), to try a node with."""
    from importlib.resources import files

    folder: Path = args.folder
    folder.mkdir(parents=True, exist_ok=True)
    for item in sorted(files("lanqueue").joinpath("samples").iterdir(), key=lambda i: i.name):
        if item.name.endswith(".gcode"):
            (folder / item.name).write_bytes(item.read_bytes())
            print(folder / item.name)
    return 0


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
