"""The checks run after every perturbation, shared by the campaigns.

Each check records violations in a Summary instead of raising, so one run
reports every broken promise it meets. Rules are the house rules 1-5.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from filetwin.errors import DaemonUnavailable, FiletwinError, NotFound

from .harness import Daemon, TortureTimeout, wait_until
from .model import Summary, WriteModel, digest


def settle(daemon: Daemon, summary: Summary, timeout: float = 30.0) -> bool:
    """Wait until no entry has a job running; a timeout is a stuck entry (rule 5)."""
    try:
        wait_until(lambda: daemon.idle(), timeout, "no entry to have a job running")
        return True
    except TortureTimeout:
        stuck = [
            f"{r['path']} job_kind={r['job_kind']} last_result={r['last_result']}"
            for r in _status(daemon)
            if r["job_kind"] is not None
        ]
        summary.violate("rule 5 (a job never ends)", f"entries stuck after {timeout} s: {stuck}")
        return False


def _status(daemon: Daemon) -> list[dict[str, object]]:
    try:
        rows: list[dict[str, object]] = daemon.client.status()
        return rows
    except (DaemonUnavailable, FiletwinError):
        return []


def check_repository(daemon: Daemon, summary: Summary) -> None:
    """``filetwin check --read-data`` must be clean."""
    done = daemon.cli("check", "--read-data", "--json")
    summary.add("repository checks")
    if done.returncode != 0:
        try:
            problems = json.loads(done.stdout)["problems"]
        except (json.JSONDecodeError, KeyError):
            problems = done.stdout + done.stderr
        summary.violate(
            "rule 2 (stored versions restore)",
            f"check --read-data failed: {str(problems)[:400]}",
            f"filetwin check --read-data --state-dir {daemon.state_dir}",
        )


def check_versions(
    daemon: Daemon,
    path: Path,
    summary: Summary,
    scratch: Path,
    written: set[str] | None = None,
) -> list[dict[str, object]]:
    """Every version history lists restores (``--version ID --to``) with its hash.

    ``written``: hashes of every content the workload completed; a version
    outside it is content that was never written (rule 2).
    """
    try:
        versions = daemon.client.history(path)
    except DaemonUnavailable:
        raise  # the campaign decides what a daemon that does not answer means
    except FiletwinError as e:
        summary.violate("rule 2 (stored versions restore)", f"history of {path} fails: {e}")
        return []
    for v in versions:
        out = scratch / f"v-{path.name}-{v['id']}"
        summary.add("versions restored")
        try:
            daemon.client.restore(path, version=str(v["id"]), to=out)
            got = digest(out.read_bytes())
        except DaemonUnavailable:
            raise
        except (FiletwinError, OSError) as e:
            if isinstance(e, NotFound) and _retired(daemon, path, str(v["id"])):
                summary.add("versions retired by retention meanwhile")
                continue  # history listed it, then retention removed it: no promise broken
            summary.violate(
                "rule 2 (stored versions restore)",
                f"version {v['id']} of {path.name} does not restore: {e}",
                f"filetwin restore {path} --version {v['id']} --to /tmp/x",
            )
            continue
        finally:
            if out.exists():
                out.unlink()
        if got != v["hash"]:
            summary.violate(
                "rule 2 (stored versions restore)",
                f"version {v['id']} of {path.name} restores to {got[:12]},"
                f" listed {v['hash']!s:.12}",
            )
        if written is not None and v["hash"] not in written and v.get("cause") != "restore":
            summary.violate(
                "rule 2 (nothing never written is restored)",
                f"version {v['id']} of {path.name} (cause {v.get('cause')}, size {v.get('size')})"
                " holds content the workload never completed",
            )
    return versions


def _retired(daemon: Daemon, path: Path, version: str) -> bool:
    """True if ``version`` is no longer in the history of ``path``."""
    try:
        return all(str(v["id"]) != version for v in daemon.client.history(path))
    except FiletwinError:
        return False


def _floor(daemon: Daemon, path: Path) -> int:
    """The oldest seq the kept versions of ``path`` can rebuild from, now."""
    try:
        return min((int(v.get("journal_seq", 0)) for v in daemon.client.history(path)), default=0)
    except FiletwinError:
        return 0


def check_model(
    daemon: Daemon,
    path: Path,
    model: WriteModel,
    summary: Summary,
    scratch: Path,
    rng: random.Random,
    sample: int | None,
    versions: list[dict[str, object]],
) -> None:
    """Every acknowledged write (or a random ``sample`` of them) within the
    retention window is found by ``restore --at seq:N``: the restored bytes are
    the model's bytes after N. Seqs older than the oldest kept version are past
    ``--keep`` and not asked for."""
    floor = min((int(str(v.get("journal_seq", 0))) for v in versions), default=0)
    for old in [s for s in model.after if s < floor]:
        del model.after[old]  # past --keep: no longer promised, no longer checked
    seqs = sorted(model.after)
    if sample is not None and len(seqs) > sample:
        # The newest few always: they are the ones a crash would lose.
        seqs = sorted(set(rng.sample(seqs, sample)) | set(seqs[-3:]))
    out = scratch / f"seq-{path.name}"
    failed: list[str] = []
    for seq in seqs:
        summary.add("acknowledged writes checked")
        try:
            daemon.client.restore(path, at=f"seq:{seq}", to=out)
            got = out.read_bytes()
        except (FiletwinError, OSError) as e:
            if seq < _floor(daemon, path):
                continue  # retention moved the window on meanwhile: no longer promised
            failed.append(f"seq:{seq} fails: {e}")
            continue
        finally:
            if out.exists():
                out.unlink()
        want = model.after[seq]
        if got != want:
            failed.append(f"seq:{seq} differs ({_diff(got, want)})")
    if failed:
        summary.add("acknowledged writes lost", len(failed))
        summary.violate(
            "rule 1 (acknowledged writes kept)",
            f"{path.name}: {len(failed)} of {len(seqs)} acknowledged writes checked do not"
            f" restore (window from seq {floor}); first: {failed[0]}",
            f"filetwin restore {path} --at {failed[0].split()[0]} --to /tmp/x",
        )


def check_newest(daemon: Daemon, path: Path, summary: Summary, scratch: Path) -> None:
    """Once quiet, the newest restorable state is the live file (it was caught up)."""
    out = scratch / f"newest-{path.name}"

    def same() -> bool:
        try:
            daemon.client.restore(path, to=out)
            return out.read_bytes() == path.read_bytes()
        except (FiletwinError, OSError):
            return False
        finally:
            if out.exists():
                out.unlink()

    summary.add("newest states checked")
    try:
        wait_until(same, 10, f"the newest state of {path.name} to be the live file")
    except TortureTimeout:
        try:
            daemon.client.restore(path, to=out)
            detail = _diff(out.read_bytes(), path.read_bytes())
            out.unlink()
        except (FiletwinError, OSError) as e:
            detail = str(e)
        summary.violate(
            "rule 1 (the newest save is kept)",
            f"the newest state of {path.name} never became the live file ({detail})",
            f"filetwin restore {path} --to /tmp/x; cmp /tmp/x {path}",
        )


def _diff(got: bytes, want: bytes) -> str:
    if len(got) != len(want):
        return f"{len(got)} bytes, want {len(want)}"
    first = next(i for i in range(len(got)) if got[i] != want[i])
    return (
        f"first difference at byte {first}:"
        f" {got[first : first + 8]!r} want {want[first : first + 8]!r}"
    )


def file_bytes(path: Path) -> bytes:
    """The live file's bytes, read without following a symlink."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        chunks = []
        while data := os.read(fd, 1 << 20):
            chunks.append(data)
        return b"".join(chunks)
    finally:
        os.close(fd)
