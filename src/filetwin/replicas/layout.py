"""Where a host's copy lives in a replica location, and the shipped journal objects.

A replica location (``s3://bucket/prefix`` or a directory) is shared by any
number of hosts without clashing; each host writes under its own prefix only::

    <location>/hosts/<host>/config, keys/...     the repository copy: the same
    <location>/hosts/<host>/packs/, index/,      objects as the primary, byte for
    <location>/hosts/<host>/manifests/           byte (so it opens as a repository)
    <location>/hosts/<host>/journals/<entry key>/<first_seq:020d>-<last_seq:020d>

A journal object holds the records ``first_seq..last_seq`` of one on-write
entry, consecutive, as one journal segment (repo/journal.py's format: header
then records, so the replay code reads it unchanged), sealed with the
repository's keys as kind ``journal`` under its name (plain when the
repository is not encrypted). Objects are immutable: a record is shipped once,
and the next object starts after the newest shipped one. ``<entry key>`` is
the repository's key of the path (keyed when encrypted: names say nothing).
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import struct
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import blake3

from ..errors import CorruptObject, UsageError
from ..repo.crypto import Keys
from ..repo.journal import (
    HEADER_SIZE,
    MAGIC,
    RECORD_MAGIC,
    SUM_SIZE,
    VERSION,
    Record,
    read_journal,
)

HOSTS = "hosts/"
JOURNALS = "journals/"
#: the environment variable naming this host in replica locations (default: hostname)
HOST_ENV = "FILETWIN_HOST"
_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_JOURNAL_OBJECT = re.compile(r"(\d{20})-(\d{20})")
# The segment format's structs (repo/journal.py): header and record fields.
_HEADER = struct.Struct("<4sH16sQQ")
_RECORD = struct.Struct("<2sQQBQI")
_CODES = {"write": 1, "truncate": 2, "close-ok": 3, "close-failed": 4, "mark": 5}


def validate_host(name: str) -> str:
    """``name`` if it can name a host in a location, else UsageError naming the problem."""
    if not isinstance(name, str) or not _HOST.fullmatch(name):
        raise UsageError(
            f"bad host name {name!r}: 1-63 characters of [A-Za-z0-9._-], starting with a "
            "letter or digit"
        )
    return name


def this_host() -> str:
    """This machine's name in replica locations: ``$FILETWIN_HOST``, else its
    hostname (the characters a name may not hold replaced by ``-``)."""
    given = os.environ.get(HOST_ENV)
    if given:
        return validate_host(given)
    raw = socket.gethostname().split(".")[0] or "host"
    return validate_host(re.sub(r"[^A-Za-z0-9._-]", "-", raw)[:63].lstrip("._-") or "host")


def host_location(location: str, host: str) -> str:
    """The location of ``host``'s copy inside the replica ``location``."""
    validate_host(host)
    if location.startswith("s3://"):
        return f"{location.rstrip('/')}/hosts/{host}"
    if location.startswith("file://"):
        location = location[len("file://") :]
    if not location:
        raise UsageError("empty replica location")
    return str(Path(location).expanduser() / "hosts" / host)


def journal_prefix(key: str) -> str:
    return f"{JOURNALS}{key}/"


def journal_object(key: str, first: int, last: int) -> str:
    """The name of the journal object holding records ``first..last`` of entry ``key``."""
    return f"{JOURNALS}{key}/{first:020d}-{last:020d}"


def parse_journal_object(name: str) -> tuple[str, int, int] | None:
    """(entry key, first seq, last seq) of a journal object's name; None if it is none."""
    if not name.startswith(JOURNALS):
        return None
    parts = name[len(JOURNALS) :].split("/")
    if len(parts) != 2:
        return None
    m = _JOURNAL_OBJECT.fullmatch(parts[1])
    if m is None or int(m.group(1)) > int(m.group(2)) or int(m.group(1)) < 1:
        return None
    return parts[0], int(m.group(1)), int(m.group(2))


def _checksum(salt: bytes, head: bytes, payload: bytes) -> bytes:
    h = blake3.blake3(salt)
    h.update(head)
    h.update(payload)
    return h.digest(SUM_SIZE)


def encode_segment(records: Iterable[Record]) -> bytes:
    """One journal segment holding ``records`` (consecutive seqs), with a fresh salt.

    Record times keep their float value to the nanosecond it rounds to."""
    items = list(records)
    if not items:
        raise UsageError("a journal object holds at least one record")
    salt = secrets.token_bytes(16)
    head = _HEADER.pack(MAGIC, VERSION, salt, items[0].seq, round(items[0].time * 1e9))
    out = [head, blake3.blake3(head).digest(SUM_SIZE)]
    for want, r in enumerate(items, start=items[0].seq):
        if r.seq != want:
            raise UsageError(f"journal records are not consecutive: {r.seq} after {want - 1}")
        fields = _RECORD.pack(
            RECORD_MAGIC, r.seq, max(0, round(r.time * 1e9)), _CODES[r.kind], r.offset, len(r.data)
        )
        out += [fields, _checksum(salt, fields, r.data), r.data]
    return b"".join(out)


@dataclass(frozen=True)
class JournalObject:
    """A shipped journal object, opened: its name, range and segment bytes."""

    name: str
    first: int
    last: int
    segment: bytes


def seal_journal(keys: Keys, name: str, segment: bytes) -> bytes:
    return keys.seal("journal", name, segment)


def open_journal(keys: Keys, name: str, blob: bytes) -> JournalObject:
    """The segment of journal object ``name``, authenticated and checked to hold exactly
    the records its name says (CorruptObject naming it otherwise)."""
    parsed = parse_journal_object(name)
    if parsed is None:
        raise CorruptObject(f"journal object {name} has no valid name")
    _key, first, last = parsed
    segment = keys.open_sealed("journal", name, blob)
    with tempfile.TemporaryDirectory(prefix="filetwin-jobj-") as tmp:
        Path(tmp, f"{first:020d}.seg").write_bytes(segment)
        replay = read_journal(Path(tmp))
    seqs = [r.seq for r in replay.records]
    if replay.torn is not None or seqs != list(range(first, last + 1)):
        why = replay.torn.reason if replay.torn is not None else "wrong records"
        raise CorruptObject(f"journal object {name} is damaged ({why})")
    if len(segment) < HEADER_SIZE:
        raise CorruptObject(f"journal object {name} is damaged (short)")
    return JournalObject(name, first, last, segment)
