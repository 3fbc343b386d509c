"""``python -m torture [--quick|--long] [--seed N] [--only NAMES]``: run the campaigns.

``--quick`` (what tests/test_torture_quick.py runs) fits in about 90 s on
2 cores; ``--long`` runs each campaign for ``--minutes`` and writes its
figures into torture/README.md. Exit 1 if any house rule was broken.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable

from .model import Summary

CAMPAIGNS = ("kill", "faults", "disk", "journal", "racer", "fuzz")


def plan(quick: bool, minutes: float) -> dict[str, Callable[[int], Summary]]:
    """The campaigns with their sizes for this run, each taking a seed."""
    from . import disk, faults, fuzz, journal, kill, racer

    if quick:
        return {
            "kill": lambda s: kill.run(s, cycles=4, seconds=25, sample=8),
            "faults": lambda s: faults.run(s, quick=True, seconds=25),
            "disk": lambda s: disk.run(s, rounds=1),
            "journal": lambda s: journal.run(s, flips=30, every_cut=False),
            "racer": lambda s: racer.run(s, rounds=60),
            "fuzz": lambda s: fuzz.run(s, examples=80, frames=150),
        }
    share = minutes * 60 / 6
    return {
        "kill": lambda s: kill.run(s, cycles=1_000_000, seconds=share * 2, sample=40),
        "faults": lambda s: faults.run(s, quick=False, seconds=share * 1.5),
        "disk": lambda s: disk.run(s, rounds=3),
        "journal": lambda s: journal.run(s, flips=2000, every_cut=True),
        "racer": lambda s: racer.run(s, rounds=1000),
        "fuzz": lambda s: fuzz.run(s, examples=3000, frames=5000),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m torture", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="the ~90 s run of the test suite")
    size.add_argument("--long", action="store_true", help="the long run; figures to README.md")
    parser.add_argument("--minutes", type=float, default=12.0, help="length of the long run")
    parser.add_argument("--seed", type=int, default=None, help="replay a run (printed at start)")
    parser.add_argument("--only", default=",".join(CAMPAIGNS), help="comma-separated campaigns")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    print(f"torture: seed {seed}", flush=True)
    chosen = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = set(chosen) - set(CAMPAIGNS)
    if unknown:
        parser.error(f"unknown campaigns: {sorted(unknown)}")
    campaigns = plan(not args.long, args.minutes)
    started = time.monotonic()
    summaries = []
    for name in chosen:
        summary = campaigns[name](seed)
        print(summary.render(), flush=True)
        summaries.append(summary)
    total = time.monotonic() - started
    print(f"\ntorture: seed {seed}, {total:.1f} s", flush=True)
    for s in summaries:
        print(s.render(), flush=True)
    if args.long:
        from .report import write_readme

        write_readme(seed, total, summaries)
    return 1 if any(s.violations for s in summaries) else 0


if __name__ == "__main__":
    sys.exit(main())
