"""A failed close of an ``on-close`` file through the interceptor (issue 9, deliver 4).

The fault is real: ``strace`` makes the interceptor's own close of the file
(the close of a duplicate of SOURCE's descriptor, which runs SOURCE's flush)
fail with EIO, as a flush to a failing NFS server or disk does. The
application's ``close()`` must get the error; the daemon must be told, say
so in an event, and never count what that close left as a good version.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.conftest import FAST, digest, event, protect
from tests.helpers import Daemon, wait_until


@contextlib.contextmanager
def failing_close(pid: int, path: Path) -> Iterator[Path]:
    """The first close of ``path`` by each thread of ``pid`` fails with EIO (strace -P)."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    log = path.parent.parent / f"strace-{pid}.log"
    args = ["strace", "-f", "-qq", "-o", str(log), "-P", str(path), "-e", "trace=close"]
    args += ["-e", "inject=close:error=EIO:when=1"]
    for tid in os.listdir(f"/proc/{pid}/task"):
        args += ["-p", tid]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE)

    def attached() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"strace exited: {proc.stderr.read() if proc.stderr else b''!r}")
        status = Path(f"/proc/{pid}/status").read_text()
        return "TracerPid:\t0" not in status

    try:
        wait_until(attached, 15, "strace to attach")
        yield log
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)


def write_and_close(path: Path, source: Path, data: bytes, pid: int) -> OSError | None:
    """Write ``data`` over ``path`` and close it while the interceptor's close of
    ``source`` (the file it serves as ``path``) fails."""
    fh = path.open("r+b", buffering=0)
    fh.write(data)
    with failing_close(pid, source) as log:
        try:
            fh.close()
        except OSError as e:
            assert "(INJECTED)" in log.read_text()
            return e
    return None


def test_the_application_gets_the_failed_close(
    make_daemon: Callable[..., Daemon],
    through: Callable[[Daemon, Path], tuple[Path, int]],
    files: Path,
) -> None:
    daemon = make_daemon("state", **FAST)
    f = files / "doc.bin"
    f.write_bytes(os.urandom(20_000))
    protect(daemon, f, "on-close", "manual")
    where, pid = through(daemon, files)
    err = write_and_close(where / f.name, f, os.urandom(20_000), pid)
    assert err is not None, "close() succeeded although the interceptor's close failed"
    assert err.errno == errno.EIO


def test_a_failed_close_is_an_event_and_never_a_good_version(
    make_daemon: Callable[..., Daemon],
    through: Callable[[Daemon, Path], tuple[Path, int]],
    files: Path,
) -> None:
    daemon = make_daemon("state", **FAST)
    f = files / "doc.bin"
    good = os.urandom(20_000)
    f.write_bytes(good)
    protect(daemon, f, "on-close", "manual")
    where, pid = through(daemon, files)
    bad = os.urandom(20_000)
    err = write_and_close(where / f.name, f, bad, pid)
    assert err is not None and err.errno == errno.EIO
    failed = wait_until(lambda: event(daemon, f, "close-failed"), what="a close-failed event")
    assert str(f) in failed["message"]
    # strace's failed close left the duplicate open (a real close frees it);
    # the interceptor's exit closes it, and the daemon then sees the close.
    other = files / "barrier.bin"
    other.write_bytes(b"barrier 0\n" * 2000)
    protect(daemon, other, "on-close", "manual")
    os.kill(pid, signal.SIGTERM)  # unmounts
    where = where.resolve()

    def unmounted() -> bool:
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
        return all(line.split()[4] != str(where) for line in mounts)

    wait_until(unmounted, 30, "the interceptor to unmount")

    def exited() -> bool:  # gone, or a zombie its parent (the fixture) reaps
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except FileNotFoundError:
            return True

    # The fixture's own SIGTERM must not land in the middle of this exit.
    wait_until(exited, 30, "the interceptor to exit")
    # A close after it: once that one is a version, the daemon has seen the first.
    versions = len(daemon.client.history(other))
    other.write_bytes(b"barrier 1\n" * 2000)
    wait_until(lambda: len(daemon.client.history(other)) > versions, what="the barrier's version")
    wait_until(lambda: not daemon.client.status(f).get("job_kind"), what="f's jobs to end")
    hashes = [v["hash"] for v in daemon.client.history(f)]
    assert digest(bad) not in hashes
    assert hashes[-1] == digest(good)
