"""Full disk: a small loop-mounted ext4 (32 MiB) as the repository, and separately
as the state directory; fill it, save, free it, save again.

Invariants: a save on a full disk fails with an event (or is stored), nothing
already stored is harmed (every version restores with its hash), the live file
is untouched, the daemon keeps answering, and once space is freed the next
save is versioned.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from filetwin.errors import FiletwinError

from .harness import Daemon, TortureTimeout, wait_until
from .model import Summary, digest
from .verify import check_versions, file_bytes

SIZE_MB = 32


def unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (loop devices, mount)"
    if shutil.which("mkfs.ext4") is None or not Path("/dev/loop-control").exists():
        return "no mkfs.ext4 or loop devices"
    return None


@contextlib.contextmanager
def small_ext4(where: Path) -> Iterator[Path]:
    """A fresh ``SIZE_MB`` MiB ext4 mounted at ``where``; unmounted afterwards."""
    image = where.with_suffix(".img")
    with image.open("wb") as f:
        f.truncate(SIZE_MB << 20)
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], check=True, capture_output=True
    )
    where.mkdir()
    subprocess.run(["mount", "-o", "loop", str(image), str(where)], check=True, capture_output=True)
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)
        image.unlink(missing_ok=True)


def fill(mount: Path) -> Path:
    """Fill ``mount`` to the last block; returns the filler file (delete it to free)."""
    filler = mount / "filler"
    with open(filler, "wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\xab" * (1 << 20))
            f.flush()
    with open(filler, "ab") as f, contextlib.suppress(OSError):
        while True:  # the last partial MiB
            f.write(b"\xab" * 4096)
            f.flush()
    return filler


def run(seed: int, rounds: int) -> Summary:
    summary = Summary("disk", seed)
    reason = unavailable()
    if reason:
        summary.skipped = reason
        return summary.finish()
    rng = random.Random(seed)
    print(f"full disk: seed {seed}", flush=True)
    for where in ("repository", "state"):
        for _ in range(rounds):
            with tempfile.TemporaryDirectory(prefix="torture-disk-") as tmp:
                _round(Path(tmp), where, rng, summary)
    return summary.finish()


def _round(root: Path, where: str, rng: random.Random, summary: Summary) -> None:
    files = root / "files"
    files.mkdir()
    scratch = root / "scratch"
    scratch.mkdir()
    with small_ext4(root / "small") as mount:
        state = mount / "state" if where == "state" else root / "state"
        config = {"repository": str(mount / "repo")} if where == "repository" else {}
        daemon = Daemon(state, config)
        daemon.client.timeout = 30
        daemon.start()
        try:
            f = files / "saved.bin"
            data = rng.randbytes(256 << 10)
            f.write_bytes(data)
            written = {digest(data)}
            c = daemon.client
            c.add(f, keep=20)
            wait_until(lambda: c.status(f)["last_good_hash"] == digest(data), 15, "version 1")
            mark = c.events(limit=1)[-1]["id"]
            filler = fill(mount)
            summary.add(f"fills of the {where}")
            # saves on the full disk: each must end, stored or failed with an event
            for _ in range(3):
                data = rng.randbytes(256 << 10)
                written.add(digest(data))
                f.write_bytes(data)
                summary.add("saves on a full disk")
                try:
                    wait_until(lambda: daemon.idle(), 20, "the save on a full disk to end")
                except TortureTimeout as e:
                    summary.violate(
                        "rule 5 (a job never ends)",
                        f"{where} full: {e}",
                        "python -m torture --only disk",
                    )
            if file_bytes(f) != data:
                summary.violate(
                    "rule 3 (our fault never touches the user's file)",
                    f"{where} full: the live file changed",
                )
            try:
                # "Idle" can come between a save's event and its job (the
                # coalescing window): wait for the outcome itself.
                def outcome() -> bool:
                    stored = c.status(f)["last_good_hash"] == digest(data)
                    return stored or any(not e["ok"] for e in c.events(after=mark))

                try:
                    wait_until(outcome, 20, "the save's outcome")
                    reported = True
                except TortureTimeout:
                    reported = False
                if not reported:
                    summary.violate(
                        "every failure is an event",
                        f"{where} full: a save was neither stored nor reported",
                    )
                check_versions(daemon, f, summary, scratch, written)
            except FiletwinError as e:
                summary.violate(
                    "the daemon stays up", f"{where} full: the API fails: {type(e).__name__}: {e}"
                )
            filler.unlink()
            summary.add("frees")
            data = rng.randbytes(256 << 10)
            written.add(digest(data))
            f.write_bytes(data)
            try:
                wait_until(
                    lambda: c.status(f)["last_good_hash"] == digest(data),
                    20,
                    "a version after space was freed",
                )
                summary.add("recoveries")
            except (TortureTimeout, FiletwinError) as e:
                summary.violate(
                    "recovery once space is freed",
                    f"{where} full, then freed: the next save is not versioned: {e}",
                    "python -m torture --only disk",
                )
            check_versions(daemon, f, summary, scratch, written)
        finally:
            daemon.stop(signal.SIGKILL)
