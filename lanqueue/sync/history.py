"""The LAN history (`--lan-history`): one JSON line per decision of a queue's home.

The chaos tests check the LAN guarantees from these rows, so they are written only when asked
for. A row is handed to a thread and written there, never on the event loop (a disk that
stalls would otherwise stall every renewal), and the file is rotated so a node left with the
flag on cannot fill its disk. Rotation and the writer thread are the standard library's
(`RotatingFileHandler` behind a `QueueListener`).
"""

from __future__ import annotations

import json
import logging
import queue
from logging.handlers import QueueListener, RotatingFileHandler
from pathlib import Path
from typing import Any

__all__ = ["HistoryLog", "HISTORY_FILE"]

HISTORY_FILE = "lan-history.jsonl"


class HistoryLog:
    """Appends rows to `path` from a thread; `close` writes what is still queued."""

    def __init__(self, path: Path, *, max_bytes: int = 32 << 20, backups: int = 3) -> None:
        self.path = path
        handler = RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups, delay=True)
        handler.setFormatter(logging.Formatter("%(message)s"))
        self._queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self._listener = QueueListener(self._queue, handler)
        self._handler = handler
        self._listener.start()

    def write(self, row: dict[str, Any]) -> None:
        """Queue one row; the thread writes it (JSON text made here, so later edits of the
        caller's objects cannot change what is written)."""
        self._queue.put(logging.makeLogRecord({"msg": json.dumps(row), "args": None}))

    def close(self) -> None:
        self._listener.stop()  # drains the queue, then joins the thread
        self._handler.close()
