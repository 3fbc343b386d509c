"""The library others embed: documented names, one exception per condition, typed
package, dependency ranges with a lock, and a client import without daemon deps."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import filetwin
from filetwin import Client, NotFound, WriteStream
from tests.helpers import Daemon

ROOT = Path(__file__).resolve().parents[2]


def test_importing_filetwin_loads_no_daemon_dependency() -> None:
    code = (
        "import filetwin, sys; "
        "print([m for m in ('aiohttp', 'rich', 'mfusepy') if m in sys.modules])"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_every_public_name_and_client_method_has_a_docstring() -> None:
    assert set(filetwin.__all__) <= set(dir(filetwin))
    missing = [n for n in filetwin.__all__ if not (getattr(filetwin, n).__doc__ or "").strip()]
    for cls in (Client, WriteStream):
        for name, member in inspect.getmembers(cls, inspect.isfunction):
            if not name.startswith("_") and not (member.__doc__ or "").strip():
                missing.append(f"{cls.__name__}.{name}")
    assert missing == []


def test_every_exception_is_exported() -> None:
    from filetwin.errors import ERROR_TYPES

    assert set(ERROR_TYPES) <= set(filetwin.__all__)
    for name in ("PermissionDenied", "RepositoryError", "StateError", "SourceError"):
        assert issubclass(getattr(filetwin, name), filetwin.FiletwinError)


def test_the_package_is_typed_and_ships_py_typed() -> None:
    assert (ROOT / "src" / "filetwin" / "py.typed").is_file()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["filetwin"]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_dependencies_are_ranges_pinned_by_the_lock() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        declared += extra
    exact = [d for d in declared if "==" in d]
    assert exact == [], "pin exact versions in requirements.lock (scripts/lock), not here"
    lock = {
        _name(line): line.split("==", 1)[1].split()[0]
        for line in (ROOT / "requirements.lock").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    unlocked = [d for d in declared if _name(d) not in lock]
    assert unlocked == [], f"run scripts/lock: {unlocked} are not in requirements.lock"
    assert "-c requirements.lock" in (ROOT / "scripts" / "venv").read_text()


CALLS: dict[str, Callable[[Client, Path], Any]] = {
    "status": lambda c, p: c.status(p),
    "history": lambda c, p: c.history(p),
    "update": lambda c, p: c.update(p, keep=3),
    "pause": lambda c, p: c.pause(p),
    "resume": lambda c, p: c.resume(p),
    "remove": lambda c, p: c.remove(p),
    "backup": lambda c, p: c.backup(p),
    "restore": lambda c, p: c.restore(p, to=p.with_name("never-written")),
    "request_recovery": lambda c, p: c.request_recovery(p),
    "verify": lambda c, p: c.verify(p),
    "notify_write": lambda c, p: c.notify_write(p, 0, b"x"),
    "notify_truncate": lambda c, p: c.notify_truncate(p, 0),
    "notify_close": lambda c, p: c.notify_close(p),
    "mark": lambda c, p: c.mark(p, "m"),
    "journal": lambda c, p: c.journal(p),
}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Any:
    d = Daemon(tmp_path_factory.mktemp("lib") / "state").start()
    try:
        yield d
    finally:
        d.stop()


@pytest.mark.parametrize("method", sorted(CALLS))
def test_not_protected_is_notfound_from_every_method(daemon: Daemon, method: str) -> None:
    ghost = daemon.state_dir.parent / "ghost.txt"
    ghost.write_text("never protected\n")
    with pytest.raises(NotFound) as info:
        CALLS[method](daemon.client, ghost)
    assert info.value.exit_code == 1
    assert not ghost.with_name("never-written").exists()
