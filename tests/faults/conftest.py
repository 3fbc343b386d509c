"""Fixtures with real faults: a btrfs loop image whose blocks we damage, the interceptor.

``btrfs`` builds a small btrfs filesystem in a sparse image, mounts it through
a loop device and offers ``corrupt(path)``: one byte of one of the file's
4 KiB data blocks is flipped in the image, so btrfs's data checksum fails and
reads of that block return EIO.
``mounted`` runs `filetwin mount SOURCE MOUNTPOINT` as a subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import blake3
import pytest

from bench.faultfs import Btrfs, NoFaultFS, btrfs_image, unavailable
from tests.helpers import Daemon, wait_until

#: fast retries and deadlines for the fault tests' daemons
FAST: dict[str, Any] = {"timeout_floor_s": 10.0, "retry_backoff_s": 0.05}


@pytest.fixture
def btrfs(tmp_path: Path) -> Iterator[Btrfs]:
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    try:
        with btrfs_image(tmp_path) as fs:
            yield fs
    except NoFaultFS as e:
        pytest.skip(str(e))


@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """``mount(daemon, source, *faults)``: serve ``source`` through the interceptor."""
    if not Path("/dev/fuse").exists() or shutil.which("fusermount3") is None:
        pytest.skip("FUSE (/dev/fuse, fusermount3) is not available")
    running: list[tuple[subprocess.Popen[bytes], Path]] = []

    def mount(daemon: Daemon, source: Path, *faults: str) -> Path:
        mountpoint = tmp_path / f"mnt{len(running)}"
        mountpoint.mkdir()
        log = (tmp_path / f"mount{len(running)}.log").open("ab")
        args = [sys.executable, "-m", "filetwin", "mount", str(source), str(mountpoint)]
        args += ["--state-dir", str(daemon.state_dir)]
        for fault in faults:
            args += ["--fault", fault]
        proc = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True)
        running.append((proc, mountpoint))

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"filetwin mount exited with {proc.returncode}")
            return os.path.ismount(mountpoint)

        wait_until(up, 30, "the interceptor to mount")
        return mountpoint

    yield mount
    for proc, mountpoint in running:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], capture_output=True)
            proc.kill()
            proc.wait(10)
        if os.path.ismount(mountpoint):
            subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], capture_output=True)
        assert not os.path.ismount(mountpoint)
        assert proc.returncode == 0, f"filetwin mount exited with {proc.returncode} on SIGTERM"


# helpers shared by the fault tests ---------------------------------------
def protect(daemon: Daemon, path: Path, backup: str, recovery: str) -> dict[str, Any]:
    """Add ``path`` with the given modes and wait for its first version."""
    daemon.client.add(path, backup=backup, recovery=recovery)
    row: dict[str, Any] = wait_until(
        lambda: (r := daemon.client.status(path))["last_version"] and r,
        what=f"the first version of {path}",
    )
    return row


def kinds(daemon: Daemon, path: Path) -> list[str]:
    return [e["kind"] for e in daemon.client.events(path)]


def event(daemon: Daemon, path: Path, kind: str) -> dict[str, Any] | None:
    found = [e for e in daemon.client.events(path) if e["kind"] == kind]
    return found[-1] if found else None


def follows(seq: list[str], first: str, then: str) -> bool:
    """``then`` occurs after some ``first`` in ``seq``."""
    return first in seq and then in seq[seq.index(first) :]


def digest(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def history_hashes(daemon: Daemon, path: Path) -> set[str]:
    return {v["hash"] for v in daemon.client.history(path)}


def quarantined(daemon: Daemon) -> list[tuple[Path, dict[str, Any]]]:
    """(copy, note) for every file in the quarantine."""
    qdir = daemon.state_dir / "quarantine"
    if not qdir.is_dir():
        return []
    return [
        (qdir / p.name.removesuffix(".json"), json.loads(p.read_text()))
        for p in sorted(qdir.glob("*.json"))
    ]


def flip_silently(path: Path, offset: int = 1000) -> bytes:
    """Flip bytes with ordinary writes, keeping size and mtime (restored before the
    close, so the close's event already sees the old mtime); returns the new content."""
    st = path.stat()
    fd = os.open(path, os.O_RDWR)
    try:
        old = os.pread(fd, 8, offset)
        os.pwrite(fd, bytes(b ^ 0x5A for b in old), offset)
        os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
    finally:
        os.close(fd)
    assert path.stat().st_mtime_ns == st.st_mtime_ns
    return path.read_bytes()
