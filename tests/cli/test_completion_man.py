"""Shell completion loaded in a real bash, and the man page generated from the
CLI: docs/man/filetwin.1 is current and renders with man(1)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from filetwin.cli import main
from filetwin.manpage import render

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "man" / "filetwin.1"
BIN = Path(sys.executable).parent


def complete_in_bash(*words: str) -> list[str]:
    """Load `filetwin completion bash` in a real bash and complete ``words``
    (the last one being typed) with the function it registered for filetwin."""
    script = f"""
set -e
eval "$(filetwin completion bash)"
spec=$(complete -p filetwin)
fn=$(sed -E 's/.* -F ([^ ]+) .*/\\1/' <<<"$spec")
COMP_WORDS=({' '.join(f"'{w}'" for w in ("filetwin", *words))})
COMP_CWORD={len(words)}
"$fn" filetwin
printf '%s\\n' "$spec" "${{COMPREPLY[@]}}"
"""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    r = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("complete ") and lines[0].endswith(" filetwin"), lines[0]
    return lines[1:]


def test_bash_completes_subcommands_options_and_choices() -> None:
    assert set(complete_in_bash("res")) >= {"restore", "resume"}
    assert "restore" not in complete_in_bash("ad")
    assert complete_in_bash("add", "--keep-wi") == ["--keep-within"]
    assert set(complete_in_bash("add", "--backup", "on-")) == {"on-close", "on-write"}
    assert set(complete_in_bash("completion", "")) == {"bash", "zsh", "fish"}


@pytest.mark.parametrize(("shell", "marker"), [("zsh", "#compdef filetwin"),
                                                ("fish", "complete --no-files --command filetwin")])
def test_zsh_and_fish_scripts_name_filetwin(shell: str, marker: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "filetwin", "completion", shell], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert marker in r.stdout
    assert "_FILETWIN_COMPLETE" in r.stdout


def test_completion_of_an_unknown_shell_is_a_usage_error() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "filetwin", "completion", "tcsh"], capture_output=True, text=True
    )
    assert r.returncode == 2
    assert "tcsh" in r.stderr and "bash" in r.stderr
    assert r.stdout == ""


def test_docs_man_page_is_generated_from_the_cli() -> None:
    """docs/man/filetwin.1 is what `filetwin man` prints (regenerate it with
    `.venv/bin/filetwin man > docs/man/filetwin.1`)."""
    assert PAGE.read_text() == render(main), "regenerate: filetwin man > docs/man/filetwin.1"


def test_man_page_names_every_command_and_option() -> None:
    page = render(main)
    for name in main.list_commands(None):  # type: ignore[arg-type]
        assert f'.SS "filetwin {name} ' in page, name
    for option in ("\\-\\-keep\\-within", "\\-\\-keep\\-daily", "\\-\\-read\\-data"):
        assert option in page


@pytest.mark.skipif(shutil.which("man") is None, reason="man (man-db) is not installed")
def test_man_renders_the_page_without_warnings() -> None:
    r = subprocess.run(
        ["man", "--warnings", "-l", str(PAGE)],
        capture_output=True,
        text=True,
        env={**os.environ, "MANWIDTH": "80", "MANPAGER": "cat", "PAGER": "cat"},
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", r.stderr
    text = r.stdout
    assert "FILETWIN(1)" in text
    assert "keep-within DURATION" in text.replace("\u2010", "-")
    assert "EXIT STATUS" in text
