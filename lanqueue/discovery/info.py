"""What a peer says about itself, validated: the mDNS TXT codec and the hello parser.

Everything here comes from the network, so every field is checked and bounded; anything off is
a `BadPeerInfo` (a remote error) and the observation is dropped, never half-stored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import LanqueueError

__all__ = ["BadPeerInfo", "PeerInfo", "check_node_id", "MAX_ADDRESSES", "MAX_QUEUES", "SERVICE_TYPE"]

SERVICE_TYPE = "_lanqueue._tcp.local."  # the mDNS service type nodes register and browse

MAX_ID_LEN = 54
"""`lanqueue-<id>` must fit one DNS label (63 bytes): the mDNS instance name is built from it."""
MAX_NAME_LEN = 100
MAX_PROFILE_LEN = 100
MAX_QUEUES = 64
MAX_QUEUE_NAME_LEN = 100
MAX_ADDRESSES = 8
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,53}$")


class BadPeerInfo(LanqueueError):
    """A peer sent something we cannot use (remote error): the observation is dropped."""

    http_status = 400


def _text(value: Any, what: str, limit: int) -> str:
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise BadPeerInfo(f"{what} is not UTF-8") from None
    if not isinstance(value, str):
        raise BadPeerInfo(f"{what} must be text")
    if len(value) > limit:
        raise BadPeerInfo(f"{what} longer than {limit}")
    return value


def _int(value: Any, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise BadPeerInfo(f"{what} must be an integer") from None
    if isinstance(value, bool) or not lo <= number <= hi:
        raise BadPeerInfo(f"{what} out of range")
    return number


def check_node_id(node_id: str) -> None:
    """Our own id must satisfy what peers will check (local misuse: ValueError)."""
    try:
        _node_id(node_id)
    except BadPeerInfo as exc:
        raise ValueError(f"unusable node id {node_id!r}: {exc.message}") from None


def _node_id(value: Any) -> str:
    text = _text(value, "node_id", MAX_ID_LEN)
    if not _ID_RE.match(text):
        raise BadPeerInfo(
            "node_id has characters other than letters, digits, '_', '-' (it becomes a DNS label)"
        )
    return text


def _queues(values: Any) -> tuple[str, ...]:
    if not isinstance(values, (list, tuple)):
        raise BadPeerInfo("queues must be a list")
    if len(values) > MAX_QUEUES:
        raise BadPeerInfo(f"more than {MAX_QUEUES} queues")
    return tuple(_text(v, "queue name", MAX_QUEUE_NAME_LEN) for v in values)


@dataclass(frozen=True)
class PeerInfo:
    """What a peer says about itself (mDNS TXT or hello answer), validated.

    `addresses` are where it can be reached, best first; empty when the source did not say
    (a hello answer does not know under which address the caller reached it).
    """

    node_id: str
    name: str
    protocol: int
    api_port: int
    profile: str = ""
    queues: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()

    # TXT values are limited to 255 bytes each; queue names are joined with "," after
    # escaping "%" and ",", and whatever does not fit is left to the hello answer, which is
    # authoritative anyway ("queues_more=1" says so).
    def to_txt(self) -> dict[str, str]:
        """The mDNS TXT properties (never a secret: only what any LAN host may read)."""
        joined = ""
        more = False
        for q in self.queues:
            part = q.replace("%", "%25").replace(",", "%2C")
            candidate = part if not joined else f"{joined},{part}"
            if len(("queues=" + candidate).encode()) > 255:
                more = True
                break
            joined = candidate
        txt = {
            "id": self.node_id,
            "name": self.name.encode()[:200].decode("utf-8", "ignore"),
            "proto": str(self.protocol),
            "port": str(self.api_port),
            "profile": self.profile.encode()[:200].decode("utf-8", "ignore"),
            "queues": joined,
        }
        if more:
            txt["queues_more"] = "1"
        return txt

    @classmethod
    def from_txt(
        cls, props: Mapping[bytes, bytes | None], addresses: tuple[str, ...] = ()
    ) -> PeerInfo:
        """Parse TXT properties as received from the network (raises BadPeerInfo)."""
        p = {k.decode("utf-8", "replace"): (v or b"") for k, v in props.items()}
        if "id" not in p:
            raise BadPeerInfo("TXT has no id")
        raw_queues = _text(p.get("queues", b""), "queues", 255)
        queues = [
            q.replace("%2C", ",").replace("%25", "%") for q in raw_queues.split(",") if q
        ]
        return cls(
            node_id=_node_id(p["id"]),
            name=_text(p.get("name", b""), "name", MAX_NAME_LEN * 4),
            protocol=_int(p.get("proto", b"0"), "proto", 0, 1 << 30),
            api_port=_int(p.get("port"), "port", 1, 65535),
            profile=_text(p.get("profile", b""), "profile", MAX_PROFILE_LEN * 4),
            queues=_queues(queues),
            addresses=tuple(addresses[:MAX_ADDRESSES]),
        )

    @classmethod
    def from_hello(cls, obj: Any, address: str | None = None) -> PeerInfo:
        """Parse a hello answer (JSON already decoded; raises BadPeerInfo)."""
        if not isinstance(obj, dict):
            raise BadPeerInfo("hello answer is not an object")
        return cls(
            node_id=_node_id(obj.get("node_id")),
            name=_text(obj.get("name", ""), "name", MAX_NAME_LEN * 4),
            protocol=_int(obj.get("protocol"), "protocol", 0, 1 << 30),
            api_port=_int(obj.get("api_port"), "api_port", 1, 65535),
            profile=_text(obj.get("profile", ""), "profile", MAX_PROFILE_LEN * 4),
            queues=_queues(obj.get("queues", [])),
            addresses=(address,) if address else (),
        )
