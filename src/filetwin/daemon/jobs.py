"""The job runner: every job of every kind, and nothing else, goes through here.

A job is one backup, checkpoint, capture, recovery (heal), restore or verify
of one entry, run by a worker process under a deadline. The runner owns what
is common to all of them, so that a rule about jobs is written once:

- the entry's job columns (``job_kind``, ``job_started_at``, ``worker_pid``)
  show the job while it runs, and every way out of it — an answer, a failure,
  a timeout, an exception in the caller's ``finish`` step, a cancellation —
  ends it with a ``last_result`` and a ``last_job_kind``, so the table always
  says which kind of job failed;
- retryable failures are retried up to the job's retry count with
  exponential backoff, each retry an event;
- the final failure is an event naming the file and the cause, then raised.

The caller gives the worker's job dict and a ``finish`` coroutine that turns
the worker's answer into the job's result (commit a manifest, ...). ``finish``
runs while the gate is still held shared, so gc cannot remove the chunks a
worker stored before the manifest that references them is committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from ..config import Config
from ..errors import (
    FiletwinError,
    JobTimeout,
    NotFound,
    RepositoryError,
    SourceError,
    StateError,
    UsageError,
    error_from,
)
from ..policy import scaled_timeout
from .batcher import PrepareBatcher
from .gate import Gate
from .pool import WorkerPool

log = logging.getLogger("filetwin.jobs")

T = TypeVar("T")

#: the event raised when a job of each kind finally fails (a timeout is "timeout")
FAILED_EVENT = {
    "backup": "backup-failed",
    "checkpoint": "checkpoint-failed",
    "capture": "capture-failed",
    "recovery": "heal-failed",
    "restore": "restore",
    "verify": "verify-failed",
}

#: what a job of each kind is called in messages
NOUN = {
    "backup": "backup",
    "checkpoint": "checkpoint",
    "capture": "capture",
    "recovery": "heal",
    "restore": "restore",
    "verify": "verify",
}


class EventSink(Protocol):
    """Where the runner reports: the engine's ``emit``."""

    def __call__(self, path: str | None, kind: str, ok: bool, message: str) -> None: ...


class JobTable(Protocol):
    """The part of the management table the runner writes."""

    def get(self, path: str) -> dict[str, Any] | None: ...

    def start_job(self, path: str, kind: str) -> None: ...

    def end_job(self, path: str, **result: Any) -> None: ...

    def set(self, path: str, **fields: Any) -> None: ...


@dataclass
class Done(Generic[T]):
    """What ``finish`` returns: the job's value and the table fields its success sets
    (besides ``last_result="ok"``)."""

    value: T
    fields: dict[str, Any] = field(default_factory=dict)


class Abandon(Exception):  # noqa: N818 - a control signal, not an error
    """Raised by ``finish``: the job ran but its result is not wanted (the file
    changed while it was read, ...). The job ends without a result and ``run``
    returns ``value``."""

    def __init__(self, value: Any = None) -> None:
        super().__init__("abandoned")
        self.value = value


@dataclass
class Job:
    """One job to run: ``kind`` for the table, ``work`` for the worker."""

    kind: str
    path: str
    work: dict[str, Any]
    timeout_s: float
    retries: int = 0
    #: whether the gate is held shared (jobs that store or read chunks)
    gated: bool = True
    #: a ``prepare`` job that may share a worker with others (batcher.py): the
    #: size of its file; None for a job that runs alone
    batch_size: int | None = None

    def describe(self) -> str:
        """What the job is called in messages: "backup of /x"."""
        return f"{NOUN.get(self.kind, self.kind)} of {self.path}"

    @classmethod
    def for_entry(
        cls,
        kind: str,
        path: str,
        row: dict[str, Any] | None,
        config: Config,
        work: dict[str, Any],
        *,
        size: int | None = None,
        gated: bool = True,
        batch: bool = False,
    ) -> Job:
        """A job of entry ``path`` under its policy: the entry's ``--timeout``
        (else the floor plus ``size``, default the entry's last size, at the
        configured rate) and ``--retries`` (none for a path with no entry).
        ``work`` gets the repository and the test stall setting. ``batch``: a
        ``prepare`` job that may share a worker with others, if its file is
        small and its entry sets no deadline of its own (batcher.py)."""
        if size is None:
            size = (row["size"] or 0) if row is not None else 0
        timeout = scaled_timeout(
            row["timeout_s"] if row is not None else None,
            size,
            config.timeout_floor_s,
            config.timeout_rate,
        )
        work = {
            **work,
            "path": path,
            "repository": config.repository_location,
            "stall_s": config.worker_stall_s,
        }
        retries = row["retries"] if row is not None else 0
        policy_timeout = row["timeout_s"] if row is not None else None
        batch_size = size if batch and PrepareBatcher.batchable(size, policy_timeout) else None
        return cls(kind, path, work, timeout, retries, gated=gated, batch_size=batch_size)


async def result_of(answer: dict[str, Any]) -> Done[dict[str, Any]]:
    """A ``finish`` for jobs whose answer's ``result`` is their value."""
    return Done(answer["result"])


def _refused(error: FiletwinError) -> bool:
    """Whether ``error`` refuses bad input rather than reports a failure."""
    if isinstance(error, RepositoryError):
        return False  # ObjectNotFound: a chunk the repository lost is a failure
    return isinstance(error, (UsageError, NotFound))


def answer_error(answer: dict[str, Any]) -> FiletwinError:
    """The exception a worker's failed answer names."""
    return error_from(answer.get("type"), str(answer.get("error")), answer.get("errno"))


class JobRunner:
    """Runs jobs for the engine; see the module docstring for the contract."""

    def __init__(
        self,
        table: JobTable,
        pool: WorkerPool,
        gate: Gate,
        emit: EventSink,
        backoff_s: float,
        stopping: Callable[[], bool] = lambda: False,
        batcher: PrepareBatcher | None = None,
    ) -> None:
        """``batcher`` runs the jobs that have a ``batch_size`` (else the pool does)."""
        self.table = table
        self.pool = pool
        self.batcher = batcher
        self.gate = gate
        self.emit = emit
        self.backoff_s = backoff_s
        self.stopping = stopping
        #: job ends the table could not record (state directory full): retried
        self._deferred: dict[str, dict[str, Any]] = {}
        self._flusher: asyncio.TimerHandle | None = None

    async def run(
        self,
        job: Job,
        finish: Callable[[dict[str, Any]], Awaitable[Done[T]]],
    ) -> T:
        """Run ``job`` with its retries; return what ``finish`` made of the answer.

        Raises the job's final error (a FiletwinError) after recording it and
        emitting its event. A SourceError (the protected file failed) is never
        retried: reading a damaged file again does not heal it.
        """
        attempt = 0
        while True:
            self._start(job)
            try:
                done = await self._attempt(job, finish)
            except Abandon as a:
                self.end(job.path, job.kind)
                return a.value
            except asyncio.CancelledError:
                self.end(
                    job.path,
                    job.kind,
                    last_result="interrupted",
                    last_error=f"the {NOUN.get(job.kind, job.kind)} was interrupted",
                )
                raise
            except Exception as e:
                error = self._as_error(e, job)
                if _refused(error):
                    # Bad input (an unknown version, a malformed moment): the job was
                    # refused, the entry did not fail.
                    self.end(job.path, job.kind)
                    raise
                result = "timeout" if isinstance(error, JobTimeout) else "failed"
                self.end(job.path, job.kind, last_result=result, last_error=str(error))
                if (
                    error.retryable
                    and not isinstance(error, SourceError)
                    and attempt < job.retries
                    and not self.stopping()
                ):
                    attempt += 1
                    self.emit(
                        job.path,
                        "retry",
                        False,
                        f"{job.describe()} {result} ({error}); retry {attempt} of {job.retries}",
                    )
                    await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
                    continue
                kind = (
                    "timeout" if result == "timeout" else FAILED_EVENT.get(job.kind, "job-failed")
                )
                self.emit(
                    job.path,
                    kind,
                    False,
                    f"{job.describe()} {result} after {attempt + 1} attempt(s): {error}",
                )
                if error is e:
                    raise
                raise error from e
            self.end(job.path, job.kind, last_result="ok", last_error=None, **done.fields)
            return done.value

    async def _attempt(
        self, job: Job, finish: Callable[[dict[str, Any]], Awaitable[Done[T]]]
    ) -> Done[T]:
        def started(pid: int) -> None:
            self._set(job.path, worker_pid=pid)

        def progress(done: int) -> None:
            # The worker sends its bytes read a few times a second (worker._reporter).
            self._set(job.path, job_bytes=done)

        if not job.gated:
            answer = await self._worker_answer(job, started, progress)
            if not answer.get("ok"):
                raise answer_error(answer)
            return await finish(answer)
        async with self.gate.shared():
            answer = await self._worker_answer(job, started, progress)
            if not answer.get("ok"):
                raise answer_error(answer)
            return await finish(answer)

    async def _worker_answer(
        self, job: Job, started: Callable[[int], None], progress: Callable[[int], None]
    ) -> dict[str, Any]:
        if job.batch_size is not None and self.batcher is not None:
            return await self.batcher.run(
                job.work, job.batch_size, job.timeout_s, started, progress
            )
        return await self.pool.run(job.work, job.timeout_s, started, progress)

    @staticmethod
    def _as_error(e: Exception, job: Job) -> FiletwinError:
        if isinstance(e, FiletwinError):
            return e
        if isinstance(e, OSError):
            # Our own side failed (out of file descriptors, a full state
            # directory): worth another try, never the protected file's fault.
            err: FiletwinError = StateError(f"{job.describe()}: {e.strerror or e}")
            return err
        log.exception("%s: internal error", job.describe())
        return FiletwinError(f"{job.describe()}: internal error: {e!r}")

    # the table, tolerant of a full state directory ---------------------------
    def _start(self, job: Job) -> None:
        if self.table.get(job.path) is None:
            return
        try:
            self.table.start_job(job.path, job.kind)
        except StateError as e:
            log.error("cannot record the start of %s: %s", job.describe(), e)

    def _set(self, path: str, **fields: Any) -> None:
        try:
            if self.table.get(path) is not None:
                self.table.set(path, **fields)
        except StateError as e:
            log.error("cannot record %s of %s: %s", sorted(fields), path, e)

    def end(self, path: str, kind: str, **result: Any) -> None:
        """End the entry's job (``result`` as for Table.end_job; a ``last_result``
        also sets ``last_job_kind``); if the table cannot be written now, the end
        is kept and written as soon as it can be."""
        if "last_result" in result:
            result["last_job_kind"] = kind
        pending = self._deferred.pop(path, {})
        pending.update(result)
        try:
            if self.table.get(path) is not None:
                self.table.end_job(path, **pending)
        except StateError as e:
            log.error("cannot record the end of a %s of %s (will retry): %s", kind, path, e)
            self._deferred[path] = pending
            self._arm_flush()

    def _arm_flush(self) -> None:
        """Write the deferred job ends in a second, and again until the table takes them."""
        if self._flusher is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return

        def flush() -> None:
            self._flusher = None
            for path in list(self._deferred):
                fields = self._deferred.pop(path)
                try:
                    if self.table.get(path) is not None:
                        self.table.end_job(path, **fields)
                except StateError:
                    self._deferred[path] = fields
            if self._deferred:
                self._arm_flush()

        self._flusher = loop.call_later(1.0, flush)

    def deferred(self, path: str) -> dict[str, Any]:
        """The job end of ``path`` the table has not taken yet (empty if none)."""
        pending = self._deferred.get(path)
        if not pending:
            return {}
        return {"job_kind": None, "worker_pid": None, "job_started_at": None, **pending}
