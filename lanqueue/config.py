"""Options of `lanqueue serve`: command line flags over `LANQUEUE_*` variables over a TOML file.

Each option is declared once: its value's type and default in `Options`, how it is given (kind,
help, repeatable) in OPTIONS; the argument parser, the environment reader and the TOML reader are
all derived from that table, so the three ways of setting an option can never drift apart. Keys in the TOML file that no option reads are
reported instead of ignored silently.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any

from .errors import BadRequest
from .textvalues import parse_bool

__all__ = ["Options", "OPTIONS", "add_serve_arguments", "resolve_options", "ConfigError", "parse_lan"]

log = logging.getLogger(__name__)


MIN_SECRET = 8


class ConfigError(Exception):
    """A bad option value; the command line prints it and exits with status 2."""


@dataclass(frozen=True)
class Option:
    """How an option is set (flag, variable, TOML key); its default is the one `Options` declares."""

    name: str
    kind: type
    help: str
    repeat: bool = False  # list-valued: repeatable flag, comma-separated env, TOML array

    @property
    def default(self) -> Any:
        """`Options`' default; None where it is computed at start (data dir, name)."""
        f = Options.__dataclass_fields__[self.name]
        return None if f.default is MISSING else f.default


def _default_data_dir() -> str:
    return str(Path.home() / ".local" / "share" / "lanqueue")


OPTIONS: tuple[Option, ...] = (
    Option("host", str, "address to listen on"),
    Option("port", int, "HTTP port"),
    Option("data_dir", str, "folder for the database, files and key (default ~/.local/share/lanqueue)"),
    Option("name", str, "display name of this printer (default: host name)"),
    Option("printer", str, "printer URL: 'virtual', a serial device path (serial:///dev/ttyACM0), "
           "socket://HOST:PORT, octoprint://HOST:PORT, moonraker://HOST:PORT, prusalink://HOST, bambu://HOST"),
    Option("printer_key", str, "printer secret: OctoPrint/Moonraker API key, PrusaLink password, Bambu "
           "access code (better in the config file or LANQUEUE_PRINTER_KEY than on the command line)"),
    Option("printer_user", str, "printer user name (PrusaLink)"),
    Option("printer_serial", str, "printer serial number (Bambu)"),
    Option("baudrate", int, "serial speed"),
    Option("api_key", str, "API key (default: generated on first start and stored in the data dir)"),
    Option("profile", str, "printer profile name, matched against sets' profiles"),
    Option("lan", str, "join a LAN queue: NAME=SECRET, or a queue kept in etcd: "
           "NAME=etcd://HOST:2379[,HOST:2379...] (etcds:// for TLS) (repeatable)", repeat=True),
    Option("etcd_user", str, "etcd user name for queues kept in etcd"),
    Option("etcd_password", str, "etcd password (better in the config file or LANQUEUE_ETCD_PASSWORD)"),
    Option("etcd_ca", str, "CA certificate file that signs the etcd members' certificates (etcds://)"),
    Option("etcd_cert", str, "client certificate file for etcd (etcds://, when etcd asks for one)"),
    Option("etcd_key", str, "client key file for etcd (etcds://)"),
    Option("peer", str, "static peer HOST:PORT (repeatable)", repeat=True),
    Option("no_mdns", bool, "do not use mDNS discovery"),
    Option("interface", str, "address of an interface for mDNS (repeatable; default all)", repeat=True),
    Option("virtual_speed", float, "how many times faster than real time the virtual printer runs"),
    Option("max_upload_mb", int, "largest accepted upload, in MiB"),
    Option("resume", bool, "start managing the queue again after a restart if it was active"),
    Option("lease_ttl", float, "LAN lease time to live, seconds"),
    Option("lock_delay", float, "seconds an expired LAN lease stays blocked (default: one TTL)"),
    Option("lan_gossip_above", int, "with more online peers than this in a LAN queue, record versions spread "
           "by fan-out (3 peers) and forwarding instead of the writer pushing to every peer"),
    Option("lan_history", bool, "write each LAN home decision to <data-dir>/lan-history.jsonl "
           "(rotated; for checking the LAN guarantees, as the cluster tests do)"),
    Option("log_level", str, "DEBUG, INFO, WARNING or ERROR"),
    Option("attended_hours", str, "when a person is there to clear the bed, in the node's time zone, "
           "e.g. 'Mon-Fri 08:00-18:00, Sat 09:00-12:00': no print that would end outside them is started "
           "while the bed is cleared by hand (default: always)"),
    Option("mqtt", str, "MQTT broker for notifications and Home Assistant discovery: "
           "mqtt://HOST[:1883] or mqtts://HOST[:8883]"),
    Option("mqtt_user", str, "MQTT user name"),
    Option("mqtt_password", str, "MQTT password (better in the config file or LANQUEUE_MQTT_PASSWORD)"),
    Option("mqtt_ca", str, "CA certificate file for mqtts:// (default: the system's)"),
    Option("webhook", str, "URL to POST a JSON notification to (repeatable)", repeat=True),
    Option("webhook_secret", str, "key of the HMAC-SHA256 signature sent with each webhook "
           "(X-Lanqueue-Signature; better in the config file or LANQUEUE_WEBHOOK_SECRET)"),
)


@dataclass(frozen=True)
class Options:
    """Resolved options of one node (every field has its final value)."""

    host: str = "0.0.0.0"
    port: int = 5000
    data_dir: Path = field(default_factory=lambda: Path(_default_data_dir()))
    name: str = field(default_factory=socket.gethostname)
    printer: str = "virtual"
    printer_key: str | None = field(default=None, repr=False)  # a secret: never in logs
    printer_user: str | None = None
    printer_serial: str | None = None
    baudrate: int = 115200
    api_key: str | None = None
    profile: str = "Generic"
    lan: tuple[str, ...] = ()
    etcd_user: str | None = None
    etcd_password: str | None = field(default=None, repr=False)  # a secret: never in logs
    etcd_ca: str | None = None
    etcd_cert: str | None = None
    etcd_key: str | None = None
    peer: tuple[str, ...] = ()
    no_mdns: bool = False
    interface: tuple[str, ...] = ()
    virtual_speed: float = 1.0
    max_upload_mb: int = 1024
    resume: bool = False
    lease_ttl: float = 60.0
    lock_delay: float | None = None
    lan_gossip_above: int = 32
    lan_history: bool = False
    log_level: str = "INFO"
    attended_hours: str | None = None
    mqtt: str | None = None
    mqtt_user: str | None = None
    mqtt_password: str | None = field(default=None, repr=False)  # a secret: never in logs
    mqtt_ca: str | None = None
    webhook: tuple[str, ...] = ()
    webhook_secret: str | None = field(default=None, repr=False)  # a secret: never in logs

    @property
    def lan_queues(self) -> dict[str, str]:
        """Peer-to-peer LAN queues: name -> secret."""
        return {name: value for name, value in map(parse_lan, self.lan) if not is_etcd_url(value)}

    @property
    def etcd_queues(self) -> dict[str, str]:
        """Queues kept in etcd: name -> etcd:// or etcds:// URL."""
        return {name: value for name, value in map(parse_lan, self.lan) if is_etcd_url(value)}


def is_etcd_url(value: str) -> bool:
    return value.startswith(("etcd://", "etcds://"))


def parse_lan(spec: str) -> tuple[str, str]:
    """`NAME=SECRET` -> (name, secret)."""
    name, sep, secret = spec.partition("=")
    name = name.strip()
    if not sep or not name or not secret:
        raise BadRequest(f"a LAN queue is given as NAME=SECRET, not {spec!r}")
    if name in ("local", "archive"):
        raise BadRequest(f"{name!r} is reserved and cannot be a LAN queue name")
    if is_etcd_url(secret):
        if not secret.split("://", 1)[1].strip(","):
            raise BadRequest(f"queue {name!r}: an etcd URL names at least one HOST:PORT")
        return name, secret
    if len(secret) < MIN_SECRET:  # the same rule as joining through queues/edit
        raise BadRequest(f"the secret of LAN queue {name!r} needs at least {MIN_SECRET} characters")
    return name, secret


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML file with any of these options")
    for opt in OPTIONS:
        flag = "--" + opt.name.replace("_", "-")
        if opt.kind is bool:
            parser.add_argument(flag, dest=opt.name, action="store_const", const=True, default=None, help=opt.help)
        elif opt.repeat:
            parser.add_argument(flag, dest=opt.name, action="append", default=None, help=opt.help)
        else:
            parser.add_argument(flag, dest=opt.name, type=opt.kind, default=None, help=opt.help)


def _convert(opt: Option, value: Any, source: str) -> Any:
    try:
        if opt.repeat:
            if isinstance(value, str):
                items = [v.strip() for v in value.split(",") if v.strip()]
            elif isinstance(value, list):
                items = [str(v) for v in value]
            else:
                raise ValueError("expected a list")
            return tuple(items)
        if opt.kind is bool:
            text = value if isinstance(value, bool) else str(value)
            flag = parse_bool(text) if str(text).strip() else False  # an empty variable is off
            if flag is None:
                raise ValueError("expected true or false")
            return flag
        if opt.kind is float and isinstance(value, bool):
            raise ValueError("expected a number")
        return opt.kind(value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{source}: bad value {value!r} for {opt.name}: {e}") from None


def resolve_options(
    args: argparse.Namespace | None = None,
    env: Mapping[str, str] | None = None,
    config_file: str | None = None,
) -> Options:
    """Merge defaults < TOML file < environment < flags into Options."""
    env = os.environ if env is None else env
    config_file = config_file or (getattr(args, "config", None) if args else None) or env.get("LANQUEUE_CONFIG")
    from_file: dict[str, Any] = {}
    if config_file:
        try:
            with open(config_file, "rb") as f:
                from_file = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"cannot read config file {config_file}: {e}") from None
        known = {o.name for o in OPTIONS} | {o.name.replace("_", "-") for o in OPTIONS}
        for key in from_file:
            if key not in known:
                log.warning("config file %s: option %r is not known and is ignored", config_file, key)
        from_file = {k.replace("-", "_"): v for k, v in from_file.items()}
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        value = opt.default
        if opt.name in from_file:
            value = _convert(opt, from_file[opt.name], f"config file {config_file}")
        env_key = "LANQUEUE_" + opt.name.upper()
        if env_key in env:
            value = _convert(opt, env[env_key], f"environment {env_key}")
        flag = getattr(args, opt.name, None) if args is not None else None
        if flag is not None:
            value = _convert(opt, flag, "command line")
        if opt.repeat:
            value = tuple(value)
        values[opt.name] = value
    values["data_dir"] = Path(values["data_dir"] or _default_data_dir()).expanduser()
    values["name"] = values["name"] or socket.gethostname()
    _check(values)
    return Options(**values)


def _check_notifications(values: dict[str, Any]) -> None:
    """Attended hours, the MQTT broker and webhook URLs are read at start, not at first use."""
    from .attended import ScheduleError, parse_attended
    from .notify import parse_broker

    if values.get("attended_hours"):
        try:
            parse_attended(values["attended_hours"])
        except ScheduleError as e:
            raise ConfigError(str(e)) from None
    if values.get("mqtt"):
        try:
            parse_broker(values["mqtt"])
        except ValueError as e:
            raise ConfigError(str(e)) from None
    for url in values.get("webhook") or ():
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"a webhook is an http:// or https:// URL, not {url!r}")


def _check(values: dict[str, Any]) -> None:
    _check_notifications(values)
    if not 0 < values["port"] < 65536:
        raise ConfigError(f"port {values['port']} is out of range")
    if not (values["virtual_speed"] > 0 and math.isfinite(values["virtual_speed"])):
        raise ConfigError("virtual speed must be positive")
    if not (values["lease_ttl"] > 0 and math.isfinite(values["lease_ttl"])):
        raise ConfigError(f"lease TTL {values['lease_ttl']} must be a positive number of seconds")
    lock_delay = values["lock_delay"]
    if lock_delay is not None and not (lock_delay >= 0 and math.isfinite(lock_delay)):
        raise ConfigError(f"lock delay {lock_delay} must be zero or a positive number of seconds")
    if values["max_upload_mb"] <= 0:
        raise ConfigError("max upload size must be positive")
    if values["log_level"].upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"unknown log level {values['log_level']!r}")
    _check_printer(values["printer"])
    for spec in values["lan"]:
        try:
            parse_lan(spec)
        except BadRequest as e:
            raise ConfigError(e.message) from None
    for peer in values["peer"]:
        host, sep, port = peer.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError(f"a peer is given as HOST:PORT, not {peer!r}")


def _check_printer(url: str) -> None:
    """A --printer value that names no backend is a config error, before anything starts."""
    from .printer.backend import UnknownBackend, parse_printer_url

    try:
        parse_printer_url(url)
    except UnknownBackend as e:
        raise ConfigError(str(e)) from None
