"""The OpenAPI document at /lanqueue/openapi.json describes exactly the routes the node serves.

When this fails after you added a route: describe it with `describe(...)` in
lanqueue/api/openapi.py (the message below names each missing method and path).
"""

from __future__ import annotations

import re

from aiohttp import web

from lanqueue.api.openapi import OPENAPI_PATH

METHODS = {"get", "post", "put", "delete", "patch", "head", "options"}


def registered_routes(app: web.Application) -> set[tuple[str, str]]:
    """(method, OpenAPI path template) of every route; HEAD that aiohttp adds beside GET is implied."""
    found: set[tuple[str, str]] = set()
    for route in app.router.routes():
        resource = route.resource
        if resource is None:
            continue
        path = resource.canonical
        if isinstance(resource, web.StaticResource):
            path = path.rstrip("/") + "/{filename}"
        path = re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", path)  # {path:.+} -> {path}
        method = route.method.lower()
        if method == "*":
            method = "any"
        found.add((method, path))
    return {(m, p) for (m, p) in found if not (m == "head" and ("get", p) in found)}


def documented_routes(doc: dict) -> set[tuple[str, str]]:
    return {(m, p) for p, ops in doc["paths"].items() for m in ops if m in METHODS}


async def test_served_without_a_key(api):
    r = await api.get(OPENAPI_PATH, headers={"X-Api-Key": ""})
    assert r.status == 200 and r.content_type == "application/json"
    doc = await r.json()
    assert doc["openapi"].startswith("3.0")
    schemes = doc["components"]["securitySchemes"]
    assert schemes["ApiKeyHeader"] == {"type": "apiKey", "in": "header", "name": "X-Api-Key"}
    assert schemes["Bearer"]["scheme"] == "bearer"
    assert schemes["ApiKeyQuery"]["in"] == "query"


async def test_every_route_is_documented_and_every_documented_route_exists(node_factory):
    client, node = await node_factory()
    doc = await (await client.get(OPENAPI_PATH)).json()
    served = registered_routes(client.server.app)
    documented = documented_routes(doc)
    missing = sorted(served - documented)
    stale = sorted(documented - served)
    msg = []
    if missing:
        msg.append(
            "routes served but not in the OpenAPI document; add a describe(...) call in "
            "lanqueue/api/openapi.py for each:\n" + "\n".join(f"  {m.upper()} {p}" for m, p in missing)
        )
    if stale:
        msg.append(
            "routes in the OpenAPI document that the node does not serve (remove or fix them in "
            "lanqueue/api/openapi.py):\n" + "\n".join(f"  {m.upper()} {p}" for m, p in stale)
        )
    assert not msg, "\n".join(msg)


async def test_document_is_well_formed(api):
    doc = await (await api.get(OPENAPI_PATH)).json()
    schemas = doc["components"]["schemas"]
    refs: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                refs.append(node["$ref"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    for ref in refs:
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
    ids = []
    for path, ops in doc["paths"].items():
        params = set(re.findall(r"\{(\w+)\}", path))
        for method, op in ops.items():
            where = f"{method.upper()} {path}"
            assert op.get("summary"), where
            assert op["responses"], where
            assert any(s.startswith("2") for s in op["responses"]), f"{where} has no success answer"
            ids.append(op["operationId"])
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == params, f"{where}: path parameters {params} but declared {declared}"
            for status, resp in op["responses"].items():
                if status.startswith(("4", "5")):
                    assert resp["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}, where
            if op.get("security") != []:
                assert "403" in op["responses"], f"{where} needs a key but does not document 403"
            body = op.get("requestBody")
            if body:
                for ctype, media in body["content"].items():
                    schema = media["schema"]
                    for name in schema.get("required", []):
                        assert name in schema.get("properties", {}), f"{where}: required {name} not described"
    assert len(ids) == len(set(ids)), "operationIds must be unique"


async def test_public_paths_match_the_auth_middleware(api):
    """Operations marked public in the document answer without a key; the rest refuse."""
    doc = await (await api.get(OPENAPI_PATH)).json()
    for path, ops in doc["paths"].items():
        if "{" in path:
            continue
        for method, op in ops.items():
            r = await api.request(method.upper(), path, headers={"X-Api-Key": ""})
            asks_for_key = r.status == 403 and "API key" in (await r.json()).get("error", "")
            if op.get("security") == []:  # peer routes may still refuse an unsigned request
                assert not asks_for_key, f"{method.upper()} {path} is documented public but asks for a key"
            else:
                assert asks_for_key, f"{method.upper()} {path} answered {r.status} without a key"
