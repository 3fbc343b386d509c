"""First backup of the bench dataset to S3, and restore of everything from S3 on a
cold state directory: filetwin against restic's S3 backend, same run, same
SeaweedFS on 127.0.0.1 (tests/s3server.py, the server the tests use).

``python -m bench.replicas_s3 [--scale 0.25] [--runs 3]``:

- filetwin: a daemon on a fresh state directory whose repository is
  ``s3://BUCKET/ft-N`` (packs go straight to S3); the backup is ``add`` of every
  file of the dataset (it returns once every first version is stored);
- restic 0.14: ``restic -r s3:http://127.0.0.1:PORT/BUCKET/restic-N backup DATA``;
- restore: a new process with no state directory and empty caches —
  filetwin: ``filetwin restore --all --to DEST`` on a config naming the bucket
  and a state directory that does not exist;
  restic: ``restore latest --target`` with a fresh cache directory.

Medians over ``--runs`` (each run uses new prefixes; the dataset is built once).
Results in bench/results/replicas_s3.json. Needs the test extra (``weed``) and restic.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import dataset  # noqa: E402
from bench.tools import Filetwin, compile_filetwin  # noqa: E402
from tests.s3server import S3Server, fresh_bucket  # noqa: E402

RESTIC_ENV = {"RESTIC_PASSWORD": "bench"}


def _tree_hashes(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, env={**os.environ, **env}, stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


def restic_run(
    server: S3Server, bucket: str, n: int, ds: dataset.Dataset, work: Path
) -> dict[str, float]:
    repo = f"s3:{server.endpoint}/{bucket}/restic-{n}"
    env = {**RESTIC_ENV, **server.env(), "RESTIC_CACHE_DIR": str(work / f"rcache-{n}")}
    subprocess.run(["restic", "init", "-r", repo, "-q"], check=True, env={**os.environ, **env})
    backup = _timed(["restic", "backup", "-r", repo, "-q", str(ds.root)], env)
    dest = work / f"restic-out-{n}"
    env["RESTIC_CACHE_DIR"] = str(work / f"rcache-cold-{n}")
    restore = _timed(["restic", "restore", "latest", "-r", repo, "--target", str(dest), "-q"], env)
    got = _tree_hashes(dest / ds.root.relative_to("/"))
    assert got == _tree_hashes(ds.root), "restic restored something else"
    shutil.rmtree(dest)
    return {"first_backup_s": backup, "restore_s": restore}


def filetwin_run(
    server: S3Server, bucket: str, n: int, ds: dataset.Dataset, work: Path
) -> dict[str, float]:
    location = f"s3://{bucket}/ft-{n}"
    tool_dir = work / f"ft-{n}"
    tool_dir.mkdir()
    tool = Filetwin(tool_dir, ds.root, repository=location)
    tool.setup()
    try:
        t0 = time.monotonic()
        tool.first_backup(ds.files)
        backup = time.monotonic() - t0
    finally:
        tool.teardown()
    dest = work / f"ft-out-{n}"
    cold = work / f"ft-cold-{n}"
    cold.mkdir()
    (cold / "filetwin.toml").write_text(f'repository = "{location}"\n')
    t0 = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "filetwin", "restore", "--all", "--to", str(dest),
         "--state-dir", str(cold / "state"), "--config", str(cold / "filetwin.toml")],
        check=True, env={**os.environ, **server.env()}, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    restore = time.monotonic() - t0
    got = dest / ds.root.relative_to("/")
    assert _tree_hashes(got) == _tree_hashes(ds.root), "filetwin restored something else"
    assert not (cold / "state").exists(), "a restore made a state directory"
    shutil.rmtree(dest)
    return {"first_backup_s": backup, "restore_s": restore}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.replicas_s3", description=__doc__)
    ap.add_argument("--scale", type=float, default=0.25)
    ap.add_argument("--large-bytes", type=int, default=64 << 20)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_before": os.getloadavg()[0],
        "scale": args.scale,
    }
    runs: dict[str, list[dict[str, float]]] = {"filetwin": [], "restic": []}
    compile_filetwin()
    with tempfile.TemporaryDirectory(prefix="ft-bench-s3-") as tmp:
        work = Path(tmp)
        ds = dataset.build(work / "data", scale=args.scale, large_bytes=args.large_bytes)
        results["dataset_bytes"] = sum(p.stat().st_size for p in ds.files)
        results["files"] = len(ds.files)
        server = S3Server(work / "weed").start()
        try:
            os.environ.update(server.env())
            bucket = server.make_bucket(fresh_bucket(server))
            for n in range(args.runs):
                runs["restic"].append(restic_run(server, bucket, n, ds, work))
                runs["filetwin"].append(filetwin_run(server, bucket, n, ds, work))
        finally:
            server.kill()
    for tool, rs in runs.items():
        results[tool] = {
            k: round(statistics.median(r[k] for r in rs), 2)
            for k in ("first_backup_s", "restore_s")
        }
        results[tool]["runs"] = rs
    for k in ("first_backup_s", "restore_s"):
        results[f"{k}_ratio"] = round(results["filetwin"][k] / results["restic"][k], 2)
    results["load_after"] = os.getloadavg()[0]
    out = HERE / "results" / "replicas_s3.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k not in ("filetwin", "restic")} |
                     {t: {k: results[t][k] for k in ("first_backup_s", "restore_s")}
                      for t in ("filetwin", "restic")}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
