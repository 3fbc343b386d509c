"""The symlink-swap racer, as root, against restore --to, heal and capture.

A racer thread swaps a directory the "user" controls between a real directory
and a symlink to a victim directory (and a protected file between a regular
file and a symlink to a root-only secret) while the daemon restores, heals and
captures. Invariants (rule 4): nothing is ever written into the victim
directory, the secret is never changed, and the secret's bytes never become
restorable content of an entry.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import tempfile
import threading
from pathlib import Path

from filetwin.errors import FiletwinError

from .harness import Daemon, TortureTimeout, wait_until
from .model import Summary

SECRET = b"ROOT-ONLY SECRET " * 64


class Swapper(threading.Thread):
    """Swap ``link`` between a real directory (or file) and a symlink to ``target``."""

    def __init__(self, place: Path, real: Path, target: Path) -> None:
        super().__init__(daemon=True)
        self.place, self.real, self.target = place, real, target
        self.halt = threading.Event()
        self.swaps = 0

    def run(self) -> None:
        link = self.place.with_name(self.place.name + ".lnk")
        with contextlib.suppress(FileExistsError):
            os.symlink(self.target, link)
        aside = self.place.with_name(self.place.name + ".real")
        while not self.halt.is_set():
            with contextlib.suppress(OSError):
                os.rename(self.place, aside)  # the real one out of the way
                os.rename(link, self.place)  # the symlink in its place
                os.rename(self.place, link)  # and back
                os.rename(aside, self.place)
                self.swaps += 1

    def stop(self) -> None:
        self.halt.set()
        self.join(10)


def run(seed: int, rounds: int) -> Summary:
    summary = Summary("racer", seed)
    rng = random.Random(seed)
    print(f"racer: seed {seed}", flush=True)
    with tempfile.TemporaryDirectory(prefix="torture-racer-") as tmp:
        root = Path(tmp)
        victim = root / "victim"
        victim.mkdir(mode=0o700)
        secret = victim / "secret"
        secret.write_bytes(SECRET)
        secret.chmod(0o600)
        user = root / "user"
        user.mkdir()
        daemon = Daemon(root / "state").start()
        try:
            _restore_to(daemon, user, victim, rng, rounds, summary)
            _heal(daemon, user, secret, max(2, rounds // 10), summary)
            _capture(daemon, user, secret, max(1, rounds // 100), summary, root)
            after = sorted(p.name for p in victim.iterdir())
            if after != ["secret"]:
                summary.violate(
                    "rule 4 (nothing follows a user's symlink)",
                    f"files written into the victim directory: {after}",
                )
            if secret.read_bytes() != SECRET:
                summary.violate(
                    "rule 4 (nothing follows a user's symlink)", "the root-only secret was changed"
                )
        finally:
            daemon.stop(signal.SIGKILL)
    return summary.finish()


def _restore_to(
    daemon: Daemon, user: Path, victim: Path, rng: random.Random, n: int, summary: Summary
) -> None:
    entry = user / "doc.txt"
    entry.write_bytes(rng.randbytes(3000))
    c = daemon.client
    c.add(entry)
    wait_until(lambda: c.status(entry)["last_version"], 15, "the first version")
    parent = user / "out"
    parent.mkdir()
    racer = Swapper(parent, parent, victim)
    racer.start()
    try:
        for i in range(n):
            with contextlib.suppress(FiletwinError):
                c.restore(entry, to=parent / f"r{i}.bin")
            summary.add("restores --to under the racer")
    finally:
        racer.stop()
    summary.add("swaps", racer.swaps)
    leaked = [p.name for p in victim.iterdir() if p.name != "secret"]
    if leaked:
        summary.violate(
            "rule 4 (nothing follows a user's symlink)",
            f"restore --to wrote {len(leaked)} of {n} files through a swapped parent"
            " into the victim directory (issue 8 item 10)",
        )


def _heal(daemon: Daemon, user: Path, secret: Path, n: int, summary: Summary) -> None:
    entry = user / "heal.bin"
    entry.write_bytes(b"good" * 1000)
    c = daemon.client
    c.add(entry, recovery="notify")
    wait_until(lambda: c.status(entry)["last_version"], 15, "the first version")
    racer = Swapper(entry, entry, secret)
    racer.start()
    try:
        for _ in range(n):
            with contextlib.suppress(FiletwinError):
                c.request_recovery(entry)
            summary.add("heals under the racer")
    finally:
        racer.stop()
    with contextlib.suppress(TortureTimeout):
        wait_until(lambda: daemon.idle(), 15, "heals to end")


def _capture(
    daemon: Daemon, user: Path, secret: Path, n: int, summary: Summary, root: Path
) -> None:
    """Replace an on-write file with a symlink to the secret; capture must not read it."""
    c = daemon.client
    out = root / "captured.bin"
    for i in range(n):
        entry = user / f"notes{i}.db"
        entry.write_bytes(b"notes" * 400)
        c.add(entry, backup="on-write")
        wait_until(lambda: c.status(entry)["last_version"], 15, "the first version")  # noqa: B023
        tmp = user / f".notes{i}.lnk"
        os.symlink(secret, tmp)
        os.rename(tmp, entry)
        summary.add("captures through a planted symlink")
        with contextlib.suppress(TortureTimeout):
            wait_until(lambda: daemon.idle(), 10, "capture to end")
        leaked = False
        with contextlib.suppress(FiletwinError, OSError):
            c.restore(entry, to=out)
            leaked = b"ROOT-ONLY SECRET" in out.read_bytes()
        with contextlib.suppress(OSError):
            out.unlink()
        for v in _versions(daemon, entry):
            with contextlib.suppress(FiletwinError, OSError):
                c.restore(entry, version=v, to=out)
                leaked = leaked or b"ROOT-ONLY SECRET" in out.read_bytes()
                out.unlink()
        if leaked:
            summary.violate(
                "rule 4 (nothing follows a user's symlink)",
                "capture read a root-only file through a planted symlink: the"
                " secret is now restorable content of the entry (issue 8 item 9)",
            )


def _versions(daemon: Daemon, entry: Path) -> list[str]:
    try:
        return [str(v["id"]) for v in daemon.client.history(entry)]
    except FiletwinError:
        return []
