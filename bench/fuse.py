"""The interceptor against direct I/O and a bare passthrough, in the same run.

Four variants on the same source directory, their order rotated each run
(A B C D, B C D A, ...), medians of the runs: direct I/O, a bare mfusepy
passthrough (bench/fuse_bare.py), the interceptor mounted elsewhere
(`filetwin mount SOURCE MNT`) and the interceptor mounted in place over the
source itself (`filetwin mount --in-place SOURCE`).

Rows: sequential 1 MiB writes and reads, 4 KiB writes (on an on-write entry
through the interceptor: every one exactly captured), create+write+close of
small files, and the time from a read of a corrupted block (a real EIO from
btrfs) to the healed bytes returned, through either kind of mount
(bench/fuse_inplace.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .fuse_inplace import heal_latency, inplace_cmd, is_inplace_mount, mount_cmd
from .tools import Filetwin

MiB = 1 << 20


@contextlib.contextmanager
def mounted(
    cmd: list[str], mountpoint: Path, ready: Callable[[Path], bool] = os.path.ismount
) -> Iterator[None]:
    """Run ``cmd`` (a FUSE server in the foreground) while ``ready(mountpoint)``;
    SIGTERM unmounts it afterwards (a lazy unmount if it does not)."""
    log = (mountpoint.parent / f"{mountpoint.name}.log").open("ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=log)
    deadline = time.monotonic() + 30
    while not ready(mountpoint):
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
            proc.wait(10)
        if ready(mountpoint):  # a server that died without unmounting
            subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], check=False)
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


VARIANTS = ("direct", "bare", "interceptor", "inplace")


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` so far (processes gone count 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def settle(ft: Filetwin, timeout: float = 120) -> None:
    """Wait until the daemon is idle (under 5% of a core over 200 ms): after a
    close through the interceptor it captures and checks the journal, work
    that grows with the journal (about 0.3 s of a core per 20k records here),
    and must not run into the next variant's measurement."""
    from .tools import descendants

    assert ft.proc is not None
    deadline = time.monotonic() + timeout
    last = cpu_s(descendants(ft.proc.pid))
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = cpu_s(descendants(ft.proc.pid))
        if now - last < 0.01:
            return
        last = now


def fresh(source: Path) -> None:
    """Remove what an earlier variant's rows left (no mount is up): every variant
    creates the same files anew, none truncates another's."""
    with contextlib.suppress(FileNotFoundError):
        (source / "seq.bin").unlink()
    shutil.rmtree(source / "small", ignore_errors=True)
    os.sync()  # the removals' writeback is not the next variant's


def measure(base: Path, quick: bool, runs: int) -> dict[str, Any]:
    """Rows of the four variants (medians over ``runs``, order rotated each run),
    their ratios to the bare passthrough, and the heal latencies."""
    work = base / "fuse"
    shutil.rmtree(work, ignore_errors=True)
    source, mnt_bare, mnt_ft = work / "source", work / "bare", work / "ft"
    for p in (source, mnt_bare, mnt_ft):
        p.mkdir(parents=True)
    target = source / "journaled.bin"
    target.write_bytes(os.urandom(256 * 4096))
    ft = Filetwin(work, source, checkpoint_records=10**9, checkpoint_bytes=1 << 40)
    ft.setup()
    results: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    bare = [sys.executable, "-m", "bench.fuse_bare", str(source), str(mnt_bare)]

    def captured(d: Path) -> dict[str, float]:
        before = ft.client.journal(target)["last_seq"] or 0
        row = rows_for(d, d / target.name, quick)
        after = ft.client.journal(target)["last_seq"] or 0
        row["captured_writes"] = after - before
        settle(ft)  # its capture after the close reads through the mount: not unmounted under it
        return row

    try:
        ft.client.add(target, backup="on-write", sync="batch")
        settle(ft)
        for run in range(runs):
            for name in VARIANTS[run % 4 :] + VARIANTS[: run % 4]:
                fresh(source)
                if name == "direct":
                    row = rows_for(source, target, quick)
                elif name == "bare":
                    with mounted(bare, mnt_bare):
                        row = rows_for(mnt_bare, mnt_bare / target.name, quick)
                elif name == "interceptor":
                    with mounted(mount_cmd(source, mnt_ft, ft.state), mnt_ft):
                        row = captured(mnt_ft)
                else:
                    with mounted(inplace_cmd(source, ft.state), source, is_inplace_mount):
                        row = captured(source)
                results[name].append(row)
                settle(ft)
    finally:
        ft.teardown()
        shutil.rmtree(work, ignore_errors=True)
    out: dict[str, Any] = {}
    for name, rows in results.items():
        out[name] = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        out[name + "_runs"] = {k: [r[k] for r in rows] for k in rows[0]}
    heal = heal_latency(base, 2 if quick else 7)
    if "skipped" in heal:
        out["heal_1mib"] = out["heal_1mib_inplace"] = heal
    else:
        out["heal_1mib"], out["heal_1mib_inplace"] = heal["elsewhere"], heal["in_place"]
    for name in ("interceptor", "inplace"):
        out[f"ratio_{name}_vs_bare"] = {
            k: out["bare"][k] / out[name][k] for k in out["bare"] if out[name][k]
        }
    return out
