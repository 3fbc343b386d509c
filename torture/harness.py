"""A real ``filetwin daemon`` on a temporary state directory, and polling waits.

Nothing here sleeps to synchronise: ``wait_until`` polls a condition with a
timeout. The daemon runs in its own session, so "the whole tree" (daemon,
workers) is its process group and session.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filetwin import Client, DaemonUnavailable
from filetwin.errors import FiletwinError

#: fast deadlines, retries and gc for the torture daemons
FAST: dict[str, Any] = {
    "timeout_floor_s": 10.0,
    "retry_backoff_s": 0.05,
    "gc_delay_s": 0.2,
    "coalesce_ms": 20,
    "workers": 2,
}


class TortureTimeout(AssertionError):
    """A condition did not come true in time (a stuck entry, a daemon that does not answer)."""


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; return that value.

    Raises TortureTimeout when ``timeout`` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TortureTimeout(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


class Daemon:
    """A ``filetwin daemon`` process on its own state directory.

    ``wrap`` prefixes the command (e.g. strace); the daemon is then the
    wrapper's child, still in the same new session.
    """

    def __init__(self, state_dir: Path, config: dict[str, Any] | None = None) -> None:
        self.state_dir = state_dir
        state_dir.parent.mkdir(parents=True, exist_ok=True)
        self.config_path = state_dir.parent / f"{state_dir.name}.toml"
        self.log_path = state_dir.parent / f"{state_dir.name}.log"
        self.config: dict[str, Any] = {**FAST, **(config or {})}
        self.write_config()
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = Client(socket_path=state_dir / "filetwin.sock", timeout=60)

    def write_config(self) -> None:
        lines = []
        for key, value in self.config.items():
            text = f'"{value}"' if isinstance(value, str) else repr(value)
            lines.append(f"{key} = {text}")
        self.config_path.write_text("\n".join(lines) + "\n")

    @property
    def socket_path(self) -> Path:
        return self.state_dir / "filetwin.sock"

    @property
    def sid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "filetwin",
            "daemon",
            "--state-dir",
            str(self.state_dir),
            "--config",
            str(self.config_path),
        ]

    def start(self, wrap: list[str] | None = None, timeout: float = 30) -> Daemon:
        """Start the daemon (under ``wrap`` if given) and wait until it answers."""
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*(wrap or []), *self.command()],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        wait_until(self._answers, timeout, "the daemon to answer")
        return self

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            code = self.proc.returncode
            raise TortureTimeout(f"daemon exited with {code}:\n{self.log()[-3000:]}")
        try:
            self.client.ping()
        except (DaemonUnavailable, FiletwinError):
            return False
        return True

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tree(self) -> list[int]:
        """Pids of every process in the daemon's session (daemon, workers)."""
        if self.proc is None:
            return []
        return session_pids(self.sid)

    def daemon_pid(self) -> int:
        """The pid of the filetwin daemon itself (not a wrapper such as strace)."""
        assert self.proc is not None
        for pid in sorted(self.tree()):
            argv = _cmdline(pid)
            if argv[:1] != ["strace"] and "filetwin" in argv and "daemon" in argv:
                return pid
        return self.sid

    def workers(self) -> list[int]:
        """Pids of the daemon's descendants (its workers)."""
        top = self.daemon_pid()
        return [p for p in self.tree() if p not in (top, self.sid)]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int | None:
        """Stop with ``sig``; the whole session is SIGKILLed afterwards so nothing lingers."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_tree()
            code = self.proc.wait(10)
        self.kill_tree()
        self.proc = None
        return code

    def kill_tree(self) -> None:
        """SIGKILL every process of the daemon's session and wait until they are gone."""
        if self.proc is None:
            return
        sid = self.sid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(sid, signal.SIGKILL)
        for pid in session_pids(sid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        wait_until(lambda: not session_pids(sid), 15, "the daemon's processes to exit")

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return run_cli("--state-dir", str(self.state_dir), *args, timeout=timeout)

    def idle(self, paths: list[str] | None = None) -> bool:
        """True when no entry (of ``paths``, or any) has a job running."""
        try:
            rows = self.client.status()
        except (DaemonUnavailable, FiletwinError):
            return False
        return all(r["job_kind"] is None for r in rows if paths is None or r["path"] in paths)


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "filetwin", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _stat_fields(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return raw[raw.rindex(")") + 2 :].split()


def _ppid(pid: int) -> int:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else 0


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def session_pids(sid: int) -> list[int]:
    """Live (not zombie) processes whose session id is ``sid``."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _stat_fields(int(name))
        if len(fields) > 3 and int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(name))
    return found
