"""Attended hours: when a person is there to clear a printer's bed.

A farm that clears beds by hand (the default: a `@pause` after every print) loses a whole night
when a print ends at 19:00 and nobody comes until 08:00, and a long print started at 17:55 may
end in the middle of the night. With attended hours the driver starts a print only if the
slicer's estimate says it ends while someone is there; a shorter job that fits is taken instead,
and the long one waits until it fits (a 14-hour print started at 18:00 ending at 08:00 fits).

Pure: the schedule is parsed once and asked about a local datetime; the driver passes the
clock. Written as `Mon-Fri 08:00-18:00, Sat 09:00-12:00` (days optional: every day; a range
that ends before it starts runs past midnight; `24:00` is the end of the day).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from .hostcmd import waits_for_person

__all__ = ["AttendedHours", "ScheduleError", "parse_attended", "waits_for_person"]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_ENTRY = re.compile(r"^(?:(?P<days>[A-Za-z]{3}(?:-[A-Za-z]{3})?)\s+)?(?P<ranges>\d.*)$")
_RANGE = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


class ScheduleError(ValueError):
    """The attended hours text cannot be read; the message says where."""


@dataclass(frozen=True)
class Window:
    day: int  # 0 = Monday
    start: int  # minutes after midnight
    end: int  # minutes after midnight, > start (a window past midnight is split in two)


@dataclass(frozen=True)
class AttendedHours:
    text: str
    windows: tuple[Window, ...]

    def attended(self, when: datetime) -> bool:
        """Someone is there at `when` (local time)."""
        minute = when.hour * 60 + when.minute
        return any(w.day == when.weekday() and w.start <= minute < w.end for w in self.windows)

    def fits(self, start: datetime, seconds: float | None) -> bool:
        """A print started at `start` taking `seconds` ends while someone is there; a print of
        unknown length fits (nothing says otherwise)."""
        if seconds is None:
            return True
        return self.attended(start + timedelta(seconds=max(0.0, seconds)))


def parse_attended(text: str) -> AttendedHours:
    """`Mon-Fri 08:00-18:00, Sat 09:00-12:00 14:00-16:00` -> AttendedHours; ScheduleError if not."""
    windows: list[Window] = []
    entries = [e.strip() for e in re.split(r"[,;]", text) if e.strip()]
    if not entries:
        raise ScheduleError("attended hours are empty; leave the option out for 'always'")
    for entry in entries:
        m = _ENTRY.match(entry)
        if m is None:
            raise ScheduleError(f"attended hours: cannot read {entry!r} (like 'Mon-Fri 08:00-18:00')")
        days = _days(m.group("days"), entry)
        for part in m.group("ranges").split():
            start, end = _range(part, entry)
            for day in days:
                if end > start:
                    windows.append(Window(day, start, end))
                else:  # past midnight: the evening of `day` and the morning of the next day
                    windows.append(Window(day, start, 24 * 60))
                    if end:
                        windows.append(Window((day + 1) % 7, 0, end))
    return AttendedHours(text, tuple(windows))


def _days(spec: str | None, entry: str) -> list[int]:
    if spec is None:
        return list(range(7))
    first, _, last = spec.lower().partition("-")
    if first not in DAYS or (last and last not in DAYS):
        raise ScheduleError(f"attended hours: unknown day in {entry!r} (Mon Tue Wed Thu Fri Sat Sun)")
    a, b = DAYS.index(first), DAYS.index(last or first)
    return [(a + i) % 7 for i in range((b - a) % 7 + 1)]


def _range(part: str, entry: str) -> tuple[int, int]:
    m = _RANGE.match(part)
    if m is None:
        raise ScheduleError(f"attended hours: cannot read the time range {part!r} in {entry!r} (like 08:00-18:00)")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2):
        raise ScheduleError(f"attended hours: no such time in {part!r}")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end:
        raise ScheduleError(f"attended hours: {part!r} is empty")
    return start, end % (24 * 60) if end != 24 * 60 else end
