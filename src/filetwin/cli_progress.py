"""Progress of long operations, on a terminal only.

A person at a terminal sees a rich progress display (bytes, speed, ETA)
while ``add``, ``restore``, ``verify`` and ``check --read-data`` work; a pipe,
a file or ``--json`` gets exactly the output it got before, nothing more.
The daemon does the work: the CLI runs the request in a thread and polls
what it can see meanwhile (events, the file being written).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .cli_common import out

if TYPE_CHECKING:
    # Imported where a display is made: rich.progress takes ~25 ms to import,
    # which a command printing no progress (no terminal, --json) need not pay.
    from rich.progress import Progress, ProgressColumn

T = TypeVar("T")
#: how often the display polls what the daemon did (seconds)
POLL_S = 0.2


def wanted(as_json: bool = False) -> bool:
    """Whether to show progress: standard output is a terminal and no JSON was asked."""
    return not as_json and out.is_terminal


def bytes_progress() -> Progress:
    """A bar with bytes done of the total, speed and ETA (a spinner while the
    total is unknown)."""
    from rich.progress import DownloadColumn, Progress

    return Progress(*_columns(DownloadColumn()), console=out, transient=False)


def count_progress() -> Progress:
    """A bar with items done of the total and ETA."""
    from rich.progress import MofNCompleteColumn, Progress

    return Progress(*_columns(MofNCompleteColumn()), console=out, transient=False)


def _columns(amount: ProgressColumn) -> list[ProgressColumn]:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return [
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        amount,
        TransferSpeedColumn() if isinstance(amount, DownloadColumn) else TextColumn(""),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]


def run_polling(work: Callable[[], T], poll: Callable[[], None]) -> T:
    """Run ``work()`` in a thread; call ``poll()`` every POLL_S until it ends.

    Returns what ``work`` returned, or raises what it raised. A Ctrl-C reaches
    the caller at once (the request thread is abandoned with the process).
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = work()
        except BaseException as e:  # handed to the caller's thread
            box["error"] = e

    thread = threading.Thread(target=target, name="filetwin request", daemon=True)
    thread.start()
    while True:
        thread.join(POLL_S)
        alive = thread.is_alive()
        # Progress is best effort: a failed look never fails the command.
        with contextlib.suppress(Exception):
            poll()
        if not alive:
            break
    if "error" in box:
        raise box["error"]
    result: T = box["result"]
    return result


def file_sizes(paths: tuple[str, ...]) -> dict[str, int]:
    """The size of each path that can be stat'ed (symlinks followed, as add does)."""
    sizes = {}
    for p in paths:
        try:
            sizes[os.path.realpath(p)] = os.stat(p).st_size
        except OSError:
            continue
    return sizes


def bytes_being_written(target: str) -> int | None:
    """The size of the temporary file a restore writes beside ``target``
    (``.NAME.filetwin-XXXX``), or None when there is none."""
    directory, name = os.path.split(target)
    prefix = f".{name}.filetwin-"
    try:
        with os.scandir(directory or ".") as it:
            sizes = [e.stat(follow_symlinks=False).st_size for e in it if e.name.startswith(prefix)]
    except OSError:
        return None
    return max(sizes) if sizes else None
