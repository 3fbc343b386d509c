"""The management table: one row per entry, plus the event log (SQLite, WAL).

The daemon owns the table and is its only writer of entries; commands that
work without a daemon (restore) only append events. Times are stored as Unix
seconds and shown as ISO 8601 UTC by ``as_json``.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import Conflict, NotFound, StateError
from .policy import Policy
from .status_rows import Filters, Page, StatusRows
from .timefmt import iso

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    backup_mode TEXT NOT NULL,
    recovery_mode TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'watching',       -- watching | paused | missing | error
    pending_change TEXT NOT NULL DEFAULT 'none',  -- none | add | update | pause | resume | delete
    job_kind TEXT,             -- backup | checkpoint | capture | recovery | restore | verify
    job_started_at REAL,
    worker_pid INTEGER,
    last_result TEXT,                             -- ok | failed | timeout | interrupted
    last_error TEXT,
    retries INTEGER NOT NULL,
    timeout_s REAL,
    keep INTEGER NOT NULL,
    repository TEXT NOT NULL,
    recovery_requested INTEGER NOT NULL DEFAULT 0,
    journal_seq INTEGER NOT NULL DEFAULT 0,
    last_version TEXT,
    last_backup_at REAL,
    last_good_hash TEXT,
    size INTEGER,
    versions INTEGER NOT NULL DEFAULT 0,
    purge INTEGER NOT NULL DEFAULT 0,
    sync_mode TEXT NOT NULL DEFAULT 'batch',       -- on-write: always | batch
    created_at REAL NOT NULL,
    last_job_kind TEXT                             -- the kind of the last job that ended
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    path TEXT,
    kind TEXT NOT NULL,
    ok INTEGER NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_path ON events(path);
"""

TIME_FIELDS = ("job_started_at", "last_backup_at", "created_at", "time")
ENTRY_FIELDS = [
    "state",
    "pending_change",
    "job_kind",
    "job_started_at",
    "worker_pid",
    "last_result",
    "last_error",
    "retries",
    "timeout_s",
    "keep",
    "repository",
    "recovery_requested",
    "journal_seq",
    "last_version",
    "last_backup_at",
    "last_good_hash",
    "size",
    "versions",
    "purge",
    "backup_mode",
    "recovery_mode",
    "sync_mode",
    "last_job_kind",
    "keep_within_s",
    "keep_hourly",
    "keep_daily",
    "keep_weekly",
    "keep_monthly",
    "source",
    "job_bytes",
]

#: columns added after the first release: (name, declaration), added at open
MIGRATIONS = [
    ("last_job_kind", "TEXT"),
    # time-based retention (policy.Policy): seconds, None when off; counts, 0 when off
    ("keep_within_s", "INTEGER"),
    ("keep_hourly", "INTEGER NOT NULL DEFAULT 0"),
    ("keep_daily", "INTEGER NOT NULL DEFAULT 0"),
    ("keep_weekly", "INTEGER NOT NULL DEFAULT 0"),
    ("keep_monthly", "INTEGER NOT NULL DEFAULT 0"),
    # who named the entry: cli (filetwin add, the API) or config ([[protect]])
    ("source", "TEXT NOT NULL DEFAULT 'cli'"),
    # a running job's progress: bytes its worker has read (written, for a restore)
    ("job_bytes", "INTEGER"),
]


def as_json(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the public JSON shape: ISO times, booleans where meant."""
    out = dict(row)
    for key in TIME_FIELDS:
        if key in out:
            out[key] = iso(out[key])
    for key in ("recovery_requested", "ok", "purge"):
        if key in out and out[key] is not None:
            out[key] = bool(out[key])
    return out


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _bind_raw_names(sql: str, args: Any) -> tuple[str, Any]:
    """Bind text that is not UTF-8 (a file name's surrogate escapes) as its bytes,
    cast to TEXT, so that SQLite stores the name's bytes exactly."""
    if not args or all(not isinstance(a, str) or a.isascii() or _is_utf8(a) for a in args):
        return sql, args
    raw = {i for i, a in enumerate(args) if isinstance(a, str) and not _is_utf8(a)}
    parts = sql.split("?")
    out = parts[0]
    for i, part in enumerate(parts[1:]):
        out += ("CAST(? AS TEXT)" if i in raw else "?") + part
    values = [
        a.encode("utf-8", "surrogateescape") if i in raw else a for i, a in enumerate(args)
    ]
    return out, values


def _status_shape(row: dict[str, Any], cols: list[str]) -> dict[str, Any]:
    """One row as status_json shapes it (the slow path, for non-UTF-8 names)."""
    return as_json({c: row.get(c) for c in cols})


class Table:
    """Entries and events in one SQLite file; see the module docstring."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        try:
            self.db = sqlite3.connect(path, timeout=10, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            # File names need not be UTF-8: they are kept as their bytes (see
            # _bind_raw_names) and read back with surrogate escapes, as os does.
            self.db.text_factory = _decode
            self.db.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a commit survives the daemon dying at once and a power
            # loss after the next checkpoint; versions themselves are in the repository.
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
            have = {r[1] for r in self.db.execute("PRAGMA table_info(entries)")}
            for name, decl in MIGRATIONS:
                if name not in have:
                    self.db.execute(f"ALTER TABLE entries ADD COLUMN {name} {decl}")
            self._status_columns = [
                r[1] for r in self.db.execute("PRAGMA table_info(entries)") if r[1] != "purge"
            ]
        except sqlite3.Error as e:
            raise StateError(f"cannot open the management table {path}: {e}") from e
        #: the status rows kept as JSON (status_rows.py); told of every committed write
        self.status_rows = StatusRows(path, self._row_json_sql(), self._slow_status_row)
        #: entries written inside the open transaction: told to status_rows at its end
        self._tx_touched: list[str] | None = None

    def _touched(self, path: str) -> None:
        """``path``'s row was written: after COMMIT when inside a transaction."""
        if self._tx_touched is not None:
            self._tx_touched.append(path)
        else:
            self.status_rows.touch((path,))

    def _exec(self, sql: str, args: Any = ()) -> sqlite3.Cursor:
        """Run one statement; a failure of the database (a full or failing state
        directory) is a StateError. Integrity errors go to the caller."""
        sql, args = _bind_raw_names(sql, args)
        try:
            return self.db.execute(sql, args)
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as e:
            raise StateError(f"the management table {self.path} cannot be used: {e}") from e

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._exec("BEGIN IMMEDIATE")
        self._tx_touched = []
        try:
            try:
                yield
            except BaseException:
                self._exec("ROLLBACK")
                raise
            self._exec("COMMIT")
        finally:
            # After COMMIT (or ROLLBACK: reading a row again is harmless).
            touched, self._tx_touched = self._tx_touched, None
            self.status_rows.touch(touched)

    # entries -----------------------------------------------------------
    def add(
        self, path: str, policy: Policy, repository: str, source: str = "cli"
    ) -> dict[str, Any]:
        try:
            self._exec(
                "INSERT INTO entries (path, backup_mode, recovery_mode, retries, timeout_s, keep,"
                " sync_mode, repository, state, pending_change, created_at, keep_within_s,"
                " keep_hourly, keep_daily, keep_weekly, keep_monthly, source)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'watching', 'add', ?, ?, ?, ?, ?, ?, ?)",
                (
                    path,
                    policy.backup_mode,
                    policy.recovery_mode,
                    policy.retries,
                    policy.timeout_s,
                    policy.keep,
                    policy.sync_mode,
                    repository,
                    self.clock(),
                    policy.keep_within_s,
                    policy.keep_hourly,
                    policy.keep_daily,
                    policy.keep_weekly,
                    policy.keep_monthly,
                    source,
                ),
            )
        except sqlite3.IntegrityError as e:
            raise Conflict(f"{path} is already protected") from e
        self._touched(path)
        return self.require(path)

    def get(self, path: str) -> dict[str, Any] | None:
        row = self._exec("SELECT * FROM entries WHERE path = ?", (path,)).fetchone()
        return dict(row) if row else None

    def require(self, path: str) -> dict[str, Any]:
        row = self.get(path)
        if row is None:
            raise NotFound(f"{path} is not protected (no such entry; see `filetwin status`)")
        return row

    def _row_json_sql(self) -> str:
        """SQL building one row's public status shape as a JSON object in SQLite's
        C code (no Python dict per row; see status_rows.py)."""
        parts = []
        for c in self._status_columns:
            if c in TIME_FIELDS:
                # Whole seconds, then truncated milliseconds: timefmt.iso's arithmetic.
                secs = f"(CAST({c} AS INTEGER) - ({c} < CAST({c} AS INTEGER)))"
                expr = (
                    f"CASE WHEN {c} IS NULL THEN NULL ELSE "
                    f"strftime('%Y-%m-%dT%H:%M:%S', {secs}, 'unixepoch') || "
                    f"printf('.%03dZ', CAST(({c} - {secs}) * 1000 AS INTEGER)) END"
                )
            elif c == "recovery_requested":
                expr = f"json(CASE WHEN {c} THEN 'true' ELSE 'false' END)"
            else:
                expr = c
            parts.append(f"'{c}', {expr}")
        return f"json_object({', '.join(parts)})"

    def _slow_status_row(self, row: dict[str, Any]) -> dict[str, Any]:
        return _status_shape(row, self._status_columns)

    def status_page(
        self,
        filters: Filters | None = None,
        offset: int = 0,
        limit: int | None = None,
        counts: bool = True,
    ) -> Page:
        """The entries ``filters`` match, in path order, as a JSON array of the public
        status shape (``offset`` skipped, at most ``limit``), with their counts
        when ``counts``.

        Safe to call from a thread other than the writer's (its own connection;
        a WAL reader does not block the daemon's writes).
        """
        return self.status_rows.select(filters, offset, limit, counts)

    def status_json(self) -> str:
        """Every entry in the public status shape, as one JSON array."""
        return self.status_page().body.decode()

    def all(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._exec("SELECT * FROM entries ORDER BY path")]

    def paths(self) -> list[str]:
        """Every entry's path."""
        return [r[0] for r in self._exec("SELECT path FROM entries")]

    def set(self, path: str, **fields: Any) -> None:
        for key in fields:
            if key not in ENTRY_FIELDS:
                raise ValueError(f"not an entry field: {key}")
        assignments = ", ".join(f"{k} = ?" for k in fields)
        self._exec(
            f"UPDATE entries SET {assignments} WHERE path = ?", (*fields.values(), path)
        )
        self._touched(path)

    def start_job(self, path: str, kind: str) -> None:
        """Show a job of ``kind`` running on the entry (its worker pid comes later)."""
        self.set(path, job_kind=kind, job_started_at=self.clock(), worker_pid=None, job_bytes=None)

    def end_job(self, path: str, **result: Any) -> None:
        """Clear the running job; ``result`` sets last_result, last_error, ..."""
        self.set(
            path, job_kind=None, worker_pid=None, job_started_at=None, job_bytes=None, **result
        )

    def delete(self, path: str) -> None:
        self._exec("DELETE FROM entries WHERE path = ?", (path,))
        self._touched(path)

    @staticmethod
    def policy_of(row: dict[str, Any]) -> Policy:
        return Policy(
            backup_mode=row["backup_mode"],
            recovery_mode=row["recovery_mode"],
            retries=row["retries"],
            timeout_s=row["timeout_s"],
            keep=row["keep"],
            sync_mode=row["sync_mode"],
            keep_within_s=row["keep_within_s"],
            keep_hourly=row["keep_hourly"],
            keep_daily=row["keep_daily"],
            keep_weekly=row["keep_weekly"],
            keep_monthly=row["keep_monthly"],
        )

    # events ------------------------------------------------------------
    def add_event(
        self, path: str | None, kind: str, ok: bool, message: str, at: float | None = None
    ) -> dict[str, Any]:
        """Append an event (at ``at``, default now) and return it."""
        now = self.clock() if at is None else at
        cur = self._exec(
            "INSERT INTO events (time, path, kind, ok, message) VALUES (?, ?, ?, ?, ?)",
            (now, path, kind, int(ok), message),
        )
        return {
            "id": cur.lastrowid,
            "time": now,
            "path": path,
            "kind": kind,
            "ok": int(ok),
            "message": message,
        }

    def events(
        self, path: str | None = None, after_id: int = 0, limit: int | None = None
    ) -> list[dict[str, Any]]:
        sql = "SELECT * FROM events WHERE id > ?"
        args: list[Any] = [after_id]
        if path is not None:
            sql += " AND path = ?"
            args.append(path)
        sql += " ORDER BY id"
        if limit is not None:
            newest = sql.replace("ORDER BY id", "ORDER BY id DESC")
            sql = f"SELECT * FROM ({newest} LIMIT ?) ORDER BY id"
            args.append(limit)
        return [dict(r) for r in self._exec(sql, args)]
