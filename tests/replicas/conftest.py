"""Fixtures of the replica tests: daemons whose config names ``[[replica]]`` tables."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Daemon

HOST = "host-a"


def replica_toml(location: str, name: str = "r1", **extra: Any) -> str:
    """A ``[[replica]]`` table."""
    lines = ["[[replica]]", f'location = "{location}"', f'name = "{name}"']
    lines += [
        f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"' for k, v in extra.items()
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture
def replica_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Daemon]]:
    """``make(tables, name=..., **top)``: a daemon whose config holds the top-level keys
    ``top`` and then the TOML ``tables``; its host name is ``HOST`` unless the
    environment says otherwise."""
    monkeypatch.setenv("FILETWIN_HOST", HOST)
    daemons: list[Daemon] = []

    def make(tables: str, name: str = "state", **top: Any) -> Daemon:
        d = Daemon(tmp_path / name, top)
        d.config_path.write_text(d.config_path.read_text() + tables)
        daemons.append(d)
        return d.start()

    yield make
    for d in daemons:
        if d.proc is not None:
            d.stop()
