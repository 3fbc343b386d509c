"""``filetwin completion SHELL`` and ``filetwin man``: what restic and borg users
expect around a CLI. Both print text generated from the commands themselves
(click's shell completion, manpage.py), so they never drift from the CLI.
``register`` adds them, and ``diff``, to the main group (one line in cli.py).
"""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

from .cli_common import handle_errors

SHELLS = ("bash", "zsh", "fish")
#: the variable click's completion scripts set when they ask filetwin for words
COMPLETE_VAR = "_FILETWIN_COMPLETE"


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
@handle_errors
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL (bash 4.4+, zsh or fish).

    Commands, options, choices (--backup on-close|on-write) and paths complete
    with Tab. Load it in the current shell, or install it for every new one:

    \b
    bash:  eval "$(filetwin completion bash)"            # this shell
           filetwin completion bash > ~/.local/share/bash-completion/completions/filetwin
    zsh:   eval "$(filetwin completion zsh)"             # this shell (after compinit)
           filetwin completion zsh > "${fpath[1]}/_filetwin"
    fish:  filetwin completion fish > ~/.config/fish/completions/filetwin.fish

    The script runs `filetwin` (as found on PATH) with _FILETWIN_COMPLETE set
    to ask for the words, so it stays right when filetwin is upgraded.
    """
    from .cli import main

    cls = get_completion_class(shell)
    assert cls is not None  # SHELLS are click's own
    script = cls(main, {}, "filetwin", COMPLETE_VAR).source()
    click.echo(script, nl=not script.endswith("\n"))


@click.command()
@handle_errors
def man() -> None:
    """Print the filetwin(1) man page (roff), generated from the commands.

    \b
    Read it:     filetwin man | man -l -
    Install it:  filetwin man > /usr/local/share/man/man1/filetwin.1 && mandb -q

    docs/man/filetwin.1 in the sources is the same page.
    """
    from .cli import main
    from .manpage import render

    click.echo(render(main), nl=False)


def register(main: click.Group) -> None:
    """Add diff, completion and man to ``main``."""
    from .cli_diff import diff

    for command in (diff, completion, man):
        main.add_command(command)
