"""Fixtures of the dashboard tests: a real daemon serving its dashboard on a free port."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import Daemon, wait_until


def free_port() -> int:
    """A TCP port nothing listens on now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DashDaemon(Daemon):
    """A daemon whose config enables the dashboard on ``port``."""

    def __init__(self, state_dir: Path, port: int, enabled: bool = True) -> None:
        super().__init__(state_dir)
        self.port = port
        self.config_path.write_text(
            f"[dashboard]\nenabled = {'true' if enabled else 'false'}\nport = {port}\n"
        )

    @property
    def token(self) -> str:
        return (self.state_dir / "dashboard.token").read_text().strip()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(
        self,
        target: str,
        headers: dict[str, str] | None = None,
        method: str = "GET",
        body: str | None = None,
    ) -> tuple[int, dict[str, str], str]:
        """One request to the dashboard: status, headers (lower-case names, Set-Cookie
        values joined by newlines), body text. ``Host`` defaults to 127.0.0.1:PORT."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            sent = {"Host": f"127.0.0.1:{self.port}", **(headers or {})}
            if body is not None:
                sent.setdefault("Content-Type", "application/x-www-form-urlencoded")
            conn.request(method, target, body=body, headers=sent)
            answer = conn.getresponse()
            text = answer.read().decode("utf-8", "replace")
        finally:
            conn.close()
        got: dict[str, str] = {}
        for key, value in answer.getheaders():
            k = key.lower()
            got[k] = f"{got[k]}\n{value}" if k in got else value
        return answer.status, got, text

    def serving(self) -> bool:
        """Whether something accepts connections on the dashboard's port."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def cookies(self, session: str = "test-session") -> str:
        return f"filetwin_token_{self.port}={self.token}; filetwin_session_{self.port}={session}"


@pytest.fixture
def make_dash(tmp_path: Path) -> Iterator[Callable[..., DashDaemon]]:
    daemons: list[DashDaemon] = []

    def make(name: str = "state", enabled: bool = True, start: bool = True) -> DashDaemon:
        d = DashDaemon(tmp_path / name, free_port(), enabled)
        daemons.append(d)
        if start:
            d.start()
            if enabled:
                # The socket answers first; the dashboard starts right after it.
                wait_until(d.serving, 15, "the dashboard to listen")
        return d

    yield make
    for d in daemons:
        if d.proc is not None:
            d.stop()


@pytest.fixture
def dash(make_dash: Callable[..., DashDaemon]) -> DashDaemon:
    return make_dash()
