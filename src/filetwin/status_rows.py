"""The status rows of the management table, kept as JSON bytes in memory.

``status`` of 100,000 entries must answer within half a second end to end.
Building 100,000 JSON objects in SQLite takes ~0.6 s (three ISO times per
row, a scan in path order); keeping each row's JSON and refreshing only the
rows written since the last answer makes a full answer a ``join`` (~30 ms),
and filters and pages a loop over small tuples. The cost is memory: about
the size of the answer (~550 bytes an entry).

Contract with the writer (``Table``): ``touch(path)`` is called *after* a
write to that entry is committed (after COMMIT inside a transaction), so a
reader that took its dirty set before the touch sees the write next time and
one that took it after reads the committed row. ``select`` runs on any one
thread at a time (its own SQLite connection); ``touch`` on any thread.
"""

from __future__ import annotations

import bisect
import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import StateError

#: past this many rows written since the last answer, all rows are read again
REREAD_ALL = 2000

SOURCES = ("cli", "config")


def unhealthy(state: str, result: str | None) -> bool:
    """An entry that needs attention: missing, in error, or whose last job failed."""
    return state in ("missing", "error") or result in ("failed", "timeout")


def _array(items: list[bytes]) -> bytes:
    """A JSON array of JSON texts, copied once (65 MB for 100,000 rows)."""
    if not items:
        return b"[]"
    items[0] = b"[" + items[0]
    items[-1] = items[-1] + b"]"
    return b",".join(items)


def _key(path: str) -> bytes:
    # SQLite orders paths by their bytes (BINARY): so do we, surrogate escapes included.
    return path.encode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class Filters:
    """Which entries a status answer holds; every given filter must match.

    ``prefix``: the entry itself or the entries under that directory (path
    components, so ``/srv/app`` does not match ``/srv/application``).
    """

    states: frozenset[str] = frozenset()
    failed: bool = False
    prefix: str | None = None
    source: str | None = None

    def match(self, row: _Row) -> bool:
        if self.states and row.state not in self.states:
            return False
        if self.failed and not unhealthy(row.state, row.result):
            return False
        if self.source is not None and row.source != self.source:
            return False
        if self.prefix is not None:
            under = self.prefix.rstrip("/") + "/"
            if row.path != self.prefix and not row.path.startswith(under):
                return False
        return True


@dataclass(slots=True)
class _Row:
    path: str
    state: str
    result: str | None
    source: str
    json: bytes


@dataclass
class Page:
    """One answer: the rows (a JSON array's bytes) and what matched in all."""

    body: bytes
    total: int
    states: Counter[str] = field(default_factory=Counter)
    results: Counter[str] = field(default_factory=Counter)
    attention: int = 0

    def summary(self) -> dict[str, Any]:
        """Every matching entry counted by state and by last result ("none": no job yet)."""
        return {
            "total": self.total,
            "states": dict(sorted(self.states.items())),
            "results": dict(sorted(self.results.items())),
            "attention": self.attention,
        }


class StatusRows:
    """See the module docstring. ``json_expr`` is the SQL building one row's JSON
    object; ``shape(row)`` shapes a whole row (a dict of its columns) whose name
    is not UTF-8, for Python's json (SQLite's JSON does not escape surrogates)."""

    def __init__(
        self,
        table_path: Path,
        json_expr: str,
        shape: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> None:
        self.table_path = table_path
        self.json_expr = json_expr
        self.shape = shape
        self._touch_lock = threading.Lock()
        self._serve_lock = threading.Lock()
        self._dirty: set[str] = set()
        self._rows: dict[bytes, _Row] | None = None
        self._order: list[bytes] = []
        #: the rows in path order, and the whole answer: both dropped when a row changes
        self._in_order: list[_Row] | None = None
        self._whole: bytes | None = None

    def touch(self, paths: Iterable[str]) -> None:
        """These entries were written (committed): read them again before the next answer."""
        with self._touch_lock:
            self._dirty.update(paths)

    def select(
        self,
        filters: Filters | None = None,
        offset: int = 0,
        limit: int | None = None,
        counts: bool = True,
    ) -> Page:
        """The matching rows in path order, ``offset`` skipped, at most ``limit``;
        with ``counts``, every matching row counted by state and last result."""
        filters = filters or Filters()
        with self._serve_lock:
            self._refresh()
            if self._in_order is None:
                assert self._rows is not None
                self._in_order = [self._rows[k] for k in self._order]
                self._whole = None
            matched = self._in_order
            if filters != Filters():
                # List comprehensions, not a loop with counters: 100,000 rows in ~20 ms.
                matched = [r for r in matched if filters.match(r)]
            page = Page(b"", len(matched))
            whole = offset == 0 and limit is None and matched is self._in_order
            if whole and self._whole is not None:
                page.body = self._whole
            else:
                chosen = matched[offset : None if limit is None else offset + limit]
                page.body = _array([r.json for r in chosen])
                if whole:
                    # Unchanged until a row is written: a poll again costs nothing.
                    self._whole = page.body
            if counts:
                page.states = Counter(r.state for r in matched)
                page.results = Counter(r.result or "none" for r in matched)
                page.attention = sum(1 for r in matched if unhealthy(r.state, r.result))
            return page

    # reading the table -------------------------------------------------
    def _refresh(self) -> None:
        with self._touch_lock:
            dirty, self._dirty = self._dirty, set()
        if self._rows is not None and not dirty:
            return
        self._in_order = None
        self._whole = None
        db = sqlite3.connect(self.table_path, timeout=10)
        db.text_factory = lambda raw: raw.decode("utf-8", "surrogateescape")
        try:
            if self._rows is None or len(dirty) > REREAD_ALL:
                self._load_all(db)
            else:
                for path in dirty:
                    self._load_one(db, path)
        except sqlite3.Error as e:
            # Read again in full next time: what was read may be half done.
            self._rows = None
            raise StateError(f"the management table {self.table_path} cannot be read: {e}") from e
        finally:
            db.close()

    def _select_sql(self, where: str = "") -> str:
        return f"SELECT path, state, last_result, source, {self.json_expr} FROM entries {where}"

    def _make(self, db: sqlite3.Connection, raw: tuple[Any, ...]) -> _Row:
        path, state, result, source, text = raw
        try:
            body = text.encode("utf-8")
        except UnicodeEncodeError:
            # Python's json escapes the surrogates of a name that is not UTF-8.
            cur = db.execute("SELECT * FROM entries WHERE path = CAST(? AS TEXT)", (_key(path),))
            names = [d[0] for d in cur.description]
            body = json.dumps(self.shape(dict(zip(names, cur.fetchone(), strict=True)))).encode()
        return _Row(path, state, result, source or "cli", body)

    def _load_all(self, db: sqlite3.Connection) -> None:
        rows = {}
        for raw in db.execute(self._select_sql()):
            row = self._make(db, raw)
            rows[_key(row.path)] = row
        self._rows = rows
        self._order = sorted(rows)

    def _load_one(self, db: sqlite3.Connection, path: str) -> None:
        assert self._rows is not None
        key = _key(path)
        try:
            key.decode("utf-8")
            raw = db.execute(self._select_sql("WHERE path = ?"), (path,)).fetchone()
        except UnicodeDecodeError:
            # A name that is not UTF-8 is stored as its bytes (table._bind_raw_names).
            raw = db.execute(self._select_sql("WHERE path = CAST(? AS TEXT)"), (key,)).fetchone()
        known = key in self._rows
        if raw is None:
            if known:
                del self._rows[key]
                del self._order[bisect.bisect_left(self._order, key)]
            return
        self._rows[key] = self._make(db, raw)
        if not known:
            bisect.insort(self._order, key)
