"""Reading form fields the way Continuous Print clients send them, strictly.

Clients send form-encoded bodies with booleans as `true`/`True`, lists as repeated fields,
`name[]` fields, JSON list strings or comma-separated text, and internal routes wrap structured
data in one `json` field. Every reader here either returns a clean Python value or raises
BadRequest naming the field, so handlers never see half-parsed input and never write half a job.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from ..errors import BadRequest, PayloadTooLarge
from ..limits import check_text, check_value
from ..textvalues import parse_bool

__all__ = [
    "Form",
    "read_form",
    "read_json",
    "MAX_COUNT",
    "MAX_TEXT",
    "MAX_LIST",
    "loads",
]

MAX_COUNT = 100_000
MAX_TEXT = 1_000
MAX_LIST = 64
MAX_FORM_BYTES = 1 << 20



class Form:
    """Typed access to one request's form fields (or the object of its `json` field)."""

    def __init__(self, fields: Mapping[str, Any]) -> None:
        self._fields = fields

    @classmethod
    def from_object(cls, obj: Any, what: str = "json") -> Form:
        if not isinstance(obj, dict):
            raise BadRequest(f"{what} must be a JSON object")
        return cls(MultiDict((str(k), v) for k, v in obj.items()))

    def names(self) -> list[str]:
        """Every field name present (a `name[]` field under its plain name)."""
        return [k[:-2] if k.endswith("[]") else k for k in self._fields]

    def has(self, name: str) -> bool:
        return name in self._fields or f"{name}[]" in self._fields

    def raw(self, name: str) -> Any:
        return self._fields.get(name)

    def text(self, name: str, default: str | None = None, *, required: bool = False, max_len: int = MAX_TEXT) -> str | None:
        value = self._fields.get(name)
        if _absent(value, name, required):
            return default
        if not isinstance(value, str):
            raise BadRequest(f"field {name!r} must be a string")
        if len(value) > max_len or "\x00" in value:
            raise BadRequest(f"field {name!r} is too long or contains NUL")
        return check_text(value, f"field {name!r}")

    def boolean(self, name: str, default: bool | None = None, *, required: bool = False) -> bool | None:
        value = self._fields.get(name)
        if _absent(value, name, required):
            return default
        parsed = parse_bool(value)
        if parsed is None:
            raise BadRequest(f"field {name!r} must be true or false, not {value!r}")
        return parsed

    def integer(
        self, name: str, default: int | None = None, *, required: bool = False, low: int = 0, high: int = MAX_COUNT
    ) -> int | None:
        value = self._fields.get(name)
        if _absent(value, name, required):
            return default
        if isinstance(value, bool):
            raise BadRequest(f"field {name!r} must be an integer")
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise BadRequest(f"field {name!r} must be an integer, not {value!r}") from None
        if not isinstance(value, int):
            raise BadRequest(f"field {name!r} must be an integer")
        if not low <= value <= high:
            raise BadRequest(f"field {name!r} must be between {low} and {high}")
        return value

    def number(
        self, name: str, default: float | None = None, *, required: bool = False, low: float = 0, high: float = MAX_COUNT
    ) -> float | None:
        """A decimal number (a JSON number or its text); NaN and infinities are out of any range."""
        value = self._fields.get(name)
        if _absent(value, name, required):
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise BadRequest(f"field {name!r} must be a number")
        try:
            number = float(value)
        except ValueError:
            raise BadRequest(f"field {name!r} must be a number, not {value!r}") from None
        if not low <= number <= high:  # NaN compares false: refused too
            raise BadRequest(f"field {name!r} must be between {low:g} and {high:g}")
        return number

    def string_list(self, name: str, *, allow_empty_items: bool = False, max_len: int = MAX_TEXT) -> list[Any] | None:
        """A list of strings from any of the encodings clients use; None when absent.

        Empty items become None when `allow_empty_items` (a materials entry of "" means any
        material); otherwise they are an error.
        """
        items: list[Any]
        if isinstance(self._fields, (MultiDict, MultiDictProxy)):
            values = self._fields.getall(name, []) + self._fields.getall(f"{name}[]", [])
        else:
            values = [v for k in (name, f"{name}[]") if (v := self._fields.get(k)) is not None]
        if not values:
            return None
        if len(values) == 1 and isinstance(values[0], list):
            items = values[0]
        elif len(values) == 1 and isinstance(values[0], str):
            items = _split_list_text(values[0], name)
        else:
            items = list(values)
        if len(items) > MAX_LIST:
            raise BadRequest(f"field {name!r} has too many items")
        out: list[Any] = []
        for item in items:
            if item is None or item == "":
                if not allow_empty_items:
                    raise BadRequest(f"field {name!r} may not contain empty or null items")
                out.append(None)
            elif isinstance(item, str) and len(item) <= max_len and "\x00" not in item:
                out.append(item)
            else:
                raise BadRequest(f"field {name!r} must be a list of strings")
        return out

    def id_list(self, name: str) -> list[int]:
        """`job_ids[]=1&job_ids[]=2`, `job_ids=1,2` or a JSON list -> [1, 2]."""
        ids = []
        for item in self._list_items(name):
            if isinstance(item, bool) or not isinstance(item, (int, str)):
                raise BadRequest(f"field {name!r} must hold integer ids, not {item!r}")
            try:
                number = int(item)
            except ValueError:
                raise BadRequest(f"field {name!r} must hold integer ids, not {item!r}") from None
            if not 0 < number < 2**62:
                raise BadRequest(f"field {name!r} holds an id out of range: {number}")
            ids.append(number)
        return ids

    def list_items(self, name: str) -> list[Any]:
        """The raw items of a list field, for a caller that checks them itself (job ids, whose
        form depends on the queue)."""
        return self._list_items(name)

    def _list_items(self, name: str) -> list[Any]:
        """The raw items of a list field (JSON list items keep their JSON type)."""
        if isinstance(self._fields, (MultiDict, MultiDictProxy)):
            values = self._fields.getall(name, []) + self._fields.getall(f"{name}[]", [])
        else:
            values = [v for k in (name, f"{name}[]") if (v := self._fields.get(k)) is not None]
        if len(values) == 1 and isinstance(values[0], list):
            items = values[0]
        elif len(values) == 1 and isinstance(values[0], str):
            items = _split_list_text(values[0], name)
        else:
            items = list(values)
        if len(items) > MAX_LIST:
            raise BadRequest(f"field {name!r} has too many items")
        return items

    def json_field(self, name: str = "json", *, required: bool = True) -> Any:
        value = self._fields.get(name)
        if value is None or value == "":
            if required:
                raise BadRequest(f"field {name!r} with a JSON document is required")
            return None
        if not isinstance(value, str):
            return value
        try:
            return loads(value)
        except (ValueError, RecursionError):
            raise BadRequest(f"field {name!r} is not valid JSON") from None


def _absent(value: Any, name: str, required: bool) -> bool:
    """True when a field is not given (missing or empty); a missing required one is an error."""
    if value is None or value == "":
        if required:
            raise BadRequest(f"field {name!r} is required")
        return True
    return False


def _not_json(token: str) -> Any:
    raise ValueError(f"{token} is not JSON")


def _finite(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):  # 1e400: it would be written back as Infinity
        raise ValueError(f"{token} is out of range")
    return value


def loads(text: str | bytes) -> Any:
    """json.loads for client input, strict: NaN and Infinity (which Python accepts and would write
    back into answers, making them invalid JSON for every browser) are refused as ValueError.
    A decoded value outside the stored-value limits (depth, size, text that is not UTF-8) is a
    BadRequest saying which (lanqueue.limits)."""
    return check_value(json.loads(text, parse_constant=_not_json, parse_float=_finite), "the JSON")


def _split_list_text(text: str, name: str) -> list[Any]:
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            value = loads(stripped)
        except (ValueError, RecursionError):
            raise BadRequest(f"field {name!r} is not a valid JSON list") from None
        if not isinstance(value, list):
            raise BadRequest(f"field {name!r} must be a list")
        return value
    if stripped == "":
        return []
    return [part.strip() for part in stripped.split(",")]


async def read_json(request: web.Request, what: str = "the body", limit: int = MAX_FORM_BYTES) -> Any:
    """The request's JSON body, at most `limit` bytes (also when sent chunked). Bad JSON,
    including nesting too deep for the decoder, is a BadRequest, never a 500."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"{what} is larger than {limit} bytes")
    body = bytearray()
    while chunk := await request.content.read(1 << 16):
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"{what} is larger than {limit} bytes")
    try:
        return loads(bytes(body))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequest(f"{what} is not valid JSON") from None


async def read_form(request: web.Request) -> Form:
    """The request's urlencoded or multipart form. A raw JSON body where a form is expected is
    accepted too (some scripts send one); anything else is a clear 400."""
    if request.content_length is not None and request.content_length > MAX_FORM_BYTES:
        raise BadRequest("form too large")
    ctype = request.content_type
    if ctype == "application/json":
        return Form.from_object(await read_json(request), "JSON body")
    if ctype in ("application/x-www-form-urlencoded", "multipart/form-data", "", "application/octet-stream"):
        # The application's own limit is the upload size (1 GiB by default), and a chunked body
        # has no Content-Length to check above: cap what post() may buffer at the form limit
        # (413 past it).
        try:
            bounded = request.clone(client_max_size=MAX_FORM_BYTES)
        except TypeError:  # aiohttp before clone() took client_max_size
            bounded = request
            bounded._client_max_size = MAX_FORM_BYTES  # noqa: SLF001
        try:
            fields = await bounded.post()
        except (ValueError, UnicodeDecodeError, AssertionError):
            raise BadRequest("body is not a valid form") from None
        for value in fields.values():
            if not isinstance(value, str):
                raise BadRequest("this route takes no file uploads")
        return Form(fields)
    raise BadRequest(f"unsupported content type {ctype!r}; send a form")
