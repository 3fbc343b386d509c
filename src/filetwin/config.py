"""Paths and settings: the state directory, the socket, the repository.

Everything a component needs is handed to it through a ``Config``; nothing
reads the environment or the home directory after ``Config.load``.
"""

from __future__ import annotations

import errno
import os
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import PermissionDenied, UsageError

SOCKET_NAME = "filetwin.sock"
TABLE_NAME = "table.sqlite"


def default_state_dir() -> Path:
    """``$FILETWIN_STATE_DIR``, else ``/var/lib/filetwin`` for root, else XDG state."""
    env = os.environ.get("FILETWIN_STATE_DIR")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/filetwin")
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "filetwin"


def _check_type(key: str, value: object, declared: object) -> None:
    """A config value of the wrong TOML type is a usage error, not a crash later."""
    if declared in ("int", int):
        ok = isinstance(value, int) and not isinstance(value, bool)
        wanted = "an integer"
    elif declared in ("float", float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        wanted = "a number"
    elif declared in ("str", str):
        ok = isinstance(value, str)
        wanted = "a string"
    else:
        return
    if not ok:
        raise UsageError(f"config setting {key} must be {wanted}, not {value!r}")


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
    extra: dict[str, object] = field(default_factory=dict)

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
        """Build a Config from an optional TOML file; ``state_dir`` wins over the file."""
        values: dict[str, object] = {}
        if config_file is not None:
            path = Path(config_file)
            try:
                with path.open("rb") as fh:
                    values = tomllib.load(fh)
            except FileNotFoundError as e:
                raise UsageError(f"config file {path} does not exist") from e
            except tomllib.TOMLDecodeError as e:
                raise UsageError(f"config file {path} is not valid TOML: {e}") from e
            except OSError as e:
                raise UsageError(f"cannot read config file {path}: {e.strerror}") from e
        known = {f for f in cls.__dataclass_fields__ if f not in ("state_dir", "extra")}
        kwargs: dict[str, object] = {}
        extra: dict[str, object] = {}
        for key, value in values.items():
            if key in known:
                kwargs[key] = value
            elif key not in ("state_dir", "testing"):
                extra[key] = value
        testing = values.get("testing")
        if testing is not None and not isinstance(testing, dict):
            raise UsageError(f"[testing] in the config file must be a table, not {testing!r}")
        if isinstance(testing, dict):
            # [testing] holds settings only tests use, such as worker_stall_s.
            kwargs.update({k: v for k, v in testing.items() if k in known})
        for key, value in kwargs.items():
            _check_type(key, value, cls.__dataclass_fields__[key].type)
        raw_dir = state_dir if state_dir is not None else values.get("state_dir")
        sd = Path(str(raw_dir)).expanduser() if raw_dir else default_state_dir()
        cfg = cls(state_dir=sd.absolute(), extra=extra, **kwargs)  # type: ignore[arg-type]
        cfg.validate()
        return cfg

    def validate(self) -> None:
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
