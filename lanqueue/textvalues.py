"""Values people type as text: the one reading of a yes/no answer.

Options (`LANQUEUE_RESUME=yes`), form fields (`active=True`) and query flags (`?print=on`) all
read booleans the same way, so a value accepted in one place is never refused in another.
"""

from __future__ import annotations

__all__ = ["parse_bool"]

TRUE = frozenset(("true", "1", "yes", "on"))
FALSE = frozenset(("false", "0", "no", "off"))


def parse_bool(value: object) -> bool | None:
    """True or False for a bool or a yes/no text in any case; None for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in TRUE:
            return True
        if text in FALSE:
            return False
    return None
