"""JSON encoding of peer messages and job records.

Messages and records are frozen dataclasses; on the wire each becomes an object with a `type`
field naming its class and one field per dataclass field. Decoding looks the class up in a fixed
table and rebuilds nested dataclasses, enums and tuples from the field annotations, checking
every value's type, so a peer cannot smuggle in anything the core does not expect: a bad value
is a `RemoteProtocolError`, never a crash of the node.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from collections.abc import Callable
from typing import Any

from . import messages as m
from . import records as rec
from .errors import RemoteProtocolError

__all__ = ["encode", "decode", "dumps", "loads", "MESSAGE_TYPES"]

MESSAGE_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        m.AcquireRequest, m.RenewRequest, m.LeaseGranted, m.LeaseDenied, m.ReleaseRequest,
        m.ReleaseAck, m.ProgressReport, m.ProgressRejected, m.CompletionReport, m.CompletionAck,
        m.NotHome, m.RecordPush, m.DigestRequest, m.RecordFetch, m.ConflictNotice,
        m.SyncRequest, m.SyncReply, m.IdentityClash,
    )
}
_DATA_TYPES: dict[str, type] = {
    **MESSAGE_TYPES,
    "JobRecord": rec.JobRecord,
    "SetRecord": rec.SetRecord,
    "ConflictEntry": rec.ConflictEntry,
}
MAX_DEPTH = 8
_hints_cache: dict[type, dict[str, Any]] = {}


def encode(value: Any) -> Any:
    """A JSON-able form of a message, record, or anything built of them."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {"type": type(value).__name__}
        for f in dataclasses.fields(value):
            out[f.name] = encode(getattr(value, f.name))
        return out
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [encode(v) for v in value]
    return value


def dumps(value: Any) -> bytes:
    return json.dumps(encode(value), separators=(",", ":")).encode()


def loads(data: bytes, expected: type | None = None) -> Any:
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise RemoteProtocolError("body is not JSON") from None
    return decode(raw, expected)


def decode(raw: Any, expected: Any = None, depth: int = 0) -> Any:
    """Rebuild a value of type `expected` (a class or annotation); with None, any known type."""
    if depth > MAX_DEPTH:
        raise RemoteProtocolError("message nested too deeply")
    if expected is None:
        if not isinstance(raw, dict) or raw.get("type") not in _DATA_TYPES:
            raise RemoteProtocolError("unknown message type")
        expected = _DATA_TYPES[raw["type"]]
    return _decode(raw, expected, depth)


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _hints_cache:
        _hints_cache[cls] = typing.get_type_hints(cls)
    return _hints_cache[cls]


def _decode(raw: Any, tp: Any, depth: int) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _decode_union(raw, tp, depth)
    if origin is tuple:
        return _decode_tuple(raw, typing.get_args(tp), depth)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _decode_dataclass(raw, tp, depth)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(raw)
        except ValueError:
            raise RemoteProtocolError(f"bad {tp.__name__} {raw!r:.40}") from None
    scalar = _SCALARS.get(tp)
    if scalar is None:
        raise RemoteProtocolError(f"cannot decode {tp}")
    return scalar(raw)


def _decode_union(raw: Any, tp: Any, depth: int) -> Any:
    args = typing.get_args(tp)
    if raw is None and type(None) in args:
        return None
    for option in args:
        if option is type(None):
            continue
        try:
            return _decode(raw, option, depth)
        except RemoteProtocolError:
            continue
    raise RemoteProtocolError(f"value {raw!r:.40} fits none of {tp}")


def _decode_tuple(raw: Any, args: tuple[Any, ...], depth: int) -> tuple[Any, ...]:
    if not isinstance(raw, list):
        raise RemoteProtocolError("expected a list")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_decode(v, args[0], depth + 1) for v in raw)
    if len(raw) != len(args):
        raise RemoteProtocolError("wrong tuple length")
    return tuple(_decode(v, a, depth + 1) for v, a in zip(raw, args))


def _decode_dataclass(raw: Any, tp: type, depth: int) -> Any:
    if not isinstance(raw, dict) or raw.get("type", tp.__name__) != tp.__name__:
        raise RemoteProtocolError(f"expected a {tp.__name__}")
    hints = _hints(tp)
    kwargs = {}
    for f in dataclasses.fields(tp):
        if f.name in raw:
            kwargs[f.name] = _decode(raw[f.name], hints[f.name], depth + 1)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise RemoteProtocolError(f"{tp.__name__} lacks {f.name}")
    try:
        return tp(**kwargs)
    except (TypeError, ValueError) as e:
        raise RemoteProtocolError(f"bad {tp.__name__}: {e}") from None


def _as_float(raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise RemoteProtocolError("expected a number")
    return float(raw)


def _as_int(raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise RemoteProtocolError("expected an integer")
    return raw


def _as_bool(raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise RemoteProtocolError("expected a boolean")
    return raw


def _as_str(raw: Any) -> str:
    if not isinstance(raw, str) or len(raw) > 100_000:
        raise RemoteProtocolError("expected a string")
    return raw


def _as_none(raw: Any) -> None:
    if raw is not None:
        raise RemoteProtocolError("expected null")


_SCALARS: dict[Any, Callable[[Any], Any]] = {float: _as_float, int: _as_int, bool: _as_bool, str: _as_str,
                                            type(None): _as_none}
