"""What a person wants to know of a journal: its span, closes and marks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..timefmt import iso
from .journal import iter_records


def journal_summary(directory: Path) -> dict[str, Any]:
    """First and last record, counts, every close (failed ones flagged) and mark."""
    scan = iter_records(directory) if directory.is_dir() else None
    first = last = None
    writes = 0
    closes: list[dict[str, Any]] = []
    marks: list[dict[str, Any]] = []
    for r in scan or ():
        if first is None:
            first = r
        last = r
        if r.kind == "write":
            writes += 1
        elif r.kind in ("close-ok", "close-failed"):
            closes.append({"seq": r.seq, "time": iso(r.time), "ok": r.kind == "close-ok"})
        elif r.kind == "mark":
            marks.append(
                {"seq": r.seq, "time": iso(r.time), "name": r.data.decode(errors="replace")}
            )
    torn = None
    if scan is not None and scan.torn is not None:
        torn = {
            "segment": scan.torn.segment.name,
            "offset": scan.torn.offset,
            "reason": scan.torn.reason,
        }
    return {
        "first_seq": first.seq if first else None,
        "first_time": iso(first.time) if first else None,
        "last_seq": last.seq if last else None,
        "last_time": iso(last.time) if last else None,
        "writes": writes,
        "closes": closes,
        "marks": marks,
        "torn": torn,
    }
