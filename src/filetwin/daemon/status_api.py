"""``GET /status`` with filters and paging, and ``GET /status/summary``.

Both take the same filters; every one given must match:

- ``state``: one state or several, comma-separated (``watching,missing``);
- ``failed``: ``1``/``true``: only entries that need attention (missing, in
  error, or whose last job failed or timed out);
- ``prefix``: an absolute path: that entry and the entries under it as a
  directory (whole components: ``/srv/app`` does not match ``/srv/application``);
- ``source``: ``config`` (named by a ``[[protect]]`` table) or ``cli``.

``/status`` also takes ``offset`` (rows skipped, default 0) and ``limit``
(rows at most, default all): the answer is the usual list of rows in path
order, and the ``X-Total-Count`` header says how many matched in all, so a
table can page on the server. ``/status/summary`` answers
``{"total", "states", "results", "attention"}``: the matching entries counted
by state and by last result (``none``: no job ended yet).

The rows come from the table's in-memory JSON (``status_rows.py``), read on
one thread of its own so that a long answer never waits for the engine's work.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web

from ..errors import UsageError
from ..status_rows import SOURCES, Filters, Page
from ..table import Table

STATES = ("watching", "paused", "missing", "error")
#: the query parameters of the listing; /status/summary takes the filters only
FILTER_KEYS = ("state", "failed", "prefix", "source")
PAGE_KEYS = ("offset", "limit")
INT_MAX = (1 << 63) - 1


def _flag(name: str, raw: str | None) -> bool:
    if raw is None or raw in ("", "0", "false"):
        return False
    if raw in ("1", "true"):
        return True
    raise UsageError(f"query parameter {name!r} must be 1, true, 0 or false, not {raw[:50]!r}")


def _count(name: str, raw: str | None) -> int | None:
    if raw is None:
        return None
    text = raw.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 19 or int(text) > INT_MAX:
        raise UsageError(f"query parameter {name!r} must be an integer from 0 to 2**63-1")
    return int(text)


def filters_from(params: dict[str, str]) -> Filters:
    """The filters of a query string; UsageError naming a bad value."""
    states: frozenset[str] = frozenset()
    if params.get("state"):
        states = frozenset(s.strip() for s in params["state"].split(","))
        bad = sorted(states - set(STATES))
        if bad:
            raise UsageError(
                f"unknown state {bad[0][:50]!r} in query parameter 'state'; "
                f"expected {', '.join(STATES)}"
            )
    prefix = params.get("prefix") or None
    if prefix is not None and not prefix.startswith("/"):
        raise UsageError(f"query parameter 'prefix' must be an absolute path, not {prefix[:100]!r}")
    source = params.get("source") or None
    if source is not None and source not in SOURCES:
        raise UsageError(
            f"query parameter 'source' must be one of {', '.join(SOURCES)}, not {source[:50]!r}"
        )
    return Filters(states, _flag("failed", params.get("failed")), prefix, source)


def page_from(params: dict[str, str]) -> tuple[int, int | None]:
    """``offset`` and ``limit`` of a query string (0 and None when absent)."""
    return _count("offset", params.get("offset")) or 0, _count("limit", params.get("limit"))


class StatusQueries:
    """Answers status listings on a thread of their own (see the module docstring)."""

    def __init__(
        self, table: Table, replicas: Callable[[str], list[dict[str, Any]]] | None = None
    ) -> None:
        self.table = table
        #: the replicas' rows of an entry (replicas/replicator.py); None: no replica
        self.replicas = replicas
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="status")

    async def page(
        self, filters: Filters, offset: int = 0, limit: int | None = None, counts: bool = False
    ) -> Page:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool, self.table.status_page, filters, offset, limit, counts
        )

    async def listing(self, params: dict[str, str]) -> web.Response:
        """``GET /status`` without ``path``: the matching rows, paged."""
        filters = filters_from(params)
        offset, limit = page_from(params)
        page = await self.page(filters, offset, limit)
        body = page.body
        if self.replicas is not None:
            # Each row gains its replicas' lag (only when the config names replicas).
            rows = json.loads(body)
            for row in rows:
                row["replicas"] = self.replicas(row["path"])
            body = json.dumps(rows).encode()
        return web.Response(
            body=body,
            content_type="application/json",
            headers={"X-Total-Count": str(page.total)},
        )

    async def summary(self, params: dict[str, str]) -> dict[str, Any]:
        """``GET /status/summary``: the matching entries counted."""
        page = await self.page(filters_from(params), 0, 0, counts=True)
        return page.summary()
