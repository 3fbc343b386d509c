"""A version's manifest: what one version of one file holds, and its object name.

A manifest is immutable; its id is the BLAKE3 of its canonical JSON (without the
id), so a damaged manifest cannot pass for another version. The repository
(repo/repository.py) stores manifests under ``manifests/<entry key>/...``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import blake3

from filetwin.repo.chunks import is_chunk_id

CAUSES = frozenset({"initial", "close", "write", "checkpoint", "manual", "restore"})
MANIFESTS = "manifests/"


def entry_key(path: str) -> str:
    """Stable key of an entry's path: first 32 hex of BLAKE3 of the path bytes.

    Undecodable names (surrogate escapes from os.fsdecode) hash their original bytes.
    """
    return blake3.blake3(path.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def _canonical(d: dict[str, Any]) -> bytes:
    # ensure_ascii: lone surrogates (undecodable file names) must still serialize.
    return json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


_FIELDS: dict[str, type] = {
    "id": str, "path": str, "size": int, "mode": int, "uid": int, "gid": int,
    "mtime_ns": int, "hash": str, "chunks": list, "cause": str, "time": float,
    "unchanged": bool,
}  # fmt: skip
#: Fields newer manifests may carry, with the value meant when absent. They are
#: left out of the JSON (and so of the id) when they hold that value, so older
#: manifests keep their ids.
_OPTIONAL: dict[str, tuple[type, Any]] = {"journal_seq": (int, 0), "replaced_by": (str, "")}


@dataclass(frozen=True)
class Manifest:
    """One version of one file.  Immutable; its id is derived from its other fields."""

    id: str  # 16 hex: BLAKE3 of the canonical JSON without "id"
    path: str  # the entry's absolute path
    size: int
    mode: int  # st_mode & 0o7777
    uid: int
    gid: int
    mtime_ns: int
    hash: str  # BLAKE3 hex of the whole content
    chunks: tuple[str, ...]  # chunk ids in file order
    cause: str  # one of CAUSES
    time: float  # unix seconds when the version was made
    unchanged: bool  # same hash as the previous version
    journal_seq: int = 0  # on-write: the last journal record this version contains
    #: a version a restore in place kept aside: the id of the version it put back,
    #: which is from then on the file's newest state (see Repository.state_of)
    replaced_by: str = ""

    @classmethod
    def create(cls, **fields: Any) -> Manifest:
        """Build a manifest from every field except ``id``, which is computed."""
        d = dict(fields, chunks=list(fields["chunks"]), time=float(fields["time"]))
        d = {k: v for k, v in d.items() if k not in _OPTIONAL or v != _OPTIONAL[k][1]}
        return cls.from_json({**d, "id": cls._compute_id(d)})

    @staticmethod
    def _compute_id(d: dict[str, Any]) -> str:
        body = {k: v for k, v in d.items() if k != "id"}
        return blake3.blake3(_canonical(body)).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        """All fields as a JSON-ready dict (chunks as a list)."""
        d = asdict(self)
        d["chunks"] = list(self.chunks)
        for key, (_typ, default) in _OPTIONAL.items():
            if d[key] == default:
                del d[key]
        return d

    @classmethod
    def from_json(cls, d: Any) -> Manifest:
        """Parse and validate a dict made by to_json; ValueError says what is wrong.

        The id must match the content, so a damaged manifest cannot pass as another version.
        """
        if not isinstance(d, dict):
            raise ValueError("manifest is not a JSON object")
        extra = set(d) - set(_FIELDS) - set(_OPTIONAL)
        if set(_FIELDS) - set(d) or extra:
            raise ValueError(f"manifest fields differ: {sorted((set(_FIELDS) - set(d)) | extra)}")
        for key, (typ_o, _default) in _OPTIONAL.items():
            if key in d and (type(d[key]) is not typ_o):
                raise ValueError(f"manifest field {key!r} is not {typ_o.__name__}")
        for key, typ in _FIELDS.items():
            v = d[key]
            ok = isinstance(v, (int, float)) if typ is float else type(v) is typ
            if not ok or (typ is float and isinstance(v, bool)):
                raise ValueError(f"manifest field {key!r} is not {typ.__name__}")
        if not all(isinstance(c, str) and is_chunk_id(c) for c in d["chunks"]):
            raise ValueError("manifest names a malformed chunk id")
        if not is_chunk_id(d["hash"]):
            raise ValueError("manifest hash is not 64 hex characters")
        if d["cause"] not in CAUSES:
            raise ValueError(f"unknown cause {d['cause']!r}")
        if cls._compute_id(d) != d["id"]:
            raise ValueError("manifest id does not match its content")
        return cls(**{**d, "chunks": tuple(d["chunks"]), "time": float(d["time"])})

    def object_name(self, key: str | None = None) -> str:
        """Backend name: ``manifests/<key>/<time_ns:019d>-<id>.json``; ``key`` is the
        repository's entry key of the path (Repository.entry_key; plain by default)."""
        key = entry_key(self.path) if key is None else key
        return f"{MANIFESTS}{key}/{int(self.time * 1e9):019d}-{self.id}.json"
