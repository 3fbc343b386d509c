"""What runs inside a worker process: the CPU and disk work of a job.

A job is a plain dict sent over a pipe; the answer is a plain dict. Workers
keep one Repository per location open between jobs. A worker never commits a
version's manifest: it stores chunks and returns the manifest, and the daemon
commits it once it knows the content read was a content really saved.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from ..backends import open_backend
from ..errors import FiletwinError
from ..repo import Manifest, Repository
from ..repo.crypto import Keys, load_key_file

_repos: dict[str, Repository] = {}
#: the pipe to the daemon while a job runs (progress messages go there)
_conn: Connection | None = None
#: at most one progress message per this many seconds
PROGRESS_EVERY_S = 0.25


def _reporter() -> Any:
    """A progress callback sending ``{"progress": bytes}`` to the daemon, throttled;
    the daemon's pool takes it as progress, not as the job's answer."""
    last = [0.0]

    def report(done: int) -> None:
        now = time.monotonic()
        if _conn is not None and now - last[0] >= PROGRESS_EVERY_S:
            last[0] = now
            with contextlib.suppress(OSError):
                _conn.send({"progress": done})

    return report
#: unlocked keys per repository location, from the pool's setup message
_keys: dict[str, Keys] = {}
#: replicas per repository location, from the setup message: a chunk the
#: repository lacks or holds damaged is read from them (replicas/fallback.py)
_replicas: dict[str, list[dict[str, str]]] = {}


def _repo(location: str) -> Repository:
    if location not in _repos:
        repo = Repository(open_backend(location), keys=_keys.get(location))
        if _replicas.get(location):
            from ..replicas.fallback import ReplicaFallback, opener

            ReplicaFallback(
                repo.chunks, [(r["name"], opener(r)) for r in _replicas[location]]
            ).install()
        _repos[location] = repo
    return _repos[location]


def _with_repairs(job: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """The answer, with the packs the job read from replicas (and put back) if any."""
    repo = _repos.get(job.get("repository", ""))
    fallback = repo.chunks.fallback if repo is not None else None
    drain = getattr(fallback, "drain", None)
    if drain is not None and (repairs := drain()):
        answer["repaired"] = repairs
    return answer


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
            # Looked up once, for both: the daemon's per-entry lock keeps other
            # versions of this path from being committed meanwhile.
            previous = None if job.get("new") else repo.latest(job["path"])
            manifest = repo.prepare_file(
                job["path"],
                job["cause"],
                journal_seq=int(job.get("journal_seq") or 0),
                progress=_reporter(),
                previous=previous,
            )
            # The daemon commits the manifest and guards gc; this process forgets it.
            repo.release(manifest)
            return {
                "ok": True,
                "manifest": manifest.to_json(),
                "suspect": _suspect(previous, manifest),
            }
        if kind == "prepare-batch":
            return _prepare_batch(repo, job)
        if kind == "checkpoint":
            manifest = _checkpoint(repo, job)
            repo.release(manifest)
            return {"ok": True, "manifest": manifest.to_json()}
        if kind == "diff":
            from ..capture.delta import diff_file

            delta = diff_file(job["path"], Path(job["shadow"]), emit=job["emit"])
            return {
                "ok": True,
                "old_size": delta.old_size,
                "new_size": delta.new_size,
                "writes": delta.writes,
                "suspect": delta.suspect,
            }
        if kind == "heal":
            from ..heal import heal_file

            return {
                "ok": True,
                "result": heal_file(
                    repo,
                    job["path"],
                    job.get("journal_dir"),
                    job["quarantine_dir"],
                    in_place=bool(job.get("in_place")),
                ),
            }
        if kind == "verify":
            from ..heal import verify_file

            return {"ok": True, "result": verify_file(repo, job["path"], job.get("journal_dir"))}
        if kind == "restore":
            from ..restore import restore_version

            result = restore_version(
                repo,
                job["path"],
                version=job.get("version"),
                at=job.get("at"),
                journal_dir=job.get("journal_dir"),
                to=job.get("to"),
                aside_dir=job["aside_dir"],
            )
            return {"ok": True, "result": result}
        return {"ok": False, "error": f"unknown job kind {kind!r}", "type": "FiletwinError"}
    except FiletwinError as e:
        return _failure(e)
    except OSError as e:
        # Reads of the protected file raise SourceError and stores RepositoryError:
        # an OSError that is neither is the job's own (worth another try).
        return {
            "ok": False,
            "error": f"{e.filename or ''}: {e.strerror}".lstrip(": "),
            "type": "JobFailed",
            "errno": e.errno,
        }
    except Exception as e:  # a bug: report it rather than kill the worker
        return {"ok": False, "error": f"internal error: {e!r}", "type": "FiletwinError"}


def _failure(e: FiletwinError) -> dict[str, Any]:
    """A failed answer naming ``e`` (answer_error in jobs.py turns it back)."""
    return {
        "ok": False,
        "error": e.message,
        "type": type(e).__name__,
        "errno": getattr(e, "errno", None),
    }


def _prepare_batch(repo: Repository, job: dict[str, Any]) -> dict[str, Any]:
    """First versions of several files, sharing packs (Repository.prepare_files):
    ``answers`` holds, per file of ``files`` and in its order, what a ``prepare``
    job of that file alone would answer. A store failure fails the whole batch."""
    files = [(f["path"], int(f.get("journal_seq") or 0)) for f in job["files"]]
    new = {f["path"] for f in job["files"] if f.get("new")}
    answers: list[dict[str, Any]] = []
    for result in repo.prepare_files(files, job["cause"], new=new):
        if isinstance(result, FiletwinError):
            answers.append(_failure(result))
            continue
        # The daemon commits each manifest and guards gc; this process forgets them.
        repo.release(result.manifest)
        answers.append(
            {
                "ok": True,
                "manifest": result.manifest.to_json(),
                "suspect": _suspect(result.previous, result.manifest),
            }
        )
    return {"ok": True, "answers": answers}


def _suspect(prev: Manifest | None, manifest: Manifest) -> bool:
    """New content under the size and mtime of the previous version (``prev``, the
    file's newest state before it): no program saving a file leaves its mtime
    as it was, so this is corruption, not an edit."""
    return (
        prev is not None
        # A checkpoint holds the journal's state under the live file's mtime, not
        # bytes read from the file; a restore version holds what a restore in
        # place replaced (maybe the corruption itself), with its size and mtime:
        # a difference from either is no sign of corruption.
        and prev.cause not in ("checkpoint", "restore")
        and prev.hash != manifest.hash
        and prev.size == manifest.size
        and prev.mtime_ns == manifest.mtime_ns
    )


def _checkpoint(repo: Repository, job: dict[str, Any]) -> Manifest:
    """Fold the journal up to ``upto_seq`` into a version, rebuilt from the
    previous version and the records: exactly the journaled state, whatever
    the live file holds now. Mode, owner and mtime come from the live file."""
    from ..repo.moments import rebuild_into, resolve

    jdir = Path(job["journal_dir"])
    moment = resolve(repo, job["path"], jdir, f"seq:{job['upto_seq']}")
    tmp_dir = Path(job["tmp_dir"])
    tmp_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix="checkpoint-")
    try:
        rebuild_into(repo, moment, jdir, fd)
        try:
            # lstat: a symlink planted at the name lends the checkpoint nothing.
            st = os.lstat(job["path"])
            if not stat.S_ISREG(st.st_mode):
                raise FileNotFoundError(job["path"])
            os.fchmod(fd, stat.S_IMODE(st.st_mode))
            with contextlib.suppress(PermissionError):
                os.fchown(fd, st.st_uid, st.st_gid)
            os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
        except FileNotFoundError:
            pass
        return repo.prepare_file(job["path"], "checkpoint", fd=fd, journal_seq=int(job["upto_seq"]))
    finally:
        os.close(fd)
        os.unlink(tmp)


def worker_main(conn: Connection) -> None:
    """Serve jobs from ``conn`` until it closes (the daemon went away).

    Run as ``python -m filetwin.daemon.worker FD`` by the pool, FD being its
    end of a socket pair."""
    # The daemon handles SIGINT/SIGTERM for the whole group; a worker is
    # stopped by its pipe closing or by SIGKILL from the watchdog.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            os._exit(0)
        if job.get("kind") == "setup":
            for location, doc in job.get("keys", {}).items():
                _keys[location] = load_key_file(doc.encode())
            _replicas.update(job.get("replicas", {}))
            for location in job.get("keys", {}):
                # Open the repository now, while the daemon starts: the first job
                # then pays neither the import of the backend's client library
                # (obstore for S3; botocore when it reads a profile) nor its
                # set-up. Best effort: a job opens it again and reports what fails.
                with contextlib.suppress(Exception):
                    _repo(location)
            continue
        if job.get("kind") == "adopt":
            # Packs the daemon's other workers put: dedup against them too.
            for location, news in job["news"].items():
                if location in _repos:
                    _repos[location].chunks.adopt(news)
            continue
        global _conn
        _conn = conn
        answer = _with_repairs(job, run_job(job))
        news = {loc: n for loc, repo in _repos.items() if (n := repo.chunks.take_news())}
        if news:
            answer["news"] = news  # the pool hands them to the other workers
        conn.send(answer)


if __name__ == "__main__":
    import sys

    worker_main(Connection(int(sys.argv[1])))
