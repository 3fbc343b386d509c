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
import socket
import sqlite3
import struct
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from ..errors import FiletwinError, NotFound, PermissionDenied, StateError, UsageError
from ..policy import Policy
from ..repo.journal_summary import journal_summary
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

log = logging.getLogger("filetwin.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
POLICY_KEYS = ("backup", "recovery", "retries", "timeout", "keep", "sync")
#: integers on the wire are signed 64-bit: SQLite and the journal's records hold no more
INT_MAX = (1 << 63) - 1
#: query parameters each GET route knows; any other is refused (a typo must not be ignored)
QUERY_KEYS: dict[str, tuple[str, ...]] = {
    "/health": (),
    "/openapi.json": (),
    "/metrics": (),
    "/status": ("path",),
    "/history": ("path",),
    "/journal": ("path",),
    "/events": ("path", "after", "limit", "follow"),
}
#: a text field's limit in UTF-8 bytes (mark names, reasons, versions, moments)
TEXT_MAX = 4096
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


def query(request: web.Request) -> dict[str, str]:
    """The query string, bytes that are not UTF-8 kept as surrogate escapes.

    Unknown parameters are refused; a parameter given twice keeps its first value.
    """
    pairs = parse_qsl(
        request.rel_url.raw_query_string,
        keep_blank_values=True,
        encoding="utf-8",
        errors="surrogateescape",
    )
    allowed = QUERY_KEYS.get(request.path, ())
    out: dict[str, str] = {}
    for key, value in pairs:
        if key not in allowed:
            expected = ", ".join(allowed) or "none"
            raise UsageError(f"unknown query parameter {key[:100]!r}; expected {expected}")
        out.setdefault(key, value)
    return out


def no_unknown_fields(data: dict[str, Any], allowed: tuple[str, ...]) -> None:
    """Refuse fields the endpoint does not know: a typo must not be silently ignored."""
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        shown = ", ".join(repr(k[:100]) for k in unknown[:10])
        raise UsageError(f"unknown field(s) {shown}; expected {', '.join(allowed)}")


def field(
    data: dict[str, Any], name: str, kind: type | tuple[type, ...], required: bool = True
) -> Any:
    value = data.get(name)
    if value is None:
        if required:
            raise UsageError(f"missing field {name!r}")
        return None
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise UsageError(f"field {name!r} has the wrong type: {repr(value)[:200]}")
    return value


def int_field(data: dict[str, Any], name: str, required: bool = True) -> Any:
    """A non-negative integer that fits in 64 bits (SQLite's and the journal's)."""
    value = field(data, name, int, required)
    if value is not None and not 0 <= value <= INT_MAX:
        raise UsageError(f"field {name!r} must be an integer from 0 to 2**63-1")
    return value


def retries_field(data: dict[str, Any]) -> int:
    """How many times a failed journal append is tried again (0..10, default 0)."""
    value = field(data, "retries", int, required=False)
    if value is None:
        return 0
    if not 0 <= value <= 10:
        raise UsageError("field 'retries' must be an integer from 0 to 10")
    return int(value)


def text_field(data: dict[str, Any], name: str, required: bool = False) -> Any:
    """A string of at most TEXT_MAX UTF-8 bytes (it is stored, so it must encode)."""
    value = field(data, name, str, required)
    if value is not None:
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise UsageError(f"field {name!r} is not valid Unicode text") from None
        if size > TEXT_MAX:
            raise UsageError(f"field {name!r} is {size} bytes; the limit is {TEXT_MAX}")
    return value


def query_int(params: dict[str, str], name: str, default: int | None) -> int | None:
    raw = params.get(name)
    if raw is None:
        return default
    text = raw.strip()
    if not text.isdigit() or not text.isascii() or len(text) > 19 or int(text) > INT_MAX:
        raise UsageError(f"query parameter {name!r} must be an integer from 0 to 2**63-1")
    return int(text)


def check_policy_values(data: dict[str, Any]) -> None:
    """Numbers in a policy must be finite and fit in 64 bits before Policy sees them."""
    for key in ("retries", "keep", "timeout"):
        value = data.get(key)
        if isinstance(value, int) and abs(value) > INT_MAX:
            raise UsageError(f"field {key!r} is out of range")


class Api:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._status_pool = ThreadPoolExecutor(1, thread_name_prefix="status")

    def app(self) -> web.Application:
        app = web.Application(middlewares=[guard], client_max_size=64 << 20)
        app["state_dir"] = str(self.engine.config.state_dir)
        r = app.router
        r.add_get("/health", self.health)
        r.add_get("/openapi.json", self.openapi)
        r.add_get("/metrics", self.metrics)
        r.add_get("/status", self.status)
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
        raw = query(request).get("path")
        if raw is None:
            raise UsageError("missing query parameter 'path'")
        return await self._path(raw)

    async def _body_path(self, request: web.Request, allowed: tuple[str, ...] = ("path",)) -> str:
        data = await body(request)
        no_unknown_fields(data, allowed)
        return await self._path(field(data, "path", str))

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
        raw = query(request).get("path")
        if raw is None:
            # Its own thread: the shared pool may be busy with the engine's work.
            loop = asyncio.get_running_loop()
            text = await loop.run_in_executor(self._status_pool, self.engine.table.status_json)
            return web.Response(text=text, content_type="application/json")
        return web.json_response(self.engine.status(await self._path(raw)))

    async def add(self, request: web.Request) -> web.Response:
        data = await body(request)
        no_unknown_fields(data, ("paths", *POLICY_KEYS))
        paths = field(data, "paths", list)
        check_policy_values(data)
        config = self.engine.config
        defaults = Policy(retries=config.default_retries, keep=config.default_keep)
        policy = defaults.updated({k: data.get(k) for k in POLICY_KEYS}).validated()
        # Checked and resolved on a thread: lstat/realpath/open block on the disk.
        resolved, notes = await asyncio.to_thread(resolve_new_paths, paths)
        result = await self.engine.add(resolved, policy)
        result["messages"] = [*notes, *result.get("messages", [])]
        return web.json_response(result)

    async def update(self, request: web.Request) -> web.Response:
        data = await body(request)
        no_unknown_fields(data, ("path", *POLICY_KEYS))
        path = await self._path(field(data, "path", str))
        check_policy_values(data)
        changes = {k: data[k] for k in POLICY_KEYS if data.get(k) is not None}
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
        data = await body(request)
        no_unknown_fields(data, ("path", "purge"))
        path = await self._path(field(data, "path", str))
        purge = bool(field(data, "purge", bool, required=False))
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
        raw = query(request).get("path")
        if raw is None:
            raise UsageError("missing query parameter 'path'")
        path = await self._path_or_history(raw)
        versions = await asyncio.to_thread(self.engine.repo.versions, path)
        if not versions and self.engine.table.get(path) is None:
            raise NotFound(f"{path} is not protected and has no history")
        return web.json_response([manifest_json(m.to_json()) for m in versions])

    async def restore(self, request: web.Request) -> web.Response:
        data = await body(request)
        no_unknown_fields(data, ("path", "version", "at", "to"))
        path = await self._path_or_history(field(data, "path", str))
        to = field(data, "to", str, required=False)
        if to is not None:
            check_path(to, "destination")
        at = data.get("at")
        if at is not None:
            if isinstance(at, bool) or not isinstance(at, str | int | float):
                raise UsageError(f"field 'at' has the wrong type: {repr(at)[:200]}")
            if isinstance(at, int | float):
                parse_time(at)  # out of range or not finite: refused here, not in a worker
            else:
                text_field(data, "at")
        version = text_field(data, "version")
        if version is not None and (
            len(version) < 4 or any(c not in "0123456789abcdef" for c in version.lower())
        ):
            # The repository's own rule, checked before a job starts for it.
            raise UsageError(f"bad version id {version[:100]!r}: give at least 4 hex characters")
        result = await self.engine.restore(
            path,
            version=version,
            at=None if at is None else str(at),
            to=to,
        )
        return web.json_response(result)

    # on-write: report writes, closes and marks ------------------------------
    async def write(self, request: web.Request) -> web.Response:
        data = await body(request)
        no_unknown_fields(data, ("path", "offset", "data", "retries"))
        path = await self._path(field(data, "path", str))
        offset = int_field(data, "offset")
        try:
            payload = base64.b64decode(field(data, "data", str), validate=True)
        except (binascii.Error, ValueError) as e:
            raise UsageError(f"field 'data' is not base64: {e}") from e
        if offset + len(payload) > INT_MAX:
            raise UsageError("the write ends past 2**63-1 bytes")
        seq = await self.engine.onwrite.record(
            path, "write", offset, payload, retries=retries_field(data)
        )
        return web.json_response({"seq": seq})

    async def truncate(self, request: web.Request) -> web.Response:
        data = await body(request)
        no_unknown_fields(data, ("path", "length", "retries"))
        path = await self._path(field(data, "path", str))
        seq = await self.engine.onwrite.record(
            path, "truncate", int_field(data, "length"), retries=retries_field(data)
        )
        return web.json_response({"seq": seq})

    async def close(self, request: web.Request) -> web.Response:
        data = await body(request)
        no_unknown_fields(data, ("path", "ok", "retries"))
        path = await self._path(field(data, "path", str))
        ok = field(data, "ok", bool, required=False)
        kind = "close-failed" if ok is False else "close-ok"
        seq = await self.engine.onwrite.record(path, kind, retries=retries_field(data))
        return web.json_response({"seq": seq})

    async def mark(self, request: web.Request) -> web.Response:
        data = await body(request)
        no_unknown_fields(data, ("path", "name", "retries"))
        path = await self._path(field(data, "path", str))
        name = text_field(data, "name", required=True)
        seq = await self.engine.onwrite.record(path, "mark", name=name, retries=retries_field(data))
        return web.json_response({"seq": seq})

    async def journal(self, request: web.Request) -> web.Response:
        path = await self._query_path(request)
        summary = await asyncio.to_thread(
            journal_summary, self.engine.onwrite.journals.directory(path)
        )
        return web.json_response(summary)

    # healing -----------------------------------------------------------
    async def recover(self, request: web.Request) -> web.Response:
        data = await body(request)
        no_unknown_fields(data, ("path", "reason", "trigger"))
        path = await self._path(field(data, "path", str))
        trigger = field(data, "trigger", str, required=False) or "notify"
        if trigger not in ("notify", "auto"):
            raise UsageError(f"trigger must be notify or auto, not {trigger[:100]!r}")
        reason = text_field(data, "reason") or "an application asked"
        return web.json_response(await self.engine.healer.request(path, reason, trigger))

    async def verify(self, request: web.Request) -> web.Response:
        data = await body(request)
        no_unknown_fields(data, ("path",))
        raw = field(data, "path", str, required=False)
        path = await self._path(raw) if raw is not None else None
        return web.json_response(await self.engine.healer.verify_all(path))

    async def events(self, request: web.Request) -> web.StreamResponse:
        params = query(request)
        raw = params.get("path")
        path = None
        if raw:
            path = await self._path_or_history(raw)  # a symlink's events are its target's
        after = query_int(params, "after", 0)
        assert after is not None
        limit = query_int(params, "limit", None)
        follow = params.get("follow", "")
        if follow not in ("", "0", "false", "1", "true"):
            raise UsageError(f"query parameter 'follow' must be 1 or 0, not {follow[:50]!r}")
        if follow not in ("1", "true"):
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
