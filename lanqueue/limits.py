"""Limits on every value a client can get stored: nesting depth, size, and text that encodes.

Applied at the door (where client JSON is decoded and where form text is read), so a value that
is accepted can always be written to SQLite, read back, decoded and encoded again for every
reader. Without them a `metadata` nested 975 deep was stored and then broke `state/get` for
good (the stored column no longer decoded within Python's recursion limit), and a lone UTF-16
surrogate (`"\\ud800"`, legal in JSON text, not encodable as UTF-8) failed at the database write.

The walk is iterative so that checking a deep value cannot itself hit the recursion limit.
Imports nothing of the project but the error type.
"""

from __future__ import annotations

import math
from typing import Any

from .errors import BadRequest

__all__ = ["MAX_DEPTH", "MAX_INT", "MAX_ITEMS", "MAX_STRING_BYTES", "check_text", "check_value"]

MAX_DEPTH = 32  # nesting of lists/objects in one value; slicer metadata needs a handful
MAX_ITEMS = 20_000  # strings, numbers, lists and objects in one value
MAX_STRING_BYTES = 64 * 1024  # one string (key or value), encoded as UTF-8
MAX_INT = 2**63 - 1  # what an SQLite INTEGER column holds


def check_text(text: str, what: str = "text", max_bytes: int = MAX_STRING_BYTES) -> str:
    """`text` if it encodes as UTF-8 within `max_bytes`, else BadRequest naming `what`."""
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise BadRequest(f"{what} is not valid Unicode text (a lone UTF-16 surrogate such as \\ud800)") from None
    if size > max_bytes:
        raise BadRequest(f"{what} is too long ({size} bytes; at most {max_bytes})")
    return text


def check_value(value: Any, what: str = "value") -> Any:
    """`value` (decoded JSON) if every part of it is within the limits, else BadRequest."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    items = 0
    while stack:
        item, depth = stack.pop()
        items += 1
        if items > MAX_ITEMS:
            raise BadRequest(f"{what} has too many parts (at most {MAX_ITEMS})")
        if isinstance(item, str):
            check_text(item, what)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not -MAX_INT - 1 <= item <= MAX_INT:
                raise BadRequest(f"{what} holds a number too large to store ({str(item)[:20]}...)")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise BadRequest(f"{what} holds NaN or Infinity, which JSON cannot carry")
        elif isinstance(item, (list, tuple, dict)):
            if depth > MAX_DEPTH:
                raise BadRequest(f"{what} is nested too deeply (at most {MAX_DEPTH} levels)")
            if isinstance(item, dict):
                for key, sub in item.items():
                    if isinstance(key, str):
                        check_text(key, f"a key in {what}")
                    stack.append((sub, depth + 1))
            else:
                stack.extend((sub, depth + 1) for sub in item)
        else:
            raise BadRequest(f"{what} holds a {type(item).__name__}, which is not JSON")
    return value
