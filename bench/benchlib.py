"""Pieces the benchmark scripts share: percentiles and the replies of an instant printer.

The benches drive nodes against a printer simulator on `socket://` that answers `ok` at once, so
the figures measure the node, not a firmware. Each bench keeps its own bookkeeping of which lines
arrived when; what a printer answers lives here once.
"""

from __future__ import annotations

__all__ = ["pct", "command_of", "reply_to"]


def pct(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..1); NaN for no values."""
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def command_of(line: str) -> tuple[str, str]:
    """(G-code word, command text) of a host line, without its line number and checksum."""
    body = line.split("*", 1)[0]
    if body.startswith("N"):
        body = body.split(" ", 1)[1] if " " in body else ""
    return body.split(" ", 1)[0].upper(), body


def reply_to(code: str) -> bytes:
    """What an instant Marlin answers: capabilities to M115, temperatures to M105, else ok."""
    if code == "M115":
        return b"FIRMWARE_NAME:BenchSim 1.0 PROTOCOL_VERSION:1.0\nCap:AUTOREPORT_TEMP:0\nok\n"
    if code == "M105":
        return b"ok T:21.0 /0.0 B:21.0 /0.0\n"
    return b"ok\n"
