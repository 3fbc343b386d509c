"""The in-place interceptor (`filetwin mount --in-place DIR`) in the FUSE bench.

- :func:`inplace_cmd` and :func:`is_inplace_mount`: how bench/fuse.py mounts
  the interceptor over the source directory itself, and knows it is up (a
  directory that already is a mount point, such as a btrfs loop mount, makes
  ``os.path.ismount`` useless: the mount table's fsname says it instead).
- :func:`heal_latency`: a 1 MiB file on a btrfs loop image, on-close with
  recovery auto, one block damaged; the time from opening and reading it on
  its usual path to the good bytes returned, through an in-place mount and
  through a mount elsewhere, the two alternating, a fresh mount per sample.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .tools import Filetwin

MiB = 1 << 20
#: what an in-place mount's fsname starts with (filetwin.capture.inplace.FSNAME_PREFIX;
#: not imported: that module loads the FUSE library)
FSNAME_PREFIX = "filetwin-inplace:"


def is_inplace_mount(directory: Path) -> bool:
    """True if an in-place interceptor is mounted on ``directory`` (per /proc/self/mountinfo)."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if left.split()[4] == str(directory) and right.split()[1].startswith(FSNAME_PREFIX):
            return True
    return False


def inplace_cmd(directory: Path, state: Path) -> list[str]:
    """``filetwin mount --in-place DIRECTORY`` for the daemon on ``state``."""
    return [
        sys.executable,
        "-m",
        "filetwin",
        "mount",
        "--in-place",
        str(directory),
        "--state-dir",
        str(state),
    ]


def mount_cmd(source: Path, mountpoint: Path, state: Path) -> list[str]:
    """``filetwin mount SOURCE MOUNTPOINT`` for the daemon on ``state``."""
    return [
        sys.executable,
        "-m",
        "filetwin",
        "mount",
        str(source),
        str(mountpoint),
        "--state-dir",
        str(state),
    ]


def _stats(samples: list[float]) -> dict[str, Any]:
    return {
        "median_ms": 1000 * statistics.median(samples),
        "min_ms": 1000 * min(samples),
        "max_ms": 1000 * max(samples),
        "n": len(samples),
    }


def heal_latency(base: Path, runs: int) -> dict[str, Any]:
    """Heal latency of a 1 MiB file through each kind of mount.

    Returns ``{"elsewhere": stats, "in_place": stats}`` (stats: median, min,
    max in ms and n), or ``{"skipped": why}`` where no btrfs image can be
    built. Each sample is a fresh file, damaged before any mount covers the
    filesystem (``corrupt`` checks the EIO on the real path), read once
    through a fresh mount: open, read to the end, close. That whole read is
    timed, so the figure is an upper bound of the heal's own latency.
    Raises RuntimeError if a read returns other bytes than were written.
    """
    from .faultfs import NoFaultFS, btrfs_image
    from .fuse import mounted

    work = base / "heal"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    samples: dict[str, list[float]] = {"elsewhere": [], "in_place": []}
    try:
        with btrfs_image(work) as fs:
            ft = Filetwin(work, fs.mount)
            ft.setup()
            mnt = work / "mnt"
            mnt.mkdir()
            try:
                files: list[tuple[str, Path, bytes]] = []
                for i in range(runs):
                    # the two kinds alternate: A B, B A, ...
                    kinds = ("in_place", "elsewhere") if i % 2 else ("elsewhere", "in_place")
                    for kind in kinds:
                        f = fs.mount / f"heal-{kind}-{i}.bin"
                        content = os.urandom(MiB)
                        f.write_bytes(content)
                        files.append((kind, f, content))
                # add returns once the first versions are stored
                ft.client.add(*(f for _, f, _ in files), backup="on-close", recovery="auto")
                for _, f, _ in files:
                    fs.corrupt(f)
                for kind, f, content in files:
                    ready: Callable[[Path], bool] = os.path.ismount
                    if kind == "in_place":
                        cmd, at, where, ready = (
                            inplace_cmd(fs.mount, ft.state),
                            fs.mount,
                            f,
                            is_inplace_mount,
                        )
                    else:
                        cmd, at, where = mount_cmd(fs.mount, mnt, ft.state), mnt, mnt / f.name
                    with mounted(cmd, at, ready):
                        t0 = time.perf_counter()
                        got = where.read_bytes()
                        samples[kind].append(time.perf_counter() - t0)
                    if got != content:
                        raise RuntimeError(f"the {kind} interceptor returned other bytes")
            finally:
                ft.teardown()
    except NoFaultFS as e:
        return {"skipped": str(e)}
    finally:
        subprocess.run(["sync"], check=False)
        shutil.rmtree(work, ignore_errors=True)
    return {kind: _stats(s) for kind, s in samples.items()}
