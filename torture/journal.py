"""Damaged journals: every truncation point of a segment, random byte flips, and a
torn tail met by a restarting daemon.

Offline (the journal copied aside, then damaged): reading returns a prefix of
the records that were written, never an altered one; a cut inside a record is
reported (``torn``); ``restore --at seq:N`` of the last whole record gives the
acknowledged state, and a seq past it is refused, never answered with another
moment. With the daemon: after a restart on a torn tail, new acknowledged
writes get seqs no version already stands for and restore exactly.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

import filetwin
from filetwin.backends import open_backend
from filetwin.errors import FiletwinError
from filetwin.repo import Repository
from filetwin.repo.journal import HEADER_SIZE, RECORD_OVERHEAD, iter_records, list_segments
from filetwin.repo.moments import journal_dir
from filetwin.restore import restore_version

from .harness import Daemon, wait_until
from .model import Summary, WriteModel
from .verify import check_model, file_bytes, settle


def run(seed: int, flips: int, every_cut: bool) -> Summary:
    summary = Summary("journal", seed)
    rng = random.Random(seed)
    print(f"journal: seed {seed}", flush=True)
    with tempfile.TemporaryDirectory(prefix="torture-journal-") as tmp:
        root = Path(tmp)
        files = root / "files"
        files.mkdir()
        path = files / "journaled.db"
        path.write_bytes(rng.randbytes(2000))
        model = WriteModel(path.read_bytes())
        daemon = Daemon(root / "state").start()
        try:
            daemon.client.add(path, backup="on-write", sync="always", keep=50)
            _session(daemon, path, model, rng, 20, close=True)
            _session(daemon, path, model, rng, 40, close=False)
            # seqs up to the newest checkpoint are answered by the version, journal or not
            covered = max(int(v.get("journal_seq", 0)) for v in daemon.client.history(path))
            daemon.stop(signal.SIGKILL)  # a crash: the last records follow the checkpoint
            jdir = journal_dir(daemon.state_dir / "journals", str(path))
            offline = Offline(root, daemon, path, jdir, model, summary, covered)
            offline.cuts(rng, every_cut)
            offline.flips(rng, flips)
            _restart_on_torn_tail(daemon, path, jdir, model, rng, summary, root)
        finally:
            daemon.stop(signal.SIGKILL)
    return summary.finish()


def _session(
    daemon: Daemon, path: Path, model: WriteModel, rng: random.Random, n: int, close: bool
) -> None:
    f: Any = filetwin.open(path, "r+b", client=daemon.client, on_unjournaled="raise")
    for _ in range(n):
        offset = rng.randint(0, len(model.current))
        data = rng.randbytes(rng.randint(1, 200))
        f.seek(offset)
        f.write(data)
        model.write(offset, data)
        model.acknowledged(f._stream.last_seq)
    if close:
        f.close()
    else:
        f._stream.close()  # the application goes on without telling: no close record
        f._stream = None
        f._journaled = False
        f.close()


class Offline:
    """Damage a copy of the journal and read it back as ``restore`` does."""

    def __init__(
        self,
        root: Path,
        daemon: Daemon,
        path: Path,
        jdir: Path,
        model: WriteModel,
        summary: Summary,
        covered: int,
    ) -> None:
        self.root = root
        self.covered = covered
        self.path = path
        self.model = model
        self.summary = summary
        self.pristine = root / "pristine"
        shutil.copytree(jdir, self.pristine)
        self.records = list(iter_records(self.pristine))
        self.repo = Repository(open_backend(str(daemon.state_dir / "repository")))
        self.work = root / "damaged"
        self.out = root / "restored.bin"

    def _copy(self) -> Path:
        if self.work.exists():
            shutil.rmtree(self.work)
        shutil.copytree(self.pristine, self.work)
        return self.work

    def cuts(self, rng: random.Random, every: bool) -> None:
        last = list_segments(self.pristine)[-1]
        size = last.stat().st_size
        points = (
            list(range(HEADER_SIZE, size))
            if every
            else rng.sample(range(HEADER_SIZE, size), min(40, size - HEADER_SIZE))
        )
        for cut in points:
            seg = list_segments(self._copy())[-1]
            with open(seg, "r+b") as f:
                f.truncate(cut)
            self.summary.add("truncation points")
            self._read_back(f"{seg.name} cut at byte {cut}", boundary_check=cut)

    def flips(self, rng: random.Random, n: int) -> None:
        for _ in range(n):
            seg = rng.choice(list_segments(self._copy()))
            data = bytearray(seg.read_bytes())
            at = rng.randrange(len(data))
            data[at] ^= 1 << rng.randrange(8)
            seg.write_bytes(bytes(data))
            self.summary.add("byte flips")
            self._read_back(f"{seg.name} bit flipped at byte {at}", boundary_check=None)

    def _read_back(self, what: str, boundary_check: int | None) -> None:
        scan = iter_records(self.work)
        got = list(scan)
        for g, want in zip(got, self.records, strict=False):
            if (g.seq, g.kind, g.offset, bytes(g.data or b"")) != (
                want.seq,
                want.kind,
                want.offset,
                bytes(want.data or b""),
            ):
                self.summary.violate(
                    "rule 2 (nothing never written is restored)",
                    f"{what}: record seq {g.seq} reads back altered",
                )
                return
        if len(got) > len(self.records):
            self.summary.violate(
                "rule 2 (nothing never written is restored)",
                f"{what}: {len(got)} records read, {len(self.records)} written",
            )
        if boundary_check is not None and len(got) < len(self.records):
            ends = _record_ends(self.records, self.pristine)
            if boundary_check not in ends and scan.torn is None:
                self.summary.violate(
                    "a torn tail is reported", f"{what}: the cut inside a record is not reported"
                )
        last = got[-1].seq if got else 0
        if last in self.model.after:
            self._restore(f"seq:{last}", self.model.after[last], what)
        if got and len(got) < len(self.records) and last + 1 > self.covered:
            self._refused(f"seq:{last + 1}", what)

    def _restore(self, at: str, want: bytes, what: str) -> None:
        self.summary.add("restores of damaged journals")
        try:
            restore_version(
                self.repo, str(self.path), at=at, to=str(self.out), journal_dir=str(self.work)
            )
            got = self.out.read_bytes()
        except (FiletwinError, OSError) as e:
            self.summary.violate(
                "rule 1 (acknowledged writes kept)",
                f"{what}: restore --at {at} (a whole record) fails: {e}",
            )
            return
        finally:
            with contextlib.suppress(OSError):
                self.out.unlink()
        if got != want:
            self.summary.violate(
                "rule 1 (acknowledged writes kept)",
                f"{what}: restore --at {at} (a whole record) is not its state",
            )

    def _refused(self, at: str, what: str) -> None:
        try:
            result = restore_version(
                self.repo, str(self.path), at=at, to=str(self.out), journal_dir=str(self.work)
            )
        except (FiletwinError, OSError):
            self.summary.add("moments past the damage refused")
            return
        finally:
            with contextlib.suppress(OSError):
                self.out.unlink()
        self.summary.violate(
            "rule 2 (nothing never written is restored)",
            f"{what}: restore --at {at}, past the last whole record, answers"
            f" {result.get('moment')!r} instead of refusing (issue 8 item 4)",
        )


def _record_ends(records: list[Any], jdir: Path) -> set[int]:
    """Byte offsets in the last segment where a whole record ends (or the header)."""
    last = list_segments(jdir)[-1]
    first = int(last.name[:20])
    pos = HEADER_SIZE
    ends = {pos}
    for r in records:
        if r.seq < first:
            continue
        pos += RECORD_OVERHEAD + r.length
        ends.add(pos)
    return ends


def _restart_on_torn_tail(
    daemon: Daemon,
    path: Path,
    jdir: Path,
    model: WriteModel,
    rng: random.Random,
    summary: Summary,
    root: Path,
) -> None:
    """Tear the live journal's tail, restart: new writes must get fresh seqs and restore."""
    seg = list_segments(jdir)[-1]
    size = seg.stat().st_size
    # The live segment may hold no record yet (a checkpoint just began it): its
    # header is then the tail a crash tears.
    low = (HEADER_SIZE + size) // 2 if size > HEADER_SIZE else 1
    with open(seg, "r+b") as f:
        f.truncate(rng.randint(low, size - 1))
    daemon.start()
    before = max((int(v.get("journal_seq", 0)) for v in daemon.client.history(path)), default=0)
    model.after.clear()  # the cut records are gone on purpose; what follows must hold
    model.resync(file_bytes(path))
    try:
        _session(daemon, path, model, rng, 15, close=True)
    except (FiletwinError, OSError) as e:
        summary.violate(
            "writes go on after a torn tail",
            f"journaled writes after a restart on a torn tail fail: {e}",
        )
        return
    seqs = sorted(model.after)
    if seqs and seqs[0] <= before:
        summary.violate(
            "new writes get new seqs",
            f"after a torn tail, new writes got seq {seqs[0]}, which version"
            f" seqs up to {before} already stand for (issue 8 item 4)",
        )
    settle(daemon, summary)
    scratch = root / "scratch"
    scratch.mkdir(exist_ok=True)
    versions = daemon.client.history(path)
    check_model(daemon, path, model, summary, scratch, rng, None, versions)
    try:
        wait_until(
            lambda: any(
                int(v.get("journal_seq", 0)) >= seqs[-1] - 1 for v in daemon.client.history(path)
            ),
            10,
            "a checkpoint",
        )
    except AssertionError:
        summary.violate(
            "a good close makes a checkpoint",
            "after a torn tail and a restart, the next close makes no checkpoint (issue 8 item 4)",
        )
