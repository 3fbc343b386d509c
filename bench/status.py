"""``python -m bench.status``: ``status`` of 100,000 entries, API and CLI, end to end.

The entries are written straight into a fresh table before the daemon
starts (registering 100,000 files through the daemon takes ~4 minutes and
measures ``add``, not ``status``); they are ``paused`` (the daemon watches
none of them: the table's size is what is measured) with realistic fields
(a version id, times, a result, 2 % failed with an error). Each figure is
the median (min-max) of ``--runs`` runs, from the request to the last byte:

- API: ``GET /status`` over the socket, the whole answer received (bytes,
  as a program that passes it on would), then the same decoded into Python
  objects (``Client.status()``);
- API after a change: one entry updated first, so the daemon re-reads it;
- API filtered/paged: ``state=error`` (matches nothing: the cost of the
  filter), ``failed=1`` (2,000 rows), a 50-row page at offset 50,000 and
  ``/status/summary``;
- CLI: ``filetwin status --json`` to a file, the terminal's table (first 50
  rows, through a pseudo-terminal), ``--failed`` piped (2,000 rows).

Results are printed and written to ``bench/results/status.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filetwin import Client, DaemonUnavailable
from filetwin.table import Table

HERE = Path(__file__).parent
TARGET_S = 0.5


def fill(state: Path, count: int) -> list[str]:
    """``count`` paused entries straight into a new table; their paths."""
    state.mkdir(parents=True, mode=0o700)
    Table(state / "table.sqlite").close()  # the schema, as the daemon makes it
    db = sqlite3.connect(state / "table.sqlite")
    now = time.time()
    rng = random.Random(7)
    paths = [f"/srv/data/d{i % 100:02d}/file-{i:06d}.dat" for i in range(count)]
    rows = []
    for i, path in enumerate(paths):
        failed = i % 50 == 0
        rows.append(
            (
                path,
                "paused",
                now - i,
                "failed" if failed else "ok",
                "cannot read the file: Input/output error" if failed else None,
                f"{rng.getrandbits(64):016x}",
                now - i / 2,
                f"{rng.getrandbits(256):064x}",
                rng.randrange(1, 50),
                rng.randrange(1, 1 << 30),
            )
        )
    db.executemany(
        "INSERT INTO entries (path, backup_mode, recovery_mode, retries, keep, repository,"
        " state, created_at, last_result, last_error, last_version, last_backup_at,"
        " last_good_hash, versions, size)"
        " VALUES (?, 'on-close', 'manual', 3, 50, '/srv/filetwin-repo', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    db.commit()
    db.close()
    return paths


def timed(fn: Callable[[], Any], runs: int) -> dict[str, float]:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
    }


def cli(state: Path, *args: str, tty: bool = False) -> Callable[[], None]:
    cmd = [sys.executable, "-m", "filetwin", "--state-dir", str(state), "status", *args]

    def run_piped() -> None:
        with open(os.devnull, "wb") as sink:
            subprocess.run(cmd, stdout=sink, check=False)

    def run_tty() -> None:
        # The table format: a terminal on stdout, read until the command exits.
        leader, follower = pty.openpty()
        proc = subprocess.Popen(cmd, stdout=follower, stderr=subprocess.DEVNULL)
        os.close(follower)
        try:
            while True:
                try:
                    if not os.read(leader, 1 << 16):
                        break
                except OSError:  # EIO: the command exited and closed the terminal
                    break
        finally:
            os.close(leader)
            proc.wait()

    return run_tty if tty else run_piped


def measure(count: int, runs: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="ft-bench-status-"))
    state = work / "state"
    paths = fill(state, count)
    config = work / "filetwin.toml"
    config.write_text("")
    log = (work / "daemon.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "filetwin",
            "daemon",
            "--state-dir",
            str(state),
            "--config",
            str(config),
        ],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    client = Client(socket_path=state / "filetwin.sock", timeout=60)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                client.ping()
                break
            except DaemonUnavailable:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((work / "daemon.log").read_text()) from None
                time.sleep(0.05)
        raw, total = client.status_page()  # the first answer reads the whole table
        assert total == count and raw.count(b'"path"') == count, (total, count)
        out: dict[str, Any] = {"entries": count, "runs": runs, "answer_mb": len(raw) / 1e6}
        out["api_bytes_s"] = timed(client.status_page, runs)
        out["api_decoded_s"] = timed(client.status, runs)
        keep = iter(range(1, 10_000))
        out["api_after_change_s"] = timed(
            lambda: (client.update(paths[0], keep=next(keep)), client.status_page()), runs
        )
        out["api_state_error_s"] = timed(lambda: client.status_page(state="error"), runs)
        out["api_failed_s"] = timed(lambda: client.status_page(failed=True), runs)
        out["api_page_s"] = timed(lambda: client.status_page(offset=count // 2, limit=50), runs)
        out["api_summary_s"] = timed(client.status_summary, runs)
        out["cli_json_s"] = timed(cli(state, "--json"), runs)
        out["cli_table_s"] = timed(cli(state, tty=True), runs)
        out["cli_failed_s"] = timed(cli(state, "--failed"), runs)
        return out
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    result = measure(args.entries, args.runs)
    result["date"] = time.strftime("%Y-%m-%d")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "status.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"status of {result['entries']} entries ({result['answer_mb']:.0f} MB of JSON), "
        f"median (min-max) of {result['runs']} runs:"
    )
    for key, value in result.items():
        if isinstance(value, dict):
            mark = (
                ""
                if not key.startswith(("api_bytes", "api_after", "cli_json"))
                else ("  met" if value["median"] <= TARGET_S else "  MISSED")
            )
            print(
                f"  {key:22} {value['median']:.3f} s ({value['min']:.3f}-{value['max']:.3f}){mark}"
            )


if __name__ == "__main__":
    main()
