"""What the suite expects: a model of acknowledged writes, and the tally of a campaign.

``WriteModel`` keeps, for each acknowledged journaled write, the file's bytes
right after it (keyed by the write's seq), so ``restore --at seq:N`` can be
checked exactly. ``Summary`` counts what a campaign did and lists every
violation of the house rules with how to reproduce it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import blake3


def digest(data: bytes) -> str:
    """The content hash filetwin records for a version (BLAKE3, hex)."""
    return blake3.blake3(data).hexdigest()


@dataclass
class Violation:
    """One broken promise: which rule, what was seen, how to see it again."""

    campaign: str
    rule: str
    what: str
    repro: str = ""

    def __str__(self) -> str:
        tail = f"\n      reproduce: {self.repro}" if self.repro else ""
        return f"[{self.campaign}] {self.rule}: {self.what}{tail}"


@dataclass
class Summary:
    """Counters and violations of one campaign run."""

    name: str
    seed: int
    counts: dict[str, int] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    elapsed: float = 0.0
    skipped: str = ""

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def violate(self, rule: str, what: str, repro: str = "") -> None:
        v = Violation(self.name, rule, what, repro)
        # The same broken promise seen again adds a count, not a line.
        for old in self.violations:
            if old.rule == rule and old.what == what:
                self.add("repeated violations")
                return
        self.violations.append(v)
        print(f"  VIOLATION {v}", flush=True)

    def finish(self) -> Summary:
        self.elapsed = time.monotonic() - self.started
        return self

    def render(self) -> str:
        if self.skipped:
            return f"{self.name}: skipped ({self.skipped})"
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        head = (
            f"{self.name} (seed {self.seed}, {self.elapsed:.1f} s): {counts}; "
            f"violations {len(self.violations)}"
        )
        return "\n".join([head, *(f"  - {v}" for v in self.violations)])


class WriteModel:
    """The content of one on-write file as the application wrote it.

    ``current`` is the file as written so far; ``after[seq]`` the bytes right
    after the acknowledged record ``seq`` (writes and truncates).
    """

    def __init__(self, initial: bytes) -> None:
        self.current = bytearray(initial)
        self.after: dict[int, bytes] = {}

    def write(self, offset: int, data: bytes) -> None:
        if offset > len(self.current):
            self.current.extend(b"\0" * (offset - len(self.current)))
        self.current[offset : offset + len(data)] = data

    def truncate(self, length: int) -> None:
        if length < len(self.current):
            del self.current[length:]
        else:
            self.current.extend(b"\0" * (length - len(self.current)))

    def acknowledged(self, seq: int) -> None:
        """The record ``seq`` was acknowledged: the file after it is ``current``."""
        self.after[seq] = bytes(self.current)

    def resync(self, actual: bytes) -> None:
        """The application no longer knows what it wrote (an error): take the file as is."""
        self.current = bytearray(actual)
