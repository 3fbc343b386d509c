"""``filetwin service install``: write the systemd unit that starts the daemon at boot.

The units ship in the package (``filetwin/units``): ``filetwin.service`` for
the system (root's daemon, state in /var/lib/filetwin) and
``filetwin-user.service`` for one user (``systemctl --user``). Installing one
writes it as ``filetwin.service`` with ``ExecStart`` naming the filetwin this
command runs from (the script beside its Python, so a virtualenv's works), and
the ``--state-dir``/``--config`` given to this command, if any.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import sys
from importlib import resources
from pathlib import Path

import click

from .cli_common import ctx_obj, handle_errors, out, state_dir_option
from .errors import FiletwinError, UsageError

UNIT_NAME = "filetwin.service"
SYSTEM_UNIT = "filetwin.service"
USER_UNIT = "filetwin-user.service"
SYSTEM_DIR = "/etc/systemd/system"
#: characters an ExecStart argument may hold unquoted
_PLAIN = re.compile(r"^[A-Za-z0-9_./:+,=@-]+$")


def shipped_unit(user: bool) -> str:
    """The text of the unit shipped in the package."""
    name = USER_UNIT if user else SYSTEM_UNIT
    return (resources.files("filetwin") / "units" / name).read_text(encoding="utf-8")


def default_dest(user: bool) -> Path:
    """Where systemd looks for units the administrator (or the user) installed."""
    if not user:
        return Path(SYSTEM_DIR)
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(xdg) / "systemd" / "user"


def filetwin_command() -> list[str]:
    """How to run this filetwin: its script beside this Python (a virtualenv's),
    else the one on PATH, else this Python with ``-m filetwin``."""
    beside = Path(sys.executable).parent / "filetwin"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside.absolute())]
    found = shutil.which("filetwin")
    if found:
        return [str(Path(found).absolute())]
    return [str(Path(sys.executable).absolute()), "-m", "filetwin"]


def exec_quote(arg: str) -> str:
    """One ExecStart argument as systemd reads it (systemd.service(5), "Command
    lines"): quoted when needed, ``%`` specifiers and ``$`` variables escaped."""
    text = arg.replace("%", "%%").replace("$", "$$")
    if _PLAIN.match(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_unit(user: bool, command: list[str]) -> str:
    """The shipped unit with its ExecStart replaced by ``command``."""
    line = "ExecStart=" + " ".join(exec_quote(a) for a in command)
    text, count = re.subn(r"(?m)^ExecStart=.*$", lambda _m: line, shipped_unit(user))
    if count != 1:
        raise FiletwinError("the shipped unit has no single ExecStart line (a packaging bug)")
    return text


def write_unit(directory: Path, text: str) -> Path:
    """Write ``directory/filetwin.service`` (0644) atomically: a temporary file,
    fsynced, renamed over the name (a symlink there is replaced, never followed)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o755)
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    tmp = f".{UNIT_NAME}.{os.getpid()}.tmp"
    try:
        fd = os.open(
            tmp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o644,
            dir_fd=dfd,
        )
        try:
            os.fchmod(fd, 0o644)  # whatever the umask: systemd and users read it
            data = text.encode("utf-8", "surrogateescape")
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, UNIT_NAME, src_dir_fd=dfd, dst_dir_fd=dfd)
        os.fsync(dfd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dfd)
        raise
    finally:
        os.close(dfd)
    return directory / UNIT_NAME


@click.group()
def service() -> None:
    """Run the daemon under systemd (start at boot, restart on failure)."""


@service.command()
@state_dir_option
@click.option(
    "--user", is_flag=True, help="A user unit (systemctl --user) instead of a system one."
)
@click.option("--dry-run", is_flag=True, help="Print the unit and where it goes; write nothing.")
@click.option(
    "--dest",
    type=click.Path(file_okay=False),
    default=None,
    help="Directory to write the unit into (default: /etc/systemd/system, "
    "or ~/.config/systemd/user with --user).",
)
@handle_errors
def install(user: bool, dry_run: bool, dest: str | None) -> None:
    """Write the systemd unit that runs `filetwin daemon`, and say how to enable it.

    The unit is Type=notify (the daemon says when it serves) with a watchdog,
    restarts the daemon if it fails, and names the filetwin this command runs
    from. --state-dir and --config given to this command are passed on to it.
    """
    ctx = ctx_obj()
    command = [*filetwin_command()]
    if ctx.state_dir is not None:
        command += ["--state-dir", str(Path(ctx.state_dir).absolute())]
    if ctx.config_file is not None:
        command += ["--config", str(Path(ctx.config_file).absolute())]
    command.append("daemon")
    text = render_unit(user, command)
    directory = Path(dest).absolute() if dest else default_dest(user)
    target = directory / UNIT_NAME
    if dry_run:
        out.print(f"would write {target}:", markup=False)
        click.echo(text, nl=False)
        return
    if not user and dest is None and os.geteuid() != 0:
        raise UsageError(
            f"writing {target} needs root: run it with sudo, or use --user for a user unit"
        )
    try:
        written = write_unit(directory, text)
    except OSError as e:
        raise FiletwinError(f"cannot write {target}: {e.strerror or e}") from e
    systemctl = "systemctl --user" if user else "systemctl"
    out.print(f"wrote {written}", markup=False)
    out.print("enable and start it now and at every boot:", markup=False)
    out.print(f"  {systemctl} daemon-reload", markup=False)
    out.print(f"  {systemctl} enable --now filetwin", markup=False)
    if user:
        out.print(
            "a user unit starts at your first login; to start it at boot instead:", markup=False
        )
        out.print(f"  loginctl enable-linger {_user_name()}", markup=False)
    out.print(f"its log: journalctl {'--user ' if user else ''}-u filetwin -f", markup=False)


def _user_name() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return "$USER"
