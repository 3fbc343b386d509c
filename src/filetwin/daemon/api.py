"""The HTTP+JSON API on the daemon's Unix socket.

Only the socket owner's uid and root are served (SO_PEERCRED is checked on
every request, on top of the socket's 0600 mode). Every answer that is not a
success is ``{"error": message, "type": ExceptionName, "exit_code": n}``:
a filetwin error with the HTTP status of its class, a malformed request with
400, a full state directory with 507, and anything else (a bug) with 500 and
its traceback in the daemon's log, once.

Input is checked before it reaches the engine: bodies are JSON objects
(nesting, NaN and Infinity refused), integers are within 64 bits, paths are
absolute, within PATH_MAX and NAME_MAX, and never resolved on the event loop.
Paths that are not UTF-8 travel as ``str`` with surrogate escapes: lone
surrogates ``\\udc80``-``\\udcff`` in JSON strings, raw percent-escaped bytes in
query strings (see docs/api.md).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import errno
import json
import logging
import math
import os
import re
import socket
import sqlite3
import struct
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import msgspec
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from .. import shapes
from ..errors import FiletwinError, NotFound, PermissionDenied, StateError, UsageError
from ..policy import Policy
from ..repo.journal_summary import journal_summary
from ..shapes import INT_MAX, POLICY_KEYS, TEXT_MAX
from ..table import as_json
from ..timefmt import parse_time
from .engine import Engine
from .entrypaths import (
    check_path,
    entry_path_async,
    resolve_new_paths,
)
from .mounts import routes as mount_routes
from .openapi import OPENAPI
from .status_api import StatusQueries

log = logging.getLogger("filetwin.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: the query each GET route declares (shapes.ROUTES); any other parameter is refused
QUERY_KINDS: dict[str, type[shapes.Query]] = {
    r.path: r.query for r in shapes.ROUTES if r.method == "GET"
}
INSUFFICIENT_STORAGE = 507


def peer_uid(request: web.Request) -> int | None:
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def error_response(err: FiletwinError, status: int | None = None) -> web.Response:
    return web.json_response(
        {"error": err.message, "type": type(err).__name__, "exit_code": err.exit_code},
        status=err.http_status if status is None else status,
    )


def _storage_full(e: BaseException) -> bool:
    if isinstance(e, sqlite3.OperationalError):
        return "database or disk is full" in str(e)
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)


def unexpected_response(request: web.Request, e: Exception) -> web.Response:
    """The JSON answer for an exception no handler turned into a filetwin error."""
    state_dir = request.app.get("state_dir", "the state directory")
    if _storage_full(e):
        # A full disk is the operator's to fix, not a bug: no traceback, a clear message.
        log.error("%s %s: no space left: %s", request.method, request.path, e)
        return error_response(
            StateError(
                f"no space left to record this ({e}); free space in {state_dir} "
                "(the management table lives there) and try again"
            ),
            INSUFFICIENT_STORAGE,
        )
    if isinstance(e, sqlite3.Error):
        log.error("%s %s: the management table failed: %s", request.method, request.path, e)
        return error_response(StateError(f"the management table in {state_dir} failed: {e}"), 503)
    log.exception("%s %s: unexpected error", request.method, request.path)
    return error_response(
        FiletwinError(
            f"internal error: {type(e).__name__}: {str(e)[:500]} (the daemon's log has details)"
        ),
        500,
    )


def http_error_response(e: web.HTTPException) -> web.Response:
    """aiohttp's own refusals (no such route, wrong method, body too large) as JSON."""
    err: FiletwinError
    if e.status == 404:
        err = NotFound(f"no such endpoint (see GET /openapi.json): {e.reason}")
    else:
        err = UsageError(f"{e.reason}: {e.text or ''}".strip(": "))
    response = error_response(err, e.status)
    allow = e.headers.get("Allow")
    if allow:
        response.headers["Allow"] = allow
    return response


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    uid = peer_uid(request)
    if uid is None or uid not in (0, os.geteuid()):
        return error_response(PermissionDenied(f"uid {uid} may not use this daemon's API"))
    try:
        return await handler(request)
    except FiletwinError as e:
        return error_response(e)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return http_error_response(e)
    except Exception as e:  # noqa: BLE001 - the boundary: every error leaves as JSON
        return unexpected_response(request, e)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:50]} is out of range")
    return value


async def body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object ({} without a body); UsageError for anything else."""
    if not request.can_read_body:
        return {}
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise UsageError("the request body is nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, too many digits
        raise UsageError(f"the request body is not valid JSON: {str(e)[:200]}") from None
    if not isinstance(data, dict):
        raise UsageError("the request body must be a JSON object")
    return data


def _query_kind(path: str) -> type[shapes.Query]:
    """The declared query of the GET route at ``path`` (none for any other)."""
    return QUERY_KINDS.get(path, shapes.NoQuery)


def query(request: web.Request) -> dict[str, str]:
    """The query string, bytes that are not UTF-8 kept as surrogate escapes.

    Parameters the route does not declare (shapes.ROUTES) are refused; a
    parameter given twice keeps its first value.
    """
    pairs = parse_qsl(
        request.rel_url.raw_query_string,
        keep_blank_values=True,
        encoding="utf-8",
        errors="surrogateescape",
    )
    allowed = _query_kind(request.path).__struct_fields__
    out: dict[str, str] = {}
    for key, value in pairs:
        if key not in allowed:
            expected = ", ".join(allowed) or "none"
            raise UsageError(f"unknown query parameter {key[:100]!r}; expected {expected}")
        out.setdefault(key, value)
    return out


Q = TypeVar("Q", bound=shapes.Query)
B = TypeVar("B", bound=shapes.Body)


def parse_query(request: web.Request, kind: type[Q]) -> Q:
    """The query string checked against its declaration: integers are decimal digits."""
    params: dict[str, Any] = dict(query(request))
    for name in kind.__struct_fields__:
        if name in params and _is_int_field(kind, name):
            params[name] = query_int(params, name, None)
    return convert(params, kind, "query parameter")


def _is_int_field(kind: type[Any], name: str) -> bool:
    info = next(f for f in msgspec.inspect.type_info(kind).fields if f.name == name)  # type: ignore[attr-defined]
    return any(isinstance(t, msgspec.inspect.IntType) for t in _leaves(info.type))


def _leaves(t: Any) -> list[Any]:
    """The plain types a declared field's type is made of (Metadata and unions opened)."""
    if isinstance(t, msgspec.inspect.Metadata):
        return [t, *_leaves(t.type)]  # its hint before the rules it annotates
    if isinstance(t, msgspec.inspect.UnionType):
        return [leaf for member in t.types for leaf in _leaves(member)]
    return [t]


def no_unknown_fields(data: dict[str, Any], allowed: tuple[str, ...]) -> None:
    """Refuse fields the endpoint does not know: a typo must not be silently ignored."""
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        shown = ", ".join(repr(k[:100]) for k in unknown[:10])
        raise UsageError(f"unknown field(s) {shown}; expected {', '.join(allowed)}")


async def parse_body(request: web.Request, kind: type[B]) -> B:
    """The body as its declared Struct (shapes.py); UsageError naming what is wrong.

    JSON null stands for a field not given. Text fields are also checked to be
    valid Unicode within TEXT_MAX UTF-8 bytes (they are stored).
    """
    data = await body(request)
    no_unknown_fields(data, kind.__struct_fields__)
    if isinstance(data.get("path"), str):
        check_path(data["path"])  # the path's rules first: they name what is wrong with it
    if kind in (shapes.AddBody, shapes.UpdateBody):
        check_policy(data)
    parsed = convert(data, kind, "field")
    for name, value in data.items():
        if isinstance(value, str) and _is_text_field(kind, name):
            text_field(data, name)
    return parsed


def _is_text_field(kind: type[Any], name: str) -> bool:
    info = next(f for f in msgspec.inspect.type_info(kind).fields if f.name == name)  # type: ignore[attr-defined]
    return any(
        isinstance(t, msgspec.inspect.StrType) and t.max_length == TEXT_MAX
        for t in _leaves(info.type)
    )


_AT = re.compile(r" - at `\$(.*)`$")
_STEPS = re.compile(r"\.(\w+)|\[(\d+)\]")


def convert(data: dict[str, Any], kind: type[Any], where: str) -> Any:
    """``data`` as ``kind``, or a UsageError naming the field and the declared rule."""
    try:
        return msgspec.convert(data, kind, strict=True)
    except msgspec.ValidationError as e:
        raise _refusal(str(e), data, kind, where) from None


def _refusal(message: str, data: dict[str, Any], kind: type[Any], where: str) -> UsageError:
    """msgspec's message as ours: ``missing field 'x'``, ``field 'x' has the wrong type``,
    ``field 'x' must be an integer from 0 to 10``: the same words for every route."""
    at = _AT.search(message)
    core = message[: at.start()] if at else message
    missing = re.match(r"Object missing required field `([^`]+)`", core)
    if missing:
        return UsageError(f"missing {where} {missing.group(1)!r}")
    steps = _STEPS.findall(at.group(1)) if at else []
    name = steps[0][0] if steps else ""
    value = data.get(name)
    if len(steps) > 1 and steps[1][1] and isinstance(value, list):
        item = value[int(steps[1][1])]
        if name == "paths":
            check_path(item)  # the path rules' own message (not a path: 42)
        return UsageError(f"{where} {name!r} holds a bad item: {repr(item)[:200]}")
    shown = repr(value)[:200]
    if re.match(r"Expected `[^`]+`, got `", core):
        return UsageError(f"{where} {name!r} has the wrong type: {shown}")
    info = next((f for f in msgspec.inspect.type_info(kind).fields if f.name == name), None)  # type: ignore[attr-defined]
    leaves = _leaves(info.type) if info is not None else []
    for leaf in leaves:
        extra = getattr(leaf, "extra", None) or {}
        if "hint" in extra:
            return UsageError(f"{where} {name!r} is {shown}: {extra['hint']}")
        if isinstance(leaf, msgspec.inspect.LiteralType):
            values = ", ".join(str(v) for v in leaf.values)
            return UsageError(f"{where} {name!r} must be one of {values}, not {shown}")
        if isinstance(leaf, msgspec.inspect.IntType) and leaf.ge is not None:
            top = "2**63-1" if leaf.le == INT_MAX else str(leaf.le)
            return UsageError(f"{where} {name!r} must be an integer from {leaf.ge} to {top}")
        if isinstance(leaf, msgspec.inspect.StrType) and leaf.max_length is not None:
            return UsageError(
                f"{where} {name!r} is longer than {leaf.max_length} characters"
            )
    return UsageError(f"{where} {name!r} is refused ({core}): {shown}")


def text_field(data: dict[str, Any], name: str) -> None:
    """A string of at most TEXT_MAX UTF-8 bytes (it is stored, so it must encode)."""
    value = data.get(name)
    if isinstance(value, str):
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise UsageError(f"field {name!r} is not valid Unicode text") from None
        if size > TEXT_MAX:
            raise UsageError(f"field {name!r} is {size} bytes; the limit is {TEXT_MAX}")


def query_int(params: dict[str, Any], name: str, default: int | None) -> int | None:
    raw = params.get(name)
    if raw is None:
        return default
    text = raw.strip()
    if not text.isdigit() or not text.isascii() or len(text) > 19 or int(text) > INT_MAX:
        raise UsageError(f"query parameter {name!r} must be an integer from 0 to 2**63-1")
    return int(text)


def check_policy(data: dict[str, Any]) -> None:
    """A policy's values, checked by Policy (its messages) before the schema sees them.

    Numbers must fit in 64 bits before Policy compares them.
    """
    for key in ("retries", "keep", "timeout"):
        value = data.get(key)
        if isinstance(value, int) and abs(value) > INT_MAX:
            raise UsageError(f"field {key!r} is out of range")
    # Only JSON scalars: a list or an object is the schema's to refuse (wrong type).
    scalars = {k: v for k in POLICY_KEYS if isinstance(v := data.get(k), str | int | float)}
    Policy().updated(scalars).validated()


class Api:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._statuses = StatusQueries(
            engine.table, engine.replicator.rows if engine.replicator.replicas else None
        )

    def app(self) -> web.Application:
        app = web.Application(middlewares=[guard], client_max_size=64 << 20)
        app["state_dir"] = str(self.engine.config.state_dir)
        r = app.router
        r.add_get("/health", self.health)
        r.add_get("/openapi.json", self.openapi)
        r.add_get("/metrics", self.metrics)
        r.add_get("/status", self.status)
        r.add_get("/status/summary", self.status_summary)
        r.add_post("/add", self.add)
        r.add_post("/update", self.update)
        r.add_post("/pause", self.pause)
        r.add_post("/resume", self.resume)
        r.add_post("/remove", self.remove)
        r.add_post("/backup", self.backup)
        r.add_get("/history", self.history)
        r.add_post("/restore", self.restore)
        r.add_get("/events", self.events)
        r.add_post("/write", self.write)
        r.add_post("/truncate", self.truncate)
        r.add_post("/close", self.close)
        r.add_post("/mark", self.mark)
        r.add_get("/journal", self.journal)
        r.add_post("/recover", self.recover)
        r.add_post("/verify", self.verify)
        app.router.add_routes(mount_routes(self.engine.mounts))
        app.router.add_routes(self.engine.reconciler.routes())
        return app

    async def _path(self, raw: Any) -> str:
        """The entry ``raw`` names; malformed paths refused before any system call."""
        return await entry_path_async(raw, self.engine.table)

    async def _path_or_history(self, raw: Any) -> str:
        """An entry, or the normalised path of one that was removed (its history stays)."""
        try:
            return await self._path(raw)
        except NotFound:
            return os.path.normpath(raw)

    async def _query_path(self, request: web.Request) -> str:
        return await self._path(parse_query(request, shapes.PathQuery).path)

    async def _body_path(self, request: web.Request) -> str:
        return await self._path((await parse_body(request, shapes.PathBody)).path)

    async def health(self, request: web.Request) -> web.Response:
        query(request)
        return web.json_response(
            {"ok": True, "pid": os.getpid(), "state_dir": str(self.engine.config.state_dir)}
        )

    async def openapi(self, request: web.Request) -> web.Response:
        query(request)
        return web.json_response(OPENAPI)

    async def metrics(self, request: web.Request) -> web.Response:
        """Prometheus metrics (daemon/metrics.py), computed in a thread."""
        query(request)
        text = await asyncio.to_thread(self.engine.metrics.render)
        return web.Response(body=text, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def status(self, request: web.Request) -> web.Response:
        raw = parse_query(request, shapes.StatusQuery).path
        if raw is None:
            # Filters and paging: daemon/status_api.py.
            return await self._statuses.listing(query(request))
        return web.json_response(self.engine.status(await self._path(raw)))

    async def status_summary(self, request: web.Request) -> web.Response:
        parse_query(request, shapes.StatusFilters)
        return web.json_response(await self._statuses.summary(query(request)))

    async def add(self, request: web.Request) -> web.Response:
        data = await parse_body(request, shapes.AddBody)
        config = self.engine.config
        defaults = Policy(retries=config.default_retries, keep=config.default_keep)
        policy = defaults.updated({k: getattr(data, k) for k in POLICY_KEYS}).validated()
        # Checked and resolved on a thread: lstat/realpath/open block on the disk.
        resolved, notes = await asyncio.to_thread(resolve_new_paths, data.paths)
        result = await self.engine.add(resolved, policy)
        result["messages"] = [*notes, *result.get("messages", [])]
        return web.json_response(result)

    async def update(self, request: web.Request) -> web.Response:
        data = await parse_body(request, shapes.UpdateBody)
        path = await self._path(data.path)
        changes = {k: getattr(data, k) for k in POLICY_KEYS if getattr(data, k) is not None}
        if not changes:
            raise UsageError("nothing to update: give at least one of " + ", ".join(POLICY_KEYS))
        return web.json_response(await self.engine.update(path, changes))

    async def pause(self, request: web.Request) -> web.Response:
        path = await self._body_path(request)
        return web.json_response(await self.engine.change(path, "pause"))

    async def resume(self, request: web.Request) -> web.Response:
        path = await self._body_path(request)
        return web.json_response(await self.engine.change(path, "resume"))

    async def remove(self, request: web.Request) -> web.Response:
        data = await parse_body(request, shapes.RemoveBody)
        path = await self._path(data.path)
        purge = bool(data.purge)
        await self.engine.change(path, "delete", purge=int(purge))
        kept = "its history was deleted" if purge else "its history is kept"
        return web.json_response(
            {
                "path": path,
                "removed": True,
                "purged": purge,
                "message": f"{path} is no longer protected; {kept}",
            }
        )

    async def backup(self, request: web.Request) -> web.Response:
        path = await self._body_path(request)
        if self.engine.entry(path)["state"] == "paused":
            raise UsageError(f"{path} is paused; resume it first (`filetwin resume {path}`)")
        manifest = await self.engine.backup(path, cause="manual", explicit=True)
        assert manifest is not None
        return web.json_response(manifest_json(manifest.to_json()))

    async def history(self, request: web.Request) -> web.Response:
        path = await self._path_or_history(parse_query(request, shapes.PathQuery).path)
        versions = await asyncio.to_thread(self.engine.repo.versions, path)
        if not versions and self.engine.table.get(path) is None:
            raise NotFound(f"{path} is not protected and has no history")
        return web.json_response([manifest_json(m.to_json()) for m in versions])

    async def restore(self, request: web.Request) -> web.Response:
        data = await parse_body(request, shapes.RestoreBody)
        path = await self._path_or_history(data.path)
        if data.to is not None:
            check_path(data.to, "destination")
        at = data.at
        if isinstance(at, int | float):
            parse_time(at)  # out of range or not finite: refused here, not in a worker
        result = await self.engine.restore(
            path,
            version=data.version,
            at=None if at is None else str(at),
            to=data.to,
        )
        return web.json_response(result)

    # on-write: report writes, closes and marks ------------------------------
    async def write(self, request: web.Request) -> web.Response:
        data = await parse_body(request, shapes.WriteBody)
        path = await self._path(data.path)
        try:
            payload = base64.b64decode(data.data, validate=True)
        except (binascii.Error, ValueError) as e:
            raise UsageError(f"field 'data' is not base64: {e}") from e
        if data.offset + len(payload) > INT_MAX:
            raise UsageError("the write ends past 2**63-1 bytes")
        seq = await self.engine.onwrite.record(
            path, "write", data.offset, payload, retries=data.retries or 0
        )
        return web.json_response({"seq": seq})

    async def truncate(self, request: web.Request) -> web.Response:
        data = await parse_body(request, shapes.TruncateBody)
        path = await self._path(data.path)
        seq = await self.engine.onwrite.record(
            path, "truncate", data.length, retries=data.retries or 0
        )
        return web.json_response({"seq": seq})

    async def close(self, request: web.Request) -> web.Response:
        data = await parse_body(request, shapes.CloseBody)
        path = await self._path(data.path)
        kind = "close-failed" if data.ok is False else "close-ok"
        seq = await self.engine.onwrite.record(path, kind, retries=data.retries or 0)
        return web.json_response({"seq": seq})

    async def mark(self, request: web.Request) -> web.Response:
        data = await parse_body(request, shapes.MarkBody)
        path = await self._path(data.path)
        seq = await self.engine.onwrite.record(
            path, "mark", name=data.name, retries=data.retries or 0
        )
        return web.json_response({"seq": seq})

    async def journal(self, request: web.Request) -> web.Response:
        path = await self._query_path(request)
        summary = await asyncio.to_thread(
            journal_summary, self.engine.onwrite.journals.directory(path)
        )
        return web.json_response(summary)

    # healing -----------------------------------------------------------
    async def recover(self, request: web.Request) -> web.Response:
        data = await parse_body(request, shapes.RecoverBody)
        path = await self._path(data.path)
        trigger = data.trigger or "notify"
        reason = data.reason or "an application asked"
        return web.json_response(await self.engine.healer.request(path, reason, trigger))

    async def verify(self, request: web.Request) -> web.Response:
        data = await parse_body(request, shapes.VerifyBody)
        path = await self._path(data.path) if data.path is not None else None
        return web.json_response(await self.engine.healer.verify_all(path))

    async def events(self, request: web.Request) -> web.StreamResponse:
        params = parse_query(request, shapes.EventsQuery)
        path = None
        if params.path:
            path = await self._path_or_history(params.path)  # a symlink's events are its target's
        after, limit = params.after, params.limit
        if params.follow not in ("1", "true"):
            return web.json_response([as_json(e) for e in self.engine.events(path, after, limit)])
        # Follow: newline-delimited JSON, one event per line, until the client goes.
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        if limit is not None:
            backlog = self.engine.table.events(path, after, limit)
            after = backlog[0]["id"] - 1 if backlog else after
        try:
            while True:
                events = await self.engine.wait_events(after, path)
                for event in events:
                    await response.write((json.dumps(as_json(event)) + "\n").encode())
                    after = event["id"]
        except ConnectionError:
            # A follower that leaves is the normal end of a follow, not an error.
            log.debug("an events follower left")
        return response


def manifest_json(m: dict[str, Any]) -> dict[str, Any]:
    """A manifest as the public history shape (ISO time, no chunk list)."""
    from ..timefmt import iso

    out = {k: v for k, v in m.items() if k != "chunks"}
    out["time"] = iso(m["time"])
    out["chunk_count"] = len(m.get("chunks", ()))
    return out
