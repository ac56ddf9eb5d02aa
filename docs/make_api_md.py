"""Write docs/api.md from the node's OpenAPI document (lanqueue/api/openapi.py).

    python docs/make_api_md.py          # rewrite docs/api.md
    python docs/make_api_md.py --check  # exit 1 if docs/api.md is out of date (a test runs this)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from lanqueue.api.openapi import document

TARGET = Path(__file__).with_name("api.md")


def _type_of(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list of {_type_of(schema.get('items', {}))}"
    if "enum" in schema:
        return " or ".join(json.dumps(v) for v in schema["enum"])
    return str(kind)


def _fields(body: dict[str, Any]) -> list[str]:
    lines = []
    for ctype, content in body.get("content", {}).items():
        schema = content.get("schema", {})
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        if not props:
            lines.append(f"Body ({ctype}): {_type_of(schema)}. {schema.get('description', '')}".rstrip())
            continue
        lines.append(f"Body ({ctype}):")
        lines.append("")
        lines.append("| field | type | required | meaning |")
        lines.append("|---|---|---|---|")
        for name, prop in props.items():
            desc = str(prop.get("description", "")).replace("\n", " ").replace("|", "\\|")
            lines.append(f"| `{name}` | {_type_of(prop)} | {'yes' if name in required else ''} | {desc} |")
        lines.append("")
    return lines


def render(doc: dict[str, Any]) -> str:
    out = [
        "# HTTP API",
        "",
        "Generated from the node's OpenAPI document (`GET /lanqueue/openapi.json`) by",
        "`docs/make_api_md.py`; do not edit by hand.",
        "",
        "Every route but the web page's static files, this document and the peer protocol needs the",
        "node's API key: header `X-Api-Key: KEY`, `Authorization: Bearer KEY`, or `?apikey=KEY`.",
        "Errors are JSON `{\"error\": \"...\"}` with a 4xx status; bad input never changes anything.",
        "",
    ]
    for path, ops in sorted(doc["paths"].items()):
        for method, op in ops.items():
            if method not in ("get", "post", "put", "delete", "patch"):
                continue
            out.append(f"## `{method.upper()} {path}`")
            out.append("")
            if op.get("summary"):
                out.append(op["summary"])
                out.append("")
            if op.get("description"):
                out.append(op["description"])
                out.append("")
            if "requestBody" in op:
                out.extend(_fields(op["requestBody"]))
            responses = "; ".join(f"{code} {r.get('description', '')}".strip().rstrip(".") for code, r in op.get("responses", {}).items())
            if responses:
                out.append(f"Answers: {responses}.")
                out.append("")
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str]) -> int:
    text = render(document())
    if "--check" in argv:
        current = TARGET.read_text() if TARGET.exists() else ""
        if current != text:
            print("docs/api.md is out of date: run python docs/make_api_md.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
