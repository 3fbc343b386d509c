"""The dashboard's HTML, rendered on the server (no template engine, no build step).

Every value that comes from a file name, the table or the repository is
escaped here. Paths travel in links and forms percent-encoded from their bytes
(``qpath``), so a file name that is not UTF-8 comes back exactly; on the page
it is shown with U+FFFD for its undecodable bytes. No inline script or style:
the Content-Security-Policy allows only the dashboard's own static files.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlencode

#: the states an entry can be in (table.py's schema), offered by the filter
STATES = ("watching", "paused", "missing", "error")


def h(value: Any) -> str:
    """``value`` as escaped HTML text; undecodable file-name bytes shown as U+FFFD."""
    text = "" if value is None else str(value)
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return html.escape(text, quote=True)


def query_string(fields: dict[str, str]) -> str:
    """``urlencode`` keeping a file name's undecodable bytes (surrogate escapes) exact."""
    return urlencode(fields, errors="surrogateescape")


def qpath(path: str) -> str:
    """A path percent-encoded from its bytes (the inverse of ``unquote_path``)."""
    return quote(path, safe="/", errors="surrogateescape")


def file_link(path: str) -> str:
    return f"/file?path={qpath(path)}"


def layout(title: str, body: str, csrf: str = "", heading: str = "") -> str:
    """A whole page: the nav, ``body``, the stylesheet and the script."""
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        f"<title>{h(title)} · filetwin</title>"
        f'<meta name="csrf-token" content="{h(csrf)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="stylesheet" href="/static/dashboard.css">'
        '<script src="/static/dashboard.js" defer></script></head><body>'
        '<header><a class="brand" href="/">filetwin</a>'
        '<nav><a href="/">entries</a> <a href="/events">events</a> '
        '<a href="/metrics">metrics</a></nav></header>'
        f"<main><h1>{h(heading or title)}</h1>{body}</main></body></html>\n"
    )


def flashes(messages: Iterable[tuple[bool, str]]) -> str:
    out = []
    for ok, text in messages:
        cls = "flash ok" if ok else "flash err"
        out.append(f'<p class="{cls}" role="status">{h(text)}</p>')
    return "".join(out)


def message_page(title: str, text: str, status_hint: str = "") -> str:
    """A page that only says something (errors, refusals, the login hint)."""
    hint = f"<p>{status_hint}</p>" if status_hint else ""
    return layout(title, f'<p class="flash err">{h(text)}</p>{hint}')


# the management table -------------------------------------------------------
def _when(value: Any) -> str:
    return f"<time>{h(value)}</time>" if value else "—"


def entry_rows(rows: list[dict[str, Any]]) -> str:
    """The table's body: one row per entry of the page."""
    if not rows:
        return '<tr><td colspan=9 class="empty">no entry matches</td></tr>'
    out = []
    for r in rows:
        job = f"{h(r['job_kind'])} since {_when(r['job_started_at'])}" if r["job_kind"] else "—"
        result = r["last_result"] or "—"
        bad = result not in ("ok", "—") or r["state"] in ("missing", "error")
        out.append(
            f'<tr class="{"bad" if bad else ""}" data-path="{h(r["path"])}">'
            f'<td class="path"><a href="{file_link(r["path"])}">{h(r["path"])}</a></td>'
            f'<td class="state s-{h(r["state"])}">{h(r["state"])}</td>'
            f"<td>{h(r['backup_mode'])}</td><td>{h(r['recovery_mode'])}</td>"
            f"<td>{job}</td><td>{h(result)}</td>"
            f'<td class="err">{h(r["last_error"] or "")}</td>'
            f"<td class=num>{h(r['versions'])}</td><td>{_when(r['last_backup_at'])}</td></tr>"
        )
    return "".join(out)


def summary_line(page: dict[str, Any]) -> str:
    counts = ", ".join(f"{n} {h(s)}" for s, n in sorted(page["by_state"].items()))
    first = page["offset"] + 1 if page["matched"] else 0
    last = page["offset"] + len(page["rows"])
    return (
        f"entries {first}–{last} of {page['matched']} matching "
        f"({page['total']} in all: {counts or 'none'})"
    )


def _page_link(query: dict[str, str], page: int) -> str:
    return "/?" + query_string({**query, "page": str(page)})


def table_page(page: dict[str, Any], query: dict[str, str], events: str, csrf: str) -> str:
    """The management table: a filter, one page of rows (refreshed live), a pager."""
    number, pages = page["page"], page["pages"]
    pager = []
    if number > 1:
        pager.append(f'<a rel="prev" href="{h(_page_link(query, number - 1))}">‹ previous</a>')
    pager.append(f"<span>page {number} of {pages}</span>")
    if number < pages:
        pager.append(f'<a rel="next" href="{h(_page_link(query, number + 1))}">next ›</a>')
    states = "".join(
        f'<option value="{s}"{" selected" if query.get("state") == s else ""}>{s}</option>'
        for s in STATES
    )
    rows_src = "/rows?" + query_string({**query, "page": str(number)})
    body = (
        '<form class="filter" method="get" action="/">'
        f'<input type="search" name="filter" value="{h(query.get("filter", ""))}" '
        'placeholder="path contains…" aria-label="path filter">'
        f'<select name="state" aria-label="state"><option value="">any state</option>{states}'
        '</select><button type="submit">filter</button></form>'
        f'<p id="summary" class="summary">{summary_line(page)}</p>'
        '<table class="entries"><thead><tr><th>path</th><th>state</th><th>backup</th>'
        "<th>recovery</th><th>job</th><th>last result</th><th>last error</th>"
        "<th>versions</th><th>last backup</th></tr></thead>"
        f'<tbody id="rows" data-src="{h(rows_src)}">{entry_rows(page["rows"])}</tbody></table>'
        f'<nav class="pager">{" ".join(pager)}</nav>'
        f"{events}"
    )
    return layout("entries", body, csrf, heading="The management table")


# events -----------------------------------------------------------------------
def event_items(events: list[dict[str, Any]]) -> str:
    """Events newest first, as list items (the script adds live ones the same way)."""
    out = []
    for e in reversed(events):
        cls = "ok" if e["ok"] else "err"
        path = f' <a href="{file_link(e["path"])}">{h(e["path"])}</a>' if e.get("path") else ""
        out.append(
            f'<li class="{cls}" data-kind="{h(e["kind"])}"><time>{h(e["time"])}</time> '
            f"<b>{h(e['kind'])}</b>{path} <span>{h(e['message'])}</span></li>"
        )
    return "".join(out)


def events_panel(events: list[dict[str, Any]], path: str | None) -> str:
    """The event log's newest entries, then the live stream (server-sent events)."""
    after = max((e["id"] for e in events if e.get("id") is not None), default=0)
    src = f"/events/stream?after={after}" + (f"&path={qpath(path)}" if path else "")
    return (
        '<section class="events"><h2>Events <small id="live">(live)</small></h2>'
        f'<ol id="events" data-stream="{h(src)}">{event_items(events)}</ol></section>'
    )


# one file ---------------------------------------------------------------------
def _hidden(csrf: str, path: str, **fields: str) -> str:
    inputs = [
        f'<input type="hidden" name="csrf" value="{h(csrf)}">',
        f'<input type="hidden" name="qpath" value="{h(qpath(path))}">',
    ]
    inputs += [f'<input type="hidden" name="{k}" value="{h(v)}">' for k, v in fields.items()]
    return "".join(inputs)


def _action(csrf: str, path: str, action: str, label: str, note: str = "") -> str:
    title = f' title="{h(note)}"' if note else ""
    return (
        f'<form class="inline" method="post" action="/action/{action}">{_hidden(csrf, path)}'
        f'<button type="submit" name="do" value="{action}"{title}>{h(label)}</button></form>'
    )


def timeline(versions: list[dict[str, Any]], journal: dict[str, Any] | None, path: str) -> str:
    """Versions, closes and marks in time order, each with a link to restore it."""
    items: list[tuple[str, int, str]] = []
    for v in versions:
        ask = "/restore?" + query_string({"path": path, "version": v["id"]})
        items.append(
            (
                v["time"],
                0,
                f'<li class="version" data-version="{h(v["id"])}"><time>{h(v["time"])}</time> '
                f'<b>version {h(v["id"])}</b> <span class="cause">{h(v["cause"])}</span> '
                f"{h(v['size'])} bytes, hash {h(v['hash'][:16])}"
                + (f", journal to seq {h(v['journal_seq'])}" if v.get("journal_seq") else "")
                + f' <a class="restore" href="{h(ask)}">restore…</a></li>',
            )
        )
    for c in (journal or {}).get("closes", []):
        ask = "/restore?" + query_string({"path": path, "at": f"seq:{c['seq']}"})
        cls, what = ("close", "close") if c["ok"] else ("close failed", "close FAILED")
        items.append(
            (
                c["time"],
                1,
                f'<li class="{cls}"><time>{h(c["time"])}</time> <b>{what}</b> at seq '
                f'{h(c["seq"])} <a class="restore" href="{h(ask)}">restore this moment…</a></li>',
            )
        )
    for m in (journal or {}).get("marks", []):
        ask = "/restore?" + query_string({"path": path, "at": f"mark:{m['name']}"})
        items.append(
            (
                m["time"],
                1,
                f'<li class="mark"><time>{h(m["time"])}</time> <b>mark {h(m["name"])}</b> at seq '
                f'{h(m["seq"])} <a class="restore" href="{h(ask)}">restore this moment…</a></li>',
            )
        )
    items.sort(key=lambda item: (item[0], item[1]))
    if not items:
        return "<p>no version yet</p>"
    return '<ol class="timeline">' + "".join(i[2] for i in reversed(items)) + "</ol>"


def journal_span(journal: dict[str, Any] | None) -> str:
    if not journal or journal.get("last_seq") is None:
        return ""
    torn = ""
    if journal.get("torn"):
        t = journal["torn"]
        torn = (
            f'<p class="flash err">the journal ends in a torn record ({h(t["reason"])} at byte '
            f"{h(t['offset'])} of {h(t['segment'])}); replay stops before it</p>"
        )
    return (
        f'<p class="span">journal: records {h(journal["first_seq"])}–{h(journal["last_seq"])} '
        f"({h(journal['first_time'])} – {h(journal['last_time'])}), {h(journal['writes'])} "
        f"writes</p>{torn}"
    )


def file_page(
    entry: dict[str, Any] | None,
    path: str,
    versions: list[dict[str, Any]],
    journal: dict[str, Any] | None,
    events: str,
    csrf: str,
    messages: list[tuple[bool, str]],
) -> str:
    """One file: its row, actions, the restore form, the timeline, its events."""
    parts = [flashes(messages)]
    if entry is None:
        parts.append("<p>not protected any more; its history is kept</p>")
    else:
        facts = (
            ("state", entry["state"]),
            ("backup", entry["backup_mode"]),
            ("recovery", entry["recovery_mode"]),
            ("sync", entry.get("sync_mode")),
            ("keep", entry["keep"]),
            ("retries", entry["retries"]),
            ("last result", entry["last_result"]),
            ("last error", entry["last_error"]),
            ("last backup", entry["last_backup_at"]),
            ("job", entry["job_kind"]),
        )
        parts.append(
            '<dl class="facts">'
            + "".join(f"<dt>{k}</dt><dd>{h(v) if v is not None else '—'}</dd>" for k, v in facts)
            + "</dl>"
        )
        paused = entry["state"] == "paused"
        actions = [
            _action(csrf, path, "resume", "resume")
            if paused
            else _action(csrf, path, "pause", "pause"),
            _action(
                csrf,
                path,
                "recover",
                "recover",
                "heal the file now if it is damaged (refused for manual entries)",
            ),
        ]
        parts.append(f'<div class="actions">{"".join(actions)}</div>')
    options = "".join(
        f'<option value="{h(v["id"])}">{h(v["id"])} · {h(v["time"])} · {h(v["cause"])}</option>'
        for v in reversed(versions)
    )
    parts.append(
        '<form class="restore" method="get" action="/restore"><h2>Restore</h2>'
        f'<input type="hidden" name="qpath" value="{h(qpath(path))}">'
        f'<label>version <select name="version"><option value="">—</option>{options}</select>'
        '</label> <label>or moment <input name="at" placeholder="2026-11-25T10:00:00Z, seq:N, '
        'mark:NAME"></label><br><label><input type="radio" name="where" value="in-place" checked>'
        ' in place</label> <label><input type="radio" name="where" value="to"> to a new path '
        '<input name="to" placeholder="/tmp/copy"></label> <button type="submit">restore…'
        "</button></form>"
    )
    parts.append("<h2>Timeline</h2>" + journal_span(journal) + timeline(versions, journal, path))
    parts.append(events)
    return layout(path, "".join(parts), csrf)


def confirm_page(path: str, what: str, to: str | None, fields: dict[str, str], csrf: str) -> str:
    """What a restore will do, what it keeps aside, and the button that does it."""
    if to is None:
        effect = (
            f"<p>The file <code>{h(path)}</code> is rewritten with {h(what)}.</p>"
            "<p><b>Kept aside:</b> its current content is stored first as a version of "
            "cause <code>restore</code> (unless it already equals what is restored), so this "
            "restore can be undone from the timeline.</p>"
        )
    else:
        effect = (
            f"<p><code>{h(to)}</code> is written with {h(what)}; <code>{h(path)}</code> itself "
            "is not touched.</p><p><b>Not kept:</b> a file already at "
            f"<code>{h(to)}</code> is replaced and its content is not kept (unless it is "
            f"<code>{h(path)}</code> itself under another name: then its current content is "
            "kept aside as a version of cause <code>restore</code>).</p>"
        )
    body = (
        f'<div class="confirm">{effect}<form method="post" action="/action/restore">'
        f"{_hidden(csrf, path, **fields)}"
        '<button type="submit" name="do" value="restore" class="danger">restore</button> '
        f'<a href="{file_link(path)}">cancel</a></form></div>'
    )
    return layout("confirm restore", body, csrf, heading=f"Restore {path}?")


def sse(event: dict[str, Any]) -> bytes:
    """One event as a server-sent event (its id lets the browser resume after it)."""
    data = json.dumps(event).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    eid = "" if event.get("id") is None else f"id: {event['id']}\n"
    return f"{eid}data: {data}\n\n".encode()
