"""``python -m bench``: filetwin side by side with restic, borg and rsync.

Builds the seeded dataset, runs every measurement ``--runs`` times with the
tools alternating (A B C D, B C D A, ...), and writes medians and min-max to
``bench/results/*.json`` and a table into ``bench/README.md``. ``--quick``
is the tiny smoke run the test suite uses so that the harness never rots.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import dataset, fuse, journal, own, report
from .tools import PEERS, Filetwin, Rsync, Tool, available, compile_filetwin

HERE = Path(__file__).parent
SECTIONS = ("peers", "own", "journal", "fuse")


def install_peers() -> None:
    missing = [
        pkg
        for cmd, pkg in (
            ("restic", "restic"),
            ("borg", "borgbackup"),
            ("rsync", "rsync"),
            ("/usr/bin/time", "time"),
        )
        if not available(cmd)
    ]
    if missing:
        print(f"installing peers: {' '.join(missing)}", file=sys.stderr)
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", *missing],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )


def timed(fn: object, *args: object) -> float:
    t0 = time.perf_counter()
    fn(*args)  # type: ignore[operator]
    return time.perf_counter() - t0


def run_tool(tool: Tool, ds: dataset.Dataset, scratch: Path, run: int) -> dict[str, float]:
    row: dict[str, float] = {}
    tool.setup()
    try:
        # Two datasets, one after the other: the ~200 files, then the large file
        # (peers: a second backup of the whole directory, which now holds it).
        row["first_backup_files_s"] = timed(tool.first_backup, ds.files, ds.large)
        if isinstance(tool, Filetwin):
            row["first_backup_large_s"] = timed(tool.first_backup, [ds.large])
        else:
            row["first_backup_large_s"] = timed(tool.incremental, [ds.large])
        row["first_backup_s"] = row["first_backup_files_s"] + row["first_backup_large_s"]
        row["repo_after_first_mb"] = tool.repo_bytes() / 1e6
        # 1 MiB changed in the middle of the large file.
        before = tool.repo_bytes()
        if isinstance(tool, Filetwin):
            versions = tool.last_versions([ds.large])
            t0 = time.perf_counter()
            dataset.change_middle(ds.large, 1 << 20, seed=run)
            tool.wait_versions([ds.large], versions)
            row["large_change_s"] = time.perf_counter() - t0
        else:
            dataset.change_middle(ds.large, 1 << 20, seed=run)
            row["large_change_s"] = timed(tool.incremental, [ds.large])
        row["large_change_added_mb"] = (tool.repo_bytes() - before) / 1e6
        # Ten small files changed.
        before = tool.repo_bytes()
        if isinstance(tool, Filetwin):
            import random

            picked = random.Random(run).sample(ds.small, 10)
            versions = tool.last_versions(picked)
            t0 = time.perf_counter()
            for p in picked:
                with p.open("ab") as fh:
                    fh.write(random.Random(str(p)).randbytes(1024))
            tool.wait_versions(picked, versions)
            row["small_change_s"] = time.perf_counter() - t0
        else:
            dataset.change_small(ds, 10, seed=run)
            row["small_change_s"] = timed(tool.incremental, [])
        row["small_change_added_mb"] = (tool.repo_bytes() - before) / 1e6
        dest = scratch / f"restore-{tool.name}"
        row["restore_all_s"] = timed(tool.restore_all, dest)
        shutil.rmtree(dest, ignore_errors=True)
        if isinstance(tool, Rsync):
            row["restore_all_nofsync_s"] = timed(tool.restore_all_nofsync, dest)
            shutil.rmtree(dest, ignore_errors=True)
        old = ds.small[len(ds.small) // 2]
        row["restore_old_s"] = timed(tool.restore_old, old, dest)
        shutil.rmtree(dest, ignore_errors=True)
        row["repo_final_mb"] = tool.repo_bytes() / 1e6
        if isinstance(tool, Filetwin):
            tool.sample_peak()
        row["peak_rss_mb"] = tool.peak_kib / 1024
    finally:
        tool.teardown()
    return row


def versus_peers(args: argparse.Namespace, base: Path) -> dict[str, list[dict[str, float]]]:
    source = dataset.build(base / "source", scale=args.scale, large_bytes=args.large_bytes)
    own_tools = ["filetwin"] if args.no_encrypted else ["filetwin", "filetwin-enc"]
    names = [*own_tools, *[n for n in PEERS if available(n.split("-")[0])]]
    if args.skip_peers:
        names = own_tools
    if args.tools:
        wanted = args.tools.split(",")
        unknown = sorted(set(wanted) - {"filetwin", "filetwin-enc", *PEERS})
        if unknown:
            raise SystemExit(f"--tools: unknown tool(s) {', '.join(unknown)}")
        names = [n for n in names if n in wanted]
    results: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for run in range(args.runs):
        order = names[run % len(names) :] + names[: run % len(names)]
        for name in order:
            work = base / f"work-{name}"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            data = work / "data"
            subprocess.run(["cp", "-a", "--reflink=auto", str(source.root), str(data)], check=True)
            ds = dataset.Dataset(
                data,
                [data / p.relative_to(source.root) for p in source.small],
                data / source.large.relative_to(source.root),
            )
            tool: Tool
            if name == "filetwin":
                tool = Filetwin(work, data, coalesce_ms=20)
            elif name == "filetwin-enc":
                tool = Filetwin(work, data, coalesce_ms=20, encryption="repokey")
            else:
                tool = PEERS[name](work, data)
            row = run_tool(tool, ds, work, run)
            print(
                f"run {run + 1}/{args.runs} {name}: "
                + ", ".join(f"{k}={v:.3g}" for k, v in row.items()),
                file=sys.stderr,
            )
            results[name].append(row)
            shutil.rmtree(work, ignore_errors=True)
    return results


def merged(path: Path, out: dict[str, Any], only: str | None) -> dict[str, Any]:
    """With ``--only X``, the other sections of the results file are kept.

    Each kept section remembers the meta of the run that measured it
    (``meta_by_section``), so the README can say when each was measured.
    """
    if only is None or not path.exists():
        return {**out, "meta_by_section": {k: out["meta"] for k in SECTIONS if k in out}}
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return out
    by_section = old.get("meta_by_section") or {k: old["meta"] for k in SECTIONS if k in old}
    by_section[only] = out["meta"]
    result = {k: v for k, v in old.items() if k in SECTIONS}
    result[only] = out[only]
    return {"meta": out["meta"], **result, "meta_by_section": by_section}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny smoke run (used by the tests)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--scale", type=float, default=1.0, help="dataset size factor (1.0 = 256 MiB)")
    p.add_argument("--large-bytes", type=int, default=None, help="size of the large file")
    p.add_argument("--skip-peers", action="store_true")
    p.add_argument(
        "--tools",
        default="",
        help="comma-separated subset of filetwin,filetwin-enc,restic,borg,borg-enc,rsync",
    )
    p.add_argument(
        "--no-encrypted",
        action="store_true",
        help="leave out filetwin with an encrypted (repokey) repository",
    )
    p.add_argument("--no-install", action="store_true", help="do not apt-get the peers")
    p.add_argument(
        "--only",
        choices=SECTIONS,
        default=None,
        help="run one section; the others are kept from the existing results file",
    )
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument(
        "--readme",
        type=Path,
        default=None,
        help="where the table goes (default bench/README.md; a --quick run writes none "
        "unless this is given)",
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="measure nothing: rewrite the README table from the results file",
    )
    args = p.parse_args(argv)
    readme = args.readme or HERE / "README.md"
    if args.report_only:
        report.write_readme(readme, json.loads((args.out / "latest.json").read_text()))
        return 0
    if args.quick:
        args.runs, args.scale = 1, 0.01
        args.large_bytes = args.large_bytes or 8 << 20
    if not args.no_install and not args.quick:
        install_peers()
    compile_filetwin()
    base = args.workdir or Path(tempfile.mkdtemp(prefix="filetwin-bench-", dir="/var/tmp"))
    base.mkdir(parents=True, exist_ok=True)
    meta = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} {platform.release()}, "
        f"{own.cpu_count()} cores, {own.mem_gib():.0f} GiB",
        "versions": own.tool_versions(),
        "runs": args.runs,
        "scale": args.scale,
        "quick": args.quick,
    }
    try:
        out: dict[str, object] = {"meta": meta}
        if args.only in (None, "peers"):
            out["peers"] = report.summarise(versus_peers(args, base))
        if args.only in (None, "own"):
            out["own"] = own.measure(base, quick=args.quick, runs=args.runs)
        if args.only in (None, "journal"):
            large = args.large_bytes or int((1 << 30) * args.scale)  # as dataset.build
            out["journal"] = journal.measure(
                base, quick=args.quick, runs=args.runs, large_bytes=large
            )
        if args.only in (None, "fuse") and shutil.which("fusermount3"):
            out["fuse"] = fuse.measure(base, quick=args.quick, runs=args.runs)
    finally:
        if args.workdir is None:
            shutil.rmtree(base, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "quick.json" if args.quick else "latest.json"
    out = merged(args.out / name, out, args.only)
    (args.out / name).write_text(json.dumps(out, indent=2) + "\n")
    if not args.quick or args.readme is not None:
        report.write_readme(readme, out)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
