"""``filetwin daemon``: start the engine and the API, stop cleanly on a signal.

File descriptors are a shared budget: the API's connections, the write
stream's, the workers' pipes, the watcher, SQLite and open journals all draw
on RLIMIT_NOFILE. At start the soft limit is raised to the hard one; the API
then serves at most ``api_connection_cap`` connections at a time (more are
accepted and answered 503 at once, so the listening socket never spins on
EMFILE) and closes a connection idle for ``API_IDLE_TIMEOUT_S``, which keeps a
reserve of descriptors for the jobs and the watcher. asyncio's own
"accept out of system resource" errors, should they happen anyway, are
logged at most once per ``LOG_REPEAT_S`` per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import resource
import signal
import socket
import sys
import time
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from ..config import Config
from ..errors import FiletwinError
from ..unixsock import addressable, bind_unix
from .api import Api
from .dashboard import start_dashboard
from .engine import Engine
from .sdnotify import Notifier
from .stream import STREAM_NAME, start_stream_server

log = logging.getLogger("filetwin.daemon")

#: API connections served at once, at most (the fd limit may lower it)
API_MAX_CONNECTIONS = 256
#: the listening socket's backlog, also the most connections accepted in one go
API_BACKLOG = 32
#: longest request line: a query with a PATH_MAX path, every byte percent-escaped
API_MAX_LINE = 16384
#: descriptors kept for jobs, workers, the watcher, SQLite and journals
FD_RESERVE = 96
#: an API connection with no request in progress is closed after this long
API_IDLE_TIMEOUT_S = 15.0
#: refused connections kept open until their request arrives, at most, and how long
BUSY_POLITE = 16
BUSY_LINGER_S = 1.0
#: an identical error from the event loop is logged at most this often
LOG_REPEAT_S = 10.0


def raise_fd_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; return the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as e:
            log.warning("cannot raise the open files limit from %d to %d: %s", soft, hard, e)
    return soft


def open_fd_count() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 32


def api_connection_cap(fd_limit: int, in_use: int) -> int:
    """API connections to serve at once: half of what is left after the reserve.

    Left aside: the reserve, one burst of accepts (asyncio accepts up to the
    backlog in one go before any protocol runs) and the refused connections
    that wait for their request to be answered 503.
    """
    spare = fd_limit - in_use - FD_RESERVE - API_BACKLOG - BUSY_POLITE
    return max(4, min(API_MAX_CONNECTIONS, spare // 2))


_BUSY = json.dumps(
    {
        "error": "the daemon serves too many connections at once; try again",
        "type": "DaemonUnavailable",
        "exit_code": 3,
    }
).encode()


class _Busy(asyncio.Protocol):
    """A connection past the cap: answered 503 and closed.

    The answer is sent at once and the connection closed when the request
    arrives (or after BUSY_LINGER_S), so that the client reads the answer
    instead of a reset; past BUSY_POLITE such connections at a time, it is
    closed at once, holding no descriptor.
    """

    polite = 0

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_BUSY), _BUSY)
        )
        if _Busy.polite >= BUSY_POLITE:
            transport.close()
            return
        _Busy.polite += 1
        self.timer = asyncio.get_running_loop().call_later(BUSY_LINGER_S, transport.close)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
            _Busy.polite -= 1


class _RateLimitedLoopErrors:
    """The loop's exception handler: each message at most once per LOG_REPEAT_S."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        key = str(context.get("message", ""))
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < LOG_REPEAT_S:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        skipped = self._suppressed.pop(key, 0)
        if skipped:
            context = {**context, "message": f"{key} (and {skipped} more like it, not logged)"}
        loop.default_exception_handler(context)


class _JsonErrors(RequestHandler):
    """aiohttp's handler, answering requests it cannot parse with the JSON error shape.

    A malformed request line or header, or one past ``API_MAX_LINE``, never
    reaches the app's middleware; aiohttp would answer it in plain text and
    log a traceback for each. Here it is the usual JSON, logged in one line
    at most once per LOG_REPEAT_S.
    """

    last_logged = 0.0

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        now = time.monotonic()
        if now - _JsonErrors.last_logged >= LOG_REPEAT_S:
            _JsonErrors.last_logged = now
            log.warning("API: a request could not be handled (%d): %s", status, exc or message)
        if request.writer.output_size > 0:
            raise ConnectionError("the answer was sent already; the connection is closed")
        kind = "UsageError" if 400 <= status < 500 else "FiletwinError"
        text = str(exc or message or "") or "the request could not be handled"
        response = web.json_response(
            {
                "error": f"bad HTTP request: {text[:300]}",
                "type": kind,
                "exit_code": 2 if kind == "UsageError" else 1,
            },
            status=status,
        )
        response.force_close()
        return response


class _Counted(asyncio.Protocol):
    """An API connection: aiohttp's handler, counted from accept to close."""

    def __init__(self, site: _CappedSite, inner: asyncio.Protocol) -> None:
        self.site = site
        self.inner = inner
        site.active += 1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.site.active -= 1
        self.inner.connection_lost(exc)


class _CappedSite(web.SockSite):
    """The API's listening socket, serving at most ``cap`` connections at a time.

    Counted from the protocol factory on: asyncio accepts a burst of
    connections before any of them reaches aiohttp's own bookkeeping.
    """

    def __init__(self, runner: web.AppRunner, sock: socket.socket, cap: int) -> None:
        super().__init__(runner, sock, backlog=API_BACKLOG)
        self.cap = cap
        self.active = 0
        self.refused = 0

    def _protocol(self) -> asyncio.BaseProtocol:
        server = self._runner.server
        assert server is not None
        if self.active >= self.cap:
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                log.warning(
                    "API connection refused: %d are open, the cap is %d (%d refused so far)",
                    self.active,
                    self.cap,
                    self.refused,
                )
            return _Busy()
        # aiohttp's Server() with our handler class; its _kwargs are the handler's options.
        handler = _JsonErrors(server, loop=asyncio.get_running_loop(), **server._kwargs)
        return _Counted(self, handler)

    async def start(self) -> None:
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(
            self._protocol, sock=self._sock, backlog=self._backlog
        )


def _socket_in_use(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with addressable(path) as where:
            probe.connect(where)
    except OSError:
        return False
    finally:
        probe.close()
    return True


async def serve(config: Config) -> None:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_RateLimitedLoopErrors())
    fd_limit = raise_fd_limit()
    config.ensure_state_dir()
    sock_path = str(config.socket_path)
    if os.path.exists(sock_path):
        if _socket_in_use(sock_path):
            raise FiletwinError(f"a daemon already answers on {sock_path}")
        os.unlink(sock_path)  # left by a daemon that was killed
    notifier = Notifier()
    notifier.start_watchdog()
    engine = Engine(config)
    await engine.start()
    runner = web.AppRunner(
        Api(engine).app(),
        handle_signals=False,
        access_log=None,
        shutdown_timeout=2.0,
        keepalive_timeout=API_IDLE_TIMEOUT_S,
        max_line_size=API_MAX_LINE,
    )
    await runner.setup()
    # Create the socket ourselves so that its mode is 0600 before anyone can connect.
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        bind_unix(sock, sock_path)
    finally:
        os.umask(old_umask)
    os.chmod(sock_path, 0o600)
    cap = api_connection_cap(fd_limit, open_fd_count())
    site = _CappedSite(runner, sock, cap)
    stream_path = str(config.state_dir / STREAM_NAME)
    stream = await start_stream_server(engine, stream_path)
    await site.start()
    dashboard = await start_dashboard(engine, config)  # None unless [dashboard] enabled
    log.info(
        "filetwin daemon %d ready on %s (repository %s; open files limit %d, "
        "at most %d API connections)",
        os.getpid(),
        sock_path,
        config.repository_location,
        fd_limit,
        cap,
    )
    notifier.ready(f"serving on {sock_path}")
    # The config's [[protect]] entries, once the API serves: first versions of
    # many files must not keep `filetwin status` from answering meanwhile.
    tasks: set[asyncio.Task[None]] = set()

    def reconcile(why: str) -> None:
        task = loop.create_task(engine.reconciler.reconcile_logged(why))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    reconcile("start")
    stop = asyncio.Event()
    received: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig.name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    # SIGHUP (systemctl reload): re-read the config's [[protect]] entries, as
    # `filetwin reload` does; the result goes to the log and the event log.
    loop.add_signal_handler(signal.SIGHUP, reconcile, "SIGHUP")
    await stop.wait()
    notifier.stopping()
    log.info("stopping (%s)", received[0] if received else "asked")
    for task in list(tasks):
        task.cancel()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(sock_path)
    stream.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(stream_path)
    if dashboard is not None:
        await dashboard.stop()
    await site.stop()
    await engine.stop()
    await runner.cleanup()
    notifier.close()


class _JournalFormatter(logging.Formatter):
    """Lines for the journal: a syslog priority prefix (``<4>``), no timestamp nor
    pid (the journal records both)."""

    PRIORITY = {"CRITICAL": 2, "ERROR": 3, "WARNING": 4, "INFO": 6, "DEBUG": 7}

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        prefix = f"<{self.PRIORITY.get(record.levelname, 6)}>"
        # Every line of a multi-line message (a traceback) keeps its priority.
        return "\n".join(prefix + line for line in text.splitlines())


def stderr_is_journal(environ: dict[str, str] | None = None) -> bool:
    """Whether stderr is connected to the journal: ``JOURNAL_STREAM`` names its
    device and inode (systemd sets it for the service's stdout/stderr)."""
    raw = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    dev, _, ino = raw.partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


def log_handler() -> logging.Handler:
    """stderr, in the journal's format when it is the journal."""
    handler = logging.StreamHandler(sys.stderr)
    if stderr_is_journal():
        handler.setFormatter(_JournalFormatter("%(levelname)s %(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s filetwin[%(process)d] %(levelname)s %(message)s")
        )
    return handler


def run_daemon(config: Config) -> int:
    logging.basicConfig(level=logging.INFO, handlers=[log_handler()])
    asyncio.run(serve(config))
    return 0
