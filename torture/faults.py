"""Fault sweep: EIO injected with strace into fsync, fdatasync, write, rename and
openat of the daemon and, separately, of its workers, at the N-th call for
N = 1, 2, ... until a save completes without meeting it; transient (``when=N``)
and persistent (``when=N+``).

Each round is one save under the fault: an in-place save of an on-close
``auto`` entry, or a ``filetwin.open`` session on an on-write entry
(``--sync always``). Invariants after the fault is lifted: every version
history lists restores with its hash (no false "stored"), every acknowledged
write restores at its seq (no false acknowledgement), the live file is the
bytes the application wrote (a fault of our storage never touches it), a
failed save has a failure event, no job stays running, and the next save is
versioned (recovery once the fault stops).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import filetwin
from filetwin.errors import FiletwinError

from .harness import Daemon, TortureTimeout, wait_until
from .model import Summary, WriteModel, digest
from .strace import Injection, unavailable
from .verify import check_model, check_versions, file_bytes, settle

SYSCALLS = ("fsync", "fdatasync", "write", "rename", "openat")
TARGETS = ("daemon", "workers")
SIZE = 64 << 10


def run(seed: int, quick: bool, seconds: float) -> Summary:
    summary = Summary("faults", seed)
    reason = unavailable()
    if reason:
        summary.skipped = reason
        return summary.finish()
    rng = random.Random(seed)
    print(f"fault sweep: seed {seed}", flush=True)
    combos = [(t, s, p) for t in TARGETS for s in SYSCALLS for p in (False, True)]
    rng.shuffle(combos)
    if quick:
        # the storage syscalls first: they are what the rules are about
        combos = [c for c in combos if c[1] in ("fsync", "fdatasync", "rename")]
    max_n = 3 if quick else 60
    deadline = time.monotonic() + seconds
    with tempfile.TemporaryDirectory(prefix="torture-faults-") as tmp:
        sweep = Sweep(Path(tmp), rng, summary)
        try:
            for target, syscall, persistent in combos:
                for kind in ("on-close", "on-write"):
                    for n in range(1, max_n + 1):
                        if time.monotonic() > deadline:
                            return summary.finish()
                        hit = sweep.round(target, syscall, persistent, n, kind)
                        if not hit:
                            break  # the save completed without meeting the N-th call
                    summary.add("sweeps")
        finally:
            sweep.close()
    return summary.finish()


class Sweep:
    """One daemon with an on-close auto entry and an on-write entry, faulted in rounds."""

    def __init__(self, root: Path, rng: random.Random, summary: Summary) -> None:
        self.root = root
        self.rng = rng
        self.summary = summary
        self.files = root / "files"
        self.files.mkdir()
        self.scratch = root / "scratch"
        self.scratch.mkdir()
        self.daemon = Daemon(root / "state", {"retry_backoff_s": 0.02})
        self.daemon.client.timeout = 10  # a daemon wedged by a fault must not stall the sweep
        self.daemon.start()
        self.closed = self.files / "closed.bin"
        self.closed.write_bytes(rng.randbytes(SIZE))
        self.written = {digest(self.closed.read_bytes())}
        self.journaled = self.files / "journaled.db"
        self.journaled.write_bytes(rng.randbytes(4096))
        self.model = WriteModel(self.journaled.read_bytes())
        c = self.daemon.client
        c.add(self.closed, recovery="auto", retries=2, keep=5)
        c.add(self.journaled, backup="on-write", sync="always", recovery="auto", keep=8)
        wait_until(lambda: c.status(self.closed)["last_version"], 15, "the first version")
        self.rounds = 0

    def close(self) -> None:
        self.daemon.stop(signal.SIGKILL)

    def _pids(self, target: str) -> list[int]:
        if not self.daemon.alive():
            self.daemon.stop(signal.SIGKILL)
            self.summary.violate("daemon stays up", "the daemon died under a fault")
            self.daemon.start()
        if target == "daemon":
            return [self.daemon.daemon_pid()]
        return self.daemon.workers()

    def round(self, target: str, syscall: str, persistent: bool, n: int, kind: str) -> bool:
        """One faulted save; True if the fault was met (so N + 1 is worth trying)."""
        self.rounds += 1
        label = f"{target} {syscall} when={n}{'+' if persistent else ''} {kind}"
        repro = (
            f"strace -f -p <{target} pid> -e trace={syscall} "
            f"-e inject={syscall}:error=EIO:when={n}{'+' if persistent else ''} during "
            + (
                "an in-place save of an on-close auto entry"
                if kind == "on-close"
                else "filetwin.open writes on an on-write --sync always entry"
            )
        )
        if not settle(self.daemon, self.summary, 20):
            self._fresh_daemon()
        pids = self._pids(target)
        if not pids:
            return False
        mark = self._last_event()
        out = self.root / f"strace-{self.rounds}.out"
        try:
            with Injection(pids, syscall, n, persistent, out) as inj:
                if kind == "on-close":
                    self._save_closed(label, repro)
                else:
                    self._write_journaled()
        except TortureTimeout as e:
            self.summary.violate("rule 5 (a job never ends)", f"{label}: {e}", repro)
        injected = inj.injected
        self.summary.add("faults injected", injected)
        self.summary.add("rounds")
        try:
            self._after(label, repro, kind, mark, injected)
        except (FiletwinError, TortureTimeout) as e:
            # DaemonUnavailable included: the daemon no longer serves once the fault is gone
            self.summary.violate(
                "availability once the fault stops",
                f"{label}: the daemon does not serve after the fault is lifted: "
                f"{type(e).__name__}: {str(e)[:160]}",
                repro,
            )
            self._fresh_daemon()
        out.unlink(missing_ok=True)
        out.with_suffix(".err").unlink(missing_ok=True)
        return injected > 0

    # the saves under a fault ---------------------------------------------
    def _save_closed(self, label: str, repro: str) -> None:
        data = self.rng.randbytes(SIZE)
        self.written.add(digest(data))
        fd = os.open(self.closed, os.O_WRONLY | os.O_NOFOLLOW)
        try:
            os.pwrite(fd, data, 0)
        finally:
            os.close(fd)
        self.expect_closed = data
        want = digest(data)
        c = self.daemon.client

        def ended() -> bool:
            row = c.status(self.closed)
            if row["job_kind"] is not None:
                return False
            return bool(row["last_good_hash"] == want or row["last_result"] != "ok")

        # A save is stored or fails: either way its job ends (rule 5).
        with contextlib.suppress(FiletwinError):
            wait_until(ended, 15, f"the save under {label} to end")

    def _write_journaled(self) -> None:
        f: Any = None
        self.journal_failed = False
        self.journal_error = ""
        try:
            f = filetwin.open(
                self.journaled, "r+b", client=self.daemon.client, on_unjournaled="raise"
            )
            for _ in range(5):
                offset = self.rng.randint(0, len(self.model.current))
                data = self.rng.randbytes(self.rng.randint(1, 300))
                f.seek(offset)
                f.write(data)
                self.model.write(offset, data)
                self.model.acknowledged(f._stream.last_seq)
            f.close()
            f = None
        except (OSError, FiletwinError) as e:
            self.journal_failed = True
            self.journal_error = f"{type(e).__name__}: {str(e)[:160]}"
        finally:
            if f is not None:
                with contextlib.suppress(OSError, FiletwinError):
                    f.close()
        self.model.resync(file_bytes(self.journaled))

    # invariants once the fault is lifted ------------------------------------
    def _last_event(self) -> int:
        events = self.daemon.client.events(limit=1)
        return int(events[-1]["id"]) if events else 0

    def _after(self, label: str, repro: str, kind: str, mark: int, injected: int) -> None:
        s = self.summary
        settle(self.daemon, s)
        c = self.daemon.client
        failures = [e for e in c.events(after=mark) if not e["ok"]]
        if kind == "on-close":
            live = file_bytes(self.closed)
            if live != self.expect_closed:
                s.violate(
                    "rule 3 (our fault never touches the user's file)",
                    f"{label}: the live file changed under a fault of our storage"
                    f" (now {'an older save' if digest(live) in self.written else 'unknown'})",
                    repro,
                )
                self.expect_closed = live
            row = c.status(self.closed)
            stored = row["last_good_hash"] == digest(self.expect_closed)
            if not stored and not [e for e in failures if e["path"] == str(self.closed)]:
                s.violate(
                    "every failure is an event",
                    f"{label}: the save was not stored and no failure event names it"
                    f" (last_result={row['last_result']})",
                    repro,
                )
            check_versions(self.daemon, self.closed, s, self.scratch, self.written)
        else:
            live = file_bytes(self.journaled)
            if live != bytes(self.model.current):
                s.violate(
                    "rule 3 (our fault never touches the user's file)",
                    f"{label}: the live on-write file is not what the application wrote",
                    repro,
                )
                self.model.resync(live)
            versions = check_versions(self.daemon, self.journaled, s, self.scratch)
            check_model(
                self.daemon, self.journaled, self.model, s, self.scratch, self.rng, 6, versions
            )
        if injected and not failures:
            s.add("faults absorbed without a failure event")
        self._recovers(label, repro, kind)

    def _recovers(self, label: str, repro: str, kind: str) -> None:
        """With the fault gone, the next save is versioned."""
        c = self.daemon.client
        if kind == "on-close":
            data = self.rng.randbytes(SIZE)
            self.written.add(digest(data))
            self.closed.write_bytes(data)
            self.expect_closed = data
            target, want = self.closed, digest(data)
        else:
            self._write_journaled()  # its close-ok folds a checkpoint
            target, want = self.journaled, digest(bytes(self.model.current))
        try:
            if kind == "on-write" and self.journal_failed:
                raise TortureTimeout(f"the journaled writes failed: {self.journal_error}")
            wait_until(
                lambda: c.status(target)["last_good_hash"] == want,
                20,
                f"a version of the next save after {label}",
            )
            self.summary.add("recoveries")
        except TortureTimeout as e:
            row = c.status(target)
            self.summary.violate(
                "recovery once the fault stops",
                f"{label}: the next save after the fault is not versioned"
                f" (job_kind={row['job_kind']}, last_result={row['last_result']},"
                f" last_error={str(row['last_error'])[:120]}; {e})",
                repro,
            )
            self._fresh_daemon()

    def _fresh_daemon(self) -> None:
        """A wedged entry or daemon would fail every later round: restart it, so the
        next rounds test their own fault, not this one's aftermath."""
        self.daemon.stop(signal.SIGKILL)
        self.daemon.start()
        self.model.resync(file_bytes(self.journaled))
