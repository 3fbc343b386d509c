"""Medians, ranges and ratios; the results table in bench/README.md."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

MARK = "<!-- results -->"
LOWER_IS_BETTER = (
    "first_backup_s",
    "large_change_s",
    "small_change_s",
    "restore_all_s",
    "restore_old_s",
    "repo_final_mb",
    "large_change_added_mb",
    "small_change_added_mb",
    "peak_rss_mb",
    "repo_after_first_mb",
)


def summarise(results: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tool, rows in results.items():
        out[tool] = {}
        for key in rows[0] if rows else ():
            vals = [r[key] for r in rows]
            out[tool][key] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}
    peers = [t for t in out if t != "filetwin"]
    if "filetwin" in out and peers:
        for key in out["filetwin"]:
            best = min(peers, key=lambda t: out[t][key]["median"])
            best_val = out[best][key]["median"]
            if best_val > 0:
                out["filetwin"][key]["vs_best_peer"] = {
                    "peer": best,
                    "ratio": out["filetwin"][key]["median"] / best_val,
                }
    return out


def _fmt(cell: dict[str, float]) -> str:
    return f"{cell['median']:.3g} ({cell['min']:.3g}–{cell['max']:.3g})"


def table(out: dict[str, Any]) -> str:
    meta = out["meta"]
    lines = [
        f"Run {meta['date']} on {meta['machine']}; {meta['runs']} runs, tools alternating; "
        f"median (min–max). Versions: "
        + "; ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        "",
    ]
    peers = out.get("peers") or {}
    if peers:
        tools = list(peers)
        keys = list(next(iter(peers.values())))
        lines.append("| measure | " + " | ".join(tools) + " | filetwin ÷ best peer |")
        lines.append("| --- |" + " --- |" * (len(tools) + 1))
        for key in keys:
            ratio = peers["filetwin"][key].get("vs_best_peer") if "filetwin" in peers else None
            rtxt = f"{ratio['ratio']:.2f}× ({ratio['peer']})" if ratio else "-"
            lines.append(
                f"| {key} | " + " | ".join(_fmt(peers[t][key]) for t in tools) + f" | {rtxt} |"
            )
        lines.append("")
    own = out.get("own") or {}
    for name in ("latency_4k", "latency_16m"):
        if name in own:
            r = own[name]
            lines.append(
                f"- close → durable version, {name[8:]} file: p50 {r['p50_ms']:.1f} ms, "
                f"p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.1f} ms over {r['n']} saves"
            )
    if "scale" in own:
        s = own["scale"]
        lines.append(
            f"- add of many files: {s['add_s']:.2f} s ({s['add_per_s']:.0f}/s); idle: "
            f"{s['idle_rss_mb']:.0f} MiB RSS, {s['idle_cpu_pct']:.2f}% CPU; status "
            f"with {s['status_rows']} rows: API {s['status_api_s']:.3f} s, "
            f"CLI {s['status_cli_s']:.3f} s"
        )
    if "profile_large_change" in own:
        p = own["profile_large_change"]
        lines.append(
            f"- profile of the slowest row (on-close backup after a 1 MiB change, "
            f"{p['bytes'] / 2**20:.0f} MiB file, {p['seconds']:.2f} s):"
        )
        lines.append("")
        lines.append("```")
        lines.extend(p["top"])
        lines.append("```")
    return "\n".join(lines) + "\n"


def write_readme(path: Path, out: dict[str, Any]) -> None:
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{MARK}\n"
    head = text.split(MARK)[0]
    path.write_text(head + MARK + "\n\n" + table(out))
