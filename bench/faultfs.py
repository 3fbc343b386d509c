"""A btrfs filesystem in a loop image whose blocks can be damaged: real EIO.

Used by the fault tests (tests/faults) and the heal-latency benchmark.
``corrupt(path)`` flips one byte of one of the file's 4 KiB data blocks in
the image; btrfs's data checksum then fails and reads of that block return
EIO. Needs root, loop devices
and btrfs-progs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

IMAGE_SIZE = 256 << 20
BLOCK = 4096


class NoFaultFS(RuntimeError):
    """This machine cannot build the image (the message says why)."""


@dataclass
class Btrfs:
    mount: Path
    image: Path
    device: str

    def corrupt(self, path: Path) -> int:
        """Flip one byte of a 4 KiB block from the middle of ``path`` in the image.

        Returns the file offset of the damaged block; raises AssertionError
        unless reading the file now fails with EIO.
        """
        data = path.read_bytes()
        assert len(data) >= 16 * BLOCK, "small files may be inline in btrfs metadata"
        offset = (len(data) // 2) // BLOCK * BLOCK
        block = data[offset : offset + BLOCK]
        os.sync()
        fd = os.open(self.image, os.O_RDWR)
        try:
            where = _find(fd, block)
            assert where is not None, f"block at {offset} of {path} not found in the image"
            byte = os.pread(fd, 1, where + 100)
            os.pwrite(fd, bytes([byte[0] ^ 0xFF]), where + 100)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        try:
            path.read_bytes()
        except OSError as e:
            assert e.errno == errno.EIO, e
        else:
            raise AssertionError(f"{path} still reads after its block was damaged")
        return offset


def _find(fd: int, block: bytes) -> int | None:
    """Offset of ``block`` in the image (read in chunks overlapping by a block)."""
    step = 16 << 20
    offset = 0
    while chunk := os.pread(fd, step + len(block), offset):
        i = chunk.find(block)
        if i >= 0:
            return offset + i
        offset += step
    return None


def unavailable() -> str | None:
    """Why no image can be built here, or None."""
    if os.geteuid() != 0:
        return "needs root (loop devices, mount, drop_caches)"
    if shutil.which("mkfs.btrfs") is None:
        return "mkfs.btrfs (btrfs-progs) is not installed"
    if shutil.which("losetup") is None or not Path("/dev/loop-control").exists():
        return "no loop devices (/dev/loop-control)"
    return None


@contextlib.contextmanager
def btrfs_image(workdir: Path) -> Iterator[Btrfs]:
    """A fresh btrfs mounted under ``workdir``; unmounted and detached afterwards."""
    reason = unavailable()
    if reason:
        raise NoFaultFS(reason)
    image = workdir / "btrfs.img"
    with image.open("wb") as f:
        f.truncate(IMAGE_SIZE)
    subprocess.run(["mkfs.btrfs", "-q", str(image)], check=True, capture_output=True)
    made = subprocess.run(
        ["losetup", "--find", "--show", str(image)], capture_output=True, text=True
    )
    if made.returncode != 0:
        raise NoFaultFS(f"no free loop device: {made.stderr.strip()}")
    device = made.stdout.strip()
    mnt = workdir / "btrfs"
    mnt.mkdir()
    try:
        subprocess.run(["mount", "-t", "btrfs", device, str(mnt)], check=True, capture_output=True)
        yield Btrfs(mnt, image, device)
    finally:
        if os.path.ismount(mnt):
            done = subprocess.run(["umount", str(mnt)], capture_output=True)
            if done.returncode != 0:
                subprocess.run(["umount", "-l", str(mnt)], check=True)
        subprocess.run(["losetup", "-d", device], check=True)
