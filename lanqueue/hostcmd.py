"""`@pause`: the one host command of a script, read in one place.

A line whose command part (before any `;` comment) is `@pause`, in any case, is never sent to
the printer: the driver sends the script up to it and waits for a person (`runner/continue`).
The driver splits scripts here, and attended hours ask here whether a script waits for a person,
so the two can never read the same line differently.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["PAUSE_LINE", "is_pause_line", "split_at_pauses", "waits_for_person"]

PAUSE_LINE = "@pause"


def is_pause_line(line: str) -> bool:
    return line.split(";", 1)[0].strip().lower() == PAUSE_LINE


def split_at_pauses(gcode: str) -> list[str]:
    """The G-code between `@pause` lines: n pauses give n + 1 parts (some maybe empty)."""
    parts: list[list[str]] = [[]]
    for line in gcode.splitlines():
        if is_pause_line(line):
            parts.append([])
        else:
            parts[-1].append(line)
    return ["\n".join(p) for p in parts]


def waits_for_person(scripts: Iterable[str]) -> bool:
    """Some script holds the queue for a person (has an `@pause` line)."""
    return any(is_pause_line(line) for s in scripts for line in s.splitlines())
