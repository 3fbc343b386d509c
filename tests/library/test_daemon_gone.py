"""filetwin.open when the daemon is SIGKILLed while an application writes.

Every failure of the write stream's socket (reset, broken pipe, end of file
mid-ack) is DaemonUnavailable, here its subclass NotJournaled raised after
the write was made, or a JournalWarning; never a bare ConnectionResetError
or BrokenPipeError. Every write reaches the file either way.
"""

from __future__ import annotations

import signal
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

import filetwin
from filetwin import DaemonUnavailable, NotJournaled
from filetwin.fileobj import JournalWarning
from tests.helpers import Daemon, wait_until

RECORD = b"x" * 1000


def journaling(make_daemon: Callable[..., Daemon], files: Path) -> tuple[Daemon, Path]:
    daemon = make_daemon("state")
    f = files / "log.bin"
    f.write_bytes(b"")
    daemon.client.add(f, backup="on-write")
    wait_until(lambda: daemon.client.status(f)["last_version"], what="the first version")
    return daemon, f


@pytest.mark.parametrize("when", ["between-writes", "mid-stream"])
def test_a_killed_daemon_is_not_journaled_never_a_socket_error(
    make_daemon: Callable[..., Daemon], files: Path, when: str
) -> None:
    daemon, f = journaling(make_daemon, files)
    written = 0
    errors: list[BaseException] = []
    fh = filetwin.open(f, "ab", client=daemon.client, on_unjournaled="raise")
    if when == "between-writes":
        for _ in range(20):
            fh.write(RECORD)
            written += 1
        daemon.stop(signal.SIGKILL)
    else:
        # Killed by another thread while this one sends and awaits acks.
        killer = threading.Thread(
            target=lambda: (
                wait_until(lambda: written >= 20, what="writes before the kill"),
                daemon.stop(signal.SIGKILL),
            )
        )
        killer.start()
    while len(errors) < 3:  # until the loss was told, and told again
        try:
            fh.write(RECORD)
        except Exception as e:  # noqa: BLE001 - the type is what is tested
            errors.append(e)
        written += 1
        assert written < 1_000_000, "the daemon's death was never reported"
    if when == "mid-stream":
        killer.join(60)
    fh.close()
    assert all(isinstance(e, NotJournaled) for e in errors), [repr(e) for e in errors]
    assert all(isinstance(e, DaemonUnavailable) for e in errors)
    # NotJournaled comes after the write: every write is in the file.
    assert f.read_bytes() == RECORD * written


def test_a_killed_daemon_warns_once_and_writing_goes_on(
    make_daemon: Callable[..., Daemon], files: Path
) -> None:
    daemon, f = journaling(make_daemon, files)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with filetwin.open(f, "ab", client=daemon.client) as fh:
            fh.write(RECORD)
            daemon.stop(signal.SIGKILL)
            for _ in range(10):
                fh.write(RECORD)
    assert f.read_bytes() == RECORD * 11
    found = [w for w in caught if issubclass(w.category, JournalWarning)]
    assert len(found) == 1, [str(w.message) for w in caught]
    assert "was not journaled" in str(found[0].message)
