"""Line numbering, history and flow control: which numbered line may go out, and when.

Split from the printer state machine (protocol.py) because it answers one question only: given
the `ok`s and resend requests seen so far, what is the next line on the wire? Correctness rests
on the firmware (it runs a line only if its number is the last one plus one) and on this
window serving resends with the very bytes first sent; the credit bookkeeping here only decides
timing, so a wrong guess costs time, never a lost or repeated line.

Classic mode: one line in flight. Pipelined mode: up to `max_in_flight` lines whose bytes fit the
firmware's receive buffer (character counting).
"""

from __future__ import annotations

from collections import deque

from .gcode import LONG_RUNNING, command_code, format_line

__all__ = ["LineWindow", "RESEND_TOO_OLD"]

RESEND_TOO_OLD = "too old"
_SLACK = 16  # `N<n> ` + `*<cs>\n` around a command, for the credit check before numbering


class LineWindow:
    """Numbered lines in flight, the history they can be resent from, and the resend state."""

    def __init__(
        self,
        *,
        pipelined: bool = False,
        rx_buffer_size: int = 127,
        max_in_flight: int = 8,
        history_size: int = 2000,
        resend_grace: float = 0.1,
    ) -> None:
        self.max_lines = max_in_flight if pipelined else 1
        self.max_bytes = rx_buffer_size if pipelined else 1 << 30
        self.history_size = history_size
        self.resend_grace = resend_grace
        # Learnt from the first resend request of a connection: does an ok follow `Resend`?
        self.ok_after_resend: bool | None = None
        self.reset()

    def reset(self) -> None:
        """Forget every line: numbering restarts (the next line is N0, an `M110 N0`)."""
        self.last_n = -1
        self.first_n = 0
        self._ring: list[tuple[bytes, bool] | None] = [None] * self.history_size
        self.in_flight: deque[tuple[int, int, bool]] = deque()  # (number, bytes, long-running)
        self.in_flight_bytes = 0
        self.resend_from: int | None = None
        self.hold_until: float | None = None
        self._damp_line = -1
        self._damp = 0

    @property
    def settled(self) -> bool:
        """Nothing sent is unanswered and nothing waits to be resent."""
        return not self.in_flight and self.resend_from is None and self.hold_until is None

    @property
    def long_in_flight(self) -> bool:
        return any(entry[2] for entry in self.in_flight)

    # ------------------------------------------------------------------ sending
    def next_resend(self) -> bytes | None:
        """The next line to resend, if one is due and fits; None otherwise."""
        n = self.resend_from
        if n is None or self.hold_until is not None:
            return None
        data, long = self._ring[n % self.history_size]  # type: ignore[misc]
        if self.in_flight and (
            len(self.in_flight) >= self.max_lines or self.in_flight_bytes + len(data) > self.max_bytes
        ):
            return None
        self.resend_from = n + 1 if n < self.last_n else None
        self.in_flight.append((n, len(data), long))
        self.in_flight_bytes += len(data)
        return data

    def has_room(self, command: str) -> bool:
        """May a new line with this command go out now?"""
        if self.hold_until is not None or self.resend_from is not None:
            return False
        if not self.in_flight:
            return True
        return len(self.in_flight) < self.max_lines and self.in_flight_bytes + len(command) + _SLACK <= self.max_bytes

    def send(self, command: str) -> tuple[int, bytes]:
        """Number `command`, remember it for resends and count it in flight."""
        n = self.last_n = self.last_n + 1
        code = command_code(command)
        if code == "M110":
            # An M110 from a file or a user would move the firmware's counter away from ours:
            # make it set the number this very line carries, which keeps both in step.
            command = f"M110 N{n}"
            self.first_n = n
        data = format_line(n, command)
        long = code in LONG_RUNNING
        self._ring[n % self.history_size] = (data, long)
        self.in_flight.append((n, len(data), long))
        self.in_flight_bytes += len(data)
        return n, data

    # ------------------------------------------------------------------ answers
    def on_ok(self) -> int | None:
        """Number of the line this ok acknowledges, or None (the ok after `Resend`, or surplus)."""
        if self.hold_until is not None:
            self.hold_until = None
            self.ok_after_resend = True
            return None
        if not self.in_flight:
            return None
        n, size, _ = self.in_flight.popleft()
        self.in_flight_bytes -= size
        return n

    def on_resend(self, n: int, now: float, *, echo_possible: bool, connecting: bool) -> str | None:
        """Rewind to line n; returns RESEND_TOO_OLD when n is no longer in the history.

        `echo_possible`: the request came with "Line Number is not Last Line Number+1", which a
        line already on the wire before the last rewind also causes; a checksum error never does.
        """
        if self.ok_after_resend is not False:
            # Wait for the ok that usually follows, so it is not taken for the resent line's.
            self.hold_until = now + self.resend_grace
        if n == self._damp_line and self._damp > 0 and echo_possible:
            self._damp -= 1
            return None
        if n > self.last_n:
            if connecting and self.in_flight:
                # Our `N0 M110 N0` was refused before it could reset the counter: send it again.
                self.in_flight.clear()
                self.in_flight_bytes = 0
                self.resend_from = self.last_n
            # Otherwise nothing of ours is missing: every line was taken and still owes its ok.
            return None
        if n < self.first_n or n <= self.last_n - self.history_size:
            return RESEND_TOO_OLD
        self._damp_line = n
        later = sum(1 for entry in self.in_flight if entry[0] > n)
        self._damp = max(0, later - 1) if echo_possible else later
        # Marlin checks lines when it reads them but answers ok only after running them, so lines
        # before n were taken and their oks are still to come; n and later were thrown away.
        in_flight = self.in_flight
        while in_flight and in_flight[-1][0] >= n:
            self.in_flight_bytes -= in_flight.pop()[1]
        self.resend_from = n
        return None

    def tick(self, now: float) -> None:
        if self.hold_until is not None and now >= self.hold_until:
            self.hold_until = None
            self.ok_after_resend = False  # learnt: this firmware sends no ok after Resend

    def assume_oks_lost(self) -> None:
        """After silence: free the credits. If a line itself was lost, the next numbered line
        makes the firmware ask for it again."""
        self.in_flight.clear()
        self.in_flight_bytes = 0
        self.hold_until = None
