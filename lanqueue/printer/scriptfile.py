"""Event scripts as files to print, for printers whose API takes no G-code commands (PrusaLink,
Bambu Lab): the one place that decides what such a file holds and what it is called.

Why a script made only of comments and messages (M117/M118) prints nothing: printing a file is
a whole job on these printers (PrusaLink then refuses the next start for about 11 s while it
shows FINISHED), and a message on the screen is not worth a job.
"""

from __future__ import annotations

import hashlib

__all__ = ["script_file"]

_MESSAGES = ("M117", "M118")


def script_file(gcode: str) -> tuple[str, bytes] | None:
    """(printer-side name, bytes) of the file that runs `gcode`, or None if nothing needs to run.
    The name carries the content hash, so a script already on the printer is not sent again."""
    commands = [line.split(";", 1)[0].strip() for line in gcode.splitlines()]
    if all(not c or c.split()[0].upper() in _MESSAGES for c in commands):
        return None
    data = (gcode if gcode.endswith("\n") else gcode + "\n").encode()
    return f"lq-script-{hashlib.sha256(data).hexdigest()[:12]}.gcode", data
