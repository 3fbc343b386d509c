"""Paths and settings: the config file, the state directory, the socket, the repository.

Every command (the daemon and the offline ones alike) reads one config file:
``--config FILE`` or ``$FILETWIN_CONFIG`` when given, else
``/etc/filetwin/filetwin.toml`` for root and
``$XDG_CONFIG_HOME/filetwin/filetwin.toml`` (``~/.config/...``) for a user,
when that file exists. It is decoded against one declared schema
(``SETTINGS``, checked by msgspec): a key the schema does not know, or a value
of the wrong type, is a UsageError naming the key and its line.

Everything a component needs is handed to it through a ``Config``; nothing
reads the environment or the home directory after ``Config.load``.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, get_args, get_type_hints

import msgspec

from .errors import PermissionDenied, UsageError

SOCKET_NAME = "filetwin.sock"
TABLE_NAME = "table.sqlite"
CONFIG_NAME = "filetwin.toml"
ENCRYPTION_MODES = ("none", "repokey", "keyfile")

#: every setting of the config file: (name, type, default, what it does). The
#: one declaration from which the file's schema, the [testing] table's, Config's
#: fields and docs/configuration.md (``render_settings_doc``) come.
SETTINGS: tuple[tuple[str, type, Any, str], ...] = (
    ("repository", str, "", "where versions are stored (default: STATE_DIR/repository)"),
    ("workers", int, 2, "worker processes doing the copies (1 to 64)"),
    (
        "coalesce_ms",
        int,
        20,
        "saves that come while a file is being read are one burst: its next job "
        "waits this long and takes the burst's last content (a save after the "
        "version is committed starts its job at once)",
    ),
    ("default_keep", int, 50, "versions kept per entry unless `add --keep` says otherwise"),
    ("default_retries", int, 3, "retries of a failed job unless `add --retries` says otherwise"),
    (
        "timeout_floor_s",
        float,
        30.0,
        "a job's default deadline: this floor plus the file's size at `timeout_rate`",
    ),
    ("timeout_rate", float, 20 * 1024 * 1024, "bytes per second assumed for that deadline"),
    ("retry_backoff_s", float, 0.5, "wait before the first retry, doubled at each one"),
    ("worker_stall_s", float, 0.0, "tests only: every job's worker sleeps this long first"),
    (
        "journal_batch_window_s",
        float,
        0.1,
        "on-write, sync batch: acknowledged records are durable within this",
    ),
    (
        "checkpoint_bytes",
        int,
        64 * 1024 * 1024,
        "on-write: fold the journal into a version past this many bytes (and at each good close)",
    ),
    ("checkpoint_records", int, 100_000, "... or past this many records"),
    (
        "max_file_size",
        int,
        64 * 1024**3,
        "on-write: a record that would make a file larger is refused",
    ),
    (
        "capture_quiet_ms",
        int,
        50,
        "capture without the library: a burst of writes ends after this much quiet",
    ),
    ("gc_delay_s", float, 5.0, "unreferenced chunks are collected this long after retention"),
    ("scrub_interval_s", float, 0.0, "verify every entry this often; 0: never"),
    ("on_event", str, "", "a shell command run for every event, given the event as JSON"),
    (
        "encryption",
        str,
        "none",
        "how a NEW repository is created: none, repokey or keyfile (see `filetwin init`)",
    ),
)

def _about(text: str) -> Any:
    return msgspec.Meta(description=text)


class DashboardSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """``[dashboard]``: the web dashboard, served on 127.0.0.1 only, behind a token."""

    enabled: Annotated[bool, _about("serve the dashboard")] = False
    port: Annotated[int, msgspec.Meta(ge=1, le=65535), _about("its TCP port on 127.0.0.1")] = 8417


class ReplicaSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """``[[replica]]``: a further copy of the repository (S3 or another disk) that
    receives every version and journal record asynchronously."""

    location: Annotated[str, _about("`s3://bucket/prefix` or a local path on another disk")]
    name: Annotated[str, _about("how commands and status name it (default: its location)")] = ""
    endpoint: Annotated[str, _about("S3 endpoint URL (default: from the AWS environment)")] = ""
    region: Annotated[str, _about("S3 region (default: from the AWS environment)")] = ""
    lag_alert_s: Annotated[
        float, _about("an event fires when the replica trails by more than this many seconds")
    ] = 60.0
    create_bucket: Annotated[
        bool,
        _about("S3: create the bucket if it does not exist (else a missing bucket is an error)"),
    ] = False
    safety_pass_s: Annotated[
        float,
        _about(
            "seconds between safety passes: the replica listed again and part of it read "
            "back, so what was deleted or damaged there is put again"
        ),
    ] = 60.0


class ProtectSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """``[[protect]]``: files named in the config (a path or a glob) with their policy;
    reconciled at start and on ``filetwin reload``. An absent field takes the
    same default as ``filetwin add``."""

    path: Annotated[str, _about("an absolute path or a glob (`*`, `?`, `[...]`, `**`)")]
    backup: Annotated[str | None, _about("on-close or on-write")] = None
    recovery: Annotated[str | None, _about("auto, manual or notify")] = None
    retries: Annotated[int | None, _about("retries of a failed job")] = None
    timeout: Annotated[float | None, _about("a job's deadline in seconds")] = None
    keep: Annotated[int | None, _about("versions kept")] = None
    sync: Annotated[str | None, _about("on-write durability: always or batch")] = None


#: the tables of the config file: (name, an array of tables?, its schema)
TABLES: tuple[tuple[str, bool, type[msgspec.Struct]], ...] = (
    ("dashboard", False, DashboardSettings),
    ("replica", True, ReplicaSettings),
    ("protect", True, ProtectSettings),
)


def _table_rows(schema: type[msgspec.Struct]) -> list[str]:
    """A markdown table of a table schema's keys (type, default, meaning)."""
    hints = get_type_hints(schema, include_extras=True)
    rows = ["| key | type | default | what it does |", "| --- | --- | --- | --- |"]
    for field in msgspec.structs.fields(schema):
        hint = hints[field.name]
        args = get_args(hint)
        base, metas = (args[0], args[1:]) if args else (hint, ())
        text = " ".join(m.description for m in metas if getattr(m, "description", None))
        if field.required:
            default = "required"
        elif field.default is None:
            default = "as `add`"
        else:
            value = field.default
            default = "`" + (f'"{value}"' if isinstance(value, str) else repr(value)) + "`"
        typ = " or ".join(
            t.__name__ for t in (get_args(base) or (base,)) if t is not type(None)
        )
        rows.append(f"| `{field.name}` | {typ} | {default} | {text} |")
    return rows


def render_settings_doc() -> str:
    """docs/configuration.md, generated from SETTINGS (a test keeps it current)."""
    lines = [
        "# Configuration",
        "",
        "<!-- generated from filetwin.config.SETTINGS (render_settings_doc);"
        " do not edit by hand -->",
        "",
        "Every command, the daemon and the offline ones alike, reads one TOML file:",
        "`--config FILE` or `$FILETWIN_CONFIG` when given, else",
        "`/etc/filetwin/filetwin.toml` for root and",
        "`$XDG_CONFIG_HOME/filetwin/filetwin.toml` (`~/.config/filetwin/...`) for a",
        "user, when that file exists. A key this page does not list, or a value of",
        "the wrong type, is an error naming the key and its line; nothing starts.",
        "`state_dir` may also be set in the file (`--state-dir` wins over it).",
        "",
        "| key | type | default | what it does |",
        "| --- | --- | --- | --- |",
    ]
    for name, typ, default, text in SETTINGS:
        shown = f'"{default}"' if isinstance(default, str) else repr(default)
        lines.append(f"| `{name}` | {typ.__name__} | `{shown}` | {text} |")
    lines += [
        "",
        "Example:",
        "",
        "```toml",
        'repository = "/srv/filetwin-repo"',
        "workers = 2",
        "scrub_interval_s = 3600",
        'on_event = "notify-send filetwin"',
        "```",
        "",
    ]
    for name, many, schema in TABLES:
        header = f"[[{name}]]" if many else f"[{name}]"
        doc = " ".join((schema.__doc__ or "").split())
        lines += [f"## `{header}`", "", doc, ""]
        lines += _table_rows(schema)
        lines.append("")
    lines += [
        "Example:",
        "",
        "```toml",
        "[dashboard]",
        "enabled = true",
        "",
        "[[replica]]",
        'name = "offsite"',
        'location = "s3://backups/filetwin"',
        'endpoint = "http://127.0.0.1:8333"',
        "",
        "[[protect]]",
        'path = "/srv/app/*.db"',
        'backup = "on-write"',
        'recovery = "auto"',
        "```",
        "",
    ]
    return "\n".join(lines)


#: [testing]: settings only tests use (worker_stall_s), any setting allowed
_Testing = msgspec.defstruct(
    "Testing",
    [(name, typ | None, None) for name, typ, _, _ in SETTINGS],
    kw_only=True,
    forbid_unknown_fields=True,
)
#: the whole file
_File = msgspec.defstruct(
    "ConfigFile",
    [(name, typ | None, None) for name, typ, _, _ in SETTINGS]
    + [("state_dir", str | None, None), ("testing", _Testing | None, None)]
    + [
        (name, (list[schema] if many else schema) | None, None)  # type: ignore[valid-type]
        for name, many, schema in TABLES
    ],
    kw_only=True,
    forbid_unknown_fields=True,
)

_WANTED = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "true or false",
    "object": "a table",
    "array": "an array of tables",
}


def default_state_dir() -> Path:
    """``$FILETWIN_STATE_DIR``, else ``/var/lib/filetwin`` for root, else XDG state."""
    env = os.environ.get("FILETWIN_STATE_DIR")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/filetwin")
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "filetwin"


def default_config_file() -> Path:
    """Where the config is read when none is named (it need not exist):
    ``/etc/filetwin/filetwin.toml`` for root, else under ``$XDG_CONFIG_HOME``."""
    if os.geteuid() == 0:
        return Path("/etc/filetwin") / CONFIG_NAME
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(xdg) / "filetwin" / CONFIG_NAME


def _line_of(text: str, key: str, table: str | None, index: int | None = None) -> int | None:
    """The line number of ``key = ...`` (or the header ``[key]``) in ``text``,
    inside ``[table]`` (the ``index``-th ``[[table]]`` of an array of tables)
    when given; tomllib reports no positions, so the text is scanned."""
    current: str | None = None
    seen: dict[str, int] = {}
    key_re = re.compile(rf"""^\s*(?:{re.escape(key)}|"{re.escape(key)}"|'{re.escape(key)}')\s*=""")
    for number, line in enumerate(text.splitlines(), 1):
        header = re.match(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?", line)
        if header:
            current = header.group(1).strip("\"'")
            seen[current] = seen.get(current, -1) + 1
            if table is None and current == key:
                return number
            continue
        here = current == table and (index is None or seen.get(table or "") == index)
        if here and key_re.match(line):
            return number
    if table is not None and index is not None:
        # a missing key: name the table's own header line
        count = -1
        for number, line in enumerate(text.splitlines(), 1):
            if re.match(rf"^\s*\[\[\s*{re.escape(table)}\s*\]\]", line):
                count += 1
                if count == index:
                    return number
    return None


def _where(message: str) -> tuple[list[str], int | None]:
    """The keys of msgspec's `` - at `$.a[3].b` `` suffix, and the array index in it."""
    where = re.search(r" - at `\$((?:\.\w+|\[\d+\])*)`$", message)
    if not where:
        return [], None
    keys: list[str] = []
    index: int | None = None
    for name, number in re.findall(r"\.(\w+)|\[(\d+)\]", where.group(1)):
        if name:
            keys.append(name)
        else:
            index = int(number)
    return keys, index


def _schema_error(path: Path, text: str, values: dict[str, Any], e: Exception) -> UsageError:
    """msgspec's ValidationError as a message naming the key, its line and the fix."""
    message = str(e)
    keys, index = _where(message)
    table = keys[0] if len(keys) > 1 or (keys and index is not None) else None
    schemas = {name: schema for name, _, schema in TABLES}
    unknown = re.match(r"Object contains unknown field `([^`]+)`", message)
    if unknown:
        table = keys[-1] if keys else None
        key = unknown.group(1)
        line = _line_of(text, key, table, index)
        at = f", line {line}" if line else ""
        name = f"[{table}] {key}" if table else key
        known = (
            [f.name for f in msgspec.structs.fields(schemas[table])]
            if table in schemas
            else [n for n, _, _, _ in SETTINGS] + [n for n, _, _ in TABLES]
        )
        return UsageError(
            f"config file {path}{at}: unknown setting {name!r} (known: {', '.join(known)})"
        )
    missing = re.match(r"Object missing required field `([^`]+)`", message)
    if missing and keys:
        line = _line_of(text, missing.group(1), keys[0], index) if keys[0] else None
        at = f", line {line}" if line else ""
        return UsageError(
            f"config file {path}{at}: [[{keys[0]}]] needs {missing.group(1)!r}"
        )
    expected = re.match(r"Expected `([^`]+)`(?:, got `[^`]+`)?( [<>]=? -?[\d.]+)?", message)
    if expected and keys:
        value: Any = values
        for k in keys:
            if isinstance(value, list) and index is not None:
                value = value[index] if index < len(value) else None
            value = value.get(k) if isinstance(value, dict) else None
        wanted = expected.group(1).split(" | ")[0]
        wanted = _WANTED.get(wanted, wanted) + (expected.group(2) or "")
        line = _line_of(text, keys[-1], table, index)
        at = f" (line {line})" if line else ""
        if keys == ["testing"]:
            return UsageError(f"[testing] in the config file must be a table, not {value!r}{at}")
        name = f"[{table}] {keys[-1]}" if table in schemas else keys[-1]
        return UsageError(
            f"config setting {name} must be {wanted}, "
            f"not {value!r}{at} in {path}"
        )
    return UsageError(f"config file {path}: {message}")


@dataclass(frozen=True)
class Config:
    """Settings of one daemon and of the commands that talk to it.

    ``worker_stall_s`` is a test setting: every job's worker sleeps that long
    before working, so that the watchdog can be exercised on a real hang.
    """

    state_dir: Path
    repository: str = ""
    workers: int = 2
    coalesce_ms: int = 20
    default_keep: int = 50
    default_retries: int = 3
    timeout_floor_s: float = 30.0
    #: bytes per second assumed when scaling the default deadline to a file's size
    timeout_rate: float = 20 * 1024 * 1024
    retry_backoff_s: float = 0.5
    worker_stall_s: float = 0.0
    #: on-write: how long "batch" entries may hold acknowledged records unsynced
    journal_batch_window_s: float = 0.1
    #: on-write: fold the journal into a checkpoint version past either threshold
    checkpoint_bytes: int = 64 * 1024 * 1024
    checkpoint_records: int = 100_000
    #: on-write: the largest size a journal record may give a file (a record past it
    #: is refused): a file filetwin can still fold, back up and restore in time
    max_file_size: int = 64 * 1024**3
    #: on-write capture without the library: a burst ends after this much quiet
    capture_quiet_ms: int = 50
    #: how long after retention removed versions their chunks are collected
    gc_delay_s: float = 5.0
    #: seconds between scrubs (verify of every entry; auto entries are healed); 0: off
    scrub_interval_s: float = 0.0
    #: a shell command run for every event, given the event as JSON on stdin
    on_event: str = ""
    #: how a new repository is created (none, repokey, keyfile); an existing one
    #: keeps the mode it was created with
    encryption: str = "none"
    #: the config file these settings were read from (None: defaults only)
    config_file: Path | None = None
    #: ``[dashboard]``
    dashboard: DashboardSettings = DashboardSettings()
    #: ``[[replica]]`` tables, in the file's order
    replicas: tuple[ReplicaSettings, ...] = ()
    #: ``[[protect]]`` tables, in the file's order
    protect: tuple[ProtectSettings, ...] = ()

    @property
    def socket_path(self) -> Path:
        return self.state_dir / SOCKET_NAME

    @property
    def table_path(self) -> Path:
        return self.state_dir / TABLE_NAME

    @property
    def repository_location(self) -> str:
        return self.repository or str(self.state_dir / "repository")

    @property
    def journals_dir(self) -> Path:
        """One subdirectory per on-write entry (named by its entry key)."""
        return self.state_dir / "journals"

    @property
    def quarantine_dir(self) -> Path:
        """Where healing keeps the damaged copies of files it replaced."""
        return self.state_dir / "quarantine"

    @property
    def aside_dir(self) -> Path:
        """Where restore and heal keep replaced content they could not store."""
        return self.state_dir / "aside"

    @classmethod
    def load(
        cls, state_dir: str | Path | None = None, config_file: str | Path | None = None
    ) -> Config:
        """Build a Config from the config file; ``state_dir`` wins over the file's.

        ``config_file`` (else ``$FILETWIN_CONFIG``) must exist; without either,
        ``default_config_file()`` is read when it exists. UsageError names a
        missing or unreadable file, bad TOML, and an unknown key or a value of
        the wrong type with its line.
        """
        named = config_file if config_file is not None else os.environ.get("FILETWIN_CONFIG")
        path = Path(named) if named else default_config_file()
        values: dict[str, Any] = {}
        read: Path | None = None
        try:
            raw = path.read_bytes()
        except FileNotFoundError as e:
            if named:
                raise UsageError(f"config file {path} does not exist") from e
        except OSError as e:
            raise UsageError(f"cannot read config file {path}: {e.strerror}") from e
        else:
            read = path
            text = raw.decode("utf-8", "replace")
            try:
                values = tomllib.loads(text)
            except tomllib.TOMLDecodeError as e:
                raise UsageError(f"config file {path} is not valid TOML: {e}") from e
            try:
                decoded = msgspec.convert(values, _File, strict=True)
            except msgspec.ValidationError as e:
                raise _schema_error(path, text, values, e) from e
        kwargs: dict[str, Any] = {}
        if read is not None:
            kwargs = {n: v for n, v in msgspec.structs.asdict(decoded).items() if v is not None}
            if "replica" in kwargs:
                kwargs["replicas"] = tuple(kwargs.pop("replica"))
            if "protect" in kwargs:
                kwargs["protect"] = tuple(kwargs["protect"])
            testing = kwargs.pop("testing", None)
            if testing is not None:
                kwargs.update(
                    {n: v for n, v in msgspec.structs.asdict(testing).items() if v is not None}
                )
        raw_dir = state_dir if state_dir is not None else kwargs.get("state_dir")
        kwargs.pop("state_dir", None)
        sd = Path(str(raw_dir)).expanduser() if raw_dir else default_state_dir()
        cfg = cls(state_dir=sd.absolute(), config_file=read, **kwargs)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.encryption not in ENCRYPTION_MODES:
            raise UsageError(
                f"encryption must be one of {', '.join(ENCRYPTION_MODES)}, "
                f"not {self.encryption!r}"
            )
        if self.workers < 1 or self.workers > 64:
            raise UsageError(f"workers must be between 1 and 64, not {self.workers}")
        if self.coalesce_ms < 0 or self.coalesce_ms > 50:
            raise UsageError(f"coalesce_ms must be between 0 and 50, not {self.coalesce_ms}")
        if not 1 <= self.default_keep <= 100_000:
            raise UsageError(f"default_keep must be between 1 and 100000, not {self.default_keep}")
        if not 0 <= self.default_retries <= 100:
            raise UsageError(
                f"default_retries must be between 0 and 100, not {self.default_retries}"
            )
        for name in ("timeout_floor_s", "timeout_rate"):
            value = getattr(self, name)
            if not value > 0 or value == float("inf"):
                raise UsageError(f"{name} must be a positive number, not {value}")
        for name in (
            "journal_batch_window_s",
            "checkpoint_bytes",
            "checkpoint_records",
            "max_file_size",
        ):
            if not getattr(self, name) > 0:
                raise UsageError(f"{name} must be above 0, not {getattr(self, name)}")
        if not 0 <= self.capture_quiet_ms <= 10_000:
            raise UsageError(f"capture_quiet_ms must be 0 to 10000, not {self.capture_quiet_ms}")
        for name in ("retry_backoff_s", "worker_stall_s", "scrub_interval_s", "gc_delay_s"):
            value = getattr(self, name)
            if not 0 <= value < float("inf"):
                raise UsageError(f"{name} must be a number of seconds >= 0, not {value}")
        for r in self.replicas:
            if not 0.1 <= r.safety_pass_s < float("inf"):
                raise UsageError(
                    f"[[replica]] {r.name or r.location}: safety_pass_s must be a number of "
                    f"seconds >= 0.1, not {r.safety_pass_s}"
                )

    def ensure_state_dir(self) -> None:
        """Create the state directory (0700), or tighten an existing one to 0700.

        The state directory holds the table, the journals, the quarantine and
        the socket: only its owner may reach it. An existing one that belongs
        to another uid, or that is a symlink, is refused (PermissionDenied)
        rather than used: its owner could read or replace what we keep there.
        """
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.state_dir, flags)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise PermissionDenied(
                    f"state directory {self.state_dir} is a symbolic link or not a "
                    "directory; refusing to use it"
                ) from e
            raise
        try:
            st = os.fstat(fd)
            if st.st_uid != os.geteuid():
                raise PermissionDenied(
                    f"state directory {self.state_dir} belongs to uid {st.st_uid}, not to "
                    f"this user (uid {os.geteuid()}); refusing to use it"
                )
            if stat.S_IMODE(st.st_mode) != 0o700:
                os.fchmod(fd, 0o700)
        finally:
            os.close(fd)

