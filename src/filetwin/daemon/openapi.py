"""The OpenAPI document served at GET /openapi.json, generated from filetwin.shapes.

Nothing here is written by hand but the prose around the shapes: each route,
its body, its query parameters and its answer come from ``shapes.ROUTES``,
the same declarations the daemon validates requests with. docs/api.md's
endpoint table is rendered here too (``render_endpoints``; a test keeps the
page current).
"""

from __future__ import annotations

from typing import Any

import msgspec

from .. import shapes
from ..shapes import ROUTES, ErrorAnswer, Route

#: the error statuses every route may answer with, and what they mean
ERRORS: dict[str, str] = {
    "400": "bad input: the message names the rule broken",
    "403": "the caller's uid may not use this daemon",
    "404": "no such entry or version",
    "405": "wrong method for the route",
    "409": "conflict (already protected, a manual entry's recovery, ...)",
    "413": "body over 64 MiB",
    "500": "the operation failed, or a bug (the daemon's log has details)",
    "503": "too many connections at once, or the management table failed; try again",
    "507": "no space left in the state directory",
}
_REF = "#/components/schemas/{name}"


def _schemas() -> tuple[dict[int, Any], list[Any], dict[str, Any]]:
    """(schema of each route's body, answer and query by position, component schemas)."""
    types: list[Any] = [ErrorAnswer]
    for r in ROUTES:
        types += [r.body, r.query, r.answer]
    present = [t for t in types if t is not None]
    generated, components = msgspec.json.schema_components(present, ref_template=_REF)
    by_type: dict[int, Any] = {}
    for t, schema in zip(present, generated, strict=True):
        by_type.setdefault(id(t), schema)
    return by_type, present, components


def _inline(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """A $ref to a component replaced by the component (request bodies and queries
    are read field by field: clients and the fuzzer see their properties directly)."""
    ref = schema.get("$ref")
    if ref is None:
        return schema
    return dict(components[ref.rsplit("/", 1)[1]])


def _query_parameters(query: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(query.get("required", ()))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": schema}
        for name, schema in query.get("properties", {}).items()
    ]


def _operation(
    r: Route, by_type: dict[int, Any], components: dict[str, Any]
) -> dict[str, Any]:
    error = {JSON_MEDIA: {"schema": {"$ref": _REF.format(name="ErrorAnswer")}}}
    answer = by_type[id(r.answer)] if r.answer is not None else {}
    op: dict[str, Any] = {
        "summary": r.summary,
        "operationId": r.method.lower() + r.path.replace("/", "_").replace(".", "_"),
        "responses": {
            "200": {
                "description": r.note or "success",
                "content": {r.media: {"schema": answer}},
            },
            **{code: {"description": what, "content": error} for code, what in ERRORS.items()},
        },
    }
    if r.body is not None:
        schema = _inline(by_type[id(r.body)], components)
        op["requestBody"] = {
            "required": bool(schema.get("required")),
            "content": {JSON_MEDIA: {"schema": schema}},
        }
    params = _query_parameters(_inline(by_type[id(r.query)], components))
    if params:
        op["parameters"] = params
    return op


JSON_MEDIA = shapes.JSON


def build() -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``shapes.ROUTES``."""
    by_type, _present, components = _schemas()
    paths: dict[str, dict[str, Any]] = {}
    for r in ROUTES:
        paths.setdefault(r.path, {})[r.method.lower()] = _operation(r, by_type, components)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "filetwin daemon API",
            "version": "1",
            "description": "HTTP+JSON on the Unix socket STATE_DIR/filetwin.sock; only its "
            "owner's uid and root are served. Paths that are not UTF-8 travel as str with "
            "surrogate escapes (lone surrogates U+DC80-U+DCFF in JSON, raw percent-escaped "
            "bytes in query strings).",
        },
        "paths": paths,
        "x-write-stream": {
            "socket": "STATE_DIR/journal.sock",
            "description": "Binary write stream for busy writers (see docs/api.md): one JSON "
            'line {"path": ...} answered by {"ok", "seq", "sync"}; then frames '
            "<kind u8, offset u64, length u32> + payload (little endian; kinds 1 write, "
            "2 truncate, 3 close-ok, 4 close-failed, 5 mark), each answered in order by "
            "<status u8, seq u64>; status 1 is followed by <length u32> and a message.",
        },
        "components": {"schemas": components},
    }


OPENAPI: dict[str, Any] = build()


# docs/api.md --------------------------------------------------------------
def _field_list(schema: dict[str, Any]) -> str:
    required = set(schema.get("required", ()))
    names = [
        f'"{name}"' if name in required else f'"{name}"?' for name in schema.get("properties", {})
    ]
    return "{" + ", ".join(names) + "}" if names else ""


def _answer_text(answer: Any, components: dict[str, Any], by_type: dict[int, Any]) -> str:
    if answer is str:
        return "text"
    schema = by_type[id(answer)]
    listed = schema.get("type") == "array"
    item = schema.get("items", schema) if listed else schema
    ref = item.get("$ref")
    if ref is None:
        return "a JSON object"
    name = ref.rsplit("/", 1)[1]
    keys = ", ".join(components[name].get("properties", {}))
    shape = f"`{name}` `{{{keys}}}`"
    return f"list of {shape}" if listed else shape


def render_endpoints() -> str:
    """docs/api.md's endpoint table, from the declarations (between its markers)."""
    by_type, _present, components = _schemas()
    lines = [
        "| method and path | body / query (`?` optional) | answer |",
        "| --- | --- | --- |",
    ]
    for r in ROUTES:
        takes = ""
        if r.body is not None:
            takes = _field_list(_inline(by_type[id(r.body)], components))
        query = _inline(by_type[id(r.query)], components)
        if query.get("properties"):
            required = set(query.get("required", ()))
            takes = "?" + "&".join(
                f"{n}=" if n in required else f"{n}=?" for n in query["properties"]
            )
        answer = _answer_text(r.answer, components, by_type)
        if r.path == "/openapi.json":
            answer = "this OpenAPI document"
        text = f"{r.summary}: {answer}" + (f"; {r.note}" if r.note else "")
        lines.append(f"| `{r.method} {r.path}` | {f'`{takes}`' if takes else ''} | {text} |")
    return "\n".join(lines) + "\n"


BEGIN = "<!-- BEGIN endpoints: generated by filetwin.daemon.openapi.render_endpoints -->"
END = "<!-- END endpoints -->"


def with_endpoints(page: str) -> str:
    """``page`` (docs/api.md) with its generated table replaced by the current one."""
    head, sep, rest = page.partition(BEGIN)
    if not sep:
        raise ValueError(f"docs/api.md has no {BEGIN!r} marker")
    _old, sep, tail = rest.partition(END)
    if not sep:
        raise ValueError(f"docs/api.md has no {END!r} marker")
    return f"{head}{BEGIN}\n{render_endpoints()}{END}{tail}"


if __name__ == "__main__":  # python -m filetwin.daemon.openapi docs/api.md: regenerate
    import sys
    from pathlib import Path

    if len(sys.argv) == 2:
        page = Path(sys.argv[1])
        page.write_text(with_endpoints(page.read_text()))
    else:
        import json

        print(json.dumps(OPENAPI, indent=1))
