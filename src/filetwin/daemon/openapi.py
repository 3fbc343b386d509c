"""The OpenAPI description served at GET /openapi.json (see docs/api.md)."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}
_PATH_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["path"],
                "properties": {"path": {"type": "string", "description": "absolute path"}},
            }
        }
    },
}
_POLICY_PROPS: dict[str, Any] = {
    "backup": {"type": "string", "enum": ["on-close", "on-write"]},
    "recovery": {"type": "string", "enum": ["auto", "manual", "notify"]},
    "retries": {"type": "integer", "minimum": 0, "maximum": 100},
    "timeout": {"type": "number", "exclusiveMinimum": 0},
    "keep": {"type": "integer", "minimum": 1},
}


def _op(
    summary: str, body: dict[str, Any] | None = None, params: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {
            "200": {"description": "success", "content": {"application/json": {}}},
            "400": {
                "description": "bad input",
                "content": {"application/json": {"schema": _ERROR}},
            },
            "404": {
                "description": "no such entry or version",
                "content": {"application/json": {"schema": _ERROR}},
            },
            "409": {"description": "conflict", "content": {"application/json": {"schema": _ERROR}}},
        },
    }
    if body is not None:
        op["requestBody"] = body
    if params:
        op["parameters"] = params
    return op


def _query(name: str, required: bool = False, kind: str = "string") -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": {"type": kind}}


OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "filetwin daemon API",
        "version": "1",
        "description": "HTTP+JSON on the Unix socket STATE_DIR/filetwin.sock",
    },
    "paths": {
        "/health": {"get": _op("Is the daemon up")},
        "/status": {"get": _op("The management table, or one entry", params=[_query("path")])},
        "/add": {
            "post": _op(
                "Protect files",
                {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["paths"],
                                "properties": {
                                    "paths": {"type": "array", "items": {"type": "string"}},
                                    **_POLICY_PROPS,
                                },
                            }
                        }
                    },
                },
            )
        },
        "/update": {
            "post": _op(
                "Change an entry's policy",
                {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["path"],
                                "properties": {"path": {"type": "string"}, **_POLICY_PROPS},
                            }
                        }
                    },
                },
            )
        },
        "/pause": {"post": _op("Stop watching an entry", _PATH_BODY)},
        "/resume": {"post": _op("Watch a paused entry again", _PATH_BODY)},
        "/remove": {
            "post": _op(
                "Stop protecting",
                {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["path"],
                                "properties": {
                                    "path": {"type": "string"},
                                    "purge": {"type": "boolean"},
                                },
                            }
                        }
                    },
                },
            )
        },
        "/backup": {"post": _op("Take a version now; answers once it is stored", _PATH_BODY)},
        "/history": {"get": _op("Versions, oldest first", params=[_query("path", True)])},
        "/restore": {
            "post": _op(
                "Rebuild a version in place or to another path",
                {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["path"],
                                "properties": {
                                    "path": {"type": "string"},
                                    "version": {"type": "string"},
                                    "at": {
                                        "type": "string",
                                        "description": "ISO 8601 or Unix seconds",
                                    },
                                    "to": {"type": "string"},
                                },
                            }
                        }
                    },
                },
            )
        },
        "/events": {
            "get": _op(
                "The event log (follow=1 streams NDJSON)",
                params=[
                    _query("path"),
                    _query("after", kind="integer"),
                    _query("limit", kind="integer"),
                    _query("follow"),
                ],
            )
        },
    },
    "components": {
        "schemas": {
            "Error": {
                "type": "object",
                "properties": {
                    "error": {"type": "string"},
                    "type": {"type": "string"},
                    "exit_code": {"type": "integer"},
                },
            }
        }
    },
}
