"""The API's shapes, declared once: every route, its request and its answer.

The daemon validates requests with these declarations (``daemon/api.py``),
``GET /openapi.json`` is generated from them (``daemon/openapi.py``), the
endpoint table of docs/api.md is rendered from them, and ``filetwin.Client``
returns the answer types (TypedDicts: plain dicts at run time, typed for mypy).

Requests are msgspec Structs that refuse unknown fields; ``None`` (JSON null)
for an optional field means "not given". Rules the schema cannot say (a
path's byte limits, text measured in UTF-8 bytes, time formats, policy
messages) are checked beside it in the daemon and documented here in the
field's description. Answers are TypedDicts: a daemon may add keys (clients
ignore them), never remove or retype one.

This module imports nothing of the daemon: a client uses it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NamedTuple, NotRequired, TypedDict

from msgspec import Meta, Struct

from .policy import MAX_KEEP, MAX_RETRIES, MAX_TIMEOUT_S, POLICY_FIELDS

#: integers on the wire are signed 64-bit: SQLite and the journal's records hold no more
INT_MAX = (1 << 63) - 1
#: a text field's limit in UTF-8 bytes (mark names, reasons, versions, moments)
TEXT_MAX = 4096
#: journal appends tried again after a failure, at most
MAX_APPEND_RETRIES = 10

# Field types --------------------------------------------------------------
#: A path: its rules are checked by daemon/entrypaths.check_path (NUL, PATH_MAX,
#: NAME_MAX, absolute), which names the rule broken; here they are only described.
PathText = Annotated[
    str,
    Meta(
        description="absolute path, under PATH_MAX (4096 bytes) with no component over "
        "NAME_MAX (255 bytes) and no NUL; a byte that is not UTF-8 is the lone surrogate "
        "U+DC80+byte (surrogateescape)",
        extra_json_schema={"minLength": 1, "maxLength": 4095},
    ),
]
Count = Annotated[int, Meta(ge=0, le=INT_MAX, description="a non-negative 64-bit integer")]
Text = Annotated[
    str,
    Meta(
        max_length=TEXT_MAX,
        description=f"valid Unicode text of at most {TEXT_MAX} UTF-8 bytes",
    ),
]
AppendRetries = Annotated[
    int,
    Meta(
        ge=0,
        le=MAX_APPEND_RETRIES,
        description="a failed journal append is tried again, on a reopened journal, this many "
        "times (default 0); each failure is a journal-failed event",
    ),
]
BackupMode = Literal["on-close", "on-write"]
RecoveryMode = Literal["auto", "manual", "notify"]
SyncMode = Annotated[
    Literal["always", "batch"],
    Meta(
        description="on-write durability: always fdatasyncs each record before acknowledging "
        "it; batch acknowledges once it is in the kernel and makes it durable within "
        "journal_batch_window_s (default 100 ms)"
    ),
]
Retries = Annotated[int, Meta(ge=0, le=MAX_RETRIES, description="a failed job is retried")]
Timeout = Annotated[
    float, Meta(gt=0, le=MAX_TIMEOUT_S, description="a job's deadline in seconds")
]
Keep = Annotated[int, Meta(ge=1, le=MAX_KEEP, description="versions kept")]
KeepWithin = Annotated[
    str | int,
    Meta(
        description="keep every version within this duration of the newest one: 7d, 12h, "
        "30m, 2w, 90s or combined (1d12h); a number is seconds; 0 turns the rule off"
    ),
]
PeriodCount = Annotated[
    int,
    Meta(
        ge=0,
        le=MAX_KEEP,
        description="keep the newest version of each of the last N periods that hold one "
        "(0 turns the rule off)",
    ),
]
VersionId = Annotated[
    str,
    Meta(
        pattern="^[0-9a-fA-F]{4,}$",
        max_length=TEXT_MAX,
        description="a version id or a prefix of it (4+ hex characters)",
        extra={"hint": "give at least 4 hex characters"},
    ),
]
Moment = Annotated[
    str | int | float,
    Meta(
        description="a time (ISO 8601 or Unix seconds, 1970 to 9999), seq:N (a journal "
        "record) or mark:NAME"
    ),
]
Time = Annotated[str, Meta(description="ISO 8601 UTC, milliseconds, Z")]


# Requests -----------------------------------------------------------------
class Body(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Base of request bodies: unknown fields are refused (a typo is never ignored)."""


class PathBody(Body):
    path: PathText


class PolicyBody(Body, kw_only=True):
    """The policy fields ``add`` and ``update`` take (absent: unchanged or default)."""

    backup: BackupMode | None = None
    recovery: RecoveryMode | None = None
    retries: Retries | None = None
    timeout: Timeout | None = None
    keep: Keep | None = None
    sync: SyncMode | None = None
    keep_within: KeepWithin | None = None
    keep_hourly: PeriodCount | None = None
    keep_daily: PeriodCount | None = None
    keep_weekly: PeriodCount | None = None
    keep_monthly: PeriodCount | None = None


class AddBody(PolicyBody):
    paths: list[PathText]


class UpdateBody(PolicyBody):
    path: PathText


#: the policy fields of /add and /update (Policy.updated's names)
POLICY_KEYS = tuple(POLICY_FIELDS)


class RemoveBody(Body):
    path: PathText
    purge: bool | None = None


class RestoreBody(Body):
    path: PathText
    version: VersionId | None = None
    at: Moment | None = None
    to: Annotated[PathText, Meta(description="where to write it (default: in place)")] | None = (
        None
    )


class WriteBody(Body):
    path: PathText
    offset: Count
    data: Annotated[
        str, Meta(description="the bytes written, base64", extra_json_schema={"format": "byte"})
    ]
    retries: AppendRetries | None = None


class TruncateBody(Body):
    path: PathText
    length: Count
    retries: AppendRetries | None = None


class CloseBody(Body):
    path: PathText
    ok: Annotated[bool, Meta(description="whether the close succeeded (default true)")] | None = (
        None
    )
    retries: AppendRetries | None = None


class MarkBody(Body):
    path: PathText
    name: Text
    retries: AppendRetries | None = None


class RecoverBody(Body):
    path: PathText
    reason: Text | None = None
    trigger: Literal["notify", "auto"] | None = None


class VerifyBody(Body):
    path: PathText | None = None


class DirBody(Body):
    dir: PathText


class Query(Struct, forbid_unknown_fields=True):
    """Base of query strings: values are strings on the wire, integers decimal digits."""


class NoQuery(Query):
    pass


class OptionalPathQuery(Query):
    path: PathText | None = None


class StatusFilters(Query):
    """Which entries a status listing holds (daemon/status_api.py); all must match."""

    state: (
        Annotated[str, Meta(description="watching, paused, missing or error; several: a,b")]
        | None
    ) = None
    failed: (
        Annotated[
            Literal["", "0", "1", "false", "true"],
            Meta(description="1: only entries missing, in error, or whose last job failed"),
        ]
        | None
    ) = None
    prefix: (
        Annotated[str, Meta(description="an absolute path: that entry and those under it")]
        | None
    ) = None
    source: (
        Annotated[Literal["cli", "config"], Meta(description="who named the entry")] | None
    ) = None


class StatusQuery(StatusFilters):
    path: PathText | None = None
    offset: Annotated[Count, Meta(description="matching rows skipped (default 0)")] | None = None
    limit: Annotated[Count, Meta(description="rows at most (default all)")] | None = None


class PathQuery(Query):
    path: PathText


class EventsQuery(Query):
    path: PathText | None = None
    after: Annotated[Count, Meta(description="events after this id")] = 0
    limit: Annotated[Count, Meta(description="at most this many, the newest")] | None = None
    follow: (
        Annotated[
            Literal["", "0", "1", "false", "true"],
            Meta(description="1: stream newline-delimited JSON as events happen"),
        ]
        | None
    ) = None


# Answers ------------------------------------------------------------------
class Health(TypedDict):
    """``GET /health``: the daemon is up (its pid and state directory)."""

    ok: bool
    pid: int
    state_dir: str


class Entry(TypedDict):
    """A row of the management table (``status --json``)."""

    id: int
    path: str
    backup_mode: BackupMode
    recovery_mode: RecoveryMode
    state: str
    pending_change: str
    job_kind: str | None
    job_started_at: Time | None
    worker_pid: int | None
    job_bytes: Annotated[
        int | None,
        Meta(description="a running job's progress: bytes read (written, for a restore)"),
    ]
    last_result: str | None
    last_error: str | None
    retries: int
    timeout_s: float | None
    keep: int
    repository: str
    recovery_requested: bool
    journal_seq: int
    last_version: str | None
    last_backup_at: Time | None
    last_good_hash: str | None
    size: int | None
    versions: int
    sync_mode: Literal["always", "batch"]
    created_at: Time
    last_job_kind: str | None
    keep_within_s: int | None
    keep_hourly: int
    keep_daily: int
    keep_weekly: int
    keep_monthly: int
    purge: NotRequired[bool]


class AddResult(TypedDict):
    """``POST /add``: the entries added, notes on the paths, and what failed."""

    entries: list[Entry]
    messages: list[str]
    failures: list[str]


class EntryChange(TypedDict):
    """The answer of /update, /pause and /resume."""

    entry: Entry
    message: str


class Removed(TypedDict):
    """``POST /remove``: the entry is gone; ``purged`` says whether its history is."""

    path: str
    removed: bool
    purged: bool
    message: str


class Version(TypedDict):
    """One version (a ``history --json`` item)."""

    id: str
    path: str
    size: int
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    hash: Annotated[str, Meta(description="BLAKE3 hex digest of the whole content")]
    cause: Literal["initial", "close", "write", "checkpoint", "manual", "restore"]
    time: Time
    unchanged: bool
    chunk_count: int
    journal_seq: NotRequired[int]
    replaced_by: NotRequired[
        Annotated[
            str,
            Meta(
                description="a version a restore in place kept aside: the id of the "
                "version it put back, from then on the file's newest state"
            ),
        ]
    ]


class Restored(TypedDict):
    """``POST /restore``: what was rebuilt (version, journal record, moment) and where."""

    path: str
    target: str
    version: str
    version_time: Time
    journal_seq: int
    moment: str
    moment_time: Time | None
    hash: Annotated[str | None, Meta(description="null when a journal was replayed")]
    size: int
    kept_version: str | None


class Event(TypedDict):
    """One event of the log (``events --json``)."""

    id: Annotated[int | None, Meta(description="null until the state directory stores it")]
    time: Time
    path: str | None
    kind: str
    ok: bool | None
    message: str


class Seq(TypedDict):
    """The answer of an on-write record (/write, /truncate, /close, /mark)."""

    seq: Annotated[int, Meta(description="the record's sequence number (0: not journaled)")]


class JournalClose(TypedDict):
    seq: int
    time: Time
    ok: bool


class JournalMark(TypedDict):
    seq: int
    time: Time
    name: str


class TornTail(TypedDict):
    segment: str
    offset: int
    reason: str


class Journal(TypedDict):
    """An on-write entry's journal: its span of records, closes, marks, torn tail."""

    first_seq: int | None
    first_time: Time | None
    last_seq: int | None
    last_time: Time | None
    writes: int
    closes: list[JournalClose]
    marks: list[JournalMark]
    torn: TornTail | None


class StatusSummary(TypedDict):
    """The entries a status filter matches, counted (``GET /status/summary``)."""

    total: int
    states: dict[str, int]
    results: Annotated[dict[str, int], Meta(description="by last result; none: no job yet")]
    attention: Annotated[int, Meta(description="missing, in error, or last job failed")]


class Reloaded(TypedDict):
    """What a reload of the config's ``[[protect]]`` tables changed (``POST /reload``)."""

    config_file: str
    added: list[str]
    updated: list[str]
    removed: list[str]
    unchanged: int
    notes: list[str]
    failures: list[str]
    message: str


class Healed(TypedDict):
    """A heal's result: ``healed`` false with ``status`` and ``message`` when nothing
    was healed (the file verifies clean, or is newer than its newest state)."""

    path: str
    healed: bool
    version: str | None
    journal_seq: int | None
    quarantined: str | None
    unreadable: list[Any]
    status: NotRequired[str]
    message: NotRequired[str]


class VerifyReport(TypedDict):
    """One entry's verification: ``status`` ok, changed, missing, corrupt or error."""

    path: str
    status: Annotated[str, Meta(description="ok, changed, missing, corrupt, error, ...")]
    detail: str
    recovery_mode: str
    healed: bool
    quarantined: NotRequired[str | None]
    heal_error: NotRequired[str]


class Mount(TypedDict):
    dir: str
    pid: int
    alive: bool
    mounted: bool


class MountStarted(TypedDict):
    dir: str
    pid: int


class Unmounted(TypedDict):
    dir: str
    mounted: bool


class ErrorAnswer(TypedDict):
    """Every answer that is not a success."""

    error: str
    type: Annotated[str, Meta(description="the filetwin exception's class name")]
    exit_code: Annotated[int, Meta(description="the CLI's exit code for it: 1, 2 or 3")]


# Routes -------------------------------------------------------------------
JSON = "application/json"
PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"
NDJSON = "application/x-ndjson"


class Route(NamedTuple):
    """One route: what it takes and what it answers with (status 200)."""

    method: str
    path: str
    summary: str
    body: type[Body] | None = None
    query: type[Query] = NoQuery
    answer: Any = None
    media: str = JSON
    #: what a reader should know beyond the shapes (docs/api.md's table)
    note: str = ""


ROUTES: tuple[Route, ...] = (
    Route("GET", "/health", "Is the daemon up", answer=Health),
    Route("GET", "/openapi.json", "This description (OpenAPI 3.1)", answer=dict[str, Any]),
    Route(
        "GET",
        "/metrics",
        "Prometheus metrics (docs/metrics.md)",
        answer=str,
        media=PROMETHEUS,
        note="Prometheus text, not JSON",
    ),
    Route(
        "GET",
        "/status",
        "The management table, or one entry",
        query=StatusQuery,
        answer=list[Entry],
        note="list of entries (shape of `filetwin status --json`) in path order; with "
        "filters or a limit, X-Total-Count says how many matched in all",
    ),
    Route(
        "GET",
        "/status/summary",
        "The entries a status filter matches, counted by state and last result",
        query=StatusFilters,
        answer=StatusSummary,
    ),
    Route(
        "POST",
        "/reload",
        "Re-read the config's [[protect]] tables and apply them",
        answer=Reloaded,
        note="a bad table changes nothing: 400 naming the config file and line",
    ),
    Route(
        "POST",
        "/add",
        "Protect files",
        AddBody,
        answer=AddResult,
        note="returns once every first version is stored; nothing is added if any path "
        "is refused",
    ),
    Route("POST", "/update", "Change an entry's policy", UpdateBody, answer=EntryChange),
    Route("POST", "/pause", "Stop watching an entry", PathBody, answer=EntryChange),
    Route("POST", "/resume", "Watch a paused entry again", PathBody, answer=EntryChange),
    Route(
        "POST", "/remove", "Stop protecting (history is kept unless purge)", RemoveBody,
        answer=Removed,
    ),  # fmt: skip
    Route(
        "POST",
        "/backup",
        "Take a version now; answers once it is stored",
        PathBody,
        answer=Version,
    ),
    Route("GET", "/history", "Versions, oldest first", query=PathQuery, answer=list[Version]),
    Route(
        "POST",
        "/restore",
        "Rebuild a version or a moment, in place or to another path",
        RestoreBody,
        answer=Restored,
        note="`hash` is null when a journal was replayed; in place, the replaced content is "
        "kept as `kept_version`",
    ),
    Route(
        "GET",
        "/events",
        "The event log (follow=1 streams NDJSON, one event per line)",
        query=EventsQuery,
        answer=list[Event],
        note="with `follow=1` an NDJSON stream",
    ),
    Route(
        "POST",
        "/write",
        "Journal a write of an on-write entry",
        WriteBody,
        answer=Seq,
        note="the seq once the record is as durable as the entry's sync mode promises",
    ),
    Route("POST", "/truncate", "Journal a truncate of an on-write entry", TruncateBody, answer=Seq),
    Route(
        "POST",
        "/close",
        "Report a close and whether it succeeded",
        CloseBody,
        answer=Seq,
        note="on-write: journaled, a good close starts a checkpoint; on-close: not journaled "
        "(seq 0), a failed close is a `close-failed` event and what it left is never stored "
        "as a version; a failed close heals an `auto` entry",
    ),
    Route(
        "POST",
        "/mark",
        "Name the current moment of an on-write entry (restore at mark:NAME)",
        MarkBody,
        answer=Seq,
    ),
    Route(
        "GET",
        "/journal",
        "An on-write entry's journal: span, closes (failed ones flagged), marks, torn tail",
        query=PathQuery,
        answer=Journal,
    ),
    Route(
        "POST",
        "/recover",
        "Heal a file now if it is damaged; refused (409) for manual entries",
        RecoverBody,
        answer=Healed,
        note="nothing is rolled back: a file that verifies clean or is newer than its newest "
        "state is not healed",
    ),
    Route(
        "POST",
        "/verify",
        "Compare live files with their newest state; auto entries are healed",
        VerifyBody,
        answer=list[VerifyReport],
    ),
    Route("GET", "/mounts", "The in-place mounts the daemon supervises", answer=list[Mount]),
    Route(
        "POST",
        "/mount",
        "Start an in-place interceptor over a directory that holds protected files",
        DirBody,
        answer=MountStarted,
    ),
    Route(
        "POST",
        "/unmount",
        "Unmount an in-place interceptor: the directory is given back as it was",
        DirBody,
        answer=Unmounted,
    ),
)


def route(method: str, path: str) -> Route:
    """The declaration of ``method path``; KeyError if it is not declared."""
    for r in ROUTES:
        if r.method == method and r.path == path:
            return r
    raise KeyError(f"{method} {path}")
