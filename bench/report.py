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


#: issue 5 states its targets against these ("the fastest deduplicating peer")
DEDUPLICATING = ("restic", "borg")


def summarise(results: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tool, rows in results.items():
        out[tool] = {}
        for key in rows[0] if rows else ():
            vals = [r[key] for r in rows]
            out[tool][key] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}
    peers = [t for t in out if t != "filetwin"]
    if "filetwin" in out and peers:
        add_ratios(out)
    return out


def add_ratios(out: dict[str, Any]) -> None:
    """filetwin's median over the best peer's, and over the best deduplicating one's."""
    peers = [t for t in out if t != "filetwin"]
    dedup = [t for t in peers if t in DEDUPLICATING]
    for key in out["filetwin"]:
        for name, among in (("vs_best_peer", peers), ("vs_best_dedup", dedup)):
            if not among:
                continue
            best = min(among, key=lambda t: out[t][key]["median"])
            best_val = out[best][key]["median"]
            if best_val > 0:
                out["filetwin"][key][name] = {
                    "peer": best,
                    "ratio": out["filetwin"][key]["median"] / best_val,
                }


def _fmt(cell: dict[str, float]) -> str:
    return f"{cell['median']:.3g} ({cell['min']:.3g}–{cell['max']:.3g})"


def table(out: dict[str, Any]) -> str:
    by_section = out.get("meta_by_section") or {}
    meta = by_section.get("peers") or out["meta"]
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
        if "filetwin" in peers:
            add_ratios(peers)  # results written before vs_best_dedup existed get it too
        lines.append(
            "| measure | "
            + " | ".join(tools)
            + " | filetwin ÷ best peer | filetwin ÷ best deduplicating peer |"
        )
        lines.append("| --- |" + " --- |" * (len(tools) + 2))
        for key in keys:
            cells = []
            for ratio_key in ("vs_best_peer", "vs_best_dedup"):
                ratio = peers["filetwin"][key].get(ratio_key) if "filetwin" in peers else None
                cells.append(f"{ratio['ratio']:.2f}× ({ratio['peer']})" if ratio else "-")
            lines.append(
                f"| {key} | "
                + " | ".join(_fmt(peers[t][key]) for t in tools)
                + f" | {cells[0]} | {cells[1]} |"
            )
        lines.append("")
    own = out.get("own") or {}
    own_meta = by_section.get("own")
    if own and own_meta is not None and own_meta["date"] != meta["date"]:
        lines += [f"filetwin's own figures measured {own_meta['date']}:", ""]
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
        for name, what in (("first", "first backup"), ("change", "backup after a 1 MiB change")):
            if f"{name}_top" not in p:
                continue
            lines.append(
                f"- profile (pyinstrument) of the on-close {what} of the "
                f"{p['bytes'] / 2**20:.0f} MiB file, {p[f'{name}_seconds']:.2f} s:"
            )
            lines.append("")
            lines.append("```")
            lines.extend(p[f"{name}_top"])
            lines.append("```")
    if out.get("journal"):
        lines.append("")
        meta_j = (out.get("meta_by_section") or {}).get("journal")
        lines.extend(journal_lines(out["journal"], meta_j))
    if out.get("fuse"):
        lines.append("")
        lines.extend(fuse_lines(out["fuse"], (out.get("meta_by_section") or {}).get("fuse")))
    return "\n".join(lines) + "\n"


FUSE_ROWS = (
    ("seq_write_mib_s", "sequential 1 MiB writes, MiB/s"),
    ("seq_read_mib_s", "sequential reads, MiB/s"),
    ("write_4k_per_s", "4 KiB writes/s (interceptor: on-write entry, each one journaled)"),
    ("small_files_per_s", "create + write 4 KiB + close, files/s"),
)


#: issue 9: the in-place interceptor within this factor of the bare passthrough on every row
INPLACE_MAX_RATIO = 1.3
#: issue 9: heal latency through the in-place mount, 1 MiB file
HEAL_MAX_MS = 100


def _heal_line(heal: dict[str, Any], how: str) -> str:
    if "median_ms" not in heal:
        return f"- heal latency {how} not measured: {heal.get('skipped', 'no figures')}"
    low = f"{heal['min_ms']:.0f}–" if "min_ms" in heal else "max "
    return (
        f"- a read of a 1 MiB file with a damaged block (real EIO, btrfs) {how} returns the "
        f"healed bytes in {heal['median_ms']:.0f} ms (median of {heal['n']}, "
        f"{low}{heal['max_ms']:.0f} ms; open, read to the end, close: an upper bound); "
        f"target ≤ {HEAL_MAX_MS} ms: {_hit(heal['median_ms'] <= HEAL_MAX_MS)}"
    )


def fuse_lines(f: dict[str, Any], meta: dict[str, Any] | None = None) -> list[str]:
    """The interceptor, elsewhere and in place, against direct I/O and a bare
    passthrough (same FUSE library); results without the in-place variant
    (measured before it existed) get a table without its columns."""
    inplace = "inplace" in f
    lines = ["### interceptor (FUSE)", ""]
    if meta is not None:
        lines += [
            f"Measured {meta['date']} on {meta['machine']}, {meta['runs']} runs, the variants' "
            "order rotated each run; medians. Rates: higher is better; ÷ columns are bare "
            "passthrough ÷ variant (above 1: slower than the bare passthrough).",
            "",
        ]
    head = "| row | direct | bare passthrough | interceptor |"
    if inplace:
        head += " interceptor in place |"
    head += " bare ÷ interceptor |"
    if inplace:
        head += " bare ÷ in place |"
    lines += [head, "| --- |" + " --- |" * (head.count("|") - 2)]
    for key, label in FUSE_ROWS:
        cells = [f["direct"][key], f["bare"][key], f["interceptor"][key]]
        cells += [f["inplace"][key]] if inplace else []
        ratios = [f["ratio_interceptor_vs_bare"].get(key)]
        ratios += [f["ratio_inplace_vs_bare"].get(key)] if inplace else []
        lines.append(
            f"| {label} | "
            + " | ".join(f"{c:,.0f}" for c in cells)
            + " | "
            + " | ".join("-" if r is None else f"{r:.2f}×" for r in ratios)
            + " |"
        )
    if inplace:
        worst = max(f["ratio_inplace_vs_bare"].values())
        lines += [
            "",
            f"- target: the in-place interceptor within {INPLACE_MAX_RATIO}× of the bare "
            f"passthrough on every row: worst {worst:.2f}×, {_hit(worst <= INPLACE_MAX_RATIO)}",
        ]
    lines.append("")
    if inplace:
        lines.append(_heal_line(f.get("heal_1mib_inplace") or {}, "through the in-place mount"))
    lines.append(_heal_line(f.get("heal_1mib") or {}, "through a mount elsewhere"))
    for name, what in (("interceptor", "interceptor's"), ("inplace", "in-place interceptor's")):
        captured = (f.get(name) or {}).get("captured_writes")
        if captured is not None:
            lines.append(
                f"- journal records added by the {what} 4 KiB row: {captured:,.0f} "
                "(one per write, plus the close)"
            )
    return lines


def _fmt_n(cell: dict[str, float]) -> str:
    """Like _fmt, with plain thousands for rates (10,432 rather than 1.04e+04)."""

    def one(v: float) -> str:
        return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"

    return f"{one(cell['median'])} ({one(cell['min'])}–{one(cell['max'])})"


def _hit(ok: bool) -> str:
    return "met" if ok else "**missed**"


def journal_lines(j: dict[str, Any], meta: dict[str, Any] | None) -> list[str]:
    """The on-write section: throughput vs plain writes, any-moment restore, 1 MiB durable."""
    t = j["targets"]
    lines = ["### on-write (journal)", ""]
    if meta is not None:
        lines += [f"Measured {meta['date']}, {meta['runs']} runs; median (min–max).", ""]
    cfg = j["config"]
    lines += [
        'Journaled writes through `filetwin.open(path, "r+b")` on an on-write entry '
        'against `open(path, "r+b", buffering=0)` on an unprotected file beside it, '
        f"same writes, same disk; checkpoints held off (checkpoint_bytes = "
        f"checkpoint_records = {cfg['checkpoint_records']:.3g}) so none runs mid-measurement.",
        "",
        "| sync | write size | writes | journaled writes/s | journaled MiB/s | plain writes/s "
        "| plain MiB/s | journaled ÷ plain | plain + fdatasync writes/s | journaled ÷ "
        "plain + fdatasync |",
        "| --- |" + " --- |" * 9,
    ]
    for key, r in j["throughput"].items():
        mode, size = key.split("_")
        fds = r.get("plain_fdatasync")
        vs_fds = f"{r['ratio_vs_fdatasync']:.2f}×" if fds else "-"
        lines.append(
            f"| {mode} | {'4 KiB' if size == '4k' else '1 MiB'} | {r['writes']} "
            f"| {_fmt_n(r['journaled']['writes_per_s'])} | {_fmt_n(r['journaled']['mib_per_s'])} "
            f"| {_fmt_n(r['plain']['writes_per_s'])} | {_fmt_n(r['plain']['mib_per_s'])} "
            f"| {r['ratio']:.3f}× | {_fmt_n(fds['writes_per_s']) if fds else '-'} "
            f"| {vs_fds} |"
        )
    lines.append("")
    b4 = j["throughput"].get("batch_4k")
    if b4:
        v = b4["journaled"]["writes_per_s"]["median"]
        lines.append(
            f"- target ≥ {t['batch_4k_writes_per_s']:,} journaled 4 KiB writes/s in batch: "
            f"{v:,.0f}/s, {_hit(v >= t['batch_4k_writes_per_s'])}"
        )
    for key in ("batch_1m", "always_1m"):
        r = j["throughput"].get(key)
        if r:
            lines.append(
                f"- target 1 MiB journaled ≥ {t['ratio_1m_min']:.0%} of plain "
                f"({key.split('_')[0]}): {r['ratio']:.1%}, {_hit(r['ratio'] >= t['ratio_1m_min'])}"
            )
    r = j.get("restore")
    if r:
        v = r["api_s"]["median"]
        lines.append(
            f"- any-moment restore, journal of {r['records']:,} records of {r['record_bytes']} B "
            f"at random offsets of a {r['file_bytes'] >> 20} MiB file, `--at {r['at']}` "
            f"({r['replayed']:,} records replayed on the base version): API "
            f"{_fmt(r['api_s'])} s, library (offline) {_fmt(r['library_s'])} s; target ≤ "
            f"{t['restore_100k_s']:g} s for 100k records: {_hit(v <= t['restore_100k_s'])}"
            + ("" if r["records"] >= 100_000 else " (scaled down: quick run)")
        )
    c = j.get("large_change")
    if c:
        ms = 1000 * c["write_s"]["median"]
        mb = c["journal_added_mb"]["median"]
        lines.append(
            f"- 1 MiB written in the middle of a {c['file_bytes'] / 2**20:.0f} MiB file through "
            f"`filetwin.open`, entry `--sync {c['sync']}` (write() returns once durable): "
            f"{ms:.1f} ms ({1000 * c['write_s']['min']:.1f}–{1000 * c['write_s']['max']:.1f}), "
            f"journal grew {mb:.2f} MB; target durable within "
            f"{t['large_change_durable_ms']} ms and ≤ 2 MiB stored: "
            f"{_hit(ms <= t['large_change_durable_ms'] and mb <= t['large_change_stored_mb'])}. "
            f"Opening the file (status + write stream) took {1000 * c['open_s']['median']:.1f} ms; "
            f"the checkpoint the close then made added "
            f"{c['checkpoint_repo_added_mb']['median']:.2f} MB to the repository"
        )
    for name, key in (("4 KiB batch writes (client side)", "batch_4k"),):
        prof = j["throughput"].get(key, {}).get("profile")
        if prof:
            lines += ["", f"Profile of the journaled {name}:", "", "```", *prof, "```"]
    if r and r.get("profile"):
        lines += ["", "Profile of the restore (library):", "", "```", *r["profile"], "```"]
    return lines


def write_readme(path: Path, out: dict[str, Any]) -> None:
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{MARK}\n"
    head = text.split(MARK)[0]
    path.write_text(head + MARK + "\n\n" + table(out))
