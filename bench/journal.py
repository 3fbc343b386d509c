"""on-write figures: journaled writes vs plain writes, any-moment restore, 1 MiB durable.

Everything runs in one daemon on the same disk as the plain writes it is
compared with. The daemon is configured with checkpoint thresholds far above
what a measurement writes, so no checkpoint runs in the middle of one; the
close at the end of each measurement (a ``close-ok`` record) does fold the
journal into a checkpoint version, and the next measurement waits for it.

- ``throughput``: ``filetwin.open(path, "r+b")`` on an on-write entry against
  ``open(path, "r+b", buffering=0)`` on an unprotected file beside it, the same
  writes at the same offsets, for 4 KiB and 1 MiB writes and both sync modes.
  ``always`` is also compared with plain writes each followed by fdatasync,
  which is what the same durability costs without filetwin.
- ``restore``: a journal of ``records`` 64-byte writes at random offsets of a
  1 MiB file (made with ``filetwin.open``), restored at a sequence number near
  its end (a base version plus a replay of almost every record), through the
  daemon's API and through the library (what ``restore`` does offline).
  Checked byte for byte against a model of the file.
- ``large_change``: 1 MiB written in the middle of the large file through
  ``filetwin.open`` on an ``--sync always`` entry: ``write()`` returns once the
  record is durable, so its time is the change-to-durable latency; the bytes
  the journal grew by are what it stored for it.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import random
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import filetwin
from filetwin.repo.manifest import entry_key

from .tools import Filetwin, tree_bytes

#: far above anything one measurement writes: no checkpoint mid-measurement
NO_CHECKPOINT = 1 << 50
TARGETS = {
    "batch_4k_writes_per_s": 10_000,
    "ratio_1m_min": 0.5,
    "restore_100k_s": 2.0,
    "large_change_durable_ms": 50,
    "large_change_stored_mb": 2 * 1.048576,
}


def _stats(vals: list[float]) -> dict[str, float]:
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}


def _fill(path: Path, size: int) -> None:
    with path.open("wb") as fh:
        left = size
        while left:
            n = min(left, 8 << 20)
            fh.write(os.urandom(n))
            left -= n


class Bench:
    def __init__(self, base: Path) -> None:
        self.work = base / "journal"
        shutil.rmtree(self.work, ignore_errors=True)
        self.data = self.work / "data"
        self.data.mkdir(parents=True)
        self.ft = Filetwin(
            self.work,
            self.data,
            coalesce_ms=20,
            checkpoint_bytes=NO_CHECKPOINT,
            checkpoint_records=NO_CHECKPOINT,
        )

    def __enter__(self) -> Bench:
        self.ft.setup()
        self.client = self.ft.client
        return self

    def __exit__(self, *exc: object) -> None:
        self.ft.teardown()
        shutil.rmtree(self.work, ignore_errors=True)

    def journal_bytes(self, path: Path) -> int:
        return tree_bytes(self.ft.state / "journals" / entry_key(str(path)))

    def settle(self, path: Path, before: dict[str, str | None]) -> None:
        """Wait for the checkpoint the last close started (so it does not overlap)."""
        self.ft.wait_versions([path], before)


# throughput -------------------------------------------------------------------
def _write_loop(fh: Any, bufs: list[bytes], offsets: list[int], sync: bool = False) -> float:
    t0 = time.perf_counter()
    fd = fh.fileno()
    for i, off in enumerate(offsets):
        fh.seek(off)
        fh.write(bufs[i % len(bufs)])
        if sync:
            os.fdatasync(fd)
    return time.perf_counter() - t0


def throughput(
    b: Bench, mode: str, size: int, count: int, runs: int, profile: bool = False
) -> dict[str, Any]:
    region = max(64 << 20, 4 * size)
    journaled = b.data / f"tp-{mode}-{size}.bin"
    plain = b.data / f"tp-{mode}-{size}-plain.bin"
    _fill(journaled, region)
    shutil.copyfile(journaled, plain)
    b.client.add(journaled, backup="on-write", sync=mode)
    rng = random.Random(size)
    bufs = [rng.randbytes(size) for _ in range(8)]
    offsets = [(i * size) % region for i in range(count)]
    samples: dict[str, list[float]] = {"journaled": [], "plain": []}
    if mode == "always":
        samples["plain_fdatasync"] = []
    prof_text = None
    for run in range(runs):
        order = list(samples)
        order = order[run % len(order) :] + order[: run % len(order)]
        for kind in order:
            if kind == "journaled":
                before = b.ft.last_versions([journaled])
                fh = filetwin.open(journaled, "r+b", client=b.client, on_unjournaled="raise")
                prof = cProfile.Profile() if profile and run == 0 else None
                if prof is not None:
                    prof.enable()
                samples[kind].append(_write_loop(fh, bufs, offsets))
                if prof is not None:
                    prof.disable()
                    text = io.StringIO()
                    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(8)
                    prof_text = text.getvalue().splitlines()[-14:]
                fh.close()
                b.settle(journaled, before)
            else:
                with open(plain, "r+b", buffering=0) as fh:
                    samples[kind].append(
                        _write_loop(fh, bufs, offsets, sync=kind == "plain_fdatasync")
                    )
    out: dict[str, Any] = {"write_bytes": size, "writes": count}
    for kind, secs in samples.items():
        out[kind] = {
            "writes_per_s": _stats([count / s for s in secs]),
            "mib_per_s": _stats([count * size / 2**20 / s for s in secs]),
        }
    j = out["journaled"]["writes_per_s"]["median"]
    out["ratio"] = j / out["plain"]["writes_per_s"]["median"]
    if "plain_fdatasync" in out:
        out["ratio_vs_fdatasync"] = j / out["plain_fdatasync"]["writes_per_s"]["median"]
    if prof_text is not None:
        out["profile"] = prof_text
    b.client.remove(journaled, purge=True)
    journaled.unlink()
    plain.unlink()
    return out


# any-moment restore ---------------------------------------------------------------
def restore(b: Bench, records: int, runs: int) -> dict[str, Any]:
    from filetwin.backends import open_backend
    from filetwin.repo import Repository
    from filetwin.repo.moments import journal_dir, resolve
    from filetwin.restore import restore_version

    size = 1 << 20
    path = b.data / "restore.bin"
    _fill(path, size)
    model = bytearray(path.read_bytes())
    b.client.add(path, backup="on-write", sync="batch")
    rng = random.Random(100)
    back = 10  # restore this many records before the end: almost all are replayed
    keep_at = records - back  # the model after this many writes
    before = b.ft.last_versions([path])
    t0 = time.perf_counter()
    expected = b""
    with filetwin.open(path, "r+b", client=b.client, on_unjournaled="raise") as fh:
        for i in range(records):
            off = rng.randrange(0, size - 64)
            data = rng.randbytes(64)
            fh.seek(off)
            fh.write(data)
            model[off : off + 64] = data
            if i + 1 == keep_at:
                expected = bytes(model)
    setup_s = time.perf_counter() - t0
    b.settle(path, before)
    summary = b.client.journal(path)
    last = summary["last_seq"]  # the close; the writes are the `records` before it
    seq = last - 1 - back
    at = f"seq:{seq}"
    repo = Repository(open_backend(str(b.ft.repo)))
    jdir = str(journal_dir(b.ft.state / "journals", str(path)))
    dest = b.work / "restored.bin"
    times: dict[str, list[float]] = {"api_s": [], "library_s": []}
    for run in range(max(runs, 5)):
        for kind in ["api_s", "library_s"] if run % 2 == 0 else ["library_s", "api_s"]:
            dest.unlink(missing_ok=True)
            t0 = time.perf_counter()
            if kind == "api_s":
                result = b.client.restore(path, at=at, to=dest)
            else:
                result = restore_version(repo, str(path), at=at, to=str(dest), journal_dir=jdir)
            times[kind].append(time.perf_counter() - t0)
            if dest.read_bytes() != expected:
                raise RuntimeError(f"restore {at} ({kind}) differs from the model: {result}")
    moment = resolve(repo, str(path), Path(jdir), at)
    prof = cProfile.Profile()
    dest.unlink(missing_ok=True)
    prof.enable()
    restore_version(repo, str(path), at=at, to=str(dest), journal_dir=jdir)
    prof.disable()
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(8)
    b.client.remove(path, purge=True)
    return {
        "records": records,
        "record_bytes": 64,
        "file_bytes": size,
        "at": at,
        "replayed": moment.upto_seq - moment.base.journal_seq,
        "setup_s": setup_s,
        "setup_writes_per_s": records / setup_s,
        **{k: _stats(v) for k, v in times.items()},
        "profile": text.getvalue().splitlines()[-14:],
    }


# 1 MiB in the middle of the large file, on-write --sync always --------------------
def large_change(b: Bench, size: int, runs: int) -> dict[str, Any]:
    path = b.data / "large.bin"
    _fill(path, size)
    t0 = time.perf_counter()
    b.client.add(path, backup="on-write", sync="always")
    add_s = time.perf_counter() - t0
    chunk = 1 << 20
    write_s: list[float] = []
    open_s: list[float] = []
    journal_mb: list[float] = []
    repo_mb: list[float] = []
    for run in range(runs):
        data = random.Random(run).randbytes(chunk)
        before_versions = b.ft.last_versions([path])
        j0, r0 = b.journal_bytes(path), b.ft.repo_bytes()
        t0 = time.perf_counter()
        fh = filetwin.open(path, "r+b", client=b.client, on_unjournaled="raise")
        fh.seek(size // 2 + run * 4096)
        t1 = time.perf_counter()
        fh.write(data)  # returns once the record is fdatasynced: durable
        t2 = time.perf_counter()
        open_s.append(t1 - t0)
        write_s.append(t2 - t1)
        journal_mb.append((b.journal_bytes(path) - j0) / 1e6)
        fh.close()  # close-ok: the checkpoint folds the journal into a version
        b.settle(path, before_versions)
        repo_mb.append((b.ft.repo_bytes() - r0) / 1e6)
    b.client.remove(path, purge=True)
    path.unlink()
    return {
        "file_bytes": size,
        "change_bytes": chunk,
        "sync": "always",
        "add_s": add_s,
        "write_s": _stats(write_s),
        "open_s": _stats(open_s),
        "journal_added_mb": _stats(journal_mb),
        "checkpoint_repo_added_mb": _stats(repo_mb),
    }


def measure(base: Path, quick: bool, runs: int, large_bytes: int) -> dict[str, Any]:
    counts: dict[tuple[str, int], int] = (
        {("batch", 4096): 300, ("batch", 1 << 20): 8, ("always", 4096): 100, ("always", 1 << 20): 4}
        if quick
        else {
            ("batch", 4096): 20_000,
            ("batch", 1 << 20): 256,
            ("always", 4096): 2_000,
            ("always", 1 << 20): 64,
        }
    )
    out: dict[str, Any] = {
        "config": {
            "checkpoint_bytes": NO_CHECKPOINT,
            "checkpoint_records": NO_CHECKPOINT,
            "journal_batch_window_s": 0.1,
        },
        "targets": TARGETS,
        "throughput": {},
    }

    def step(what: str) -> None:
        print(f"journal: {what}", file=sys.stderr, flush=True)

    with Bench(base) as b:
        for (mode, size), count in counts.items():
            step(f"throughput {mode} {size} B x {count}")
            r = throughput(b, mode, size, count, runs, profile=(mode, size) == ("batch", 4096))
            out["throughput"][f"{mode}_{'4k' if size == 4096 else '1m'}"] = r
        records = 1_000 if quick else 100_000
        step(f"restore of {records} records")
        out["restore"] = restore(b, records, runs)
        step(f"1 MiB change in a {large_bytes} B file")
        out["large_change"] = large_change(b, large_bytes, runs)
    return out
