"""Replication lag: from close() to the version on the replica, and from an
acknowledged journaled write to that record on the replica (p50/p99), to a
replica on a local path and to SeaweedFS on 127.0.0.1.

``python -m bench.replicas [--saves N] [--writes N]`` runs a real daemon
(state directory and primary repository in a temp dir) with one replica at a
time, and writes bench/results/replicas.json. Each save is a 4 KiB file
rewritten and closed; its lag ends when a new manifest is listed on the
replica. Each journaled write is ``Client.notify_write`` (its return is the
acknowledgement); its lag ends when the journal object holding its seq exists
on the replica (a HEAD of the name it must have, writes being sequential; a
LIST of the entry's journal objects every 50th poll). Saves and writes are
sequential (one in flight), so a lag includes the batching window (0.1 s) but
no queueing behind other changes.
Needs the test extra (the ``weed`` binary and the fixture modules).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from filetwin.backends import open_backend  # noqa: E402
from filetwin.backends.base import Backend  # noqa: E402
from filetwin.replicas.layout import (  # noqa: E402
    host_location,
    journal_object,
    parse_journal_object,
)
from filetwin.repo.manifest import entry_key  # noqa: E402
from tests.helpers import Daemon  # noqa: E402
from tests.s3server import S3Server, fresh_location  # noqa: E402

HOST = "bench"


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(_pct(values, 50) * 1000, 1),
        "p99_ms": round(_pct(values, 99) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1),
        "mean_ms": round(statistics.mean(values) * 1000, 1),
    }


def _poll(predicate: Callable[[], bool], timeout: float = 30.0) -> float:
    """The monotonic time at which ``predicate`` first held (polled every ms)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the replica did not receive the change")
        time.sleep(0.001)
    return time.monotonic()


def measure(location: str, work: Path, saves: int, writes: int) -> dict[str, Any]:
    state = work / f"state-{time.monotonic_ns()}"
    d = Daemon(state, {"coalesce_ms": 0})
    d.config_path.write_text(
        d.config_path.read_text() + f'[[replica]]\nlocation = "{location}"\nname = "r"\n'
    )
    d.start()
    try:
        replica: Backend = open_backend(host_location(location, HOST))
        files = work / f"files-{time.monotonic_ns()}"
        files.mkdir()
        f = files / "small.bin"
        f.write_bytes(os.urandom(4096))
        d.client.add(f)
        version_lags = []
        for _ in range(saves):
            # Retention keeps the count flat past --keep: wait for a new name.
            before = set(replica.list("manifests/"))
            with open(f, "wb") as out:
                out.write(os.urandom(4096))
            t0 = time.monotonic()  # close() returned
            t1 = _poll(lambda b=before: bool(set(replica.list("manifests/")) - b))
            version_lags.append(t1 - t0)
        db = files / "db.bin"
        db.write_bytes(bytes(1 << 20))
        d.client.add(db, backup="on-write")
        key = entry_key(str(db))
        write_lags = []
        for i in range(writes):
            seq = d.client.notify_write(db, (i * 4096) % (1 << 20), os.urandom(4096))
            t0 = time.monotonic()  # acknowledged

            def shipped(seq: int = seq, polls: list[int] = [0]) -> bool:  # noqa: B006
                # Writes are sequential, so the record's object is exactly seq..seq
                # (one HEAD); a full LIST (which grows with every object and loads
                # the server it measures) only every 50th poll, in case it is not.
                polls[0] += 1
                if polls[0] % 50 and not replica.exists(journal_object(key, seq, seq)):
                    return False
                if replica.exists(journal_object(key, seq, seq)):
                    return True
                for name in replica.list(f"journals/{key}/"):
                    parsed = parse_journal_object(name)
                    if parsed is not None and parsed[1] <= seq <= parsed[2]:
                        return True
                return False

            write_lags.append(_poll(shipped) - t0)
        if os.environ.get("BENCH_RAW"):
            slow = sorted(range(len(write_lags)), key=lambda i: -write_lags[i])[:10]
            print("slowest writes (index, ms):", [(i, round(write_lags[i] * 1000)) for i in slow])
            slow = sorted(range(len(version_lags)), key=lambda i: -version_lags[i])[:10]
            print("slowest saves (index, ms):", [(i, round(version_lags[i] * 1000)) for i in slow])
        return {"version_lag": _summary(version_lags), "write_lag": _summary(write_lags)}
    finally:
        d.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.replicas", description=__doc__)
    ap.add_argument("--saves", type=int, default=1000)
    ap.add_argument("--writes", type=int, default=1000)
    ap.add_argument("--only", choices=["local", "s3"], help="one replica kind only")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "replicas.json")
    args = ap.parse_args(argv)
    os.environ["FILETWIN_HOST"] = HOST
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "saves": args.saves,
        "writes": args.writes,
    }
    with tempfile.TemporaryDirectory(prefix="ft-bench-replicas-") as tmp:
        work = Path(tmp)
        if args.only != "s3":
            results["local"] = measure(str(work / "replica"), work, args.saves, args.writes)
        if args.only != "local":
            server = S3Server(work / "weed").start()
            try:
                os.environ.update(server.env())
                results["s3"] = measure(fresh_location(server), work, args.saves, args.writes)
            finally:
                server.kill()
    out = args.out
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
