"""`filetwin init`, `filetwin key` and the offline commands on encrypted repositories.

Repositories made here by the API use ``crypto.CHEAP_KDF`` (the CLI reads the
KDF parameters from the key object), so unlocking costs nothing; only `init`
itself derives with the real Argon2id parameters.
"""

from __future__ import annotations

import json
import os
import pty
import select
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from filetwin.backends import LocalBackend
from filetwin.repo import Repository
from filetwin.repo import format as fmt
from filetwin.repo.crypto import CHEAP_KDF
from tests.repo.v2kit import PASSPHRASE, content, store, tree

OTHER = "another passphrase entirely"


def cli(
    state: Path, *args: str, env: dict[str, str] | None = None, config: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The CLI with exactly the FILETWIN_* variables given in ``env``."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("FILETWIN_")}
    full.update(env or {})
    head = ["--state-dir", str(state)] + (["--config", str(config)] if config else [])
    return subprocess.run(
        [sys.executable, "-m", "filetwin", *head, *args],
        capture_output=True,
        text=True,
        env=full,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def pw(value: str = PASSPHRASE) -> dict[str, str]:
    return {"FILETWIN_PASSWORD": value}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    c = tmp_path / "filetwin.toml"
    c.write_text("")  # no config of this machine's user is read
    return c


# -- init --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["none", "repokey", "keyfile"])
def test_init_creates_the_repository(tmp_path: Path, config: Path, mode: str) -> None:
    state = tmp_path / "state"
    r = cli(state, "init", "--encryption", mode, "--json", env=pw(), config=config)
    assert r.returncode == 0, r.stderr
    made = json.loads(r.stdout)
    loc = state / "repository"
    assert made["location"] == str(loc) and made["encryption"] == mode
    doc = json.loads((loc / "config").read_text())
    assert doc == {"version": 2, "id": made["id"], "encryption": mode}
    assert (loc / "keys" / "repokey").exists() == (mode == "repokey")
    if mode == "keyfile":
        key = state / "keys" / f"{made['id']}.key"
        assert made["key_file"] == str(key)
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
        assert json.loads(key.read_text())["mode"] == "keyfile"
    # The repository opens (and is empty): check says so.
    r = cli(state, "check", env=pw(), config=config)
    assert r.returncode == 0 and "healthy" in r.stdout, r.stderr


def test_init_says_what_to_keep_safe(tmp_path: Path, config: Path) -> None:
    r = cli(tmp_path / "s", "init", "--encryption", "keyfile", config=config)
    assert r.returncode == 0, r.stderr
    assert "copy it somewhere safe" in r.stdout and "FILETWIN_KEY_FILE" in r.stdout


def test_init_refuses_an_existing_repository(tmp_path: Path, config: Path) -> None:
    state = tmp_path / "state"
    assert cli(state, "init", "--encryption", "keyfile", config=config).returncode == 0
    before = tree(tmp_path)
    for mode in ("none", "repokey", "keyfile"):
        r = cli(state, "init", "--encryption", mode, env=pw(), config=config)
        assert r.returncode == 2, r.stderr
        assert "already holds a repository (version 2, encryption keyfile)" in r.stderr
        assert tree(tmp_path) == before


def test_init_repokey_without_a_passphrase_makes_nothing(tmp_path: Path, config: Path) -> None:
    state = tmp_path / "state"
    r = cli(state, "init", "--encryption", "repokey", config=config)
    assert r.returncode == 2, r.stderr
    assert "FILETWIN_PASSWORD" in r.stderr
    assert not (state / "repository" / "config").exists()
    assert not (state / "repository" / "keys").exists()


# -- an existing repokey repository ----------------------------------------------------


def repokey_repo(tmp_path: Path) -> tuple[Path, Path, Repository]:
    """STATE/repository, repokey with CHEAP_KDF, holding two versions of ``f``."""
    state = tmp_path / "state"
    loc = state / "repository"
    backend = LocalBackend(loc)
    info, keys = fmt.create(backend, "repokey", passphrase=lambda: PASSPHRASE, kdf=CHEAP_KDF)
    fmt.remember(state, str(loc), info)
    repo = Repository(backend, keys=keys)
    f = tmp_path / "f"
    store(repo, f, content(1, 200_000))
    store(repo, f, content(2, 200_000))
    repo.save_index()
    return state, f, repo


def test_key_changes_the_passphrase_and_nothing_else(tmp_path: Path, config: Path) -> None:
    state, f, repo = repokey_repo(tmp_path)
    loc = state / "repository"
    before = tree(loc)
    r = cli(state, "key", "--json", env={**pw(), "FILETWIN_NEW_PASSWORD": OTHER}, config=config)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"location": str(loc), "changed": True}
    after = tree(loc)
    assert after.pop("keys/repokey") != before.pop("keys/repokey")
    assert after == before  # same object files: no data rewritten

    old = cli(state, "history", str(f), "--json", env=pw(), config=config)
    assert old.returncode == 1 and "wrong passphrase" in old.stderr, old.stderr
    new = cli(state, "history", str(f), "--json", env=pw(OTHER), config=config)
    assert new.returncode == 0, new.stderr
    assert [v["id"] for v in json.loads(new.stdout)] == [m.id for m in repo.versions(str(f))]
    dest = tmp_path / "out"
    r = cli(state, "restore", str(f), "--to", str(dest), env=pw(OTHER), config=config)
    assert r.returncode == 0, r.stderr
    assert dest.read_bytes() == content(2, 200_000)


def test_key_with_a_wrong_passphrase_changes_nothing(tmp_path: Path, config: Path) -> None:
    state, _f, _repo = repokey_repo(tmp_path)
    before = tree(tmp_path)
    r = cli(state, "key", env={**pw("wrong"), "FILETWIN_NEW_PASSWORD": OTHER}, config=config)
    assert r.returncode == 1 and "wrong passphrase" in r.stderr, r.stderr
    assert tree(tmp_path) == before


@pytest.mark.parametrize("command", ["history", "restore", "check"])
def test_wrong_passphrase_offline_changes_nothing(
    tmp_path: Path, config: Path, command: str
) -> None:
    state, f, _repo = repokey_repo(tmp_path)
    dest = tmp_path / "out"
    args = {
        "history": ["history", str(f)],
        "restore": ["restore", str(f), "--to", str(dest)],
        "check": ["check", "--read-data"],
    }[command]
    before = tree(tmp_path)
    r = cli(state, *args, env=pw("wrong"), config=config)
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("filetwin: ") and "wrong passphrase" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert tree(tmp_path) == before
    # ... and no passphrase at all: told how to give one, exit 2, nothing changed.
    r = cli(state, *args, config=config)
    assert r.returncode == 2 and "FILETWIN_PASSWORD" in r.stderr, r.stderr
    assert tree(tmp_path) == before


def test_password_file_opens_it(tmp_path: Path, config: Path) -> None:
    state, f, _repo = repokey_repo(tmp_path)
    secret = tmp_path / "secret"
    secret.write_text(PASSPHRASE + "\n")
    r = cli(state, "history", str(f), env={"FILETWIN_PASSWORD_FILE": str(secret)}, config=config)
    assert r.returncode == 0, r.stderr


# -- keyfile -------------------------------------------------------------------------


def test_keyfile_repository_on_a_new_host(tmp_path: Path, config: Path) -> None:
    """The key lives 0600 in STATE_DIR/keys/; a new host (fresh state directory)
    opens the repository with $FILETWIN_KEY_FILE, and not without it."""
    state = tmp_path / "state"
    made = json.loads(cli(state, "init", "--encryption", "keyfile", "--json").stdout)
    key = Path(made["key_file"])
    assert key.parent == state / "keys"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    loc = state / "repository"
    # Store versions as the daemon would, with the key from the state directory.
    from filetwin.repo.opening import open_repository

    repo = open_repository(str(loc), state_dir=state)
    f = tmp_path / "f"
    m = store(repo, f, content(5, 150_000))
    repo.save_index()
    assert not any(
        content(5, 150_000)[:64] in p.read_bytes() for p in loc.rglob("*") if p.is_file()
    )

    new_host = tmp_path / "new-host-state"
    conf = tmp_path / "new-host.toml"
    conf.write_text(f'repository = "{loc}"\n')
    before = tree(loc)
    r = cli(new_host, "history", str(f), "--json", config=conf)
    assert r.returncode == 2 and "FILETWIN_KEY_FILE" in r.stderr, r.stderr
    env = {"FILETWIN_KEY_FILE": str(key)}
    r = cli(new_host, "history", str(f), "--json", env=env, config=conf)
    assert r.returncode == 0, r.stderr
    assert [v["id"] for v in json.loads(r.stdout)] == [m.id]
    dest = tmp_path / "restored"
    r = cli(new_host, "restore", str(f), "--to", str(dest), env=env, config=conf)
    assert r.returncode == 0, r.stderr
    assert dest.read_bytes() == content(5, 150_000)
    r = cli(new_host, "check", "--read-data", env=env, config=conf)
    assert r.returncode == 0, r.stderr
    assert tree(loc) == before

    # A key file others can read is refused, naming the fix.
    key.chmod(0o644)
    r = cli(new_host, "history", str(f), env=env, config=conf)
    assert r.returncode == 2 and "chmod 600" in r.stderr, r.stderr


@pytest.mark.parametrize("mode", ["none", "keyfile"])
def test_key_on_a_repository_without_passphrase(tmp_path: Path, config: Path, mode: str) -> None:
    state = tmp_path / "state"
    assert cli(state, "init", "--encryption", mode, config=config).returncode == 0
    before = tree(tmp_path)
    r = cli(state, "key", env={**pw(), "FILETWIN_NEW_PASSWORD": OTHER}, config=config)
    assert r.returncode == 2 and "has no passphrase" in r.stderr, r.stderr
    assert tree(tmp_path) == before


def test_a_downgraded_or_swapped_repository_is_refused(tmp_path: Path, config: Path) -> None:
    """The state directory remembers the repository's id and mode: a ``config``
    object edited to say ``none``, or another repository put in its place, is
    refused before anything is read."""
    state, f, _repo = repokey_repo(tmp_path)
    loc = state / "repository"
    doc = json.loads((loc / "config").read_text())
    (loc / "config").write_text(json.dumps({**doc, "encryption": "none"}))
    r = cli(state, "history", str(f), env=pw(), config=config)
    assert r.returncode == 1 and "tampered" in r.stderr, r.stderr

    (loc / "config").write_text(json.dumps({**doc, "id": "0" * 32}))
    r = cli(state, "check", env=pw(), config=config)
    assert r.returncode == 1 and "not the one this state directory used" in r.stderr, r.stderr


def test_key_never_takes_the_current_passphrase_for_the_new_one(
    tmp_path: Path, config: Path
) -> None:
    """FILETWIN_PASSWORD is the current passphrase (the daemon's): without
    FILETWIN_NEW_PASSWORD and no terminal, key refuses instead of "changing" the
    passphrase to itself; the same passphrase given as new is refused too."""
    state, _f, _repo = repokey_repo(tmp_path)
    before = tree(tmp_path)
    r = cli(state, "key", env=pw(), config=config)
    assert r.returncode == 2 and "FILETWIN_NEW_PASSWORD" in r.stderr, r.stderr
    r = cli(state, "key", env={**pw(), "FILETWIN_NEW_PASSWORD": PASSPHRASE}, config=config)
    assert r.returncode == 2 and "is the current one" in r.stderr, r.stderr
    assert tree(tmp_path) == before


class Terminal:
    """A command on a pseudo-terminal of its own (getpass reads /dev/tty)."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: its controlling terminal is the pty
            os.execve(argv[0], argv, env)
        self.seen = b""

    def expect(self, *texts: str, timeout: float = 60) -> int:
        """Read until one of ``texts`` appears after what was matched before; its index."""
        deadline = time.monotonic() + timeout
        while True:
            found = [(self.seen.find(t.encode()), i) for i, t in enumerate(texts)]
            hits = sorted((at, i) for at, i in found if at >= 0)
            if hits:
                at, i = hits[0]
                self.seen = self.seen[at + len(texts[i]) :]
                return i
            left = deadline - time.monotonic()
            assert left > 0, f"none of {texts} in {self.seen!r}"
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # EIO: the child closed the terminal
                    chunk = b""
                assert chunk, f"the command ended; none of {texts} in {self.seen!r}"
                self.seen += chunk

    def send(self, line: str) -> None:
        os.write(self.fd, line.encode() + b"\n")

    def wait(self) -> int:
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)


def test_key_on_a_terminal_asks_each_passphrase_once(tmp_path: Path, config: Path) -> None:
    state, f, _repo = repokey_repo(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILETWIN_")}
    argv = [sys.executable, "-m", "filetwin", "--state-dir", str(state), "--config", str(config)]
    term = Terminal([*argv, "key"], env)
    term.expect("repository passphrase: ")
    term.send(PASSPHRASE)
    # Next comes the new one: the current one is not asked a second time.
    assert term.expect("new passphrase: ", "repository passphrase: ") == 0
    term.send(OTHER)
    term.expect("new passphrase again: ")
    term.send(OTHER)
    term.expect("changed")
    assert term.wait() == 0
    assert cli(state, "history", str(f), env=pw(OTHER), config=config).returncode == 0
