"""The web dashboard, served by the daemon on 127.0.0.1 when ``[dashboard] enabled``.

Pages (server-rendered, see dashboard_pages.py): the management table one
page at a time with a path filter (only that page is read from the table, so
100,000 entries answer as fast as 100), per file its timeline of versions,
journal span, closes and marks, restore of any version or moment (with a
confirmation saying what is kept aside), ``recover``, pause and resume, and
the live event stream (server-sent events). ``GET /metrics`` serves the same
Prometheus text as the socket's.

Actions call the engine exactly as the socket API's handlers do
(``Engine.restore``, ``Engine.change``, ``Healer.request``), so a restore from
the dashboard is the same job, with the same event, as ``filetwin restore``.

Security (dashboard_auth.py): every request's Host must be
``127.0.0.1:PORT`` or ``localhost:PORT`` (403 otherwise, token or not); then
the token, from the login URL's ``?token=`` (moved into an HttpOnly,
SameSite=Strict cookie and redirected to the clean URL), the cookie, or an
``Authorization: Bearer`` header (for scrapers of /metrics, which may also
give ``?token=``); every POST also needs the session's CSRF token and an
Origin (or Referer) of the dashboard itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from ..config import Config
from ..errors import FiletwinError, NotFound, UsageError
from ..repo.journal_summary import journal_summary
from ..table import as_json
from . import dashboard_pages as pages
from .api import manifest_json
from .dashboard_auth import Origins, csrf_token, load_or_create_token, new_session, same_secret
from .engine import Engine
from .entrypaths import check_path, entry_path_async

log = logging.getLogger("filetwin.dashboard")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: rows on one page of the management table
PAGE_SIZE = 100
#: events shown when a page opens (the stream adds the rest)
EVENTS_SHOWN = 50
#: a live event stream sends a comment this often, so a dead browser is noticed
SSE_KEEPALIVE_S = 15.0
#: an idle keep-alive connection is closed after this long
IDLE_TIMEOUT_S = 15.0
#: live event streams open at once, at most (each holds a descriptor)
MAX_STREAMS = 16
#: sessions whose pending messages are kept (the oldest are dropped past it)
MAX_FLASH_SESSIONS = 256
#: the static files the pages use, and their types
STATIC = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: under no-referrer a browser sends `Origin: null`
    # with its POSTs, and the Origin check needs the real one.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def _see_other(location: str) -> web.Response:
    """303: the browser follows with a GET (after a login or a POST)."""
    return web.Response(status=303, headers={"Location": location})


def _query(request: web.Request) -> dict[str, str]:
    """The query string; bytes that are not UTF-8 kept as surrogate escapes (file names)."""
    out: dict[str, str] = {}
    for key, value in parse_qsl(
        request.rel_url.raw_query_string, keep_blank_values=True, errors="surrogateescape"
    ):
        out.setdefault(key, value)
    return out


def read_page(
    table_path: Path, text: str, state: str, page: int, size: int = PAGE_SIZE
) -> dict[str, Any]:
    """One page of entry paths (by path) matching the filter, and the counts.

    Its own read-only connection, meant to run in a thread: a WAL reader never
    blocks the daemon's writes. Only ``size`` paths are read; the counts are
    SQLite's own scans.
    """
    where = "WHERE (?1 = '' OR instr(path, ?1) > 0) AND (?2 = '' OR state = ?2)"
    db = sqlite3.connect(f"file:{table_path}?mode=ro", uri=True, timeout=10)
    db.text_factory = lambda raw: raw.decode("utf-8", "surrogateescape")
    try:
        by_state = dict(db.execute("SELECT state, count(*) FROM entries GROUP BY state"))
        if text:
            matched = db.execute(f"SELECT count(*) FROM entries {where}", (text, state)).fetchone()[
                0
            ]
        else:  # one scan fewer: the counts by state answer it
            matched = by_state.get(state, 0) if state else sum(by_state.values())
        pages_n = max(1, -(-matched // size))
        page = min(max(1, page), pages_n)
        paths = [
            r[0]
            for r in db.execute(
                f"SELECT path FROM entries {where} ORDER BY path LIMIT ?3 OFFSET ?4",
                (text, state, size, (page - 1) * size),
            )
        ]
    finally:
        db.close()
    return {
        "paths": paths,
        "matched": matched,
        "total": sum(by_state.values()),
        "by_state": by_state,
        "page": page,
        "pages": pages_n,
        "offset": (page - 1) * size,
    }


class Dashboard:
    """The dashboard's aiohttp application and its TCP site on 127.0.0.1."""

    def __init__(self, engine: Engine, config: Config) -> None:
        self.engine = engine
        self.port = config.dashboard.port
        self.origins = Origins(self.port)
        self.token = load_or_create_token(config.state_dir)
        self._flash: dict[str, list[tuple[bool, str]]] = {}
        self._streams: set[asyncio.Task[Any]] = set()
        self.runner: web.AppRunner | None = None
        self._closing = False

    # life cycle ---------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.gate], client_max_size=1 << 20)
        r = app.router
        r.add_get("/", self.table)
        r.add_get("/rows", self.rows)
        r.add_get("/file", self.file)
        r.add_get("/events", self.events)
        r.add_get("/events/stream", self.stream)
        r.add_get("/restore", self.confirm_restore)
        r.add_post("/action/restore", self.restore)
        r.add_post("/action/pause", self.pause)
        r.add_post("/action/resume", self.resume)
        r.add_post("/action/recover", self.recover)
        r.add_get("/metrics", self.metrics)
        r.add_get("/ping", self.ping)
        r.add_get("/static/{name}", self.static)
        return app

    async def start(self) -> None:
        self.runner = web.AppRunner(
            self.app(),
            handle_signals=False,
            access_log=None,
            shutdown_timeout=1.0,
            # An idle browser connection is closed soon: descriptors are a shared budget.
            keepalive_timeout=IDLE_TIMEOUT_S,
        )
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port, backlog=16)
        await site.start()
        log.info(
            "dashboard on http://127.0.0.1:%d/ (`filetwin dashboard` prints its URL)", self.port
        )

    async def stop(self) -> None:
        """End the live streams (they would hold the shutdown), then the server."""
        self._closing = True
        streams = list(self._streams)
        for task in streams:
            task.cancel()
        await asyncio.gather(*streams, return_exceptions=True)
        if self.runner is not None:
            await self.runner.cleanup()

    # the gate ---------------------------------------------------------------------
    def _session(self, request: web.Request) -> str:
        return request.cookies.get(self.origins.session_cookie_name(), "")

    def csrf(self, request: web.Request) -> str:
        session = self._session(request)
        return csrf_token(self.token, session) if session else ""

    def _authorized(self, request: web.Request) -> bool:
        if same_secret(request.cookies.get(self.origins.cookie_name()), self.token):
            return True
        auth = request.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and same_secret(auth[7:].strip(), self.token)

    def _login(self, request: web.Request, given: str) -> web.StreamResponse:
        """``?token=``: set the cookies and send the browser to the clean URL."""
        if not same_secret(given, self.token):
            return _html(
                pages.message_page("wrong token", "this is not the dashboard's token", _HINT), 403
            )
        rest = {k: v for k, v in _query(request).items() if k != "token"}
        clean = request.path + ("?" + pages.query_string(rest) if rest else "")
        response = _see_other(clean)
        cookie = {"httponly": True, "samesite": "Strict", "path": "/"}
        response.set_cookie(self.origins.cookie_name(), self.token, **cookie)  # type: ignore[arg-type]
        session = self._session(request) or new_session()
        response.set_cookie(self.origins.session_cookie_name(), session, **cookie)  # type: ignore[arg-type]
        return response

    @web.middleware
    async def gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self.origins.host_ok(request.headers.get("Host")):
            # DNS rebinding: a foreign name that resolves here is refused, token or not.
            response: web.StreamResponse = _html(
                pages.message_page(
                    "refused",
                    f"this dashboard answers only to "
                    f"127.0.0.1:{self.port} and localhost:{self.port}",
                ),
                403,
            )
        else:
            response = await self._checked(request, handler)
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    async def _checked(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        given = _query(request).get("token")
        if given is not None and request.method == "GET":
            if request.path == "/metrics" and same_secret(given, self.token):
                return await self._handle(request, handler)  # a scraper: no cookie, no redirect
            return self._login(request, given)
        if not self._authorized(request):
            return _html(
                pages.message_page("token needed", "this dashboard needs its token", _HINT), 401
            )
        if request.method == "POST":
            if not self.origins.origin_ok(
                request.headers.get("Origin"), request.headers.get("Referer")
            ):
                return _html(pages.message_page("refused", "a request from another origin"), 403)
            form = await request.post()
            session = self._session(request)
            sent = form.get("csrf") or request.headers.get("X-CSRF-Token")
            if (
                not session
                or not isinstance(sent, str)
                or not same_secret(sent, self.csrf(request))
            ):
                return _html(
                    pages.message_page(
                        "refused", "missing or wrong CSRF token; reload the page and try again"
                    ),
                    403,
                )
        return await self._handle(request, handler)

    async def _handle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except FiletwinError as e:
            return _html(pages.message_page(type(e).__name__, e.message), e.http_status)
        except web.HTTPException as e:
            if e.status < 400:
                raise
            return _html(pages.message_page(str(e.status), e.reason), e.status)
        except Exception as e:  # noqa: BLE001 - the boundary: every error leaves as a page
            log.exception("dashboard %s %s: unexpected error", request.method, request.path)
            return _html(pages.message_page("internal error", f"{type(e).__name__}: {e}"), 500)

    # reading ------------------------------------------------------------------------
    async def _page(self, request: web.Request) -> tuple[dict[str, Any], dict[str, str]]:
        q = _query(request)
        text = q.get("filter", "")
        state = q.get("state", "")
        if state and state not in pages.STATES:
            raise UsageError(f"unknown state {state[:50]!r}; expected {', '.join(pages.STATES)}")
        raw = q.get("page", "1")
        if not raw.isdigit() or len(raw) > 9:
            raise UsageError(f"page must be a positive number, not {raw[:20]!r}")
        page = await asyncio.to_thread(
            read_page, self.engine.config.table_path, text, state, int(raw)
        )
        rows = []
        for path in page["paths"]:
            # The socket API's status shape, live job and journal figures included.
            with contextlib.suppress(NotFound):  # removed since the page was read
                rows.extend(self.engine.status(path))
        page["rows"] = rows
        query = {k: v for k, v in (("filter", text), ("state", state)) if v}
        return page, query

    def _events(self, path: str | None) -> list[dict[str, Any]]:
        return [as_json(e) for e in self.engine.events(path, 0, EVENTS_SHOWN)]

    async def table(self, request: web.Request) -> web.Response:
        page, query = await self._page(request)
        events = pages.events_panel(self._events(None), None)
        return _html(pages.table_page(page, query, events, self.csrf(request)))

    async def rows(self, request: web.Request) -> web.Response:
        """The table's body and summary line alone, for the page's live refresh."""
        page, _query_ = await self._page(request)
        return web.json_response(
            {"rows": pages.entry_rows(page["rows"]), "summary": pages.summary_line(page)}
        )

    async def _entry_path(self, raw: str | None) -> tuple[str, dict[str, Any] | None]:
        """The entry ``raw`` names, or a removed entry's path (its history stays)."""
        if raw is None:
            raise UsageError("missing path")
        try:
            path = await entry_path_async(raw, self.engine.table)
        except NotFound:
            return check_path(raw), None
        return path, self.engine.status(path)[0]

    async def file(self, request: web.Request) -> web.Response:
        path, entry = await self._entry_path(_query(request).get("path"))
        versions = [
            manifest_json(m.to_json())
            for m in await asyncio.to_thread(self.engine.repo.versions, path)
        ]
        if entry is None and not versions:
            raise NotFound(f"{path} is not protected and has no history")
        journal = await asyncio.to_thread(
            journal_summary, self.engine.onwrite.journals.directory(path)
        )
        messages = self._flash.pop(self._session(request), [])
        events = pages.events_panel(self._events(path), path)
        return _html(
            pages.file_page(entry, path, versions, journal, events, self.csrf(request), messages)
        )

    async def events(self, request: web.Request) -> web.Response:
        body = pages.events_panel(self._events(None), None)
        return _html(pages.layout("events", body, self.csrf(request)))

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: each event after ``after`` (of ``path``), as it happens."""
        q = _query(request)
        path = None
        if q.get("path"):
            path, _entry = await self._entry_path(q["path"])
        raw = request.headers.get("Last-Event-ID") or q.get("after", "0")
        if not raw.isdigit() or len(raw) > 18:
            raise UsageError(f"after must be an event id, not {raw[:20]!r}")
        if len(self._streams) >= MAX_STREAMS:
            raise FiletwinError(f"{MAX_STREAMS} live streams are open already; close a tab")
        after = int(raw)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        await response.prepare(request)
        task = asyncio.current_task()
        assert task is not None
        self._streams.add(task)
        try:
            await response.write(b"retry: 2000\n\n")
            while True:
                try:
                    events = await asyncio.wait_for(
                        self.engine.wait_events(after, path), SSE_KEEPALIVE_S
                    )
                except TimeoutError:
                    await response.write(b": keepalive\n\n")
                    continue
                for event in events:
                    await response.write(pages.sse(as_json(event)))
                    after = event["id"]
        except ConnectionError:
            log.debug("a dashboard event stream's browser left")
        except asyncio.CancelledError:
            if not self._closing:
                raise
            # The daemon stops: end the stream as an answer, so the browser reconnects later.
            response.force_close()
        finally:
            self._streams.discard(task)
        return response

    async def metrics(self, request: web.Request) -> web.Response:
        """The same Prometheus text as the socket's ``GET /metrics`` (daemon/metrics.py)."""
        text = await asyncio.to_thread(self.engine.metrics.render)
        return web.Response(body=text, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def ping(self, request: web.Request) -> web.Response:
        """For ``filetwin dashboard``: the token is right and this daemon answers."""
        return web.json_response({"ok": True, "state_dir": str(self.engine.config.state_dir)})

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        kind = STATIC.get(name)
        if kind is None:
            raise NotFound(f"no static file {name[:100]!r}")
        text = (resources.files("filetwin") / "daemon" / "dashboard_static" / name).read_text()
        return web.Response(text=text, content_type=kind, charset="utf-8")

    # actions ------------------------------------------------------------------------
    async def _form_path(self, request: web.Request) -> tuple[dict[str, str], str]:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        raw = form.get("qpath")
        if raw is None:
            raise UsageError("missing path")
        path, entry = await self._entry_path(unquote(raw, errors="surrogateescape"))
        return form, path

    def _done(self, request: web.Request, path: str, ok: bool, message: str) -> web.Response:
        """Remember ``message`` for the session and send the browser to the file's page."""
        session = self._session(request)
        self._flash.setdefault(session, []).append((ok, message))
        while len(self._flash) > MAX_FLASH_SESSIONS:
            self._flash.pop(next(iter(self._flash)))
        return _see_other(pages.file_link(path))

    async def _act(
        self, request: web.Request, action: Callable[[str, dict[str, str]], Awaitable[str]]
    ) -> web.Response:
        form, path = await self._form_path(request)
        try:
            message = await action(path, form)
        except FiletwinError as e:
            return self._done(request, path, False, e.message)
        return self._done(request, path, True, message)

    async def pause(self, request: web.Request) -> web.Response:
        async def act(path: str, _form: dict[str, str]) -> str:
            return str((await self.engine.change(path, "pause"))["message"])

        return await self._act(request, act)

    async def resume(self, request: web.Request) -> web.Response:
        async def act(path: str, _form: dict[str, str]) -> str:
            return str((await self.engine.change(path, "resume"))["message"])

        return await self._act(request, act)

    async def recover(self, request: web.Request) -> web.Response:
        async def act(path: str, _form: dict[str, str]) -> str:
            result = await self.engine.healer.request(path, "asked from the dashboard", "notify")
            if result.get("message"):
                return str(result["message"])
            kept = result.get("quarantined")
            return f"healed {path} from version {result.get('version')}" + (
                f"; the damaged file was copied to {kept}" if kept else ""
            )

        return await self._act(request, act)

    async def confirm_restore(self, request: web.Request) -> web.Response:
        """GET: the confirmation page of a restore (it changes nothing)."""
        q = _query(request)
        raw = q.get("path")
        if raw is None and "qpath" in q:  # the file page's form: the name's exact bytes
            raw = unquote(q["qpath"], errors="surrogateescape")
        path, _entry = await self._entry_path(raw)
        version, at, to = _restore_fields(q)
        what = (
            f"version {version}"
            if version
            else (f"its state at {at}" if at else "its newest state")
        )
        fields = {k: v for k, v in (("version", version), ("at", at), ("to", to)) if v}
        return _html(pages.confirm_page(path, what, to, fields, self.csrf(request)))

    async def restore(self, request: web.Request) -> web.Response:
        async def act(path: str, form: dict[str, str]) -> str:
            version, at, to = _restore_fields(form)
            result = await self.engine.restore(path, version=version, at=at, to=to)
            kept = result.get("kept_version")
            text = f"restored {result['moment']} of {path} to {result['target']}"
            if kept:
                text += f"; the replaced content is kept as version {kept}"
            return text

        return await self._act(request, act)


def _restore_fields(q: dict[str, str]) -> tuple[str | None, str | None, str | None]:
    """version, moment and destination of a restore form; checked before any job."""
    version = q.get("version", "").strip() or None
    at = q.get("at", "").strip() or None
    to = q.get("to", "").strip() or None
    if q.get("where") == "in-place":
        to = None
    if version and at:
        raise UsageError("give either a version or a moment, not both")
    if to is not None:
        check_path(to, "destination")
    return version, at, to


_HINT = (
    "Run <code>filetwin dashboard</code> on this machine, as the daemon's user: it prints "
    "the URL with its token."
)


async def start_dashboard(engine: Engine, config: Config) -> Dashboard | None:
    """Serve the dashboard when the config enables it; None when it does not or
    cannot (the daemon protects files without it: the failure is logged)."""
    if not config.dashboard.enabled:
        return None
    try:
        dashboard = Dashboard(engine, config)
        await dashboard.start()
    except (OSError, FiletwinError) as e:
        log.error("the dashboard is not served on 127.0.0.1:%d: %s", config.dashboard.port, e)
        engine.emit(None, "dashboard-failed", False, f"the dashboard is not served: {e}")
        return None
    return dashboard
