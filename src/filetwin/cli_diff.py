"""``filetwin diff PATH A B``: what changed between two versions or moments of a file.

A and B each name a state of the entry:

* ``live``: the file as it is now (opened without following symlinks);
* a version id or a unique prefix of it (4+ hex characters), or ``version:ID``;
* a moment, as ``restore --at`` takes it: TIME (ISO 8601 or Unix seconds),
  ``seq:N`` or ``mark:NAME``, or ``at:MOMENT`` to say so explicitly.

A bare string of hex digits is a version when a version's id starts with it,
else a moment (a Unix time is all digits). The repository is read directly,
as ``check`` does, so no daemon is needed; the comparison itself is diffing.py's.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import click

from .cli_common import ctx_obj, emit_json, handle_errors, json_option, out, state_dir_option
from .diffing import RANGES_MAX, Comparison, compare
from .errors import NotFound, SourceError, UnsafePath, UsageError
from .timefmt import iso

READ_BLOCK = 1 << 20


@dataclass
class Side:
    """One state of the entry to compare, read by ``chunks()`` once."""

    spec: str
    kind: str  # live | version | moment
    what: str  # how to name it to a person
    chunks: Callable[[], Iterator[bytes]]
    version: str | None = None
    time: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "kind": self.kind,
            "what": self.what,
            "version": self.version,
            "time": self.time,
        }


def _live(path: str) -> Side:
    from .safeio import open_protected

    try:
        fd = open_protected(path)
    except FileNotFoundError:
        raise NotFound(f"{path} does not exist now: `live` has nothing to compare") from None
    except UnsafePath:
        raise
    except OSError as e:
        raise SourceError(f"cannot read {path}: {e.strerror}", errno=e.errno) from e

    def chunks() -> Iterator[bytes]:
        try:
            while data := os.read(fd, READ_BLOCK):
                yield data
        except OSError as e:
            raise SourceError(f"cannot read {path}: {e.strerror}", errno=e.errno) from e
        finally:
            os.close(fd)

    return Side("live", "live", "the live file", chunks)


def _is_hex(text: str) -> bool:
    return len(text) >= 4 and all(c in "0123456789abcdef" for c in text.lower())


def resolve_side(repo: Any, entry: str, jdir: Any, spec: str) -> Side:
    """The state ``spec`` names (see the module docstring); NotFound/UsageError
    say what is wrong with it."""
    from .repo.moments import Moment, rebuild_into, resolve

    text = spec.strip()
    if text == "live":
        return _live(entry)
    if text.startswith("version:") or (_is_hex(text) and not text.startswith("at:")):
        vid = text.removeprefix("version:")
        try:
            m = repo.find_version(entry, vid)
        except NotFound:
            if text.startswith("version:") or not text.isdigit():
                raise
            m = None  # all digits and no such version: a Unix time
        if m is not None:
            return Side(
                spec,
                "version",
                f"version {m.id}",
                lambda: repo.read_version(m),
                version=m.id,
                time=iso(m.time),
            )
    moment: Moment = resolve(repo, entry, jdir, text.removeprefix("at:"))
    base = moment.base
    if not moment.replays:
        return Side(
            spec,
            "moment",
            f"version {base.id} ({moment.label})",
            lambda: repo.read_version(base),
            version=base.id,
            time=iso(moment.time),
        )

    def rebuilt() -> Iterator[bytes]:
        # Rebuilt as a restore does, into an unnamed temporary file.
        with tempfile.TemporaryFile() as tmp:
            rebuild_into(repo, moment, jdir, tmp.fileno())
            tmp.seek(0)
            while data := tmp.read(READ_BLOCK):
                yield data

    what = f"version {base.id} + journal to seq {moment.upto_seq} ({moment.label})"
    return Side(spec, "moment", what, rebuilt, version=base.id, time=iso(moment.time))


def _summary(path: str, a: Side, b: Side, c: Comparison) -> dict[str, Any]:
    return {
        "path": path,
        "a": {**a.as_json(), "size": c.size_a, "hash": c.hash_a},
        "b": {**b.as_json(), "size": c.size_b, "hash": c.hash_b},
        "same": c.same,
        "size_change": c.size_b - c.size_a,
        "changed_bytes": c.changed_bytes,
        "ranges": [list(r) for r in c.ranges],
        "ranges_total": c.ranges_total,
        "text": c.text,
        "unified": "".join(c.unified) if c.text else None,
        "unified_lines_total": c.unified_total if c.text else None,
    }


def _print(s: dict[str, Any], ranges_max: int) -> None:
    a, b = s["a"], s["b"]

    def side(x: dict[str, Any]) -> str:
        when = f", {x['time']}" if x["time"] else ""
        return f"{x['what']}{when}, {x['size']} bytes"

    out.print(f"a: {side(a)}", markup=False)
    out.print(f"b: {side(b)}", markup=False)
    if s["same"]:
        out.print("same content", markup=False)
        return
    change = s["size_change"]
    out.print(
        f"size: {a['size']} -> {b['size']} bytes ({'+' if change >= 0 else ''}{change})",
        markup=False,
    )
    n = s["ranges_total"]
    out.print(
        f"changed: {s['changed_bytes']} bytes in {n} range{'s' if n != 1 else ''}", markup=False
    )
    for start, end in s["ranges"]:
        out.print(f"  {start:>12} - {end:<12} ({end - start} bytes)", markup=False)
    if n > len(s["ranges"]):
        out.print(
            f"  ... and {n - len(s['ranges'])} more ranges (first {ranges_max} shown; "
            "--ranges N shows more)",
            markup=False,
        )
    if s["text"]:
        click.echo(s["unified"], nl=False)
        shown = s["unified"].count("\n")
        if s["unified_lines_total"] > shown:
            out.print(
                f"... {s['unified_lines_total'] - shown} more diff lines not shown", markup=False
            )
    else:
        out.print("not text (binary, not UTF-8 or over 1 MiB): no line diff", markup=False)


@click.command()
@state_dir_option
@click.argument("path", type=click.Path())
@click.argument("a")
@click.argument("b")
@click.option(
    "--ranges",
    "ranges_max",
    type=click.IntRange(1, 1_000_000),
    default=RANGES_MAX,
    show_default=True,
    help="Changed byte ranges listed; the rest are counted.",
)
@json_option
@handle_errors
def diff(path: str, a: str, b: str, ranges_max: int, as_json: bool) -> None:
    """Show what changed between two states of a protected file: sizes, the
    changed byte ranges and, for text, a unified diff.

    \b
    A and B are each:
      live            the file as it is now
      ID              a version id or a unique prefix (4+ hex chars), or version:ID
      TIME            ISO 8601 or Unix seconds: the state then (as restore --at)
      seq:N, mark:M   a journal record or mark of an on-write file
    A string of hex digits is a version if one starts with it, else a time;
    write version:ID or at:TIME to say which.

    \b
    Examples:
      filetwin diff notes.txt 1a2b3c4d live
      filetwin diff notes.txt 2026-11-25T10:00:00Z 2026-11-25T12:00:00Z
      filetwin diff db.bin mark:before-migration live --json

    Text means valid UTF-8 without NUL bytes, at most 1 MiB a side. Exit 0
    whether or not they differ (--json says `same`); 1 if a state cannot be
    read (no such version or moment, the file missing), 2 bad usage. Reads the
    repository directly: works without the daemon.
    """
    from .cli import _offline_repo
    from .repo.moments import journal_dir

    repo, entry = _offline_repo(path)
    assert entry is not None
    if not repo.version_names(entry):
        raise NotFound(
            f"{entry} has no versions in {repo.backend.location} "
            "(is it protected? see `filetwin status`, --config and --state-dir)"
        )
    jdir = journal_dir(ctx_obj().config().journals_dir, entry)
    try:
        side_a = resolve_side(repo, entry, jdir, a)
        side_b = resolve_side(repo, entry, jdir, b)
    except (NotFound, UsageError) as e:
        if "filetwin history" in e.message:
            raise
        raise type(e)(f"{e.message} (see `filetwin history {path}`)") from e
    result = compare(
        side_a.chunks(),
        side_b.chunks(),
        f"{entry}@{a}",
        f"{entry}@{b}",
        ranges_max=ranges_max,
    )
    summary = _summary(entry, side_a, side_b, result)
    if as_json:
        emit_json(summary)
    else:
        _print(summary, ranges_max)
