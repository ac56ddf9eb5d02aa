"""The error types of the LAN protocol core (h11 style), without HTTP.

`LocalProtocolError`: this node misused the core (a bug, or a user request that cannot be done
here, such as deleting a job this node is not home of). `RemoteProtocolError`: a peer sent
something the protocol does not allow (wrong queue, a table would overflow); nothing from that
message was applied or stored. These say what went wrong in protocol terms only: the asyncio
adapter (`sync.service.http_error`) is the one place that turns them into the API's errors.
"""

from __future__ import annotations

__all__ = ["InvalidEdit", "LocalProtocolError", "NotHomeError", "ProtocolError", "RemoteProtocolError"]


class ProtocolError(Exception):
    """Base of the LAN protocol's errors."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class LocalProtocolError(ProtocolError):
    """The caller asked for something the protocol state does not allow."""


class NotHomeError(LocalProtocolError):
    """Only the job's home may do this; `home` says which node that is."""

    def __init__(self, message: str, home: str | None) -> None:
        super().__init__(message)
        self.home = home


class InvalidEdit(LocalProtocolError):
    """An edit of a LAN job with a value the job cannot take (checked before anything changes)."""


class RemoteProtocolError(ProtocolError):
    """A peer broke the protocol; the message was rejected and nothing from it stored."""
