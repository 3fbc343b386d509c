"""S3 backend figures: put/get latency and throughput by object size, on a local SeaweedFS.

``python -m bench.s3 [--runs N] [--quick]`` starts SeaweedFS on 127.0.0.1
(tests/s3server.py: the same server the tests use), and through
``S3Backend`` measures, for 4 KiB, 256 KiB and 16 MiB objects:

- ``put``: PutObject of distinct objects one after the other, one client;
- ``get``: GetObject of each of them;
- ``range_get_4k_of_16m``: a 4 KiB ranged read at a random offset of a 16 MiB
  object (what a restore of a few chunks of a pack costs).

Each run times a batch of objects (more of the small ones); the figures are
the median per-operation latency and throughput (MiB/s) over ``--runs`` runs,
with min-max. Results go to ``bench/results/s3.json`` (``--quick``: to
``bench/results/s3-quick.json``) and are printed as a table.
Needs the test extra (the ``weed`` binary and the fixture module).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # run as a script too: tests.s3server lives at the root
    sys.path.insert(0, str(ROOT))

from filetwin.backends.s3 import S3Backend  # noqa: E402
from tests.s3server import S3Server, fresh_location  # noqa: E402

MIB = 1 << 20
#: size label -> (bytes, objects per run, objects per run with --quick)
SIZES = {"4k": (4096, 200, 20), "256k": (256 * 1024, 40, 5), "16m": (16 * MIB, 4, 1)}
RANGE_READS = (200, 20)


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def one_run(backend: S3Backend, quick: bool, run: int) -> dict[str, dict[str, float]]:
    """Time every size once; returns {"put_4k": {"ms": .., "mib_s": ..}, ...}."""
    out: dict[str, dict[str, float]] = {}
    for label, (size, count, quick_count) in SIZES.items():
        n = quick_count if quick else count
        blobs = [os.urandom(size) for _ in range(n)]
        names = [f"r{run}/{label}/{i}" for i in range(n)]
        t0 = time.perf_counter()
        for name, blob in zip(names, blobs, strict=True):
            backend.put(name, blob)
        put_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for name, blob in zip(names, blobs, strict=True):
            if backend.get(name) != blob:
                raise AssertionError(f"{name} came back different")
        get_s = time.perf_counter() - t0
        for kind, secs in (("put", put_s), ("get", get_s)):
            out[f"{kind}_{label}"] = {"ms": secs / n * 1000, "mib_s": size * n / MIB / secs}
    # Ranged reads of 4 KiB inside the last 16 MiB object.
    big_name = f"r{run}/16m/0"
    big = backend.get(big_name)
    rng = random.Random(run)
    n = RANGE_READS[1] if quick else RANGE_READS[0]
    offsets = [rng.randrange(0, len(big) - 4096) for _ in range(n)]
    t0 = time.perf_counter()
    for off in offsets:
        if backend.get(big_name, off, 4096) != big[off : off + 4096]:
            raise AssertionError("ranged read came back different")
    secs = time.perf_counter() - t0
    out["range_get_4k_of_16m"] = {"ms": secs / n * 1000, "mib_s": 4096 * n / MIB / secs}
    for name in list(backend.list(f"r{run}/")):
        backend.delete(name)
    return out


def measure(base: Path, runs: int, quick: bool) -> dict[str, Any]:
    """Start SeaweedFS under ``base``, run ``runs`` times, return medians and min-max."""
    server = S3Server(base / "seaweedfs")
    t0 = time.perf_counter()
    server.start()
    start_s = time.perf_counter() - t0
    try:
        backend = S3Backend(fresh_location(server), **server.backend_args())
        one_run(backend, True, -1)  # warm-up: connections, the bucket's first volume
        rows = [one_run(backend, quick, run) for run in range(runs)]
    finally:
        server.kill()
    figures = {
        key: {metric: _stats([r[key][metric] for r in rows]) for metric in ("ms", "mib_s")}
        for key in rows[0]
    }
    return {"server_start_s": start_s, "runs": runs, "figures": figures}


def table(result: dict[str, Any]) -> str:
    lines = [
        "| operation | latency ms (median, min-max) | MiB/s (median, min-max) |",
        "| --- | --- | --- |",
    ]
    for key, f in result["figures"].items():
        ms, mib = f["ms"], f["mib_s"]
        lines.append(
            f"| {key} | {ms['median']:.2f} ({ms['min']:.2f}-{ms['max']:.2f}) "
            f"| {mib['median']:.1f} ({mib['min']:.1f}-{mib['max']:.1f}) |"
        )
    return "\n".join(lines)


BEGIN, END = "<!-- s3 -->", "<!-- /s3 -->"
#: the generated table goes before this marker (what follows it is bench/__main__'s)
RESULTS_MARK = "<!-- results -->"


def readme_section(result: dict[str, Any]) -> str:
    """The "S3 backend" section of bench/README.md for ``result``."""
    f = result["figures"]
    small, big = f["put_4k"]["mib_s"]["median"], f["put_16m"]["mib_s"]["median"]
    meta = result["meta"]
    return f"""{BEGIN}
## S3 backend (issue 11)

`python -m bench.s3 --runs {result["runs"]}` — measured {meta["when"]} on {meta["host"]}
(load {meta.get("load", "?")} when it started); SeaweedFS
on 127.0.0.1 started as the tests start it (`tests/s3server.py`), one client,
`S3Backend` (obstore), objects put and got one after the other; per-operation
latency and throughput, median (min-max) of the runs. SeaweedFS answered
{result["server_start_s"]:.1f} s after it was started.

{table(result)}

- One 4 KiB object costs about as much as a request does: {small:.1f} MiB/s
  put in 4 KiB objects against {big:.1f} MiB/s in 16 MiB objects
  ({big / small:.0f}x). One object per chunk would make a first backup to S3
  request-bound (and, on a real cloud, billed per request); packs of up to
  16 MiB are one request each.
- A restore needs a few chunks of a pack: a 4 KiB ranged GET of a 16 MiB
  object costs {f["range_get_4k_of_16m"]["ms"]["median"]:.1f} ms, against
  {f["get_16m"]["ms"]["median"]:.0f} ms for the whole object.
{END}
"""


def write_readme(result: dict[str, Any], path: Path = HERE / "README.md") -> None:
    """Replace the S3 section of bench/README.md (or insert it before the results table)."""
    text = path.read_text()
    section = readme_section(result)
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1].lstrip("\n")
    elif RESULTS_MARK in text:
        head, rest = text.split(RESULTS_MARK, 1)
        text = head + section + "\n" + RESULTS_MARK + rest
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.s3", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs to take the median of")
    parser.add_argument("--quick", action="store_true", help="tiny batches (smoke run)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())  # before: our own run adds to it
    with tempfile.TemporaryDirectory(prefix="bench-s3-") as tmp:
        result = measure(Path(tmp), args.runs, args.quick)
    result["meta"] = {
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": f"{platform.machine()}, {os.cpu_count()} cores",
        "quick": args.quick,
        "load": load,
    }
    out = HERE / "results" / ("s3-quick.json" if args.quick else "s3.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    if not args.quick:
        write_readme(result)
    print(table(result))
    print(f"(SeaweedFS started in {result['server_start_s']:.1f} s; written to {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
