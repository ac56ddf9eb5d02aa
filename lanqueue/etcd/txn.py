"""Transaction operations of etcd v3 as plain values (no I/O), so the queue's rules can build
whole transactions in pure code and tests can read them."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

__all__ = ["Compare", "Delete", "Put", "Range", "b64"]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def prefix_end(prefix: bytes) -> bytes:
    """The range end that selects every key starting with `prefix` (etcd's convention)."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\0"


@dataclass(frozen=True)
class Compare:
    """One condition of a transaction: `target` of `key` compared with `value`.

    target is CREATE (create revision; 0 means the key does not exist), MOD, VERSION, VALUE or LEASE.
    """

    key: bytes
    target: str
    value: int | bytes
    result: str = "EQUAL"

    def to_json(self) -> dict[str, Any]:
        field_name = {"CREATE": "create_revision", "MOD": "mod_revision", "VERSION": "version",
                      "VALUE": "value", "LEASE": "lease"}[self.target]
        value = b64(self.value) if isinstance(self.value, bytes) else str(self.value)
        return {"key": b64(self.key), "target": self.target, "result": self.result, field_name: value}


@dataclass(frozen=True)
class Put:
    key: bytes
    value: bytes
    lease: int = 0

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"key": b64(self.key), "value": b64(self.value)}
        if self.lease:
            body["lease"] = str(self.lease)
        return {"request_put": body}


def _span(key: bytes, range_end: bytes) -> dict[str, Any]:
    """A key, or the keys [key, range_end), as the gateway spells them."""
    body = {"key": b64(key)}
    if range_end:
        body["range_end"] = b64(range_end)
    return body


@dataclass(frozen=True)
class Delete:
    key: bytes
    range_end: bytes = b""

    def to_json(self) -> dict[str, Any]:
        return {"request_delete_range": _span(self.key, self.range_end)}


@dataclass(frozen=True)
class Range:
    key: bytes
    range_end: bytes = b""

    def to_json(self) -> dict[str, Any]:
        return {"request_range": _span(self.key, self.range_end)}
