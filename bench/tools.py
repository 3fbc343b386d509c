"""The tools under test, behind one small interface, each in its own work dir.

Every step is end to end: it returns when the backup is durable (filetwin:
the version's manifest is committed; peers: their command has exited).
Peak memory is the largest RSS of the tool's processes (``/usr/bin/time``
for peers; the daemon and its workers' VmHWM for filetwin).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from filetwin import Client, DaemonUnavailable

TIME = "/usr/bin/time"


def compile_filetwin() -> None:
    """Compile filetwin's bytecode, as ``pip install`` of the package does.

    The package is installed editable here, and this machine sets
    PYTHONDONTWRITEBYTECODE: without this, every ``filetwin`` command a bench
    times would first compile the package from source (about 0.2 s).
    """
    import compileall

    import filetwin

    compileall.compile_dir(Path(filetwin.__file__).parent, quiet=1)


def tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(dirpath, n)).st_size
    return total


class Tool:
    name = "tool"

    def __init__(self, work: Path, data: Path) -> None:
        self.work = work
        self.data = data
        self.repo = work / "repo"
        self.peak_kib = 0

    def run(self, *cmd: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        out = self.work / "time.out"
        proc = subprocess.run(
            [TIME, "-f", "%M", "-o", str(out), *cmd],
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr[-2000:]}")
        with contextlib.suppress(ValueError, IndexError, FileNotFoundError):
            self.peak_kib = max(self.peak_kib, int(out.read_text().split()[-1]))

    def setup(self) -> None: ...
    def first_backup(self, files: list[Path], exclude: Path | None = None) -> None:
        """Back up the data directory (``files`` is what it holds, for filetwin's
        ``add``), leaving out ``exclude`` (a file directly in the data directory)."""
        raise NotImplementedError

    def incremental(self, changed: list[Path]) -> None:
        raise NotImplementedError

    def restore_all(self, dest: Path) -> None:
        raise NotImplementedError

    def restore_old(self, path: Path, dest: Path) -> None:
        raise NotImplementedError

    def repo_bytes(self) -> int:
        return tree_bytes(self.repo)

    def teardown(self) -> None: ...


class Restic(Tool):
    name = "restic"
    env = {"RESTIC_PASSWORD": "bench", "RESTIC_CACHE_DIR": ""}

    def setup(self) -> None:
        self.env = {"RESTIC_PASSWORD": "bench", "RESTIC_CACHE_DIR": str(self.work / "cache")}
        self.run("restic", "init", "--repo", str(self.repo), "-q", env=self.env)

    def first_backup(self, files: list[Path], exclude: Path | None = None) -> None:
        ex = ["--exclude", exclude.name] if exclude is not None else []
        self.run(
            "restic", "backup", "--repo", str(self.repo), "-q", *ex, str(self.data), env=self.env
        )

    def incremental(self, changed: list[Path]) -> None:
        self.first_backup(changed)

    def restore_all(self, dest: Path) -> None:
        self.run(
            "restic",
            "restore",
            "latest",
            "--repo",
            str(self.repo),
            "--target",
            str(dest),
            "-q",
            env=self.env,
        )

    def restore_old(self, path: Path, dest: Path) -> None:
        out = subprocess.run(
            ["restic", "snapshots", "--repo", str(self.repo), "--json"],
            capture_output=True,
            text=True,
            env={**os.environ, **self.env},
        )
        import json

        first = json.loads(out.stdout)[0]["short_id"]
        self.run(
            "restic",
            "restore",
            first,
            "--repo",
            str(self.repo),
            "--target",
            str(dest),
            "--include",
            str(path),
            "-q",
            env=self.env,
        )


class Borg(Tool):
    """borg 1.x, ``borg init -e none`` (``encryption`` names another mode: BorgRepokey)."""

    name = "borg"
    encryption = "none"

    def setup(self) -> None:
        self.env = {
            "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
            "BORG_BASE_DIR": str(self.work / "borgbase"),
            "BORG_PASSPHRASE": "bench",
        }
        self.n = 0
        self.run("borg", "init", "-e", self.encryption, str(self.repo), env=self.env)

    def first_backup(self, files: list[Path], exclude: Path | None = None) -> None:
        self.n += 1
        ex = ["--exclude", f"*/{exclude.name}"] if exclude is not None else []
        self.run(
            "borg",
            "create",
            "--compression",
            "lz4",
            *ex,
            f"{self.repo}::s{self.n}",
            str(self.data),
            env=self.env,
        )

    def incremental(self, changed: list[Path]) -> None:
        self.first_backup(changed)

    def restore_all(self, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        self.run("borg", "extract", f"{self.repo}::s{self.n}", env=self.env, cwd=dest)

    def restore_old(self, path: Path, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        self.run(
            "borg", "extract", f"{self.repo}::s1", str(path).lstrip("/"), env=self.env, cwd=dest
        )


class BorgRepokey(Borg):
    """borg with ``borg init -e repokey`` (AES-256-CTR + HMAC-SHA256; the key kept
    in the repository, wrapped by the passphrase): like filetwin's repokey."""

    name = "borg-enc"
    encryption = "repokey"


class Rsync(Tool):
    name = "rsync"

    def setup(self) -> None:
        self.repo.mkdir(parents=True)
        self.n = 0
        help_text = subprocess.run(["rsync", "--help"], capture_output=True, text=True).stdout
        self.fsync = ["--fsync"] if "--fsync" in help_text else []

    def first_backup(self, files: list[Path], exclude: Path | None = None) -> None:
        self.n += 1
        link = [f"--link-dest={self.repo / f's{self.n - 1}'}"] if self.n > 1 else []
        ex = [f"--exclude=/{exclude.name}"] if exclude is not None else []
        self.run(
            "rsync", "-a", *self.fsync, *ex, *link, f"{self.data}/", str(self.repo / f"s{self.n}")
        )

    def incremental(self, changed: list[Path]) -> None:
        self.first_backup(changed)

    def restore_all(self, dest: Path) -> None:
        """With ``--fsync``: a restore as durable as filetwin's (which fsyncs
        every file it restores); restic and borg do not fsync a restore."""
        self.run("rsync", "-a", *self.fsync, f"{self.repo / f's{self.n}'}/", str(dest))

    def restore_all_nofsync(self, dest: Path) -> None:
        """The plain copy: what ``rsync -a`` costs when nothing waits for the disk."""
        self.run("rsync", "-a", f"{self.repo / f's{self.n}'}/", str(dest))

    def restore_old(self, path: Path, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        rel = path.relative_to(self.data)
        self.run("rsync", "-a", str(self.repo / "s1" / rel), str(dest / path.name))

    def repo_bytes(self) -> int:
        # Hard links are counted once: that is what the snapshots cost on disk.
        seen: set[int] = set()
        total = 0
        for dirpath, _dirs, names in os.walk(self.repo):
            for n in names:
                st = os.lstat(os.path.join(dirpath, n))
                if st.st_ino not in seen:
                    seen.add(st.st_ino)
                    total += st.st_size
        return total


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def status_kib(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


#: the passphrase of every encrypted repository the bench makes
PASSPHRASE = "bench"


class Filetwin(Tool):
    """The daemon on a fresh state directory; ``encryption="repokey"`` in
    ``config`` makes an encrypted repository (the daemon creates it at start
    with $FILETWIN_PASSWORD, so the KDF runs once, outside every timing)."""

    name = "filetwin"

    def __init__(self, work: Path, data: Path, **config: Any) -> None:
        super().__init__(work, data)
        self.state = work / "state"
        self.config = {"repository": str(self.repo), **config}
        self.encrypted = config.get("encryption", "none") != "none"
        if self.encrypted:
            self.name = "filetwin-enc"
        self.proc: subprocess.Popen[bytes] | None = None

    def open_repository(self) -> Any:
        """The repository as an offline command opens it (unlocking it: one KDF run)."""
        from filetwin.repo.opening import open_repository

        return open_repository(str(self.repo), passphrase=lambda: PASSPHRASE)

    def setup(self) -> None:
        self.state.mkdir(parents=True)
        cfg = self.work / "filetwin.toml"
        cfg.write_text("".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in self.config.items()))
        self.client = Client(socket_path=self.state / "filetwin.sock")
        self.setup_again()

    def setup_again(self) -> None:
        """Start the daemon (again) on the state directory."""
        self.log = (self.work / "daemon.log").open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "filetwin",
                "daemon",
                "--state-dir",
                str(self.state),
                "--config",
                str(self.work / "filetwin.toml"),
            ],
            stdout=self.log,
            stderr=self.log,
            env={**os.environ, "FILETWIN_PASSWORD": PASSPHRASE},
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                self.client.ping()
                return
            except DaemonUnavailable:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.log.flush()
                    tail = (self.work / "daemon.log").read_text(errors="replace")[-2000:]
                    why = "exited" if self.proc.poll() is not None else "no answer in 60 s"
                    raise RuntimeError(
                        f"filetwin daemon did not start ({why}); its log ends:\n{tail}"
                    ) from None
                time.sleep(0.01)

    def sample_peak(self) -> None:
        assert self.proc is not None
        total = sum(status_kib(p, "VmHWM") for p in descendants(self.proc.pid))
        self.peak_kib = max(self.peak_kib, total)

    def rss_kib(self) -> int:
        assert self.proc is not None
        return sum(status_kib(p, "VmRSS") for p in descendants(self.proc.pid))

    def first_backup(self, files: list[Path], exclude: Path | None = None) -> None:
        # add returns once every first version is stored and durable.
        files = [f for f in files if f != exclude]
        for i in range(0, len(files), 500):
            self.client.add(*files[i : i + 500])
        self.sample_peak()

    def wait_versions(
        self, paths: list[Path], before: dict[str, str | None], timeout: float = 600
    ) -> None:
        deadline = time.monotonic() + timeout
        pending = {str(p) for p in paths}
        while pending:
            for p in list(pending):
                s = self.client.status(p)
                if s["last_version"] != before[p] and s["job_kind"] is None:
                    pending.discard(p)
            if pending:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no new version of {sorted(pending)[:3]}")
                time.sleep(0.001)

    def last_versions(self, paths: list[Path]) -> dict[str, str | None]:
        return {str(p): self.client.status(p)["last_version"] for p in paths}

    def incremental(self, changed: list[Path]) -> None:
        raise RuntimeError("filetwin is driven by its watcher: use change_and_wait")

    def restore_all(self, dest: Path) -> None:
        # What a person runs: a new process, every entry to dest/<its path>.
        subprocess.run(
            [sys.executable, "-m", "filetwin", "restore", "--all", "--to", str(dest),
             "--state-dir", str(self.state), "--config", str(self.work / "filetwin.toml")],
            check=True, stdout=subprocess.DEVNULL,
            env={**os.environ, "FILETWIN_PASSWORD": PASSPHRASE},
        )  # fmt: skip

    def restore_old(self, path: Path, dest: Path) -> None:
        first = self.client.history(path)[0]["id"]
        dest.mkdir(parents=True, exist_ok=True)
        self.client.restore(path, version=first, to=dest / path.name)

    def teardown(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)
        self.log.close()


PEERS: dict[str, type[Tool]] = {
    "restic": Restic,
    "borg": Borg,
    "borg-enc": BorgRepokey,
    "rsync": Rsync,
}


def available(name: str) -> bool:
    return shutil.which(name) is not None
