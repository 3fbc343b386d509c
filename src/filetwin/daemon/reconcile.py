"""Files named in the config: ``[[protect]]`` tables reconciled with the table.

At start and on ``filetwin reload`` (``POST /reload``) or SIGHUP, the daemon
re-reads the config file it was started with and makes the entries it
names (``source`` = ``config``) match it:

- a file named and not yet protected is added (its first version taken);
- a config entry whose policy differs is updated to the config's policy;
- a config entry no longer named is removed, its history kept (``remove``
  without ``--purge``).

Rules (docs/protect.md says them for users):

- ``path`` is an absolute path or a glob (``*``, ``?``, ``[...]``, ``**``),
  expanded at each reconcile only: a file that appears later under a glob is
  protected at the next ``reload`` (or restart). A glob's matches are regular
  files reached through no symbolic link; a literal path that is a symbolic
  link protects its target, as ``filetwin add`` does.
- A glob that matches nothing, or a literal path that does not exist (yet),
  is reported, not an error.
- An entry added from the CLI is never changed or removed by a reconcile,
  even when the config names its file too (reported): the hand-made entry
  wins until it is removed by hand, then the config adopts the file.
- A file several tables name takes the first table's policy (reported).
- Any bad table (a relative path, a bad policy value, a config that does not
  parse) makes the whole reconcile change nothing; the error names the config
  file and line, and the running daemon keeps its entries.
"""

from __future__ import annotations

import asyncio
import dataclasses
import glob
import logging
import os
import stat
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from ..config import Config, ProtectSettings, _line_of
from ..errors import FiletwinError, UsageError
from ..policy import POLICY_FIELDS, Policy
from ..table import Table
from .entrypaths import check_path, resolve_new_paths

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger("filetwin.reconcile")


@dataclass
class Plan:
    """What a reconcile would do; built without changing anything."""

    config_file: str
    #: path → (policy, config line) of every file the config names
    wanted: dict[str, tuple[Policy, int | None]] = field(default_factory=dict)
    add: list[str] = field(default_factory=list)
    update: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    """The answer of a reconcile (``POST /reload``)."""

    config_file: str
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["message"] = (
            f"reloaded {self.config_file}: {len(self.added)} added, {len(self.updated)} updated, "
            f"{len(self.removed)} removed, {self.unchanged} unchanged"
            + (f", {len(self.failures)} failed" if self.failures else "")
        )
        return out


def read_config(running: Config) -> tuple[Config, str]:
    """The config file the daemon was started with, read again (UsageError naming
    the key and line when it does not parse), and its text."""
    named = running.config_file
    fresh = Config.load(state_dir=running.state_dir, config_file=named)
    text = ""
    if fresh.config_file is not None:
        try:
            text = fresh.config_file.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            raise UsageError(f"cannot read config file {fresh.config_file}: {e.strerror}") from e
    return fresh, text


def _where(config_file: str, text: str, index: int) -> tuple[int | None, str]:
    line = _line_of(text, "path", "protect", index)
    return line, f"config file {config_file}" + (f", line {line}" if line else "")


def _policy(table: ProtectSettings, defaults: Policy, where: str) -> Policy:
    changes = {
        name: getattr(table, name)
        for name in table.__struct_fields__
        if name != "path" and name in POLICY_FIELDS
    }
    try:
        return defaults.updated(changes)
    except UsageError as e:
        raise UsageError(f"{where}: [[protect]] path = {table.path!r}: {e}") from None


def _matches(pattern: str) -> tuple[list[str], list[str]]:
    """A glob's regular files reached through no symbolic link, and notes on the rest."""
    found: list[str] = []
    notes: list[str] = []
    for match in sorted(glob.glob(pattern, recursive=True)):
        norm = os.path.normpath(match)
        try:
            st = os.lstat(norm)
        except OSError:
            continue  # gone since it was listed
        if not stat.S_ISREG(st.st_mode):
            if stat.S_ISLNK(st.st_mode):
                notes.append(f"{norm} (matched by {pattern}) is a symbolic link: not followed")
            continue
        if os.path.realpath(norm) != norm:
            notes.append(
                f"{norm} (matched by {pattern}) is reached through a symbolic link: skipped"
            )
            continue
        found.append(norm)
    return found, notes


def plan(running: Config, fresh: Config, text: str, rows: dict[str, dict[str, Any]]) -> Plan:
    """Expand and check every ``[[protect]]`` table of ``fresh`` and compare with
    ``rows``, the table's entries (path → row). Changes nothing; UsageError naming
    the config file and line for a bad table. Blocking (glob, lstat, realpath):
    run it in a thread."""
    name = str(fresh.config_file) if fresh.config_file else "(no config file)"
    result = Plan(name)
    defaults = Policy(retries=running.default_retries, keep=running.default_keep)
    for index, item in enumerate(fresh.protect):
        line, where = _where(name, text, index)
        policy = _policy(item, defaults, where)
        try:
            check_path(item.path)
        except UsageError as e:
            raise UsageError(f"{where}: [[protect]] path: {e}") from None
        if glob.has_magic(item.path):
            paths, notes = _matches(item.path)
            result.notes += notes
            if not paths:
                result.notes.append(f"{where}: {item.path} matches no file (yet)")
        elif not os.path.lexists(item.path):
            paths = []
            result.notes.append(f"{where}: {item.path} does not exist (yet)")
        else:
            try:
                paths, notes = resolve_new_paths([item.path])
            except UsageError as e:
                raise UsageError(f"{where}: [[protect]] path: {e}") from None
            result.notes += notes
        for path in paths:
            if path in result.wanted:
                first = result.wanted[path][1]
                result.notes.append(
                    f"{where}: {path} is also named at line {first}; the first table's policy "
                    "applies"
                )
                continue
            result.wanted[path] = (policy, line)
    for path, (policy, _line) in result.wanted.items():
        row = rows.get(path)
        if row is None:
            result.add.append(path)
        elif row.get("source") != "config":
            result.notes.append(
                f"{path} was added from the command line: the config does not change it "
                "(`filetwin remove` it to let the config manage it)"
            )
        elif Table.policy_of(row) != policy:
            result.update.append(path)
    result.remove = sorted(
        p for p, row in rows.items() if row.get("source") == "config" and p not in result.wanted
    )
    return result


class Reconciler:
    """Runs one reconcile at a time against the engine (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = asyncio.Lock()

    async def reconcile(self, quiet: bool = False) -> Outcome:
        """Re-read the config and apply its ``[[protect]]`` tables; UsageError (nothing
        changed) when the config or any table is bad. ``quiet``: no event when
        there was nothing to do (the start of a daemon whose config names no files)."""
        async with self._lock:
            running = self.engine.config
            fresh, text = await asyncio.to_thread(read_config, running)
            rows = {r["path"]: r for r in self.engine.table.all()}
            the_plan = await asyncio.to_thread(plan, running, fresh, text, rows)
            outcome = Outcome(the_plan.config_file, notes=list(the_plan.notes))
            if _other_settings_changed(running, fresh):
                outcome.notes.append(
                    "settings other than [[protect]] changed in the config; they take "
                    "effect when the daemon restarts"
                )
            await self._apply(the_plan, outcome)
            outcome.unchanged = len(the_plan.wanted) - len(the_plan.add) - len(the_plan.update)
            idle = not (the_plan.wanted or the_plan.remove or outcome.failures or outcome.notes)
            if not (quiet and idle):
                self.engine.emit(
                    None, "reload", not outcome.failures, outcome.to_json()["message"]
                )
            return outcome

    async def _apply(self, the_plan: Plan, outcome: Outcome) -> None:
        engine = self.engine
        for path in the_plan.remove:
            try:
                await engine.change(path, "delete", purge=0)
                outcome.removed.append(path)
            except FiletwinError as e:
                outcome.failures.append(f"{path}: {e}")
        for path in the_plan.update:
            policy = the_plan.wanted[path][0]
            try:
                await engine.change(path, "update", **policy.table_fields())
                outcome.updated.append(path)
            except FiletwinError as e:
                outcome.failures.append(f"{path}: {e}")
        # One add per policy: first versions run side by side; a group that fails
        # as a whole (a file vanished meanwhile) is added file by file.
        groups: dict[Policy, list[str]] = {}
        for path in the_plan.add:
            groups.setdefault(the_plan.wanted[path][0], []).append(path)
        for policy, paths in groups.items():
            try:
                result = await engine.add(paths, policy, source="config")
            except FiletwinError:
                for path in paths:
                    try:
                        result = await engine.add([path], policy, source="config")
                    except FiletwinError as e:
                        outcome.failures.append(f"{path}: {e}")
                    else:
                        outcome.added.append(path)
                        outcome.failures += result.get("failures", [])
            else:
                outcome.added += paths
                outcome.failures += result.get("failures", [])

    async def reconcile_logged(self, why: str) -> None:
        """A reconcile whose result goes to the log and the event log (start, SIGHUP)."""
        try:
            outcome = await self.reconcile(quiet=why == "start")
        except FiletwinError as e:
            log.error("%s: the config's [[protect]] entries were not applied: %s", why, e)
            self.engine.emit(None, "reload", False, f"{why}: nothing changed: {e}")
            return
        log.info("%s: %s", why, outcome.to_json()["message"])
        for note in outcome.notes:
            log.info("%s: %s", why, note)
        for failure in outcome.failures:
            log.warning("%s: %s", why, failure)

    def routes(self) -> list[web.RouteDef]:
        """``POST /reload``: reconcile now; the answer says what changed."""

        async def reload(request: web.Request) -> web.Response:
            raw = await request.read()
            if raw.strip() not in (b"", b"{}"):
                raise UsageError("POST /reload takes no body (or {})")
            outcome = await self.reconcile()
            return web.json_response(outcome.to_json())

        return [web.post("/reload", reload)]


def _other_settings_changed(running: Config, fresh: Config) -> bool:
    def settings(c: Config) -> dict[str, Any]:
        values = {f.name: getattr(c, f.name) for f in dataclasses.fields(c)}
        for name in ("protect", "config_file", "state_dir"):
            values.pop(name, None)
        return {
            k: msgspec.to_builtins(v) if isinstance(v, msgspec.Struct) else v
            for k, v in values.items()
        }

    return settings(running) != settings(fresh)
