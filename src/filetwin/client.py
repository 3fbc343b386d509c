"""The client library: talk to the daemon's API over its Unix socket.

Used by applications (``filetwin.Client``) and by the CLI. Errors the daemon
reports come back as the same filetwin exceptions it raised; no daemon on the
socket is DaemonUnavailable (exit code 3).
"""

from __future__ import annotations

import base64
import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload
from urllib.parse import quote

from .config import Config
from .errors import DaemonUnavailable, FiletwinError, NotFound, UsageError, error_from
from .shapes import (
    AddResult,
    Entry,
    EntryChange,
    Event,
    Healed,
    Health,
    Journal,
    Reloaded,
    Removed,
    Restored,
    Seq,
    StatusSummary,
    Version,
)
from .unixsock import connect_unix, http_connection

if TYPE_CHECKING:
    import http.client


def _http_errors() -> tuple[type[BaseException], ...]:
    """What a broken exchange with the daemon raises (http.client is loaded by then)."""
    import http.client

    return (OSError, http.client.HTTPException)


def _abs(path: str | os.PathLike[str] | bytes) -> str:
    """An absolute path as ``str``; bytes that are not UTF-8 become surrogate escapes.

    The API carries such names as JSON strings with lone surrogates
    (``"caf\\udce9.txt"`` for b"caf\\xe9.txt"), which ``os`` functions turn back
    into the same bytes: the 'surrogateescape' round trip, as ``os.fsdecode``.
    """
    return os.path.abspath(os.fsdecode(path))


def query_string(params: dict[str, Any]) -> str:
    """``urlencode`` that keeps a path's bytes: surrogate escapes become the raw
    bytes they stand for, percent-escaped (the daemon decodes them back)."""
    return "&".join(
        f"{quote(str(k), safe='')}={quote(str(v).encode('utf-8', 'surrogateescape'), safe='')}"
        for k, v in params.items()
    )


class Client:
    """A connection to one daemon, named by its state directory.

    ``timeout`` bounds each request (None waits as long as the daemon works,
    which backup and restore of large files need); past it the call raises
    DaemonUnavailable naming the request it waited for. ``follow_events``
    applies it to the answer's start only, then waits for events as long as
    they take.
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str] | None = None,
        *,
        socket_path: str | os.PathLike[str] | None = None,
        timeout: float | None = None,
    ) -> None:
        if socket_path is None:
            socket_path = Config.load(
                state_dir=None if state_dir is None else os.fspath(state_dir)
            ).socket_path
        self.socket_path = str(socket_path)
        self.timeout = timeout

    # transport ---------------------------------------------------------
    def _open(self, method: str, url: str, payload: dict[str, Any] | None) -> Any:
        conn = http_connection(self.socket_path, self.timeout)
        data = None if payload is None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        try:
            conn.request(method, url, body=data, headers=headers)
            return conn, conn.getresponse()
        except TimeoutError as e:
            conn.close()
            raise self._timed_out(method, url) from e
        except (FileNotFoundError, ConnectionRefusedError) as e:
            conn.close()
            raise DaemonUnavailable(
                f"no filetwin daemon answers on {self.socket_path} "
                f"(start one with `{self._start_hint()}`)"
            ) from e
        except _http_errors() as e:
            conn.close()
            raise DaemonUnavailable(f"cannot talk to the daemon on {self.socket_path}: {e}") from e

    def _start_hint(self) -> str:
        """The command that starts a daemon on this socket's state directory."""
        from .config import default_state_dir

        state_dir = Path(self.socket_path).parent
        if state_dir.absolute() == default_state_dir().absolute():
            return "filetwin daemon"
        return f"filetwin --state-dir {state_dir} daemon"

    def _timed_out(self, method: str, url: str) -> DaemonUnavailable:
        """No answer within ``timeout``: say what was waited for, and for how long."""
        what = f"{method} {url.split('?', 1)[0]}"
        return DaemonUnavailable(
            f"the daemon on {self.socket_path} did not answer {what} within "
            f"{self.timeout:g} s (is it stopped or overloaded? --timeout SECONDS waits longer)"
        )

    def request(self, method: str, url: str, payload: dict[str, Any] | None = None) -> Any:
        """Send one request to the API (docs/api.md) and return its decoded JSON answer.

        An error answer raises the exception class it names, with its message;
        DaemonUnavailable when no daemon answers within ``timeout``.
        """
        response, raw = self._exchange(method, url, payload)
        try:
            data = json.loads(raw) if raw else None
        except json.JSONDecodeError as e:
            raise FiletwinError(
                f"the daemon answered something that is not JSON: {raw[:200]!r}"
            ) from e
        if response.status >= 400:
            err = data if isinstance(data, dict) else {}
            raise error_from(err.get("type"), str(err.get("error", f"HTTP {response.status}")))
        return data

    def _exchange(
        self, method: str, url: str, payload: dict[str, Any] | None = None
    ) -> tuple[http.client.HTTPResponse, bytes]:
        """One request: the response (status, headers) and its whole body, unparsed."""
        conn, response = self._open(method, url, payload)
        try:
            raw = response.read()
        except TimeoutError as e:
            raise self._timed_out(method, url) from e
        except _http_errors() as e:
            # The daemon went away mid-answer (killed, restarted): no daemon, not a bug.
            raise DaemonUnavailable(
                f"the daemon on {self.socket_path} went away while answering: {e!r}"
            ) from e
        finally:
            conn.close()
        return response, raw

    def _get(self, url: str, **query: Any) -> Any:
        params = {k: v for k, v in query.items() if v is not None}
        return self.request("GET", url + ("?" + query_string(params) if params else ""))

    # the API -----------------------------------------------------------
    # Every method below raises, besides what it names: DaemonUnavailable (no
    # daemon, or no answer within ``timeout``), UsageError (bad input: the
    # daemon's message names it) and FiletwinError subclasses the daemon
    # reports (JobFailed, RepositoryError, StateError, ...), each with the
    # daemon's message. Paths may be str, bytes or os.PathLike, relative to the
    # current directory; "not protected" is NotFound from every method.

    def ping(self) -> Health:
        """The daemon's health: ``{"ok": True, "pid", "state_dir"}``."""
        result: Health = self._get("/health")
        return result

    def add(
        self,
        *paths: str | os.PathLike[str] | bytes,
        backup: str | None = None,
        recovery: str | None = None,
        retries: int | None = None,
        timeout: float | None = None,
        keep: int | None = None,
        sync: str | None = None,
        keep_within: str | int | None = None,
        keep_hourly: int | None = None,
        keep_daily: int | None = None,
        keep_weekly: int | None = None,
        keep_monthly: int | None = None,
    ) -> AddResult:
        """Protect ``paths``, all or none; returns once every first version is stored.

        Options left None take the daemon's defaults (on-close, manual, its
        configured retries and keep). Returns ``{"entries", "messages",
        "failures"}``, the entries as in ``status``. Raises Conflict if a path is
        already protected, UsageError if one cannot be protected (not a regular
        file, a symlink's loop, a bad option): nothing is added then.
        """
        result: AddResult = self.request(
            "POST",
            "/add",
            {
                "paths": [_abs(p) for p in paths],
                "backup": backup,
                "recovery": recovery,
                "retries": retries,
                "timeout": timeout,
                "keep": keep,
                "sync": sync,
                # time-based retention beside keep: a duration (7d) or seconds; counts.
                # Sent only when given, so a daemon without these rules still adds.
                **{
                    k: v
                    for k, v in (
                        ("keep_within", keep_within),
                        ("keep_hourly", keep_hourly),
                        ("keep_daily", keep_daily),
                        ("keep_weekly", keep_weekly),
                        ("keep_monthly", keep_monthly),
                    )
                    if v is not None
                },
            },
        )
        return result

    def update(self, path: str | os.PathLike[str] | bytes, **policy: Any) -> EntryChange:
        """Change an entry's policy (``backup``, ``recovery``, ``retries``, ``timeout``,
        ``keep``, ``sync``); it takes effect at once.

        Returns ``{"entry", "message"}``. NotFound if ``path`` is not protected;
        UsageError for an unknown option, a bad value, or no option at all.
        """
        result: EntryChange = self.request("POST", "/update", {"path": _abs(path), **policy})
        return result

    def pause(self, path: str | os.PathLike[str] | bytes) -> EntryChange:
        """Stop watching ``path``, keeping its history; ``{"entry", "message"}``.
        NotFound if it is not protected."""
        result: EntryChange = self.request("POST", "/pause", {"path": _abs(path)})
        return result

    def resume(self, path: str | os.PathLike[str] | bytes) -> EntryChange:
        """Watch a paused ``path`` again; ``{"entry", "message"}``. NotFound if it is
        not protected."""
        result: EntryChange = self.request("POST", "/resume", {"path": _abs(path)})
        return result

    def remove(self, path: str | os.PathLike[str] | bytes, purge: bool = False) -> Removed:
        """Stop protecting ``path``; its history is kept unless ``purge``.

        Returns ``{"path", "removed", "purged", "message"}``. NotFound if it is
        not protected.
        """
        result: Removed = self.request(
            "POST", "/remove", {"path": _abs(path), "purge": purge}
        )
        return result

    @overload
    def status(self, path: None = None) -> list[Entry]: ...

    @overload
    def status(self, path: str | os.PathLike[str] | bytes) -> Entry: ...

    def status(
        self, path: str | os.PathLike[str] | bytes | None = None
    ) -> Entry | list[Entry]:
        """The management table: every entry (a list, by path), or ``path``'s entry.

        An entry is the ``status --json`` row (filetwin.shapes.Entry). NotFound
        if ``path`` is given and not protected.
        """
        if path is None:
            rows: list[Entry] = self._get("/status")
            return rows
        entry: Entry = self._get("/status", path=_abs(path))[0]
        return entry

    def status_page(
        self,
        *,
        state: str | None = None,
        failed: bool = False,
        prefix: str | os.PathLike[str] | bytes | None = None,
        source: str | None = None,
        offset: int | None = None,
        limit: int | None = None,
    ) -> tuple[bytes, int]:
        """The entries the filters match, in path order (``offset`` skipped, at most
        ``limit``), as the daemon's JSON array unparsed (a list of ``status``
        rows: pass it on or decode it), and how many matched in all.

        ``state``: one or several, comma-separated; ``failed``: only entries that
        need attention; ``prefix``: that entry and those under it; ``source``:
        ``config`` or ``cli``. UsageError names a bad filter.
        """
        params = {
            "state": state,
            "failed": "1" if failed else None,
            "prefix": None if prefix is None else _abs(prefix),
            "source": source,
            "offset": offset,
            "limit": limit,
        }
        url = "/status"
        given = {k: v for k, v in params.items() if v is not None}
        if given:
            url += "?" + query_string(given)
        response, raw = self._exchange("GET", url)
        if response.status >= 400:
            try:
                err = json.loads(raw)
            except ValueError:
                err = {}
            err = err if isinstance(err, dict) else {}
            raise error_from(err.get("type"), str(err.get("error", f"HTTP {response.status}")))
        total = response.getheader("X-Total-Count")
        return raw, int(total) if total and total.isdigit() else -1

    def status_summary(
        self,
        *,
        state: str | None = None,
        failed: bool = False,
        prefix: str | os.PathLike[str] | bytes | None = None,
        source: str | None = None,
    ) -> StatusSummary:
        """The entries the filters (as ``status_page``) match, counted:
        ``{"total", "states", "results", "attention"}``."""
        result: StatusSummary = self._get(
            "/status/summary",
            state=state,
            failed="1" if failed else None,
            prefix=None if prefix is None else _abs(prefix),
            source=source,
        )
        return result

    def reload(self) -> Reloaded:
        """Re-read the config's ``[[protect]]`` tables and apply them (``filetwin
        reload``): ``{"added", "updated", "removed", "unchanged", "notes",
        "failures", "message", "config_file"}``. UsageError naming the config file
        and line if any table is bad; nothing is changed then."""
        result: Reloaded = self.request("POST", "/reload", {})
        return result

    def backup(self, path: str | os.PathLike[str] | bytes) -> Version:
        """Take a version of ``path`` now; returns it once stored (a ``history`` item).

        NotFound if ``path`` is not protected, UsageError if it is paused,
        JobFailed/JobTimeout if the copy failed after its retries.
        """
        result: Version = self.request("POST", "/backup", {"path": _abs(path)})
        return result

    def history(self, path: str | os.PathLike[str] | bytes) -> list[Version]:
        """The versions of ``path``, oldest first (as ``history --json``).

        A removed entry's history is still answered. A path that is not
        protected and has no history raises NotFound, as every other method
        does for it (older daemons answer it as bad usage).
        """
        try:
            result: list[Version] = self._get("/history", path=_abs(path))
        except UsageError as e:
            if "is not protected" in e.message:
                raise NotFound(e.message) from e
            raise
        return result

    def restore(
        self,
        path: str | os.PathLike[str] | bytes,
        at: str | float | None = None,
        version: str | None = None,
        to: str | os.PathLike[str] | bytes | None = None,
    ) -> Restored:
        """Rebuild ``path`` as it was: the newest version, ``version`` (an id or a
        4+ hex prefix), or the moment ``at`` (ISO 8601 or Unix seconds, ``seq:N``,
        ``mark:NAME``; on-write entries replay their journal to it).

        Without ``to`` the file is replaced in place and the replaced content is
        kept as a version (``kept_version``); with ``to`` it is written there.
        Returns what was rebuilt (filetwin.shapes.Restored). NotFound for a path
        with no history or no such version/moment; UsageError for both ``at`` and
        ``version`` or a bad moment; UnsafePath if a symlink stands where it
        would write; RestoreError if the content cannot be rebuilt exactly.
        """
        result: Restored = self.request(
            "POST",
            "/restore",
            {
                "path": _abs(path),
                "at": at,
                "version": version,
                "to": None if to is None else _abs(to),
            },
        )
        return result

    def events(
        self,
        path: str | os.PathLike[str] | bytes | None = None,
        after: int = 0,
        limit: int | None = None,
    ) -> list[Event]:
        """The event log, oldest first: events after id ``after``, of ``path`` only
        when given, the newest ``limit`` when given."""
        result: list[Event] = self._get(
            "/events", path=None if path is None else _abs(path), after=after, limit=limit
        )
        return result

    def follow_events(
        self, path: str | os.PathLike[str] | bytes | None = None, limit: int | None = None
    ) -> Iterator[Event]:
        """Yield events as they happen (first the last ``limit`` ones), until closed.

        ``timeout`` bounds the answer's start only. DaemonUnavailable if the
        daemon goes away while following.
        """
        params = {"follow": "1"}
        if path is not None:
            params["path"] = _abs(path)
        if limit is not None:
            params["limit"] = str(limit)
        conn, response = self._open("GET", "/events?" + query_string(params), None)
        try:
            if response.status >= 400:
                raw = response.read()
                try:
                    err = json.loads(raw)
                except ValueError:
                    err = None
                if not isinstance(err, dict):
                    raise FiletwinError(raw.decode(errors="replace"))
                raise error_from(err.get("type"), str(err.get("error", raw[:200])))
            if conn.sock is not None:
                conn.sock.settimeout(None)  # events come when they happen
            try:
                for line in response:
                    if line.strip():
                        yield json.loads(line)
            except _http_errors() as e:
                raise DaemonUnavailable(
                    f"the daemon on {self.socket_path} went away while following events: {e!r}"
                ) from e
        finally:
            conn.close()

    # healing -----------------------------------------------------------
    def request_recovery(
        self,
        path: str | os.PathLike[str] | bytes,
        reason: str | None = None,
        trigger: Literal["notify", "auto"] = "notify",
    ) -> Healed:
        """Ask the daemon to heal ``path`` now; returns the heal's result.

        ``healed`` is False (with ``status`` and ``message``) when the file
        verifies clean or is newer than its newest state: nothing acknowledged
        is ever rolled back. Refused (Conflict) for a manual entry: its policy
        reserves recovery for a person. ``trigger="auto"`` reports an error the
        caller met (EIO), which only auto entries act on. NotFound if ``path``
        is not protected.
        """
        result: Healed = self.request(
            "POST", "/recover", {"path": _abs(path), "reason": reason, "trigger": trigger}
        )
        return result

    def verify(self, path: str | os.PathLike[str] | bytes | None = None) -> list[dict[str, Any]]:
        """Compare live files (every entry not paused, or ``path``) with their newest
        state; one report per entry (``status`` ok, changed, missing, corrupt,
        error); corrupt ``auto`` entries are healed. NotFound if ``path`` is given
        and not protected."""
        result: list[dict[str, Any]] = self.request(
            "POST", "/verify", {"path": None if path is None else _abs(path)}
        )
        return result

    # on-write: report writes, closes and marks ----------------------------
    # Each returns the record's sequence number once it is as durable as the
    # entry's sync mode promises. UsageError for an entry that is not on-write
    # (or paused), NotFound for one not protected, StateError if the journal
    # could not be written (nothing was recorded).
    def notify_write(self, path: str | os.PathLike[str] | bytes, offset: int, data: bytes) -> int:
        """Journal a write of ``data`` at ``offset``; returns its sequence number."""
        result: Seq = self.request(
            "POST",
            "/write",
            {"path": _abs(path), "offset": offset, "data": base64.b64encode(data).decode()},
        )
        return int(result["seq"])

    def notify_truncate(self, path: str | os.PathLike[str] | bytes, length: int) -> int:
        """Journal a truncate to ``length`` bytes; returns its sequence number."""
        result: Seq = self.request("POST", "/truncate", {"path": _abs(path), "length": length})
        return int(result["seq"])

    def notify_close(self, path: str | os.PathLike[str] | bytes, ok: bool = True) -> int:
        """Report a close and whether it succeeded; returns its sequence number.

        On-write: journaled, and a good close makes a checkpoint. On-close: not
        journaled (0), but a failed close is an event and what it left is never
        stored as a version; a failed close heals an auto entry.
        """
        result: Seq = self.request("POST", "/close", {"path": _abs(path), "ok": ok})
        return int(result["seq"])

    def mark(self, path: str | os.PathLike[str] | bytes, name: str) -> int:
        """Name the current moment (restore it with ``at="mark:NAME"``); returns its seq."""
        result: Seq = self.request("POST", "/mark", {"path": _abs(path), "name": name})
        return int(result["seq"])

    def journal(self, path: str | os.PathLike[str] | bytes) -> Journal:
        """The journal of on-write ``path``: span of records, closes, marks, torn tail."""
        result: Journal = self._get("/journal", path=_abs(path))
        return result

    def open_stream(self, path: str | os.PathLike[str] | bytes) -> WriteStream:
        """A WriteStream of ``path``'s records on STATE_DIR/journal.sock (docs/api.md),
        for busy writers. DaemonUnavailable if no daemon serves it; the daemon's
        refusal (not protected, not on-write) as its exception."""
        return WriteStream(
            os.path.join(os.path.dirname(self.socket_path), "journal.sock"),
            _abs(path),
            self.timeout,
        )


FRAME = struct.Struct("<BQI")
ACK = struct.Struct("<BQ")
FRAME_KINDS = {"write": 1, "truncate": 2, "close-ok": 3, "close-failed": 4, "mark": 5}


class WriteStream:
    """Records sent over the daemon's write stream; each ``send`` waits for its ack."""

    def __init__(self, socket_path: str, path: str, timeout: float | None) -> None:
        self.path = path
        try:
            self.sock = connect_unix(socket_path, timeout)
        except OSError as e:
            raise DaemonUnavailable(f"no filetwin write stream on {socket_path}: {e}") from e
        self._file = self.sock.makefile("rb")
        try:
            self.sock.sendall(json.dumps({"path": path}).encode() + b"\n")
            line = self._file.readline()
            hello = json.loads(line) if line else {}
        except (OSError, ValueError) as e:
            # Reset, broken pipe or a torn hello: the daemon went away.
            self.close()
            raise DaemonUnavailable(f"the write stream on {socket_path} broke: {e!r}") from e
        if not isinstance(hello, dict) or not hello:
            self.close()
            raise DaemonUnavailable(f"the daemon closed the write stream on {socket_path}")
        if not hello.get("ok"):
            self.close()
            raise error_from(
                hello.get("type"), str(hello.get("error", "the daemon refused the write stream"))
            )
        self.sync_mode: str = hello["sync"]
        self.last_seq: int = hello["seq"]
        self.outstanding = 0
        #: records a pipelining writer may have in flight
        self.window = 256

    def send(self, kind: str, offset: int = 0, payload: bytes = b"") -> int:
        """Send one record and return its seq once the daemon has made it durable."""
        self.send_nowait(kind, offset, payload)
        return self.collect()

    def send_nowait(self, kind: str, offset: int = 0, payload: bytes = b"") -> None:
        """Send one record without waiting for its ack (collect() waits for them).

        At most ``window`` records are outstanding: past it, the oldest ack is
        awaited first, so a pipelining writer is never far ahead of the journal.
        """
        if self.outstanding >= self.window:
            self._read_ack()
        head = FRAME.pack(FRAME_KINDS[kind], offset, len(payload))
        try:
            sent = self.sock.sendmsg([head, payload]) if payload else self.sock.send(head)
            if sent < len(head) + len(payload):
                self.sock.sendall((head + payload)[sent:])
        except OSError as e:
            raise DaemonUnavailable(f"the write stream of {self.path} broke: {e}") from e
        self.outstanding += 1

    def collect(self) -> int:
        """Wait for every outstanding ack; return the last seq."""
        while self.outstanding:
            self._read_ack()
        return self.last_seq

    def _read_ack(self) -> None:
        try:
            raw = self._file.read(ACK.size)
        except OSError as e:
            raise DaemonUnavailable(f"the write stream of {self.path} broke: {e}") from e
        if len(raw) < ACK.size:
            raise DaemonUnavailable(f"the daemon closed the write stream of {self.path}")
        status, seq = ACK.unpack(raw)
        self.outstanding -= 1
        if status != 0:
            self.outstanding = 0
            try:
                head = self._file.read(4)
                message = self._file.read(struct.unpack("<I", head)[0]) if len(head) == 4 else b""
            except OSError as e:
                raise DaemonUnavailable(f"the write stream of {self.path} broke: {e}") from e
            raise FiletwinError(message.decode(errors="replace") or "the daemon refused a record")
        self.last_seq = int(seq)

    def close(self) -> None:
        """Close the stream; records nothing (send a close frame for a close)."""
        self._file.close()
        self.sock.close()


def state_dir_of(client: Client) -> Path:
    """The state directory ``client`` talks to (its socket's directory)."""
    return Path(client.socket_path).parent
