"""Real syscall faults in running filetwin processes, with ``strace -e inject``.

``inject(pids, "fsync", "EIO", when="1")`` attaches strace to the given
processes and makes the chosen call fail (``when`` as strace takes it: ``1``
the first call only, ``1+`` every call, ``2..3``...). The fault is lifted
when the context manager exits (strace detaches).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import wait_until


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # the command name is in parentheses and may hold spaces
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            out.append(int(entry))
    return out


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for child in children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def worker_pids(daemon_pid: int) -> list[int]:
    """The daemon's worker processes (``python -m filetwin.daemon.worker``)."""
    pids = []
    for pid in children(daemon_pid):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"filetwin.daemon.worker" in cmd:
            pids.append(pid)
    return pids


@contextlib.contextmanager
def trace(pids: list[int], *expr: str) -> Iterator[Path]:
    """Run ``strace -f -e EXPR... -p PID...`` on running processes (every thread)
    while the block runs; yields strace's log."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    log = Path(f"/tmp/filetwin-strace-{os.getpid()}-{pids[0]}.log")
    args = ["strace", "-f", "-qq", "-o", str(log)]
    for e in expr:
        args += ["-e", e]
    for pid in pids:
        args += ["-p", str(pid)]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE)
    try:
        # strace is attached once every thread of every pid shows a tracer.
        def attached() -> bool:
            if proc.poll() is not None:
                err = proc.stderr.read() if proc.stderr else b""
                raise AssertionError(f"strace exited: {err!r}")
            for pid in pids:
                for tid in os.listdir(f"/proc/{pid}/task"):
                    status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
                    if "TracerPid:\t0" in status:
                        return False
            return True

        wait_until(attached, 15, "strace to attach")
        yield log
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        with contextlib.suppress(FileNotFoundError):
            log.unlink()


@contextlib.contextmanager
def inject(pids: list[int], syscall: str, error: str, when: str = "1") -> Iterator[Path]:
    """Fail ``syscall`` with ``error`` in ``pids`` while the block runs; yields strace's log."""
    with trace(pids, f"trace={syscall}", f"inject={syscall}:error={error}:when={when}") as log:
        yield log


def injected(log: Path) -> int:
    """How many calls strace has failed so far."""
    try:
        return log.read_text().count("(INJECTED)")
    except FileNotFoundError:
        return 0
