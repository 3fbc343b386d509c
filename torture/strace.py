"""Syscall faults on running processes: ``strace -f -p PID -e inject=SYSCALL:error=EIO:when=N``.

``Injection`` attaches to a set of pids (the daemon, or its workers), waits
until every thread is attached, and on exit detaches and counts the calls
strace failed on purpose (``(INJECTED)`` in its output).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path
from types import TracebackType

from .harness import TortureTimeout, wait_until


def unavailable() -> str | None:
    """Why no fault can be injected here, or None."""
    if shutil.which("strace") is None:
        return "strace is not installed"
    if os.geteuid() != 0:
        return "needs root to attach strace to the daemon"
    return None


class Injection:
    """``with Injection(pids, "fsync", 3, persistent=False, out=...) as inj:`` ...

    ``inj.injected`` (after the block) is the number of calls failed.
    """

    def __init__(self, pids: list[int], syscall: str, n: int, persistent: bool, out: Path) -> None:
        self.pids = pids
        self.syscall = syscall
        self.when = f"{n}+" if persistent else str(n)
        self.out = out
        self.injected = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Injection:
        args = ["strace", "-f", "-o", str(self.out), "-e", f"trace={self.syscall}"]
        args += ["-e", f"inject={self.syscall}:error=EIO:when={self.when}"]
        for pid in self.pids:
            args += ["-p", str(pid)]
        err = self.out.with_suffix(".err")
        with err.open("wb") as log:
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log)

        def attached() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise TortureTimeout(f"strace exited: {err.read_text(errors='replace')[-500:]}")
            # strace attaches every thread of a -p process before it goes on
            return err.read_text(errors="replace").count("attached") >= len(self.pids)

        try:
            wait_until(attached, 10, f"strace to attach to {self.pids}")
        except TortureTimeout:
            self._detach()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._detach()

    def _detach(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # strace detaches and lets them run on
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None
        with contextlib.suppress(OSError):
            self.injected = self.out.read_text(errors="replace").count("(INJECTED)")
