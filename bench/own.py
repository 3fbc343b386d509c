"""filetwin's own figures: close→durable latency, scale, idle cost, profile.

Adding a measurement is a function here returning a dict, called from
``measure``.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .tools import Filetwin


def cpu_count() -> int:
    return os.cpu_count() or 1


def mem_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def tool_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for cmd in (["restic", "version"], ["borg", "--version"], ["rsync", "--version"]):
        try:
            text = subprocess.run(cmd, capture_output=True, text=True).stdout
            out[cmd[0]] = text.splitlines()[0] if text else "?"
        except FileNotFoundError:
            out[cmd[0]] = "not installed"
    return out


def percentiles(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {
        "p50_ms": 1000 * statistics.median(s),
        "p99_ms": 1000 * s[min(len(s) - 1, int(0.99 * len(s)))],
        "max_ms": 1000 * s[-1],
        "n": len(s),
    }


def close_latency(base: Path, size: int, saves: int, encryption: str = "none") -> dict[str, float]:
    """Time from close() to the version being committed, over ``saves`` saves,
    in a repository made with ``encryption`` (none or repokey)."""
    work = base / f"latency-{size}-{encryption}"
    shutil.rmtree(work, ignore_errors=True)
    (work / "data").mkdir(parents=True)
    f = work / "data" / "f.bin"
    f.write_bytes(os.urandom(size))
    ft = Filetwin(work, work / "data", encryption=encryption)
    ft.setup()
    try:
        ft.client.add(f)
        samples = []
        for _ in range(saves):
            before = ft.last_versions([f])
            with f.open("r+b") as fh:
                fh.write(os.urandom(min(size, 4096)))
            t0 = time.perf_counter()  # close() has returned
            ft.wait_versions([f], before)
            samples.append(time.perf_counter() - t0)
        return percentiles(samples)
    finally:
        ft.teardown()
        shutil.rmtree(work, ignore_errors=True)


def many_entries(base: Path, count: int, synthetic: int, idle: float) -> dict[str, float]:
    """add of ``count`` files; idle RSS/CPU; status time with ``synthetic`` rows more."""
    work = base / "scale"
    shutil.rmtree(work, ignore_errors=True)
    data = work / "data"
    paths = []
    for i in range(count):
        p = data / f"d{i % 100:02d}" / f"f{i:05d}"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(4096))
        paths.append(p)
    ft = Filetwin(work, data)
    ft.setup()
    out: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        ft.first_backup(paths)
        out["add_s"] = time.perf_counter() - t0
        out["add_per_s"] = count / out["add_s"]
        assert ft.proc is not None
        cpu0 = _cpu_s(ft.proc.pid)
        time.sleep(idle)  # measuring idle cost: the wait is the measurement
        out["idle_cpu_pct"] = 100 * (_cpu_s(ft.proc.pid) - cpu0) / idle
        out["idle_rss_mb"] = ft.rss_kib() / 1024
        ft.teardown()
        # Synthetic paused rows: the table's size is what is measured, not watching.
        db = sqlite3.connect(work / "state" / "table.sqlite")
        now = time.time()
        db.executemany(
            "INSERT INTO entries (path, backup_mode, recovery_mode, retries, keep, repository,"
            " state, created_at) VALUES (?, 'on-close', 'manual', 3, 50, ?, 'paused', ?)",
            ((f"/synthetic/{i}", str(ft.repo), now) for i in range(synthetic)),
        )
        db.commit()
        db.close()
        ft.setup_again()
        t0 = time.perf_counter()
        rows = ft.client.status()
        out["status_api_s"] = time.perf_counter() - t0
        out["status_rows"] = len(rows)
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "filetwin", "status", "--json", "--state-dir", str(ft.state)],
            capture_output=True,
            check=True,
        )
        out["status_cli_s"] = time.perf_counter() - t0
    finally:
        ft.teardown()
        shutil.rmtree(work, ignore_errors=True)
    return out


def _cpu_s(pid: int) -> float:
    from .tools import descendants

    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def profile_large_backup(base: Path, size: int) -> dict[str, Any]:
    """Where the time of the large-file rows goes (pyinstrument), through the
    library the workers run: the first backup of the large file, its backup
    after 1 MiB changed in the middle, the first backup into an encrypted
    (repokey) repository, and the restore of that version from it (the
    library's restore, as ``restore --to``; the repository opened, i.e. the
    KDF run, before the profile starts)."""
    from pyinstrument import Profiler

    from filetwin.repo.opening import open_repository
    from filetwin.restore import restore_version

    from .tools import PASSPHRASE

    work = base / "profile"
    work.mkdir(parents=True, exist_ok=True)
    f = work / "large.bin"
    with f.open("wb") as fh:
        for _ in range(size // (8 << 20) or 1):
            fh.write(os.urandom(min(size, 8 << 20)))
    plain = open_repository(str(work / "repo"), create_mode="none")
    out: dict[str, Any] = {"bytes": f.stat().st_size}

    def profiled(name: str, fn: Any, *args: Any, **kwargs: Any) -> None:
        profiler = Profiler(interval=0.001)
        t0 = time.perf_counter()
        profiler.start()
        fn(*args, **kwargs)
        profiler.stop()
        out[f"{name}_seconds"] = time.perf_counter() - t0
        text = profiler.output_text(unicode=False, color=False, show_all=False)
        out[f"{name}_top"] = [line for line in text.splitlines() if line.strip()][:28]

    profiled("first", plain.store_file, f, "initial")
    with f.open("r+b") as rw:
        rw.seek(f.stat().st_size // 2)
        rw.write(os.urandom(1 << 20))
    profiled("change", plain.store_file, f, "close")
    enc = open_repository(
        str(work / "repo-enc"), create_mode="repokey", passphrase=lambda: PASSPHRASE
    )
    profiled("first_enc", enc.store_file, f, "initial")
    enc = open_repository(str(work / "repo-enc"), passphrase=lambda: PASSPHRASE)
    profiled("restore_enc", restore_version, enc, str(f), to=str(work / "restored.bin"))
    shutil.rmtree(work, ignore_errors=True)
    return out


def measure(base: Path, quick: bool, runs: int) -> dict[str, Any]:
    saves = 20 if quick else 1000
    big_saves = 5 if quick else 200
    return {
        "latency_4k": close_latency(base, 4096, saves),
        "latency_4k_enc": close_latency(base, 4096, saves, encryption="repokey"),
        "latency_16m": close_latency(base, 16 << 20, big_saves),
        "latency_16m_enc": close_latency(base, 16 << 20, big_saves, encryption="repokey"),
        "scale": many_entries(
            base, 200 if quick else 10_000, 1000 if quick else 100_000, idle=0.5 if quick else 10.0
        ),
        "profile_large_change": profile_large_backup(base, (8 << 20) if quick else (1 << 30)),
    }
