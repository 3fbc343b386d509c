"""The interceptor against direct I/O and a bare passthrough, in the same run.

Rows: sequential 1 MiB writes and reads, 4 KiB writes (on an on-write entry
through the interceptor: every one exactly captured), create+write+close of
small files, and the time from a read of a corrupted block (a real EIO from
btrfs) to the healed bytes returned.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .tools import Filetwin

MiB = 1 << 20


@contextlib.contextmanager
def mounted(cmd: list[str], mountpoint: Path) -> Iterator[None]:
    log = (mountpoint.parent / f"{mountpoint.name}.log").open("ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=log)
    deadline = time.monotonic() + 30
    while not os.path.ismount(mountpoint):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"mount failed: {' '.join(cmd)}")
        time.sleep(0.01)
    try:
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            subprocess.run(["fusermount3", "-u", str(mountpoint)], check=False)
            proc.kill()
        log.close()


def seq_write(d: Path, total: int) -> float:
    block = os.urandom(MiB)
    p = d / "seq.bin"
    t0 = time.perf_counter()
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for _ in range(total // MiB):
        os.write(fd, block)
    os.fsync(fd)
    os.close(fd)
    return total / MiB / (time.perf_counter() - t0)


def seq_read(d: Path, total: int) -> float:
    p = d / "seq.bin"
    t0 = time.perf_counter()
    fd = os.open(p, os.O_RDONLY)
    while os.read(fd, MiB):
        pass
    os.close(fd)
    return total / MiB / (time.perf_counter() - t0)


def small_writes(path: Path, count: int) -> float:
    block = os.urandom(4096)
    fd = os.open(path, os.O_WRONLY)
    t0 = time.perf_counter()
    for i in range(count):
        os.pwrite(fd, block, (i % 256) * 4096)
    elapsed = time.perf_counter() - t0
    os.close(fd)
    return count / elapsed


def small_files(d: Path, count: int) -> float:
    sub = d / "small"
    sub.mkdir(exist_ok=True)
    data = os.urandom(4096)
    t0 = time.perf_counter()
    for i in range(count):
        fd = os.open(sub / f"f{i}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, data)
        os.close(fd)
    return count / (time.perf_counter() - t0)


def rows_for(d: Path, target: Path, quick: bool) -> dict[str, float]:
    total = (16 if quick else 256) * MiB
    return {
        "seq_write_mib_s": seq_write(d, total),
        "seq_read_mib_s": seq_read(d, total),
        "write_4k_per_s": small_writes(target, 2000 if quick else 20000),
        "small_files_per_s": small_files(d, 200 if quick else 2000),
    }


def heal_latency(base: Path, runs: int) -> dict[str, Any]:
    """Time from reading a 1 MiB file with a damaged block (a real EIO from
    btrfs) through the interceptor to the healed bytes returned."""
    from .faultfs import NoFaultFS, btrfs_image

    work = base / "heal"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    samples = []
    try:
        with btrfs_image(work) as fs:
            ft = Filetwin(work, fs.mount)
            ft.setup()
            mnt = work / "mnt"
            mnt.mkdir()
            inter = [
                sys.executable,
                "-m",
                "filetwin",
                "mount",
                str(fs.mount),
                str(mnt),
                "--state-dir",
                str(ft.state),
            ]
            try:
                with mounted(inter, mnt):
                    for i in range(runs):
                        content = os.urandom(MiB)
                        f = fs.mount / f"heal{i}.bin"
                        f.write_bytes(content)
                        ft.client.add(f, recovery="auto")
                        fs.corrupt(f)
                        t0 = time.perf_counter()
                        got = (mnt / f.name).read_bytes()
                        samples.append(time.perf_counter() - t0)
                        if got != content:
                            raise RuntimeError("the interceptor returned other bytes")
            finally:
                ft.teardown()
    except NoFaultFS as e:
        return {"skipped": str(e)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "median_ms": 1000 * statistics.median(samples),
        "max_ms": 1000 * max(samples),
        "n": len(samples),
    }


def measure(base: Path, quick: bool, runs: int) -> dict[str, Any]:
    work = base / "fuse"
    shutil.rmtree(work, ignore_errors=True)
    source, mnt_bare, mnt_ft = work / "source", work / "bare", work / "ft"
    for p in (source, mnt_bare, mnt_ft):
        p.mkdir(parents=True)
    target = source / "journaled.bin"
    target.write_bytes(os.urandom(256 * 4096))
    ft = Filetwin(work, source, checkpoint_records=10**9, checkpoint_bytes=1 << 40)
    ft.setup()
    results: dict[str, list[dict[str, float]]] = {"direct": [], "bare": [], "interceptor": []}
    try:
        ft.client.add(target, backup="on-write", sync="batch")
        bare = [sys.executable, "-m", "bench.fuse_bare", str(source), str(mnt_bare)]
        inter = [
            sys.executable,
            "-m",
            "filetwin",
            "mount",
            str(source),
            str(mnt_ft),
            "--state-dir",
            str(ft.state),
        ]
        for _ in range(runs):
            results["direct"].append(rows_for(source, target, quick))
            with mounted(bare, mnt_bare):
                results["bare"].append(rows_for(mnt_bare, mnt_bare / target.name, quick))
            with mounted(inter, mnt_ft):
                before = ft.client.journal(target)["last_seq"] or 0
                row = rows_for(mnt_ft, mnt_ft / target.name, quick)
                after = ft.client.journal(target)["last_seq"] or 0
                row["captured_writes"] = after - before
                results["interceptor"].append(row)
    finally:
        ft.teardown()
        shutil.rmtree(work, ignore_errors=True)
    out: dict[str, Any] = {}
    for name, rows in results.items():
        out[name] = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    out["heal_1mib"] = heal_latency(base, 2 if quick else 5)
    out["ratio_interceptor_vs_bare"] = {
        k: out["bare"][k] / out["interceptor"][k] for k in out["bare"] if out["interceptor"][k]
    }
    return out
