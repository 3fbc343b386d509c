"""Write a long run's figures into torture/README.md (between the two markers)."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from .model import Summary

README = Path(__file__).with_name("README.md")
BEGIN = "<!-- long-run figures: begin -->"
END = "<!-- long-run figures: end -->"


def render(seed: int, total: float, summaries: list[Summary]) -> str:
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        BEGIN,
        f"Last long run: {when}, seed {seed}, {total / 60:.1f} min on {os.cpu_count()} cores"
        f" (`python -m torture --long --seed {seed}` replays it).",
        "",
        "| campaign | time | what it did | violations |",
        "| --- | --- | --- | --- |",
    ]
    for s in summaries:
        did = (
            "skipped: " + s.skipped
            if s.skipped
            else ", ".join(f"{k} {v}" for k, v in sorted(s.counts.items()))
        )
        lines.append(f"| {s.name} | {s.elapsed:.0f} s | {did} | {len(s.violations)} |")
    lines += ["", "Violations (each distinct one once):", ""]
    found = [v for s in summaries for v in s.violations]
    lines += [f"- {str(v).splitlines()[0]}" for v in found] or ["- none"]
    lines.append(END)
    return "\n".join(lines)


def write_readme(seed: int, total: float, summaries: list[Summary]) -> None:
    text = README.read_text() if README.exists() else f"# torture\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    README.write_text(head + render(seed, total, summaries) + tail)
