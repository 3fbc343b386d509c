"""systemd's notify protocol, spoken directly (no library): READY, STOPPING, WATCHDOG.

systemd names a datagram socket in ``NOTIFY_SOCKET`` (a path, or an abstract
name written with a leading ``@``); each state change is one datagram of
``KEY=VALUE`` lines. With ``WatchdogSec=`` in the unit, systemd also sets
``WATCHDOG_USEC`` (and ``WATCHDOG_PID``, the process meant): the daemon must
send ``WATCHDOG=1`` more often than that, or it is restarted. The pings come
from a task on the daemon's event loop, so a loop that hangs stops them and
systemd notices.

Without ``NOTIFY_SOCKET`` (run by hand, by a test) every call does nothing.
A send that fails is logged, never raised: telling systemd is a courtesy that
must not stop the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("filetwin.daemon")


def socket_address(raw: str) -> str | bytes | None:
    """The address ``NOTIFY_SOCKET`` names: a path, or an abstract name (``@``)
    as bytes starting with NUL; None for anything else (systemd sends nothing else)."""
    if raw.startswith("@") and len(raw) > 1:
        return b"\0" + raw[1:].encode("utf-8", "surrogateescape")
    if raw.startswith("/"):
        return raw
    return None


class Notifier:
    """Sends notify datagrams to the socket the environment names, if any."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = socket_address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_s: float | None = None
        raw_usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if raw_usec.isdigit() and int(raw_usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_s = int(raw_usec) / 1_000_000
        self._sock: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """Send one datagram of ``lines``; whether it was sent."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(lines).encode("utf-8", "replace"), self.address)
        except OSError as e:
            log.warning("cannot notify systemd (%s): %s", lines[0] if lines else "", e)
            return False
        return True

    def start_watchdog(self) -> None:
        """Ping the watchdog from now on, if systemd asked for pings: from the
        start, since systemd's watchdog runs while the daemon starts too (opening
        thousands of entries must not count as a hang while the loop turns)."""
        if self.watchdog_s is not None and self.address is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watchdog())

    def ready(self, status: str = "") -> None:
        """The daemon serves: systemd's start job is done."""
        self.send("READY=1", f"MAINPID={os.getpid()}", *([f"STATUS={status}"] if status else []))
        self.start_watchdog()

    def stopping(self) -> None:
        """The daemon stops (pings end: a slow stop must not count as a hang)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.send("STOPPING=1", "STATUS=stopping")

    async def _watchdog(self) -> None:
        assert self.watchdog_s is not None
        # Half the interval, as sd_watchdog_enabled(3) advises.
        interval = self.watchdog_s / 2
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(interval)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
