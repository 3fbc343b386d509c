"""Prometheus metrics of one daemon (``GET /metrics``), names prefixed ``filetwin_``.

Two kinds of figures:

- counted as things happen, on the event loop: jobs by kind and result with
  their durations (the job runner's table, seen through ``JobMetricsTable``),
  and events (``event``, called by the engine's ``emit``): every kind, and
  heals, retries and timeouts per entry;
- computed at each scrape, in the scrape's thread (never on the event loop):
  per entry the recovery point age and the journal records and bytes not yet
  checkpointed, entries by state, and the repository's size (a walk of the
  local repository, cached and redone in a thread at most every
  ``REPO_SIZE_REFRESH_S``).

Each daemon has its own registry: two engines in one process never mix.
docs/metrics.md lists every series with a sample scrape.
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ..repo.journal import list_segments
from ..repo.moments import journal_dir

#: the repository's size is walked again at most this often (seconds)
REPO_SIZE_REFRESH_S = 30.0
#: job duration buckets (seconds): a small save to a multi-GiB first version
JOB_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, math.inf)
#: heal events and the result each stands for
HEAL_EVENTS = {
    "healed": "healed",
    "heal-failed": "failed",
    "heal-skipped": "skipped",
    "heal-refused": "refused",
}


class _Table(Protocol):
    path: Path

    def get(self, path: str) -> dict[str, Any] | None: ...

    def start_job(self, path: str, kind: str) -> None: ...

    def end_job(self, path: str, **result: Any) -> None: ...

    def set(self, path: str, **fields: Any) -> None: ...


class JobMetricsTable:
    """The job runner's view of the table, timing each job from its start to its end.

    Every attempt is one job (a retried backup counts its failed attempts and
    its last one); an end without a result (a job abandoned because the file
    changed while it was read, or refused as bad input) counts as ``abandoned``. The end is counted
    before the table is written, once, even when the table cannot take it now.
    """

    def __init__(self, table: _Table, metrics: Metrics) -> None:
        self._table = table
        self._metrics = metrics
        self._started: dict[str, tuple[str, float]] = {}

    def get(self, path: str) -> dict[str, Any] | None:
        return self._table.get(path)

    def set(self, path: str, **fields: Any) -> None:
        self._table.set(path, **fields)

    def start_job(self, path: str, kind: str) -> None:
        self._started[path] = (kind, time.monotonic())
        self._table.start_job(path, kind)

    def end_job(self, path: str, **result: Any) -> None:
        started = self._started.pop(path, None)
        if started is not None:
            kind, t0 = started
            outcome = result.get("last_result") or "abandoned"
            self._metrics.job_ended(kind, str(outcome), time.monotonic() - t0)
        self._table.end_job(path, **result)


class _RepositorySize:
    """Bytes of the regular files under a local repository, cached (see module)."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.value: float | None = None
        self.at = 0.0
        self._lock = threading.Lock()
        self._refreshing = False

    def get(self) -> float | None:
        """The cached size (walked now, in the caller's thread, the first time;
        afterwards, when stale, walked again in a thread of its own)."""
        if "://" in self.location:
            return None  # a remote repository: no cheap way to know
        if self.value is None:
            self._refresh()
        elif time.monotonic() - self.at >= REPO_SIZE_REFRESH_S:
            with self._lock:
                if self._refreshing:
                    return self.value
                self._refreshing = True
            threading.Thread(target=self._refresh, name="repo-size", daemon=True).start()
        return self.value

    def _refresh(self) -> None:
        try:
            self.value = float(_tree_bytes(self.location))
            self.at = time.monotonic()
        finally:
            with self._lock:
                self._refreshing = False


def _tree_bytes(top: str) -> int:
    """Sizes of regular files under ``top``, no symlink followed; 0 if absent."""
    total = 0
    stack = [top]
    while stack:
        directory = stack.pop()
        with contextlib.suppress(OSError), os.scandir(directory) as it:
            for entry in it:
                with contextlib.suppress(OSError):
                    st = entry.stat(follow_symlinks=False)
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(entry.path)
                    elif stat.S_ISREG(st.st_mode):
                        total += st.st_size
    return total


class _EntryCollector(Collector):
    """The figures computed at scrape time (see the module docstring)."""

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def describe(self) -> Iterator[Any]:
        return iter(())  # computed at each scrape: nothing to check at registration

    def collect(self) -> Iterator[Any]:
        m = self.m
        now = m.clock()
        rpo = GaugeMetricFamily(
            "filetwin_recovery_point_age_seconds",
            "How much newer the file's last change is than its newest durable state "
            "(0: nothing unprotected; +Inf: no version yet)",
            labels=["path"],
        )
        records = GaugeMetricFamily(
            "filetwin_journal_pending_records",
            "on-write: journal records not yet folded into a checkpoint version",
            labels=["path"],
        )
        nbytes = GaugeMetricFamily(
            "filetwin_journal_pending_bytes",
            "on-write: bytes of journal records not yet folded into a checkpoint version",
            labels=["path"],
        )
        pending_age = GaugeMetricFamily(
            "filetwin_journal_pending_age_seconds",
            "on-write: time since the journal's last record, while it holds records "
            "not yet checkpointed (0 otherwise)",
            labels=["path"],
        )
        states = GaugeMetricFamily("filetwin_entries", "Entries by state", labels=["state"])
        by_state: dict[str, int] = {}
        for row in m.rows():
            path = row["path"]
            by_state[row["state"]] = by_state.get(row["state"], 0) + 1
            if row["backup_mode"] == "on-write":
                n, pending_bytes = m.pending(path)
                last_record = _last_record_time(m.journals_root, path)
                records.add_metric([path], n)
                nbytes.add_metric([path], pending_bytes)
                pending_age.add_metric(
                    [path], max(0.0, now - last_record) if n and last_record else 0.0
                )
                durable = max(row["last_backup_at"] or 0.0, last_record or 0.0) or None
            else:
                durable = row["last_backup_at"]
            try:
                mtime = os.lstat(path).st_mtime
            except OSError:
                continue  # no live file: no change to compare with
            rpo.add_metric([path], math.inf if durable is None else max(0.0, mtime - durable))
        for state, count in sorted(by_state.items()):
            states.add_metric([state], count)
        yield from (rpo, records, nbytes, pending_age, states)
        yield from _replica_metrics(m.replicas())
        size = m.repo_size.get()
        if size is not None:
            repo = GaugeMetricFamily(
                "filetwin_repository_size_bytes",
                f"Bytes under the local repository (walked at most every "
                f"{REPO_SIZE_REFRESH_S:g} s)",
            )
            repo.add_metric([], size)
            yield repo


def _replica_metrics(replicas: list[dict[str, Any]]) -> Iterator[Any]:
    """The ``[[replica]]`` series (replicas/replicator.py ``gauges``); none without replicas."""
    if not replicas:
        return
    up = GaugeMetricFamily(
        "filetwin_replica_up", "1 while the replica answers, 0 while it is failing",
        labels=["replica"],
    )  # fmt: skip
    lag = GaugeMetricFamily(
        "filetwin_replica_lag_seconds",
        "Age of the oldest change (version or journal record) the replica lacks (0: caught up)",
        labels=["replica"],
    )
    age = GaugeMetricFamily(
        "filetwin_replica_newest_version_age_seconds",
        "Age of the newest version the replica holds (absent: it holds none)",
        labels=["replica"],
    )
    seq = GaugeMetricFamily(
        "filetwin_replica_journal_seq",
        "on-write: the newest journal record shipped to the replica, by entry",
        labels=["replica", "path"],
    )
    for r in replicas:
        up.add_metric([r["name"]], 1 if r["up"] else 0)
        lag.add_metric([r["name"]], r["lag_s"])
        if r["newest_version_age_s"] is not None:
            age.add_metric([r["name"]], r["newest_version_age_s"])
        for path, n in sorted(r["journal_seq"].items()):
            seq.add_metric([r["name"], path], n)
    yield from (up, lag, age, seq)


def _last_record_time(root: Path, path: str) -> float | None:
    """When the entry's journal last took a record: its newest segment's mtime."""
    try:
        segments = list_segments(journal_dir(root, path))
        return os.stat(segments[-1]).st_mtime if segments else None
    except OSError:
        return None


class Metrics:
    """One daemon's metrics; ``render`` is the text of a scrape (call it in a thread).

    ``rows`` gives the table's entries, read on its own connection (the scrape
    runs off the event loop); ``pending(path)`` the journal records and bytes
    not yet checkpointed.
    """

    def __init__(
        self,
        table_path: Path,
        journals_root: Path,
        repository: str,
        pending: Callable[[str], tuple[int, int]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table_path = table_path
        self.journals_root = journals_root
        self.pending = pending
        self.clock = clock
        self.repo_size = _RepositorySize(repository)
        #: the replicas' figures (replicas/replicator.py ``gauges``; set by the engine)
        self.replicas: Callable[[], list[dict[str, Any]]] = list
        # No *_created series: they double every counter for nothing a daemon's
        # counters need (they start with the process; its start time is known).
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.jobs = Counter(
            "filetwin_jobs", "Jobs ended (each attempt), by kind and result",
            ["kind", "result"], registry=r,
        )  # fmt: skip
        self.job_seconds = Histogram(
            "filetwin_job_duration_seconds", "Job durations (each attempt), by kind and result",
            ["kind", "result"], buckets=JOB_BUCKETS, registry=r,
        )  # fmt: skip
        self.events = Counter(
            "filetwin_events", "Events emitted, by kind and ok", ["kind", "ok"], registry=r
        )
        self.heals = Counter(
            "filetwin_heals", "Heals by entry and result (healed, failed, skipped, refused)",
            ["path", "result"], registry=r,
        )  # fmt: skip
        self.retries = Counter(
            "filetwin_retries", "Jobs retried after a failure, by entry", ["path"], registry=r
        )
        self.timeouts = Counter(
            "filetwin_timeouts",
            "Jobs that failed past their deadline (after their retries), by entry",
            ["path"],
            registry=r,
        )
        r.register(_EntryCollector(self))

    def job_table(self, table: _Table) -> JobMetricsTable:
        """``table`` as the job runner should see it: every job timed and counted."""
        return JobMetricsTable(table, self)

    def job_ended(self, kind: str, result: str, seconds: float) -> None:
        self.jobs.labels(kind, result).inc()
        self.job_seconds.labels(kind, result).observe(seconds)

    def event(self, path: str | None, kind: str, ok: bool) -> None:
        """Count an event as it is emitted (never raises: emit must not)."""
        try:
            self.events.labels(kind, "true" if ok else "false").inc()
            where = path or ""
            if kind in HEAL_EVENTS:
                self.heals.labels(where, HEAL_EVENTS[kind]).inc()
            elif kind == "retry":
                self.retries.labels(where).inc()
            elif kind == "timeout":
                self.timeouts.labels(where).inc()
        except Exception:  # noqa: BLE001 - a metric must never break an event
            pass

    def rows(self) -> list[dict[str, Any]]:
        """Every entry's path, mode, state and last backup time; [] if the table
        cannot be read now (the scrape still answers the counters)."""
        try:
            uri = self.table_path.absolute().as_uri() + "?mode=ro"
            db = sqlite3.connect(uri, uri=True, timeout=10)
        except sqlite3.Error:
            return []
        db.text_factory = lambda raw: raw.decode("utf-8", "surrogateescape")
        db.row_factory = sqlite3.Row
        try:
            return [
                dict(r)
                for r in db.execute(
                    "SELECT path, backup_mode, state, last_backup_at FROM entries ORDER BY path"
                )
            ]
        except sqlite3.Error:
            return []
        finally:
            db.close()

    def render(self) -> bytes:
        """The scrape's text (Prometheus exposition format)."""
        return generate_latest(self.registry)
