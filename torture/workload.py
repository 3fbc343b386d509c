"""The applications the campaigns run against the daemon, each on its own file.

Each workload is a thread that saves its file in one way until stopped, and
remembers what it completed: ``written`` holds the hash of every content a
save finished (on-close), ``model`` every acknowledged journaled write (on-write).
Errors from a daemon that was just killed are expected and end one session,
never the workload.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
from pathlib import Path
from typing import Any

import filetwin
from filetwin import Client
from filetwin.errors import FiletwinError

from .model import WriteModel, digest

#: size of in-place files: saves keep it, so no torn size is ever a state
INPLACE_SIZE = 16 << 10


class Workload:
    """One file saved over and over in one way, on a thread between ``start()``
    and ``stop()`` (which can alternate: the workload keeps its memory)."""

    kind = "workload"

    def __init__(self, path: Path, client: Client, rng: random.Random) -> None:
        self.path = path
        self.client = client
        self.rng = random.Random(rng.random())
        self.halt = threading.Event()
        self.written: set[str] = set()
        self.ops = 0
        self.errors: list[str] = []
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.halt.clear()
        self._thread = threading.Thread(target=self.run, daemon=True, name=self.path.name)
        self._thread.start()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                self.step()
            except (OSError, FiletwinError) as e:
                self.errors.append(f"{type(e).__name__}: {e}")
                self.recover_from_error()
            # pacing, not synchronisation: leave the daemon some air between saves
            self.halt.wait(self.rng.uniform(0.0, 0.02))

    def step(self) -> None:
        raise NotImplementedError

    def recover_from_error(self) -> None:
        """After an error the workload no longer knows its file: re-read it."""

    def stop(self) -> None:
        self.halt.set()
        if self._thread is not None:
            self._thread.join(60)
            assert not self._thread.is_alive(), f"workload on {self.path} does not stop"
            self._thread = None

    def seed_file(self) -> bytes:
        """Create the file with its first content (before it is protected)."""
        data = self.rng.randbytes(INPLACE_SIZE)
        self.path.write_bytes(data)
        self.written.add(digest(data))
        return data


class RenameSaves(Workload):
    """An editor's atomic save: write a temp file, fsync, rename it over the file."""

    kind = "rename"

    def step(self) -> None:
        data = self.rng.randbytes(self.rng.choice([100, 5000, 40000, 70000]))
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, self.path)
        self.written.add(digest(data))
        self.ops += 1


class InPlaceSaves(Workload):
    """A program rewriting its file in place (same size, one write, then close)."""

    kind = "in-place"

    def step(self) -> None:
        data = self.rng.randbytes(INPLACE_SIZE)
        # digest first: a backup may read the file as soon as the write lands
        self.written.add(digest(data))
        fd = os.open(self.path, os.O_WRONLY | os.O_NOFOLLOW)
        try:
            os.pwrite(fd, data, 0)
        finally:
            os.close(fd)
        self.ops += 1


class HealRequests(InPlaceSaves):
    """In-place saves with ``filetwin recover`` now and then (a notify entry)."""

    kind = "heal"

    def __init__(self, path: Path, client: Client, rng: random.Random, state_dir: Path) -> None:
        super().__init__(path, client, rng)
        self.state_dir = state_dir
        self.heals = 0

    def step(self) -> None:
        super().step()
        if self.rng.random() < 0.15:
            from .harness import run_cli

            done = run_cli("recover", str(self.path), "--state-dir", str(self.state_dir))
            if done.returncode == 0:
                self.heals += 1
            else:
                self.errors.append(f"recover: {done.stderr.strip()[:200]}")


class JournaledWrites(Workload):
    """``filetwin.open`` sessions of random writes and truncates on an on-write file.

    Every write whose record the daemon acknowledged goes into ``model`` with
    its seq. A session ends at the first error (the daemon was killed): the
    model then takes the file as it is.
    """

    kind = "journaled"

    def __init__(
        self, path: Path, client: Client, rng: random.Random, truncating_opens: bool = True
    ) -> None:
        super().__init__(path, client, rng)
        self.model = WriteModel(b"")
        self.truncating_opens = truncating_opens
        self.acked = 0

    def seed_file(self) -> bytes:
        data = super().seed_file()
        self.model = WriteModel(data)
        return data

    def recover_from_error(self) -> None:
        with contextlib.suppress(OSError):
            self.model.resync(self.path.read_bytes())

    def step(self) -> None:
        mode = "wb" if self.truncating_opens and self.rng.random() < 0.1 else "r+b"
        f: Any = filetwin.open(self.path, mode, client=self.client, on_unjournaled="raise")
        try:
            if mode == "wb":
                self.model.truncate(0)
            for _ in range(self.rng.randint(1, 40)):
                if self.halt.is_set():
                    break
                self._one(f)
        finally:
            f.close()
        self.ops += 1

    def _one(self, f: Any) -> None:
        size = len(self.model.current)
        if self.rng.random() < 0.05:
            length = self.rng.randint(0, size + 100)
            f.truncate(length)
            self.model.truncate(length)
        else:
            offset = self.rng.randint(0, size + 10)
            data = self.rng.randbytes(self.rng.randint(1, 600))
            f.seek(offset)
            f.write(data)
            self.model.write(offset, data)
        stream = f._stream  # the seq the daemon acknowledged for this record
        if stream is None:
            raise filetwin.DaemonUnavailable("the write stream is gone")
        self.model.acknowledged(stream.last_seq)
        self.acked += 1
