"""``python -m bench.dashboard``: the dashboard's first paint of the table at 100,000 entries.

The table is filled directly (paused synthetic rows inserted into the
daemon's SQLite table while it is stopped, as ``bench/own.py`` does for
``status``): what is measured is the table's size, not 100,000 watches, and
adding 100,000 real files through the API would take minutes without
changing what the dashboard reads (one page of rows).

Measured, each the median of ``--runs`` (min-max beside it):

- in headless Chromium (Debian's, via Selenium): a fresh navigation to ``/``
  after login, to the first contentful paint of the table (Paint Timing)
  and to ``DOMContentLoaded``;
- over HTTP from the same machine: ``GET /`` (the whole first page), ``GET
  /rows`` (the page's live refresh), ``GET /?filter=...`` (a path filter that
  scans every row) and the last page.

Results go to ``bench/results/dashboard.json`` and the section between the
``dashboard`` markers in ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filetwin import Client, DaemonUnavailable

HERE = Path(__file__).parent
BEGIN = "<!-- dashboard -->"
END = "<!-- /dashboard -->"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: target of issue 13: the table stays responsive at 100,000 entries
TARGET_PAINT_MS = 1000.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Daemon:
    """A daemon with its dashboard on a free port, in ``work``."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.state = work / "state"
        self.port = _free_port()
        self.config = work / "filetwin.toml"
        self.config.write_text(f"[dashboard]\nenabled = true\nport = {self.port}\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.work / "daemon.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "filetwin", "daemon", "--state-dir", str(self.state),
             "--config", str(self.config)],
            stdout=log, stderr=log,
        )  # fmt: skip
        client = Client(socket_path=self.state / "filetwin.sock")
        deadline = time.monotonic() + 120
        while True:
            try:
                client.ping()
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except (DaemonUnavailable, OSError):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("the daemon or its dashboard did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(60)
            self.proc = None

    @property
    def token(self) -> str:
        return (self.state / "dashboard.token").read_text().strip()


def fill(table: Path, entries: int) -> None:
    """``entries`` paused synthetic rows, spread over 1,000 directories."""
    db = sqlite3.connect(table)
    now = time.time()
    db.executemany(
        "INSERT INTO entries (path, backup_mode, recovery_mode, retries, keep, repository,"
        " state, created_at, versions, last_result, last_backup_at)"
        " VALUES (?, 'on-close', 'manual', 3, 50, 'synthetic', 'paused', ?, 1, 'ok', ?)",
        ((f"/srv/data/d{i % 1000:03d}/file{i:06d}.bin", now, now) for i in range(entries)),
    )
    db.commit()
    db.close()


def _median(samples: list[float]) -> dict[str, float]:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples)}


def http_ms(d: Daemon, target: str, runs: int) -> dict[str, float]:
    """Milliseconds from request to the last byte of the answer."""
    cookie = f"filetwin_token_{d.port}={d.token}; filetwin_session_{d.port}=bench"
    samples = []
    for _ in range(runs):
        conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=60)
        t0 = time.perf_counter()
        conn.request("GET", target, headers={"Host": f"127.0.0.1:{d.port}", "Cookie": cookie})
        answer = conn.getresponse()
        answer.read()
        samples.append((time.perf_counter() - t0) * 1000)
        conn.close()
        if answer.status != 200:
            raise RuntimeError(f"GET {target} answered {answer.status}")
    return _median(samples)


def browser_ms(d: Daemon, runs: int) -> dict[str, Any]:
    """First contentful paint and DOMContentLoaded of ``/`` in headless Chromium."""
    from selenium import webdriver

    profile = tempfile.mkdtemp(prefix="bench-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 "--window-size=1280,860", f"--user-data-dir={profile}"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    paint, loaded, rows = [], [], 0
    try:
        driver.get(f"http://127.0.0.1:{d.port}/?token={d.token}")  # login: the cookie
        for _ in range(runs):
            driver.get("about:blank")
            driver.get(f"http://127.0.0.1:{d.port}/")
            # The paint entry is reported after the frame is presented: wait for it.
            deadline = time.monotonic() + 10
            while True:
                timing: dict[str, Any] = driver.execute_script(
                    "const fcp = performance.getEntriesByName('first-contentful-paint')[0];"
                    "const nav = performance.getEntriesByType('navigation')[0];"
                    "return {fcp: fcp ? fcp.startTime : null, dcl: nav.domContentLoadedEventEnd,"
                    " rows: document.querySelectorAll('#rows tr').length};"
                )
                if timing["fcp"] is not None:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("Chromium reported no first contentful paint")
                time.sleep(0.02)
            paint.append(float(timing["fcp"]))
            loaded.append(float(timing["dcl"]))
            rows = int(timing["rows"])
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return {"first_paint_ms": _median(paint), "dom_loaded_ms": _median(loaded), "rows": rows}


def measure(entries: int, runs: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    d = Daemon(work)
    try:
        d.start()  # makes the table
        d.stop()
        fill(d.state / "table.sqlite", entries)
        d.start()
        timed: Callable[[str], dict[str, float]] = lambda target: http_ms(d, target, runs * 4)  # noqa: E731
        out: dict[str, Any] = {
            "entries": entries,
            "runs": runs,
            "http_first_page_ms": timed("/"),
            "http_rows_ms": timed("/rows"),
            "http_filter_ms": timed("/?filter=file099999"),
            "http_last_page_ms": timed(f"/?page={max(1, -(-entries // 100))}"),
        }
        out.update(browser_ms(d, runs))
        return out
    finally:
        d.stop()
        shutil.rmtree(work, ignore_errors=True)


def section(r: dict[str, Any], meta: str) -> str:
    def fig(key: str) -> str:
        m = r[key]
        return f"{m['median']:.0f} ms ({m['min']:.0f}–{m['max']:.0f})"

    met = "met" if r["first_paint_ms"]["median"] <= TARGET_PAINT_MS else "**missed**"
    return (
        f"{BEGIN}\n## The dashboard at {r['entries']:,} entries (issue 13)\n\n"
        f"`python -m bench.dashboard` — {meta}; medians (min–max). The table is filled "
        "directly with paused synthetic rows (see the module's docstring); the page "
        f"shows {r['rows']} rows, read as one page from the table.\n\n"
        "| row | time |\n| --- | --- |\n"
        f"| first contentful paint of the table, headless Chromium, fresh navigation to `/` "
        f"| {fig('first_paint_ms')} |\n"
        f"| DOMContentLoaded, same navigation | {fig('dom_loaded_ms')} |\n"
        f"| `GET /` over HTTP (the whole first page) | {fig('http_first_page_ms')} |\n"
        f"| `GET /rows` (the live refresh, every 2 s) | {fig('http_rows_ms')} |\n"
        f"| `GET /?filter=…` (a path filter: every row scanned) | {fig('http_filter_ms')} |\n"
        f"| the last page | {fig('http_last_page_ms')} |\n\n"
        f"- target: first paint within {TARGET_PAINT_MS:.0f} ms at {r['entries']:,} entries: "
        f"{met}\n{END}\n"
    )


def write_readme(text: str) -> None:
    """Replace the dashboard section, or put it before the generated results table."""
    path = HERE / "README.md"
    readme = path.read_text()
    if BEGIN in readme and END in readme:
        head, rest = readme.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        readme = head + text + "\n" + tail
    else:
        mark = "<!-- results -->"
        head, sep, tail = readme.partition(mark)
        readme = head + text + "\n" + sep + tail
    path.write_text(readme)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-readme", action="store_true", help="only print the figures")
    args = parser.parse_args()
    result = measure(args.entries, args.runs)
    cores = os.cpu_count()
    meta = (
        f"measured {datetime.now(UTC).isoformat(timespec='seconds')} on "
        f"{platform.machine()} {platform.release()}, {cores} cores, {args.runs} runs "
        f"(HTTP rows: {args.runs * 4})"
    )
    result["meta"] = meta
    print(json.dumps(result, indent=2))
    if not args.no_readme:
        (HERE / "results").mkdir(exist_ok=True)
        (HERE / "results" / "dashboard.json").write_text(json.dumps(result, indent=2) + "\n")
        write_readme(section(result, meta))


if __name__ == "__main__":
    main()
