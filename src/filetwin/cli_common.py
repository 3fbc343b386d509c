"""What every `filetwin` command shares: the state directory option, JSON
output, and the translation of filetwin errors into messages and exit codes."""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console

from .client import Client
from .config import Config
from .errors import FiletwinError

F = TypeVar("F", bound=Callable[..., Any])
# Pipes and files get wide tables rather than columns cut to 80 characters.
# File names are bytes: one that is not UTF-8 is printed as its own bytes, as ls
# does, never a UnicodeEncodeError (its str form holds surrogate escapes).
for _stream in (sys.stdout, sys.stderr):
    with contextlib.suppress(AttributeError, ValueError):
        _stream.reconfigure(errors="surrogateescape")  # type: ignore[union-attr]
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class Context:
    """What the global options chose: the state directory and the config file."""

    def __init__(self, state_dir: str | None = None) -> None:
        self.state_dir = state_dir
        self.config_file: str | None = None
        #: --timeout: how long a client call waits for the daemon (None: by kind)
        self.timeout: float | None = None
        self._config: Config | None = None

    def config(self) -> Config:
        """The one configuration every command reads (loaded once)."""
        if self._config is None:
            self._config = Config.load(state_dir=self.state_dir, config_file=self.config_file)
        return self._config

    def client(self, wait: float | None = None) -> Client:
        """A client of the daemon whose calls wait at most ``--timeout`` seconds,
        else ``wait`` (SHORT_WAIT for status-like calls, LONG_WAIT for calls that
        copy data; None: no bound, for the interceptor's long-lived client)."""
        return Client(
            socket_path=self.config().socket_path,
            timeout=self.timeout if self.timeout is not None else wait,
        )


#: default --timeout of calls that only read the table (status, history, events, ...)
SHORT_WAIT = 10.0
#: default --timeout of calls that copy data (add, backup, restore, verify, recover)
LONG_WAIT = 3600.0


def timeout_option(f: F) -> F:
    """``--timeout SECONDS``: how long to wait for the daemon's answer (exit 3 past it)."""

    def remember(ctx: click.Context, _param: click.Parameter, value: float | None) -> None:
        if value is not None:
            ctx.ensure_object(Context).timeout = value

    return click.option(
        "--timeout",
        type=click.FloatRange(0, min_open=True),
        expose_value=False,
        callback=remember,
        is_eager=True,
        envvar="FILETWIN_TIMEOUT",
        help=f"Seconds to wait for the daemon's answer before giving up with exit 3 "
        f"(default {SHORT_WAIT:g} for status-like calls, {LONG_WAIT:g} for add, backup, "
        "restore, verify and recover).",
    )(f)


def state_dir_option(f: F) -> F:
    """``--state-dir`` and ``--config`` on every command (they may also stand
    before the command)."""

    def remember(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        if value is not None:
            ctx.ensure_object(Context).state_dir = value

    def remember_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        if value is not None:
            ctx.ensure_object(Context).config_file = value

    f = click.option(
        "--config",
        type=click.Path(dir_okay=False),
        expose_value=False,
        callback=remember_config,
        is_eager=True,
        envvar="FILETWIN_CONFIG",
        help="Config file (TOML). Default: /etc/filetwin/filetwin.toml for root, "
        "~/.config/filetwin/filetwin.toml ($XDG_CONFIG_HOME) for a user, when it exists.",
    )(f)
    return click.option(
        "--state-dir",
        type=click.Path(file_okay=False),
        expose_value=False,
        callback=remember,
        is_eager=True,
        envvar="FILETWIN_STATE_DIR",
        help="State directory (table, socket, repository). Default: ~/.local/state/filetwin, "
        "or /var/lib/filetwin for root.",
    )(f)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(f)


def handle_errors(f: F) -> F:
    """Translate filetwin errors into a message on stderr and the contract's exit code."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except FiletwinError as e:
            err.print(f"filetwin: error: {e.message}", markup=False)
            sys.exit(e.exit_code)

    return wrapper  # type: ignore[return-value]


def ctx_obj() -> Context:
    return click.get_current_context().ensure_object(Context)


def emit_json(data: Any) -> None:
    """Indented for a person at a terminal; compact for scripts (100k entries)."""
    click.echo(json.dumps(data, indent=2 if sys.stdout.isatty() else None))
