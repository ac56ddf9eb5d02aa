"""Edits of LAN jobs, checked without I/O: which fields a LAN job lets users change, what values
they may take, and the rank that puts a job after another.

The home node checks every edit here, whether it comes from its own API or is forwarded by a
peer (a peer's edit is untrusted input), before the protocol core writes the record.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..model import rank_between
from .errors import InvalidEdit
from .records import JobRecord

__all__ = ["EDITABLE", "MAX_COUNT", "MAX_NAME", "OPS", "clean_update", "rank_after"]

#: What users may change on a LAN job (its sets travel whole: edit them in the local queue).
EDITABLE = ("name", "draft", "count")
#: The edits a home applies: change fields, delete the job, start it over.
OPS = ("update", "delete", "reset")
MAX_NAME = 1000
MAX_COUNT = 100_000


def clean_update(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of an "update" edit, checked (name, draft, count, and rank for moves);
    `InvalidEdit` names the first bad one. Unknown fields are ignored, as before."""
    clean: dict[str, Any] = {}
    if "name" in fields:
        name = fields["name"]
        if not isinstance(name, str) or not name or len(name) > MAX_NAME:
            raise InvalidEdit("bad name")
        clean["name"] = name
    if "draft" in fields:
        if not isinstance(fields["draft"], bool):
            raise InvalidEdit("bad draft")
        clean["draft"] = fields["draft"]
    if "rank" in fields:
        rank = fields["rank"]
        if isinstance(rank, bool) or not isinstance(rank, (int, float)) or not math.isfinite(rank):
            raise InvalidEdit("bad rank")
        clean["rank"] = float(rank)
    if "count" in fields:
        count = fields["count"]
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
            raise InvalidEdit(f"a LAN job's count must be between 1 and {MAX_COUNT}")
        clean["count"] = count
    return clean


def rank_after(ordered: Sequence[JobRecord], job_id: str, after: str | None) -> float | None:
    """The rank that puts `job_id` right after `after` (None: first) among `ordered` (the
    queue's live jobs in rank order); None if `after` is not among them."""
    others = [r for r in ordered if r.id != job_id]
    if after is None:
        return rank_between(None, others[0].rank if others else None)
    ids = [r.id for r in others]
    if after not in ids:
        return None
    i = ids.index(after)
    return rank_between(others[i].rank, others[i + 1].rank if i + 1 < len(others) else None)
