"""Log lines that a client cannot forge and a flood cannot multiply.

Text from requests (paths, names, headers) reaches log messages; with a newline in it a client
could write a line of its own into the log, and with terminal escapes rewrite what an operator
sees. `SafeLogFilter` escapes control characters in every message (tracebacks, which the node
writes itself, keep their lines). It also rate-limits: the same message template from the same
place is written at most `burst` times per `window` seconds, then one line says how many were
left out, so a flood of refused connections or bad requests grows the log by a bounded amount
(asyncio's `socket.accept() out of system resource` used to be written thousands of times a
second).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

__all__ = ["SafeLogFilter", "escape", "install"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape(text: str) -> str:
    """`text` with control characters written as escapes (\\n, \\x1b, ...). No codec lookup:
    it must work when the process is out of file descriptors."""
    return _CONTROL.sub(_escape_char, text)


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 256 else f"\\u{code:04x}")


class SafeLogFilter(logging.Filter):
    def __init__(self, burst: int = 10, window: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.burst, self.window, self.clock = burst, window, clock
        self._seen: dict[tuple[str, str], list[float]] = {}  # key -> [window start, count]

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._admit(record):
            return False
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not lose the line
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = escape(message), None
        return True

    def _admit(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = self.clock()
        entry = self._seen.get(key)
        if entry is None or now - entry[0] >= self.window:
            dropped = int(entry[1]) - self.burst if entry is not None and entry[1] > self.burst else 0
            self._seen[key] = [now, 1]
            if len(self._seen) > 10_000:  # keep the table small under a flood of distinct messages
                self._seen = {key: self._seen[key]}
            if dropped:
                record.msg = f"{record.msg} (and {dropped} more like this in the last {self.window:.0f} s)"
            return True
        entry[1] += 1
        return entry[1] <= self.burst


def install(handler: logging.Handler) -> SafeLogFilter:
    """Put the filter on `handler` (every line written through it is checked)."""
    safe = SafeLogFilter()
    handler.addFilter(safe)
    return safe
