"""The error hierarchy of lanqueue.

Every error a client can cause is a `LanqueueError` with an HTTP status; the API middleware maps
it to a JSON answer `{"error": message}` once, so handlers just raise.
"""

from __future__ import annotations

__all__ = [
    "LanqueueError",
    "BadRequest",
    "Forbidden",
    "NotFound",
    "Conflict",
    "PayloadTooLarge",
    "Unavailable",
    "InsufficientStorage",
]


class LanqueueError(Exception):
    """Base of every error that should reach a client as a clear JSON answer."""

    http_status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(LanqueueError):
    http_status = 400


class Forbidden(LanqueueError):
    http_status = 403


class NotFound(LanqueueError):
    http_status = 404


class Conflict(LanqueueError):
    """The request is valid but the current state does not allow it (OctoPrint answers 409)."""

    http_status = 409


class PayloadTooLarge(LanqueueError):
    http_status = 413


class Unavailable(LanqueueError):
    """A service the request needs is not there right now (printer offline, home node gone)."""

    http_status = 503


class InsufficientStorage(LanqueueError):
    """The disk under the data directory is full: nothing was written; retry once space is freed."""

    http_status = 507
