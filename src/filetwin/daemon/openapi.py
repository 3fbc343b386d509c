"""The OpenAPI description served at GET /openapi.json (see docs/api.md)."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}
#: a path as the API takes it (docs/api.md: PATH_MAX, NAME_MAX, no NUL, non-UTF-8 bytes)
_PATH = {
    "type": "string",
    "minLength": 1,
    "maxLength": 4095,
    "description": "absolute path, under PATH_MAX (4096 bytes) with no component over "
    "NAME_MAX (255 bytes) and no NUL; a byte that is not UTF-8 is the lone surrogate "
    "U+DC80+byte (surrogateescape)",
}
_RETRIES = {
    "type": "integer",
    "minimum": 0,
    "maximum": 10,
    "description": "a failed journal append is tried again, on a reopened journal, this many "
    "times (default 0); each failure is a journal-failed event",
}

_PATH_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["path"],
                "properties": {"path": _PATH},
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
    "sync": {
        "type": "string",
        "enum": ["always", "batch"],
        "description": "on-write durability: always fdatasyncs each record before "
        "acknowledging it; batch acknowledges once it is in the kernel and makes it "
        "durable within journal_batch_window_s (default 100 ms)",
    },
}


def _body(required: list[str], props: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:  # OpenAPI 3.0: a required list is never empty
        schema["required"] = required
    return {"required": bool(required), "content": {"application/json": {"schema": schema}}}


def _seq_answer(op: dict[str, Any]) -> dict[str, Any]:
    """An on-write record's answer: its sequence number, once durable per the sync mode."""
    op["responses"]["200"] = {
        "description": "the record's sequence number, once it is as durable as the "
        "entry's sync mode promises",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"seq": {"type": "integer"}},
                }
            }
        },
    }
    return op


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
            "500": {
                "description": "the operation failed, or a bug (the daemon's log has details)",
                "content": {"application/json": {"schema": _ERROR}},
            },
            "503": {
                "description": "too many connections at once; try again",
                "content": {"application/json": {"schema": _ERROR}},
            },
            "507": {
                "description": "no space left in the state directory",
                "content": {"application/json": {"schema": _ERROR}},
            },
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
                                    "paths": {"type": "array", "minItems": 1, "items": _PATH},
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
                                "properties": {"path": _PATH, **_POLICY_PROPS},
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
                                    "path": _PATH,
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
                                    "path": _PATH,
                                    "version": {"type": "string"},
                                    "at": {
                                        "type": "string",
                                        "description": "a time (ISO 8601 or Unix "
                                        "seconds), seq:N (a journal record) or "
                                        "mark:NAME",
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
        "/write": {
            "post": _seq_answer(
                _op(
                    "Journal a write of an on-write entry (report-write)",
                    _body(
                        ["path", "offset", "data"],
                        {
                            "path": _PATH,
                            "offset": {"type": "integer", "minimum": 0},
                            "data": {
                                "type": "string",
                                "format": "byte",
                                "description": "the bytes written, base64",
                            },
                            "retries": _RETRIES,
                        },
                    ),
                )
            )
        },
        "/truncate": {
            "post": _seq_answer(
                _op(
                    "Journal a truncate of an on-write entry",
                    _body(
                        ["path", "length"],
                        {
                            "path": _PATH,
                            "length": {"type": "integer", "minimum": 0},
                            "retries": _RETRIES,
                        },
                    ),
                )
            )
        },
        "/close": {
            "post": _seq_answer(
                _op(
                    "Report a close and whether it succeeded. On-write: journaled (seq), a "
                    "good close starts a checkpoint. On-close: not journaled (seq 0); a failed "
                    "close is an event and what it left is never stored as a version. A failed "
                    "close heals an auto entry",
                    _body(
                        ["path"],
                        {
                            "path": _PATH,
                            "ok": {"type": "boolean", "default": True},
                            "retries": _RETRIES,
                        },
                    ),
                )
            )
        },
        "/mark": {
            "post": _seq_answer(
                _op(
                    "Name the current moment of an on-write entry (restore at mark:NAME)",
                    _body(
                        ["path", "name"],
                        {"path": _PATH, "name": {"type": "string"}, "retries": _RETRIES},
                    ),
                )
            )
        },
        "/journal": {
            "get": _op(
                "An on-write entry's journal: span of records, closes (failed ones "
                "flagged), marks, torn tail",
                params=[_query("path", True)],
            )
        },
        "/recover": {
            "post": _op(
                "Heal a file now (notify); refused for manual entries",
                _body(
                    ["path"],
                    {
                        "path": _PATH,
                        "reason": {"type": "string"},
                        "trigger": {"type": "string", "enum": ["notify", "auto"]},
                    },
                ),
            )
        },
        "/verify": {
            "post": _op(
                "Compare live files with their newest state; auto entries are healed",
                _body([], {"path": _PATH}),
            )
        },
        "/mounts": {"get": _op("The in-place mounts the daemon supervises")},
        "/mount": {
            "post": _op(
                "Start an in-place interceptor over a directory that holds protected files",
                _body(["dir"], {"dir": _PATH}),
            )
        },
        "/unmount": {
            "post": _op(
                "Unmount an in-place interceptor: the directory is given back as it was",
                _body(["dir"], {"dir": _PATH}),
            )
        },
    },
    "x-write-stream": {
        "socket": "STATE_DIR/journal.sock",
        "description": "Binary write stream for busy writers (see docs/api.md): one JSON "
        'line {"path": ...} answered by {"ok", "seq", "sync"}; then frames '
        "<kind u8, offset u64, length u32> + payload (little endian; kinds 1 write, "
        "2 truncate, 3 close-ok, 4 close-failed, 5 mark), each answered in order by "
        "<status u8, seq u64>; status 1 is followed by <length u32> and a message.",
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
