"""The HTTP+JSON API on the daemon's Unix socket.

Only the socket owner's uid and root are served (SO_PEERCRED is checked on
every request, on top of the socket's 0600 mode). Errors come back as
``{"error": message, "type": ExceptionName, "exit_code": n}`` with the HTTP
status of the exception class. Bodies are JSON objects; paths are absolute.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web

from ..errors import FiletwinError, NotFound, PermissionDenied, UsageError
from ..policy import Policy
from ..repo.journal_summary import journal_summary
from ..table import as_json
from .engine import Engine
from .entrypaths import entry_path
from .openapi import OPENAPI

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
POLICY_KEYS = ("backup", "recovery", "retries", "timeout", "keep", "sync")


def peer_uid(request: web.Request) -> int | None:
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def error_response(err: FiletwinError) -> web.Response:
    return web.json_response(
        {"error": err.message, "type": type(err).__name__, "exit_code": err.exit_code},
        status=err.http_status,
    )


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    uid = peer_uid(request)
    if uid is None or uid not in (0, os.geteuid()):
        return error_response(PermissionDenied(f"uid {uid} may not use this daemon's API"))
    try:
        return await handler(request)
    except FiletwinError as e:
        return error_response(e)


async def body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"the request body is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise UsageError("the request body must be a JSON object")
    return data


def no_unknown_fields(data: dict[str, Any], allowed: tuple[str, ...]) -> None:
    """Refuse fields the endpoint does not know: a typo must not be silently ignored."""
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise UsageError(
            f"unknown field(s) {', '.join(map(repr, unknown))}; expected {', '.join(allowed)}"
        )


def field(
    data: dict[str, Any], name: str, kind: type | tuple[type, ...], required: bool = True
) -> Any:
    value = data.get(name)
    if value is None:
        if required:
            raise UsageError(f"missing field {name!r}")
        return None
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise UsageError(f"field {name!r} has the wrong type: {value!r}")
    return value


class Api:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._status_pool = ThreadPoolExecutor(1, thread_name_prefix="status")

    def app(self) -> web.Application:
        app = web.Application(middlewares=[guard], client_max_size=64 << 20)
        r = app.router
        r.add_get("/health", self.health)
        r.add_get("/openapi.json", self.openapi)
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
        return app

    def _path(self, raw: Any) -> str:
        return entry_path(raw, self.engine.table)

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"ok": True, "pid": os.getpid(), "state_dir": str(self.engine.config.state_dir)}
        )

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(OPENAPI)

    async def status(self, request: web.Request) -> web.Response:
        raw = request.query.get("path")
        if raw is None:
            # Its own thread: the shared pool may be busy with the engine's work.
            loop = asyncio.get_running_loop()
            text = await loop.run_in_executor(self._status_pool, self.engine.table.status_json)
            return web.Response(text=text, content_type="application/json")
        return web.json_response(self.engine.status(self._path(raw)))

    async def add(self, request: web.Request) -> web.Response:
        data = await body(request)
        no_unknown_fields(data, ("paths", *POLICY_KEYS))
        paths = field(data, "paths", list)
        config = self.engine.config
        defaults = Policy(retries=config.default_retries, keep=config.default_keep)
        policy = defaults.updated({k: data.get(k) for k in POLICY_KEYS})
        return web.json_response(await self.engine.add(paths, policy))

    async def update(self, request: web.Request) -> web.Response:
        data = await body(request)
        no_unknown_fields(data, ("path", *POLICY_KEYS))
        path = self._path(field(data, "path", str))
        changes = {k: data[k] for k in POLICY_KEYS if data.get(k) is not None}
        if not changes:
            raise UsageError("nothing to update: give at least one of " + ", ".join(POLICY_KEYS))
        return web.json_response(await self.engine.update(path, changes))

    async def pause(self, request: web.Request) -> web.Response:
        path = self._path(field(await body(request), "path", str))
        return web.json_response(await self.engine.change(path, "pause"))

    async def resume(self, request: web.Request) -> web.Response:
        path = self._path(field(await body(request), "path", str))
        return web.json_response(await self.engine.change(path, "resume"))

    async def remove(self, request: web.Request) -> web.Response:
        data = await body(request)
        path = self._path(field(data, "path", str))
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
        path = self._path(field(await body(request), "path", str))
        if self.engine.entry(path)["state"] == "paused":
            raise UsageError(f"{path} is paused; resume it first (`filetwin resume {path}`)")
        manifest = await self.engine.backup(path, cause="manual", explicit=True)
        assert manifest is not None
        return web.json_response(manifest_json(manifest.to_json()))

    async def history(self, request: web.Request) -> web.Response:
        raw = request.query.get("path")
        if raw is None:
            raise UsageError("missing query parameter 'path'")
        try:
            path = self._path(raw)
        except NotFound:
            path = os.path.normpath(raw)  # history outlives the entry (remove without purge)
        versions = self.engine.repo.versions(path)
        if not versions and self.engine.table.get(path) is None:
            raise UsageError(f"{raw} is not protected and has no history")
        return web.json_response([manifest_json(m.to_json()) for m in versions])

    async def restore(self, request: web.Request) -> web.Response:
        data = await body(request)
        raw = field(data, "path", str)
        try:
            path = self._path(raw)
        except NotFound:
            path = os.path.normpath(raw)  # a removed entry's history can still be restored
        to = field(data, "to", str, required=False)
        if to is not None and not os.path.isabs(to):
            raise UsageError(f"destination {to} is not an absolute path")
        at = data.get("at")
        if at is not None and not isinstance(at, str | int | float):
            raise UsageError(f"field 'at' has the wrong type: {at!r}")
        result = await self.engine.restore(
            path,
            version=field(data, "version", str, required=False),
            at=None if at is None else str(at),
            to=to,
        )
        return web.json_response(result)

    # on-write: report writes, closes and marks ------------------------------
    async def write(self, request: web.Request) -> web.Response:
        data = await body(request)
        no_unknown_fields(data, ("path", "offset", "data"))
        path = self._path(field(data, "path", str))
        offset = field(data, "offset", int)
        try:
            payload = base64.b64decode(field(data, "data", str), validate=True)
        except (binascii.Error, ValueError) as e:
            raise UsageError(f"field 'data' is not base64: {e}") from e
        seq = await self.engine.onwrite.record(path, "write", offset, payload)
        return web.json_response({"seq": seq})

    async def truncate(self, request: web.Request) -> web.Response:
        data = await body(request)
        no_unknown_fields(data, ("path", "length"))
        path = self._path(field(data, "path", str))
        seq = await self.engine.onwrite.record(path, "truncate", field(data, "length", int))
        return web.json_response({"seq": seq})

    async def close(self, request: web.Request) -> web.Response:
        data = await body(request)
        no_unknown_fields(data, ("path", "ok"))
        path = self._path(field(data, "path", str))
        ok = field(data, "ok", bool, required=False)
        kind = "close-failed" if ok is False else "close-ok"
        seq = await self.engine.onwrite.record(path, kind)
        return web.json_response({"seq": seq})

    async def mark(self, request: web.Request) -> web.Response:
        data = await body(request)
        no_unknown_fields(data, ("path", "name"))
        path = self._path(field(data, "path", str))
        seq = await self.engine.onwrite.record(path, "mark", name=field(data, "name", str))
        return web.json_response({"seq": seq})

    async def journal(self, request: web.Request) -> web.Response:
        raw = request.query.get("path")
        if raw is None:
            raise UsageError("missing query parameter 'path'")
        path = self._path(raw)
        summary = await asyncio.to_thread(
            journal_summary, self.engine.onwrite.journals.directory(path)
        )
        return web.json_response(summary)

    # healing -----------------------------------------------------------
    async def recover(self, request: web.Request) -> web.Response:
        data = await body(request)
        no_unknown_fields(data, ("path", "reason", "trigger"))
        path = self._path(field(data, "path", str))
        trigger = field(data, "trigger", str, required=False) or "notify"
        if trigger not in ("notify", "auto"):
            raise UsageError(f"trigger must be notify or auto, not {trigger!r}")
        reason = field(data, "reason", str, required=False) or "an application asked"
        return web.json_response(await self.engine.healer.request(path, reason, trigger))

    async def verify(self, request: web.Request) -> web.Response:
        data = await body(request)
        no_unknown_fields(data, ("path",))
        raw = field(data, "path", str, required=False)
        path = self._path(raw) if raw is not None else None
        return web.json_response(await self.engine.healer.verify_all(path))

    async def events(self, request: web.Request) -> web.StreamResponse:
        raw = request.query.get("path")
        path = None
        if raw:
            try:
                path = self._path(raw)  # a symlink's events are its target's
            except NotFound:
                path = os.path.normpath(raw)  # events outlive the entry
        try:
            after = int(request.query.get("after", "0"))
            limit = int(request.query["limit"]) if "limit" in request.query else None
        except ValueError as e:
            raise UsageError("'after' and 'limit' must be integers") from e
        if request.query.get("follow") not in ("1", "true"):
            return web.json_response(
                [as_json(e) for e in self.engine.table.events(path, after, limit)]
            )
        # Follow: newline-delimited JSON, one event per line, until the client goes.
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        if limit is not None:
            backlog = self.engine.table.events(path, after, limit)
            after = backlog[0]["id"] - 1 if backlog else after
        while True:
            events = await self.engine.wait_events(after, path)
            for event in events:
                await response.write((json.dumps(as_json(event)) + "\n").encode())
                after = event["id"]


def manifest_json(m: dict[str, Any]) -> dict[str, Any]:
    """A manifest as the public history shape (ISO time, no chunk list)."""
    from ..timefmt import iso

    out = {k: v for k, v in m.items() if k != "chunks"}
    out["time"] = iso(m["time"])
    out["chunk_count"] = len(m.get("chunks", ()))
    return out
