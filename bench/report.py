"""Medians, ranges and ratios; the results table in bench/README.md."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

MARK = "<!-- results -->"
LOWER_IS_BETTER = (
    "first_backup_files_s",
    "first_backup_large_s",
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
DEDUPLICATING = ("restic", "borg", "borg-enc")
#: filetwin's own columns: unencrypted and repokey repositories
OWN = ("filetwin", "filetwin-enc")
#: the peers each of filetwin's variants compares like with like: the same work
#: (chunk, deduplicate, compress, and encrypt or not); restic always encrypts
LIKE = {"filetwin": ("borg",), "filetwin-enc": ("restic", "borg-enc")}
#: key in the peers section holding the per-run target ratios (not a tool)
TARGETS = "_targets"

#: issue 10's targets, as ratios within one run
FIRST_BACKUP_MAX = 0.8  # ÷ the faster of restic and borg
RESTORE_MAX = 1.0  # ÷ rsync
ENCRYPTION_MAX = 1.10  # filetwin-enc ÷ filetwin, first backup
CLOSE_P50_MS, CLOSE_P99_MS = 10.0, 50.0  # 4 KiB file, encrypted


def _cell(vals: list[float]) -> dict[str, float]:
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}


def summarise(results: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tool, rows in results.items():
        out[tool] = {}
        for key in rows[0] if rows else ():
            out[tool][key] = _cell([r[key] for r in rows])
    if any(t in out for t in OWN) and any(t not in OWN for t in out):
        add_ratios(out)
    targets = run_targets(results)
    if targets:
        out[TARGETS] = targets
    return out


def _tools(out: dict[str, Any]) -> list[str]:
    return [t for t in out if not t.startswith("_")]


def add_ratios(out: dict[str, Any]) -> None:
    """Each filetwin variant's median over the best peer's, the best deduplicating
    peer's, and the best like-with-like peer's (LIKE)."""
    peers = [t for t in _tools(out) if t not in OWN]
    dedup = [t for t in peers if t in DEDUPLICATING]
    for own in (t for t in OWN if t in out):
        like = [t for t in peers if t in LIKE[own]]
        for key in out[own]:
            for name, among in (
                ("vs_best_peer", peers),
                ("vs_best_dedup", dedup),
                ("vs_like", like),
            ):
                among = [t for t in among if key in out[t]]
                if not among:
                    continue
                best = min(among, key=lambda t: out[t][key]["median"])
                best_val = out[best][key]["median"]
                if best_val > 0:
                    out[own][key][name] = {
                        "peer": best,
                        "ratio": out[own][key]["median"] / best_val,
                    }


def run_targets(results: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """Issue 10's ratios computed within each run (the tools of one run share the
    machine's load of that moment), then their median and range over the runs.

    ``first_backup``: filetwin ÷ the faster of restic and borg -e none, and
    filetwin-enc ÷ the faster of restic and borg -e repokey; ``restore_all``:
    each variant ÷ rsync; ``encryption``: filetwin-enc ÷ filetwin."""
    runs = min((len(r) for r in results.values()), default=0)
    if not runs:
        return {}
    specs: list[tuple[str, str, str, tuple[str, ...], float, str]] = [
        ("first_backup_filetwin", "first_backup_s", "filetwin", ("restic", "borg"),
         FIRST_BACKUP_MAX, "first_backup_s"),
        ("first_backup_filetwin-enc", "first_backup_s", "filetwin-enc", ("restic", "borg-enc"),
         FIRST_BACKUP_MAX, "first_backup_s"),
        ("restore_all_filetwin", "restore_all_s", "filetwin", ("rsync",), RESTORE_MAX,
         "restore_all_s"),
        ("restore_all_filetwin-enc", "restore_all_s", "filetwin-enc", ("rsync",), RESTORE_MAX,
         "restore_all_s"),
        ("restore_all_filetwin_nofsync", "restore_all_s", "filetwin", ("rsync",), RESTORE_MAX,
         "restore_all_nofsync_s"),
        ("restore_all_filetwin-enc_nofsync", "restore_all_s", "filetwin-enc", ("rsync",),
         RESTORE_MAX, "restore_all_nofsync_s"),
    ]  # fmt: skip
    out: dict[str, Any] = {}
    for name, key, own, against, limit, peer_key in specs:
        present = [t for t in against if t in results and peer_key in results[t][0]]
        if own not in results or not present:
            continue
        ratios = [
            results[own][i][key] / min(results[t][i][peer_key] for t in present)
            for i in range(runs)
        ]
        out[name] = {**_cell(ratios), "against": present, "limit": limit}
    if "filetwin" in results and "filetwin-enc" in results:
        for key in ("first_backup_s", "first_backup_files_s", "first_backup_large_s"):
            if key in results["filetwin"][0]:
                ratios = [
                    results["filetwin-enc"][i][key] / results["filetwin"][i][key]
                    for i in range(runs)
                ]
                out[f"encryption_{key}"] = {
                    **_cell(ratios), "against": ["filetwin"], "limit": ENCRYPTION_MAX,
                }  # fmt: skip
    return out


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
        lines += peer_lines(peers)
    own = out.get("own") or {}
    own_meta = by_section.get("own")
    if own and own_meta is not None and own_meta["date"] != meta["date"]:
        lines += [f"filetwin's own figures measured {own_meta['date']}:", ""]
    for name in ("latency_4k", "latency_16m", "latency_4k_enc", "latency_16m_enc"):
        if name in own:
            r = own[name]
            size = name.split("_")[1]
            enc = ", encrypted (repokey)" if name.endswith("_enc") else ""
            line = (
                f"- close → durable version, {size} file{enc}: p50 {r['p50_ms']:.1f} ms, "
                f"p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.1f} ms over {r['n']} saves"
            )
            if name == "latency_4k_enc":
                ok = r["p50_ms"] <= CLOSE_P50_MS and r["p99_ms"] <= CLOSE_P99_MS
                line += (
                    f"; target p50 ≤ {CLOSE_P50_MS:g} ms and p99 ≤ {CLOSE_P99_MS:g} ms: {_hit(ok)}"
                )
            lines.append(line)
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
        for name, what in (
            ("first", "the on-close first backup"),
            ("change", "the on-close backup after a 1 MiB change"),
            ("first_enc", "the first backup into an encrypted (repokey) repository"),
            ("restore_enc", "the restore (`restore --to`) from the encrypted repository"),
        ):
            if f"{name}_top" not in p:
                continue
            lines.append(
                f"- profile (pyinstrument) of {what} of the "
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


def peer_lines(peers: dict[str, Any]) -> list[str]:
    """The side-by-side table, then issue 10's targets as ratios within each run."""
    tools = _tools(peers)
    keys = list(peers[tools[0]])
    if any(t in peers for t in OWN):
        add_ratios(peers)  # results written before a ratio existed get it too
    columns: list[tuple[str, str, str]] = [("filetwin", "vs_best_peer", "filetwin ÷ best peer")]
    if "filetwin-enc" in peers:
        columns += [
            ("filetwin", "vs_like", "filetwin ÷ borg -e none (like with like)"),
            ("filetwin-enc", "vs_like", "filetwin-enc ÷ best of restic, borg -e repokey "
             "(like with like)"),
        ]  # fmt: skip
    else:
        columns += [("filetwin", "vs_best_dedup", "filetwin ÷ best deduplicating peer")]
    lines = [
        "| measure | " + " | ".join(tools) + " | " + " | ".join(c[2] for c in columns) + " |",
        "| --- |" + " --- |" * (len(tools) + len(columns)),
    ]
    for key in keys:
        cells = []
        for own, ratio_key, _ in columns:
            ratio = peers.get(own, {}).get(key, {}).get(ratio_key)
            cells.append(f"{ratio['ratio']:.2f}× ({ratio['peer']})" if ratio else "-")
        lines.append(
            f"| {key} | "
            + " | ".join(_fmt(peers[t][key]) if key in peers[t] else "-" for t in tools)
            + " | "
            + " | ".join(cells)
            + " |"
        )
    lines.append("")
    targets = peers.get(TARGETS) or {}
    labels = {
        "first_backup_filetwin": "first backup, filetwin ÷ the faster of {against}",
        "first_backup_filetwin-enc": "first backup, filetwin-enc ÷ the faster of {against}",
        "restore_all_filetwin": "restore of everything, filetwin ÷ {against} `--fsync`",
        "restore_all_filetwin-enc": "restore of everything, filetwin-enc ÷ {against} `--fsync`",
        "restore_all_filetwin_nofsync": "restore of everything, filetwin ÷ {against} "
        "without `--fsync` (filetwin fsyncs every file it restores)",
        "restore_all_filetwin-enc_nofsync": "restore of everything, filetwin-enc ÷ {against} "
        "without `--fsync`",
        "encryption_first_backup_s": "encryption's cost on the first backup, "
        "filetwin-enc ÷ filetwin",
        "encryption_first_backup_files_s": "the same, the ~200 files alone",
        "encryption_first_backup_large_s": "the same, the large file alone",
    }
    if targets:
        lines += [
            "Targets (issue 10), each ratio taken within one run, median (min–max) of the runs:",
            "",
        ]
    for name, label in labels.items():
        t = targets.get(name)
        if t is None:
            continue
        text = label.format(against=" and ".join(t["against"]))
        verdict = _hit(t["median"] <= t["limit"])
        if name in (
            "encryption_first_backup_files_s",
            "encryption_first_backup_large_s",
            "restore_all_filetwin_nofsync",
            "restore_all_filetwin-enc_nofsync",
        ):
            verdict = "for information"
        lines.append(
            f"- {text}: {t['median']:.3f}× ({t['min']:.2f}–{t['max']:.2f}); target ≤ "
            f"{t['limit']:.2f}×: {verdict}"
        )
    if targets:
        lines.append("")
    return lines


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
    """Replace the generated part: from MARK to the next top-level (``## ``)
    section, which other benchmarks' hand-written sections may follow."""
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{MARK}\n"
    # The mark on a line of its own: prose may name it in backquotes.
    head, found, rest = text.rpartition(f"\n{MARK}\n")
    if not found:
        head, rest = text.rstrip("\n"), ""
    head += "\n"
    at = rest.find("\n## ")
    tail = "\n" + rest[at + 1 :] if at >= 0 else ""
    path.write_text(head + MARK + "\n\n" + table(out) + tail)
