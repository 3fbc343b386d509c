"""Shared fixtures: real daemons in temporary state directories."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Daemon


@pytest.fixture
def make_daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    daemons: list[Daemon] = []

    def make(name: str = "state", **config: Any) -> Daemon:
        d = Daemon(tmp_path / name, config)
        daemons.append(d)
        return d.start()

    yield make
    for d in daemons:
        if d.proc is not None:
            d.stop()


@pytest.fixture
def daemon(make_daemon: Callable[..., Daemon]) -> Daemon:
    return make_daemon()


@pytest.fixture
def files(tmp_path: Path) -> Path:
    d = tmp_path / "files"
    d.mkdir()
    return d


from tests.s3server import s3_env, s3_server  # noqa: E402, F401  (one SeaweedFS per session)

