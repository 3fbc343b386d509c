"""Kill campaign: SIGKILL the daemon, a worker or the whole tree at random moments
while mixed workloads run, then check everything after each restart.

Workloads: on-close saves by rename and in place (``--keep 3``, so retention
and gc run all the time), ``filetwin.open`` writes on on-write entries in both
sync modes, and in-place saves of a notify entry healed by ``filetwin recover``.
After each cycle: restart the daemon, wait until no entry has a job running,
``check --read-data``, every listed version restored with its hash, every
acknowledged write (or a sample) restored at its seq against the model, and the
newest state of each file is the live file.
"""

from __future__ import annotations

import os
import random
import signal
import tempfile
import time
from pathlib import Path

from .harness import Daemon
from .model import Summary
from .verify import check_model, check_newest, check_repository, check_versions, settle
from .workload import HealRequests, InPlaceSaves, JournaledWrites, RenameSaves, Workload

TARGETS = ("daemon", "worker", "tree")


def run(seed: int, cycles: int, seconds: float, sample: int | None = 12) -> Summary:
    """``cycles`` kill cycles, or as many as fit in ``seconds`` (whichever ends first)."""
    summary = Summary("kill", seed)
    rng = random.Random(seed)
    print(f"kill campaign: seed {seed}", flush=True)
    with tempfile.TemporaryDirectory(prefix="torture-kill-") as tmp:
        root = Path(tmp)
        files = root / "files"
        files.mkdir()
        scratch = root / "scratch"
        scratch.mkdir()
        daemon = Daemon(root / "state").start()
        try:
            loads = _protect(daemon, files, rng)
            deadline = time.monotonic() + seconds
            for cycle in range(cycles):
                if time.monotonic() > deadline:
                    break
                _cycle(daemon, loads, rng, summary, cycle)
                _verify(daemon, loads, rng, summary, scratch, sample)
                summary.add("cycles")
            for w in loads:
                summary.add(f"{w.kind} ops", w.ops)
                if isinstance(w, JournaledWrites):
                    summary.add("acknowledged writes", w.acked)
                if isinstance(w, HealRequests):
                    summary.add("heals", w.heals)
        finally:
            daemon.stop(signal.SIGKILL)
    return summary.finish()


def _protect(daemon: Daemon, files: Path, rng: random.Random) -> list[Workload]:
    c = daemon.client
    rename = RenameSaves(files / "renamed.txt", c, rng)
    inplace = InPlaceSaves(files / "inplace.bin", c, rng)
    always = JournaledWrites(files / "always.db", c, rng, truncating_opens=False)
    batch = JournaledWrites(files / "batch.db", c, rng, truncating_opens=False)
    # opens with "wb" now and then (issue 8 item 3), on a file of their own
    truncating = JournaledWrites(files / "truncating.db", c, rng, truncating_opens=True)
    heal = HealRequests(files / "healed.bin", c, rng, daemon.state_dir)
    loads: list[Workload] = [rename, inplace, always, batch, truncating, heal]
    for w in loads:
        w.seed_file()
    c.add(rename.path, keep=3)
    c.add(inplace.path, keep=3)
    c.add(always.path, backup="on-write", sync="always", keep=12)
    c.add(batch.path, backup="on-write", sync="batch", keep=12)
    c.add(truncating.path, backup="on-write", sync="batch", keep=12)
    c.add(heal.path, recovery="notify", keep=3)
    return loads


def _cycle(
    daemon: Daemon, loads: list[Workload], rng: random.Random, summary: Summary, cycle: int
) -> None:
    """Run the workloads, kill something at a random moment, restart what died."""
    for w in loads:
        w.start()
    time.sleep(rng.uniform(0.05, 0.8))  # the random moment of the kill
    target = rng.choice(TARGETS)
    killed = _kill(daemon, target, rng)
    summary.add(f"kills of the {target}" if killed else "kills missed (no worker)")
    time.sleep(rng.uniform(0.0, 0.3))  # the workloads go on meanwhile
    for w in loads:
        w.stop()
    if not daemon.alive() or target != "worker":
        daemon.stop(signal.SIGKILL)  # what is left of the tree goes too
        daemon.start()
    print(f"  cycle {cycle}: killed {target}", flush=True)


def _kill(daemon: Daemon, target: str, rng: random.Random) -> bool:
    if target == "tree":
        daemon.kill_tree()
        return True
    if target == "daemon":
        daemon.stop(signal.SIGKILL)
        return True
    workers = daemon.workers()
    if not workers:
        return False
    os.kill(rng.choice(workers), signal.SIGKILL)
    return True


def _verify(
    daemon: Daemon,
    loads: list[Workload],
    rng: random.Random,
    summary: Summary,
    scratch: Path,
    sample: int | None,
) -> None:
    settle(daemon, summary)
    check_repository(daemon, summary)
    for w in loads:
        written = w.written if not isinstance(w, JournaledWrites) else None
        versions = check_versions(daemon, w.path, summary, scratch, written)
        if isinstance(w, JournaledWrites):
            check_model(daemon, w.path, w.model, summary, scratch, rng, sample, versions)
        check_newest(daemon, w.path, summary, scratch)
    settle(daemon, summary)
