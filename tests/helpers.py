"""Test helpers: a real daemon in a temporary state directory, polling waits.

Nothing here sleeps to synchronise: ``wait_until`` polls a condition and
fails the test with a message when its timeout passes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from filetwin import Client, DaemonUnavailable
from filetwin.backends import LocalBackend


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


class Daemon:
    """A ``filetwin daemon`` process on its own state directory."""

    def __init__(self, state_dir: Path, config: dict[str, Any] | None = None) -> None:
        self.state_dir = state_dir
        self.config_path = state_dir.parent / f"{state_dir.name}.toml"
        self.write_config(config)
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = Client(socket_path=state_dir / "filetwin.sock", timeout=120)
        self.log_path = state_dir.parent / f"{state_dir.name}.log"

    def write_config(self, config: dict[str, Any] | None) -> None:
        lines = []
        for key, value in (config or {}).items():
            lines.append(
                f"{key} = {value!r}" if not isinstance(value, str) else f'{key} = "{value}"'
            )
        self.config_path.write_text("\n".join(lines) + "\n")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def socket_path(self) -> Path:
        return self.state_dir / "filetwin.sock"

    def restart(self, sig: int = signal.SIGTERM, **config: Any) -> Daemon:
        """Stop the daemon with ``sig`` (if it runs) and start it again on the same
        state directory, with ``config`` as its whole new config when any is given."""
        if self.proc is not None:
            self.stop(sig)
        if config:
            self.write_config(config)
        return self.start()

    def start(self) -> Daemon:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "filetwin",
                "daemon",
                "--state-dir",
                str(self.state_dir),
                "--config",
                str(self.config_path),
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        wait_until(self._answers, 30, "the daemon to answer")
        return self

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
        try:
            self.client.ping()
        except DaemonUnavailable:
            return False
        return True

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(60)
        if sig == signal.SIGKILL:
            # Workers exit when their pipe closes; make sure the group is gone.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc = None
        return code

    def cli(self, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli("--state-dir", str(self.state_dir), *args, input=input)


def run_cli(
    *args: str, input: bytes | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "filetwin", *args],
        capture_output=True,
        text=True,
        # File names need not be UTF-8: the CLI prints their bytes.
        errors="surrogateescape",
        input=None if input is None else input.decode(),
        timeout=120,
        cwd=cwd,
    )


def stored_chunks(repo: Any) -> set[str]:
    """The ids of every chunk the repository stores (in any pack, or loose), read
    afresh from the backend: what gc has not removed."""
    from filetwin.repo.chunks import chunk_name, is_chunk_id

    repo.chunks.load()
    out = {cid for entries in repo.chunks.packs().values() for cid in entries}
    for name in repo.backend.list("chunks/"):
        cid = name.rsplit("/", 1)[-1]
        if is_chunk_id(cid) and name == chunk_name(cid):
            out.add(cid)
    return out


def pack_of(repo: Any, cid: str) -> str:
    """The backend name of the pack holding chunk ``cid`` (after indexing what
    this process wrote, so that the index names it)."""
    from filetwin.repo.packs import pack_name

    repo.save_index()
    return str(pack_name(repo.chunks.locations()[cid].pack))


def on_terminal(state_dir: Path, *args: str, term: str, columns: int) -> tuple[int, str]:
    """Run ``filetwin --state-dir STATE_DIR ARGS`` on a pseudo-terminal of
    ``columns`` columns with TERM=``term``; its exit status and all it printed
    (stdout and stderr), undecoded escapes and carriage returns included."""
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["TERM"] = term
    proc = subprocess.Popen(
        [sys.executable, "-m", "filetwin", "--state-dir", str(state_dir), *args],
        stdin=follower, stdout=follower, stderr=follower, env=env, close_fds=True,
    )  # fmt: skip
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    code = proc.wait(60)
    os.close(leader)
    return code, b"".join(chunks).decode(errors="replace")


class CountingBackend(LocalBackend):
    """A local directory that records the names it is asked to get and the
    prefixes it is asked to list (a real backend: only counted)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gets: list[str] = []
        self.lists: list[str] = []

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        self.gets.append(name)
        return super().get(name, offset, length)

    def list(self, prefix: str = "") -> Iterator[str]:
        self.lists.append(prefix)
        return super().list(prefix)


def read_request(conn: socket.socket) -> bytes:
    """What a client sent on ``conn`` up to the end of its request head (and
    whatever of the body came with it); less when the client closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data
