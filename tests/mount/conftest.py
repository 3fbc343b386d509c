"""``in_place(daemon, dir)``: `filetwin mount --in-place DIR` as a subprocess."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.conftest import btrfs, mounted  # noqa: F401  (the fixtures)
from tests.helpers import Daemon, wait_until


def listing(directory: Path) -> dict[str, tuple[int, int, int]]:
    """name -> (mode, size, mtime_ns) of every entry, read without following symlinks."""
    out = {}
    for name in sorted(os.listdir(directory)):
        st = os.lstat(directory / name)
        out[name] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def is_inplace_mount(directory: Path) -> bool:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if left.split()[4] == str(directory) and right.split()[1].startswith("filetwin-inplace:"):
            return True
    return False


class InPlace:
    def __init__(self, proc: subprocess.Popen[bytes], directory: Path) -> None:
        self.proc = proc
        self.dir = directory

    def unmount(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


@pytest.fixture
def in_place(tmp_path: Path) -> Iterator[Callable[..., InPlace]]:
    if not Path("/dev/fuse").exists() or shutil.which("fusermount3") is None:
        pytest.skip("FUSE (/dev/fuse, fusermount3) is not available")
    running: list[InPlace] = []

    def mount(daemon: Daemon, directory: Path) -> InPlace:
        log = (tmp_path / f"inplace{len(running)}.log").open("ab")
        args = [sys.executable, "-m", "filetwin.cli_mount", "--in-place", str(directory)]
        args += ["--state-dir", str(daemon.state_dir)]
        proc = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True)
        m = InPlace(proc, directory.resolve())
        running.append(m)

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"filetwin mount --in-place exited with {proc.returncode}")
            return is_inplace_mount(m.dir)

        wait_until(up, 30, "the in-place interceptor to mount")
        return m

    yield mount
    for m in running:
        if m.proc.poll() is None:
            m.proc.send_signal(signal.SIGTERM)
            try:
                m.proc.wait(30)
            except subprocess.TimeoutExpired:
                m.proc.kill()
                m.proc.wait(10)
        while is_inplace_mount(m.dir):  # a restarted one, or a dead one left by a test
            subprocess.run(["fusermount3", "-u", "-z", str(m.dir)], capture_output=True)


def interceptor_pid(mountpoint: Path) -> int:
    """The process serving ``mountpoint`` (its command line names it)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"filetwin" in b" ".join(cmd) and os.fsencode(str(mountpoint)) in cmd:
            return int(entry)
    raise AssertionError(f"no interceptor serves {mountpoint}")


@pytest.fixture(params=["mount", "in-place"])
def through(
    request: pytest.FixtureRequest, in_place: Callable[..., InPlace]
) -> Callable[[Daemon, Path], tuple[Path, int]]:
    """``through(daemon, files)``: (the directory programs use, the interceptor's pid)."""

    def serve(daemon: Daemon, files: Path) -> tuple[Path, int]:
        if request.param == "mount":
            mount = request.getfixturevalue("mounted")
            mnt = mount(daemon, files)
            return mnt, interceptor_pid(mnt)
        m = in_place(daemon, files)
        return files, m.proc.pid

    return serve
