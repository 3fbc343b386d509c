"""The status rows kept in memory (status_rows.py): every committed write is seen,
order is SQLite's, a name that is not UTF-8 is escaped, filters and pages."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from filetwin.policy import Policy
from filetwin.status_rows import Filters
from filetwin.table import Table


def test_writes_are_seen_in_and_out_of_transactions(tmp_path: Path) -> None:
    table = Table(tmp_path / "t.sqlite")
    table.add("/b", Policy(), "/repo")
    assert [r["path"] for r in json.loads(table.status_json())] == ["/b"]
    with table.transaction():
        table.add("/a", Policy(), "/repo")
        table.add("/c", Policy(), "/repo", source="config")
    rows = json.loads(table.status_json())
    assert [(r["path"], r["source"]) for r in rows] == [
        ("/a", "cli"),
        ("/b", "cli"),
        ("/c", "config"),
    ]
    table.set("/b", state="paused")
    table.delete("/c")
    page = table.status_page(Filters(states=frozenset({"paused"})))
    assert page.total == 1 and json.loads(page.body)[0]["path"] == "/b"
    assert table.status_page(Filters(source="config")).total == 0
    # Times in the public shape, as timefmt.iso prints them.
    assert json.loads(table.status_json())[0]["created_at"].endswith("Z")


def test_a_row_written_from_another_thread_meanwhile_is_never_lost(tmp_path: Path) -> None:
    table = Table(tmp_path / "t.sqlite")
    for i in range(200):
        table.add(f"/f{i:03d}", Policy(), "/repo")
    stop = threading.Event()
    answers: list[int] = []

    def reader() -> None:
        while not stop.is_set():
            answers.append(table.status_page(Filters(states=frozenset({"paused"}))).total)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(200):
            table.set(f"/f{i:03d}", state="paused")
    finally:
        stop.set()
        thread.join()
    assert answers and table.status_page(Filters(states=frozenset({"paused"}))).total == 200


def test_order_is_by_bytes_and_non_utf8_names_are_escaped(tmp_path: Path) -> None:
    table = Table(tmp_path / "t.sqlite")
    names = ["/z", "/caf\udce9", "/é", "/a"]
    for n in names:
        table.add(n, Policy(), "/repo")
    rows = json.loads(table.status_json())
    assert [r["path"] for r in rows] == sorted(
        names, key=lambda n: n.encode("utf-8", "surrogateescape")
    )
    page = table.status_page(Filters(prefix="/caf\udce9"), 0, 10)
    assert page.total == 1 and b"\\udce9" in page.body
