"""``filetwin daemon``: start the engine and the API, stop cleanly on a signal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys

from aiohttp import web

from ..config import Config
from ..errors import FiletwinError
from .api import Api
from .engine import Engine
from .stream import STREAM_NAME, start_stream_server

log = logging.getLogger("filetwin.daemon")


def _socket_in_use(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


async def serve(config: Config) -> None:
    config.ensure_state_dir()
    sock_path = str(config.socket_path)
    if os.path.exists(sock_path):
        if _socket_in_use(sock_path):
            raise FiletwinError(f"a daemon already answers on {sock_path}")
        os.unlink(sock_path)  # left by a daemon that was killed
    engine = Engine(config)
    await engine.start()
    runner = web.AppRunner(
        Api(engine).app(), handle_signals=False, access_log=None, shutdown_timeout=2.0
    )
    await runner.setup()
    # Create the socket ourselves so that its mode is 0600 before anyone can connect.
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(sock_path)
    finally:
        os.umask(old_umask)
    os.chmod(sock_path, 0o600)
    site = web.SockSite(runner, sock)
    stream_path = str(config.state_dir / STREAM_NAME)
    stream = await start_stream_server(engine, stream_path)
    await site.start()
    log.info(
        "filetwin daemon %d ready on %s (repository %s)",
        os.getpid(),
        sock_path,
        config.repository_location,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(sock_path)
    stream.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(stream_path)
    await site.stop()
    await engine.stop()
    await runner.cleanup()


def run_daemon(config: Config) -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s filetwin[%(process)d] %(levelname)s %(message)s",
    )
    asyncio.run(serve(config))
    return 0
