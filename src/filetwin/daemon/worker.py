"""What runs inside a worker process: the CPU and disk work of a job.

A job is a plain dict sent over a pipe; the answer is a plain dict. Workers
keep one Repository per location open between jobs. A worker never commits a
version's manifest: it stores chunks and returns the manifest, and the daemon
commits it once it knows the content read was a content really saved.
"""

from __future__ import annotations

import os
import signal
import time
from multiprocessing.connection import Connection
from typing import Any

from ..backends import open_backend
from ..errors import FiletwinError
from ..repo import Repository

_repos: dict[str, Repository] = {}


def _repo(location: str) -> Repository:
    if location not in _repos:
        _repos[location] = Repository(open_backend(location))
    return _repos[location]


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run one job and return its answer; never raises."""
    try:
        stall = float(job.get("stall_s") or 0)
        if stall:
            # Test setting: behave like a copy stuck in the kernel.
            time.sleep(stall)
        kind = job["kind"]
        repo = _repo(job["repository"])
        if kind == "prepare":
            manifest = repo.prepare_file(job["path"], job["cause"])
            return {"ok": True, "manifest": manifest.to_json()}
        if kind == "restore":
            from ..restore import restore_version

            result = restore_version(
                repo,
                job["path"],
                version=job.get("version"),
                at=job.get("at"),
                to=job.get("to"),
                aside_dir=job["aside_dir"],
            )
            return {"ok": True, "result": result}
        return {"ok": False, "error": f"unknown job kind {kind!r}", "type": "FiletwinError"}
    except FiletwinError as e:
        return {
            "ok": False,
            "error": e.message,
            "type": type(e).__name__,
            "errno": getattr(e, "errno", None),
        }
    except OSError as e:
        return {
            "ok": False,
            "error": f"{e.filename or ''}: {e.strerror}".lstrip(": "),
            "type": "FiletwinError",
            "errno": e.errno,
        }
    except Exception as e:  # a bug: report it rather than kill the worker
        return {"ok": False, "error": f"internal error: {e!r}", "type": "FiletwinError"}


def worker_main(conn: Connection) -> None:
    """Serve jobs from ``conn`` until it closes (the daemon went away)."""
    # The daemon handles SIGINT/SIGTERM for the whole group; a worker is
    # stopped by its pipe closing or by SIGKILL from the watchdog.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            os._exit(0)
        conn.send(run_job(job))
