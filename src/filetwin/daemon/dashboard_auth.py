"""The dashboard's gate: its token, the Host allow-list, CSRF tokens, Origin checks.

- The token is 32 random bytes (URL-safe base64) in ``STATE_DIR/dashboard.token``,
  mode 0600, made once and kept across restarts until someone deletes it.
  It is read and created relative to the state directory's descriptor, never
  following a symlink; a token file that is not a regular file of ours, or
  that others may read, is refused (the token would be known to them).
- A browser logs in once with ``?token=...``; the token then lives in an
  HttpOnly, SameSite=Strict cookie (named after the port: two daemons on one
  host do not overwrite each other's cookie).
- Every POST carries a CSRF token derived from the dashboard token and the
  browser session's nonce (HMAC-SHA256): per session, checked in constant
  time, and not stored anywhere, so it survives a daemon restart.
- Every request's Host must be ``127.0.0.1:PORT`` or ``localhost:PORT``: a
  page on another site that rebinds its DNS name to 127.0.0.1 is refused
  even when the browser holds the cookie.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import PermissionDenied, StateError

TOKEN_NAME = "dashboard.token"
#: characters a token may hold (secrets.token_urlsafe's alphabet)
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _read_token_at(dfd: int, where: Path) -> str | None:
    """The token in the directory ``dfd``; None when there is none yet."""
    try:
        fd = os.open(TOKEN_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise PermissionDenied(f"{where} is a symbolic link; delete it") from e
        raise StateError(f"cannot read the dashboard token {where}: {e}") from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            raise PermissionDenied(
                f"{where} is not a regular file of this user; delete it to get a new token"
            )
        if stat.S_IMODE(st.st_mode) & 0o077:
            raise PermissionDenied(
                f"{where} may be read by others (mode {stat.S_IMODE(st.st_mode):o}), so its "
                "token is no secret; delete it to get a new token"
            )
        text = os.read(fd, 256).decode("ascii", "replace").strip()
    finally:
        os.close(fd)
    if len(text) < 32 or not set(text) <= _TOKEN_CHARS:
        raise StateError(f"{where} does not hold a token; delete it to get a new one")
    return text


def load_or_create_token(state_dir: Path) -> str:
    """The dashboard's token, created (0600) when there is none.

    Creation is atomic: the token is written to a temporary name and linked to
    ``dashboard.token`` only if that name is still free, so a daemon and a
    ``filetwin dashboard`` racing both end with the same token.
    """
    where = state_dir / TOKEN_NAME
    try:
        dfd = os.open(state_dir, _DIR_FLAGS)
    except OSError as e:
        raise StateError(f"cannot open the state directory {state_dir}: {e}") from e
    try:
        found = _read_token_at(dfd, where)
        if found is not None:
            return found
        token = secrets.token_urlsafe(32)
        temp = f".{TOKEN_NAME}.{os.getpid()}.{secrets.token_hex(4)}"
        try:
            fd = os.open(
                temp,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=dfd,
            )
            try:
                os.fchmod(fd, 0o600)  # whatever the umask
                os.write(fd, (token + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            # Linked only if the name is free: when another process made it first,
            # its token is the one.
            with contextlib.suppress(FileExistsError):
                os.link(temp, TOKEN_NAME, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
            os.fsync(dfd)
        except OSError as e:
            raise StateError(f"cannot write the dashboard token {where}: {e}") from e
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=dfd)
        again = _read_token_at(dfd, where)
        if again is None:
            raise StateError(f"the dashboard token {where} vanished as it was made")
        return again
    finally:
        os.close(dfd)


def same_secret(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a presented secret with the expected one."""
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode())


def csrf_token(token: str, session: str) -> str:
    """The CSRF token of the browser session ``session`` (its nonce cookie)."""
    return hmac.new(token.encode(), b"csrf:" + session.encode(), hashlib.sha256).hexdigest()


def new_session() -> str:
    """A browser session's nonce, set as a cookie at login."""
    return secrets.token_urlsafe(18)


class Origins:
    """What the dashboard on ``port`` accepts as Host and as Origin."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.hosts = frozenset({f"127.0.0.1:{port}", f"localhost:{port}"})
        self.origins = frozenset(f"http://{h}" for h in self.hosts)

    def host_ok(self, host: str | None) -> bool:
        """Whether the Host header names this dashboard (DNS-rebinding defence)."""
        return host is not None and host.lower() in self.hosts

    def origin_ok(self, origin: str | None, referer: str | None) -> bool:
        """Whether a POST comes from one of the dashboard's own pages.

        The Origin header when the browser sends one, else the Referer's
        origin; a request with neither (or ``Origin: null``) is refused.
        """
        if origin:
            return origin.lower() in self.origins
        if referer:
            parts = urlsplit(referer)
            return f"{parts.scheme}://{parts.netloc}".lower() in self.origins
        return False

    def cookie_name(self) -> str:
        """The token cookie's name: one per port, since cookies ignore ports."""
        return f"filetwin_token_{self.port}"

    def session_cookie_name(self) -> str:
        return f"filetwin_session_{self.port}"
