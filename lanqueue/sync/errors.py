"""The two error types of the LAN protocol core (h11 style).

`LocalProtocolError`: this node misused the core (a bug or a user request that cannot be done
here, such as deleting a job this node is not home of). `RemoteProtocolError`: a peer sent
something the protocol does not allow (wrong queue, a table would overflow); nothing from that
message was stored. Both are `LanqueueError`s so the API layer maps them to JSON answers once.
"""

from __future__ import annotations

from ..errors import BadRequest, Conflict

__all__ = ["LocalProtocolError", "RemoteProtocolError", "NotHomeError"]


class LocalProtocolError(Conflict):
    """The caller asked for something the protocol state does not allow."""


class NotHomeError(LocalProtocolError):
    """Only the job's home may do this; `home` says which node that is."""

    def __init__(self, message: str, home: str | None) -> None:
        super().__init__(message)
        self.home = home


class RemoteProtocolError(BadRequest):
    """A peer broke the protocol; the message was rejected and nothing from it stored."""
