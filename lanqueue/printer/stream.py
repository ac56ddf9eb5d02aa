"""Commands of a G-code file read straight from disk, for prints of hundreds of megabytes.

A buffered binary file and `readline()` keep memory flat whatever the file size; the position
after each command gives byte progress for free. Reads come from the page cache in 256 KiB
blocks, short enough not to stall the event loop.
"""

from __future__ import annotations

from pathlib import Path

from .gcode import strip_comment

__all__ = ["GcodeFile"]

_BUFFER = 256 * 1024


class GcodeFile:
    """Iterator of the commands of a file, comments and blank lines stripped."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._file = open(self.path, "rb", buffering=_BUFFER)  # noqa: SIM115 - closed by close()
        self.size = self.path.stat().st_size
        self.position = 0
        self.lines = 0
        self.exhausted = False

    def next_command(self) -> str | None:
        """The next non-empty command, or None at the end of the file (then the file is closed)."""
        if self.exhausted:
            return None
        readline = self._file.readline
        while True:
            raw = readline()
            if not raw:
                self.close()
                return None
            self.position += len(raw)
            text = raw.decode("ascii", "replace")
            if ";" in text:
                text = strip_comment(text)
            else:
                text = text.strip()
            if text:
                self.lines += 1
                return text

    def close(self) -> None:
        self.exhausted = True
        self._file.close()
