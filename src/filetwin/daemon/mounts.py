"""The daemon's supervisor of in-place mounts (`filetwin mount --in-place DIR`).

Each in-place interceptor writes a record, ``STATE_DIR/mounts/KEY.json``
(capture/inplace.py): the directory, its pid and start time, and the command
that starts it. ``Mounts`` checks every record each ``interval_s``:

- the process is gone (SIGKILL, a crash) but the directory is still a FUSE
  mount of ours: a dead mount, where every access fails with "Transport
  endpoint is not connected". It is lazily unmounted (``fusermount3 -uz``),
  which gives the directory back as it was, an event ``mount-lost`` says so,
  and the interceptor is started again (at most ``MAX_RESTARTS`` times in
  ``RESTART_WINDOW_S``, then ``mount-given-up``), a ``mount-restarted`` event
  once it serves the directory again;
- the process is gone and nothing is mounted: the record is dropped.

A clean unmount removes its record itself. Stopping the daemon leaves mounts
running: they pass I/O through without a daemon.

Interface: ``Mounts(config, emit)``; ``start()`` (in the running loop),
``await stop()``, ``await check()`` (one pass), ``await add(dir)``,
``await remove(dir)``, ``list()``; ``routes(mounts)`` for the API.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from ..capture.inplace import FSNAME_PREFIX, mount_key, record_alive, records_dir, start_time
from ..config import Config
from ..errors import FiletwinError, NotFound, UsageError

log = logging.getLogger("filetwin.mounts")
Emit = Callable[[str | None, str, bool, str], None]
MAX_RESTARTS = 3
RESTART_WINDOW_S = 60.0
MOUNT_WAIT_S = 30.0


def fuse_mounted(directory: str) -> bool:
    """True if ``directory`` is the mount point of an in-place interceptor (alive or dead)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if len(fields) < 5 or len(rfields) < 2:
            continue
        mountpoint = fields[4].replace("\\040", " ").replace("\\134", "\\")
        if mountpoint == directory and rfields[1].startswith(FSNAME_PREFIX):
            return True
    return False


def dead(directory: str) -> bool:
    """True if ``directory`` answers "Transport endpoint is not connected"."""
    try:
        os.stat(directory)
    except OSError as e:
        return e.errno == 107  # ENOTCONN
    return False


def lazy_unmount(directory: str) -> bool:
    """Detach the mount now (busy or not); True if it is gone."""
    tool = shutil.which("fusermount3") or "fusermount3"
    subprocess.run([tool, "-u", "-z", directory], capture_output=True, check=False)
    return not fuse_mounted(directory)


class Mounts:
    """See the module docstring."""

    def __init__(
        self,
        config: Config,
        emit: Emit,
        interval_s: float = 1.0,
        holds_entries: Callable[[str], bool] = lambda directory: True,
    ) -> None:
        #: whether a directory holds protected files: only those are mounted over
        self.holds_entries = holds_entries
        self.dir = records_dir(config.state_dir)
        self.state_dir = config.state_dir
        self.emit = emit
        self.interval_s = interval_s
        self._restarts: dict[str, list[float]] = {}
        self._task: asyncio.Task[None] | None = None

    # records -----------------------------------------------------------
    def _records(self) -> list[tuple[Path, dict[str, Any]]]:
        out = []
        for p in sorted(self.dir.glob("*.json")) if self.dir.is_dir() else []:
            with contextlib.suppress(OSError, ValueError):
                out.append((p, json.loads(p.read_text())))
        return out

    def list(self) -> list[dict[str, Any]]:
        """Every supervised directory: its interceptor's pid and whether it serves."""
        return [
            {
                "dir": r["dir"],
                "pid": r["pid"],
                "alive": record_alive(r),
                "mounted": fuse_mounted(r["dir"]),
            }
            for _p, r in self._records()
        ]

    # supervision -------------------------------------------------------
    def start(self) -> None:
        async def loop() -> None:
            while True:
                try:
                    await self.check()
                except Exception:  # the supervisor must outlive one bad pass
                    log.exception("checking the in-place mounts failed")
                await asyncio.sleep(self.interval_s)

        self._task = asyncio.get_running_loop().create_task(loop())

    async def stop(self) -> None:
        """Stop supervising; the mounts themselves keep running."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def check(self) -> builtins.list[str]:
        """One pass over the records; returns what was done (for tests and logs)."""
        done: list[str] = []
        for path, record in self._records():
            directory = record["dir"]
            if record_alive(record):
                if await asyncio.to_thread(dead, directory):
                    # Alive but disconnected (its FUSE connection aborted).
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(record["pid"]), signal.SIGKILL)
                else:
                    continue
            mounted = await asyncio.to_thread(fuse_mounted, directory)
            if not mounted:
                with contextlib.suppress(OSError):
                    path.unlink()
                done.append(f"forgot {directory}")
                continue
            gone = await asyncio.to_thread(lazy_unmount, directory)
            self.emit(
                directory,
                "mount-lost",
                False,
                f"the interceptor of {directory} (pid {record['pid']}) died; "
                + ("lazily unmounted" if gone else "it could not be unmounted"),
            )
            done.append(f"unmounted {directory}")
            if gone:
                done.append(await self._restart(path, record))
        return done

    async def _restart(self, path: Path, record: dict[str, Any]) -> str:
        directory = record["dir"]
        now = time.monotonic()
        recent = [t for t in self._restarts.get(directory, []) if now - t < RESTART_WINDOW_S]
        if len(recent) >= MAX_RESTARTS:
            with contextlib.suppress(OSError):
                path.unlink()
            self.emit(
                directory,
                "mount-given-up",
                False,
                f"the interceptor of {directory} died {len(recent)} times in "
                f"{RESTART_WINDOW_S:.0f} s; {directory} is left unmounted",
            )
            return f"gave up {directory}"
        self._restarts[directory] = [*recent, now]
        proc = self._spawn(record["argv"], directory)
        # The new process rewrites the record itself; until then it is this one.
        record = {**record, "pid": proc.pid, "start_time": start_time(proc.pid)}
        path.write_text(json.dumps(record))
        ok = await self._wait_mounted(directory, proc)
        self.emit(
            directory,
            "mount-restarted" if ok else "mount-lost",
            ok,
            f"the interceptor of {directory} "
            + ("serves it again" if ok else f"did not start again (exit {proc.returncode})"),
        )
        return f"restarted {directory}" if ok else f"restart failed {directory}"

    def _spawn(self, argv: builtins.list[str], directory: str) -> subprocess.Popen[bytes]:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.dir / f"{mount_key(directory)}.log", "ab") as log_file:
            return subprocess.Popen(
                argv,
                stdout=log_file,
                stderr=log_file,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    async def _wait_mounted(self, directory: str, proc: subprocess.Popen[bytes]) -> bool:
        deadline = time.monotonic() + MOUNT_WAIT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            if await asyncio.to_thread(fuse_mounted, directory):
                return True
            await asyncio.sleep(0.02)
        return False

    # commands ----------------------------------------------------------
    async def add(self, directory: str) -> dict[str, Any]:
        """Start an in-place interceptor over ``directory`` (run by the daemon)."""
        if not os.path.isabs(directory) or "\0" in directory:
            raise UsageError(f"{directory!r} is not an absolute path")
        directory = await asyncio.to_thread(os.path.realpath, directory)
        if not os.path.isdir(directory):
            raise NotFound(f"{directory} is not a directory")
        if not self.holds_entries(directory):
            raise UsageError(
                f"{directory} holds no protected file: mount in place a directory whose "
                "files are protected (`filetwin add` them first)"
            )
        if fuse_mounted(directory):
            raise UsageError(f"{directory} is already mounted in place")
        argv = [sys.executable, "-m", "filetwin.cli_mount", "--in-place", directory]
        argv += ["--state-dir", str(self.state_dir)]
        proc = self._spawn(argv, directory)
        if not await self._wait_mounted(directory, proc):
            raise FiletwinError(f"the interceptor of {directory} did not start")
        return {"dir": directory, "pid": proc.pid}

    async def remove(self, directory: str) -> dict[str, Any]:
        """Unmount ``directory``: the interceptor ends, the directory is as it was."""
        directory = os.path.realpath(directory)
        record = next((r for _p, r in self._records() if r["dir"] == directory), None)
        if record is None and not fuse_mounted(directory):
            raise NotFound(f"{directory} is not mounted in place")
        if record is not None and record_alive(record):
            os.kill(int(record["pid"]), signal.SIGTERM)
        deadline = time.monotonic() + MOUNT_WAIT_S
        while fuse_mounted(directory) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if fuse_mounted(directory):
            await asyncio.to_thread(lazy_unmount, directory)
        with contextlib.suppress(OSError):
            (self.dir / f"{mount_key(directory)}.json").unlink()
        return {"dir": directory, "mounted": fuse_mounted(directory)}


def routes(mounts: Mounts) -> list[web.RouteDef]:
    """``GET /mounts``, ``POST /mount {"dir"}``, ``POST /unmount {"dir"}``."""

    async def list_mounts(request: web.Request) -> web.Response:
        return web.json_response(await asyncio.to_thread(mounts.list))

    async def _dir(request: web.Request) -> str:
        try:
            data = json.loads(await request.read())
        except (ValueError, RecursionError) as e:
            raise UsageError(f"the body must be a JSON object: {e}") from e
        if not isinstance(data, dict) or not isinstance(data.get("dir"), str):
            raise UsageError("expected a JSON object with a string field 'dir'")
        return str(data["dir"])

    async def add(request: web.Request) -> web.Response:
        return web.json_response(await mounts.add(await _dir(request)))

    async def remove(request: web.Request) -> web.Response:
        return web.json_response(await mounts.remove(await _dir(request)))

    return [
        web.get("/mounts", list_mounts),
        web.post("/mount", add),
        web.post("/unmount", remove),
    ]
