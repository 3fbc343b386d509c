"""Any moment of an on-write entry: a version plus a replay of its journal.

A moment is named by a time, a journal sequence number (``seq:N``) or a
mark (``mark:NAME``, or a bare name that is no time). It resolves to a base
version (the newest whose ``journal_seq`` is at or before the moment) and the
last record to replay on top of it. Entries without a journal resolve to a
plain version, as ``on-close`` entries always do.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import NotFound, RestoreError, UsageError
from ..timefmt import iso, parse_time
from .journal import Record, iter_records, list_segments, replay_into_file
from .manifest import Manifest, entry_key
from .repository import Repository

#: versions that hold the state of the journal at their ``journal_seq``
#: (a ``restore`` version holds replaced content, outside the journal's order)
JOURNAL_BASES = frozenset({"initial", "checkpoint", "manual", "close", "write"})


@dataclass(frozen=True)
class Moment:
    base: Manifest
    upto_seq: int  # last record applied; == base.journal_seq when none is
    time: float  # when the file was in this state
    label: str  # how to name it to a person

    @property
    def replays(self) -> bool:
        return self.upto_seq > self.base.journal_seq


def journal_dir(journals_root: Path, path: str) -> Path:
    return journals_root / entry_key(path)


def has_journal(directory: Path | None) -> bool:
    return directory is not None and bool(list_segments(directory))


def moment_kind(at: str | float) -> str:
    """What ``at`` names: "time", "seq", "mark", or "bare" (a word that is no
    time: a mark's name for an entry with a journal). UsageError when it is a
    malformed sequence number or time."""
    return _kind_of(at)[0]


def _kind_of(at: str | float) -> tuple[str, object]:
    if isinstance(at, int | float) and not isinstance(at, bool):
        return "time", float(at)
    text = str(at).strip()
    if text.startswith("seq:") or text.startswith("#"):
        raw = text.split(":", 1)[1] if text.startswith("seq:") else text[1:]
        try:
            return "seq", int(raw)
        except ValueError:
            raise UsageError(f"bad sequence number in {text!r}") from None
    if text.startswith("mark:"):
        return "mark", text[5:]
    try:
        return "time", parse_time(text)
    except UsageError:
        if any(c.isdigit() for c in text[:1]):
            raise
        return "bare", text  # a mark's name, if the entry has a journal


def _scan(directory: Path) -> list[Record]:
    """Every valid record, across gaps, without its payload (marks keep theirs: it is
    the name).  Seqs are increasing; where they jump, records are missing."""
    out = []
    for r in iter_records(directory, allow_gaps=True):
        data = r.data if r.kind == "mark" else b""
        out.append(Record(r.seq, r.time, r.kind, r.offset, r.length, data))
    return out


def _valid_upto(records: list[Record], after: int) -> int:
    """The last seq ``s`` such that every record after..s is there (``after`` if
    record after+1 is missing): how far a replay from a version at ``after`` can go."""
    last = after
    for r in records:
        if r.seq <= after:
            continue
        if r.seq != last + 1:
            break
        last = r.seq
    return last


def _hint(path: str) -> str:
    return f"`filetwin history {path}` lists the versions and the journal's span"


def resolve(
    repo: Repository, path: str, jdir: Path | None, at: str | float | None = None
) -> Moment:
    """The moment ``at`` names (None: the newest state recorded).

    Without a journal only the manifests needed are read (the newest, or those
    from the time asked back to the version found); with one, all of them."""
    names = repo.version_names(path)
    missing = f"{path} has no versions in the repository {repo.backend.location}"
    if not names:
        raise NotFound(missing)
    kind, value = ("latest", None) if at is None else _kind_of(at)
    journal = has_journal(jdir)
    if kind == "bare":
        if not journal:
            parse_time(str(value))  # raises the message about the time's format
        kind = "mark"
    if not journal:
        newest = repo.newest(path, names)
        if newest is None:
            raise NotFound(missing)
        if kind in ("seq", "mark"):
            raise UsageError(f"{path} has no journal: name a version or a time")
        if kind == "latest":
            state = repo.state_of(newest)  # a restore in place: what it put back
            return Moment(state, state.journal_seq, state.time, "latest")
        m = repo.version_at(path, float(value), names)  # type: ignore[arg-type]
        return Moment(m, m.journal_seq, m.time, f"version {m.id}")
    versions = repo.versions(path)
    if not versions:
        raise NotFound(missing)
    assert jdir is not None
    records = _scan(jdir)
    bases = [m for m in versions if m.cause in JOURNAL_BASES] or versions
    last_seq = max([records[-1].seq if records else 0, *(m.journal_seq for m in bases)])
    if kind == "latest":
        upto, when, label = last_seq, records[-1].time if records else bases[-1].time, "latest"
    elif kind == "seq":
        upto = int(value)  # type: ignore[call-overload]
        if upto > last_seq:
            raise NotFound(f"{path} has no record {upto}; the last is {last_seq}")
        when = next((r.time for r in records if r.seq == upto), bases[0].time)
        label = f"seq {upto}"
    elif kind == "mark":
        marks = [
            r for r in records if r.kind == "mark" and r.data.decode(errors="replace") == value
        ]
        if not marks:
            raise NotFound(f"{path} has no mark named {value!r} in its journal")
        upto, when, label = marks[-1].seq, marks[-1].time, f"mark {value!r}"
    else:
        t = float(value)  # type: ignore[arg-type]
        now = time.time()
        if t > now:
            raise NotFound(
                f"{iso(t)} is in the future (it is {iso(now)}); {path} has no state "
                f"then yet; {_hint(path)}"
            )
        first_time = min(bases[0].time, records[0].time if records else bases[0].time)
        if t < first_time:
            raise NotFound(
                f"{iso(t)} is before the first version of {path} ({iso(bases[0].time)}); "
                f"{_hint(path)}"
            )
        before = [r for r in records if r.time <= t]
        upto = before[-1].seq if before else 0
        upto = max(upto, max((m.journal_seq for m in bases if m.time <= t), default=0))
        # The state at t is the one after the last record at or before t: name that
        # record (for a capture without the library, the capture point that answered).
        at_rec = next((r for r in reversed(before) if r.seq == upto), None)
        point = f"seq {upto}" + (f", recorded {iso(at_rec.time)}" if at_rec else "")
        if upto >= last_seq:
            label = f"{iso(t)}: the newest state ({point}; nothing was recorded after it)"
        else:
            label = f"{iso(t)}: the state after {point}"
        when = t
    candidates = [m for m in bases if m.journal_seq <= upto]
    if not candidates:
        raise NotFound(f"no version of {path} is old enough to rebuild {label}")
    base = candidates[-1]
    if upto > base.journal_seq:
        first_kept = records[0].seq if records else upto + 1
        if first_kept > base.journal_seq + 1:
            raise NotFound(
                f"the journal of {path} before record {first_kept} is gone; {label} can no "
                "longer be rebuilt (retention)"
            )
        valid = _valid_upto(records, base.journal_seq)
        if valid < upto:
            # A damaged or missing stretch: replay never crosses it, nor guesses.
            raise RestoreError(
                f"the journal of {path} is valid only up to record {valid} after version "
                f"{base.id} (record {valid + 1} is damaged or missing); {label} cannot be "
                f"rebuilt; {_hint(path)}"
            )
    return Moment(base, upto, when, label)


def rebuild_into(repo: Repository, moment: Moment, jdir: Path | None, fd: int) -> int:
    """Write the moment's content into the empty file ``fd``; return its size."""
    offset = 0
    for data in repo.read_version(moment.base):  # checks size and hash at the end
        view = memoryview(data)
        while view:
            n = os.pwrite(fd, view, offset)
            view, offset = view[n:], offset + n
    if moment.replays and jdir is not None:
        last = replay_into_file(
            fd, iter_records(jdir, start_seq=moment.base.journal_seq + 1), upto_seq=moment.upto_seq
        )
        if (last or moment.base.journal_seq) != moment.upto_seq:
            # The journal changed under us (damaged, dropped): never a shorter replay.
            raise RestoreError(
                f"the journal of {moment.base.path} ends at record "
                f"{last or moment.base.journal_seq}, before {moment.label}"
            )
    return os.fstat(fd).st_size
