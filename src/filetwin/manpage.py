"""The man page, generated from the click commands (roff, man(7) macros).

One page, filetwin(1), with every command and its options in the order
``--help`` shows them, so that the page cannot drift from the CLI:
docs/man/filetwin.1 is this module's output, kept current by a test, and
``filetwin man`` prints it. (click-man writes one page per command from a
setup.py entry point; one page a reader can search is what restic and borg
users get from ``man``, so these hundred lines do it.)
"""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version

import click

EXIT_STATUS = [
    ("0", "success"),
    ("1", "the operation failed (the message says what and where)"),
    ("2", "bad usage: an unknown option, a bad value; nothing was changed"),
    ("3", "no daemon answers (start it with filetwin daemon, or give --state-dir)"),
]
ENVIRONMENT = [
    ("FILETWIN_CONFIG", "the config file every command reads, unless --config names one"),
    ("_FILETWIN_COMPLETE", "set by the shell completion scripts (see filetwin completion)"),
]


def _text(s: str) -> str:
    """Escape running text for roff: backslashes, hyphens, and a control
    character at the start of a line."""
    s = s.replace("\\", "\\e").replace("-", "\\-")
    return re.sub(r"(?m)^([.'])", r"\\&\1", s)


def _paragraphs(help_text: str) -> list[str]:
    """click's help as roff: blank lines separate paragraphs, a ``\\b`` paragraph
    keeps its lines as they are (as click's --help does)."""
    out = []
    for para in re.split(r"\n\s*\n", click.unstyle(help_text).strip()):
        lines = para.splitlines()
        if lines and lines[0].strip() == "\b":
            out.append(".PP\n.nf\n" + "\n".join(_text(line) for line in lines[1:]) + "\n.fi")
        else:
            out.append(".PP\n" + _text(" ".join(line.strip() for line in lines)))
    return out


def _options(
    cmd: click.Command, ctx: click.Context, skip: frozenset[str] = frozenset()
) -> list[str]:
    """Each option as a tagged paragraph; ``skip``: options said once, globally."""
    out = []
    for param in cmd.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None or record[0] in skip:
            continue
        opts, help_text = record
        out.append(f".TP\n.B {_text(opts)}\n{_text(help_text)}")
    return out


def _context(cmd: click.Command, name: str, parent: click.Context | None) -> click.Context:
    """The context --help would use (the command's context_settings: -h, --help),
    made without parsing anything."""
    return cmd.make_context(name, [], parent=parent, resilient_parsing=True)


def _command(
    cmd: click.Command, ctx: click.Context, name: str, skip: frozenset[str]
) -> list[str]:
    usage = " ".join(cmd.collect_usage_pieces(ctx))
    lines = [f'.SS "{_text(name)} {_text(usage)}"']
    lines += _paragraphs(cmd.help or "")
    lines += _options(cmd, ctx, skip)
    if isinstance(cmd, click.Group):
        for sub_name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, sub_name)
            if sub is not None and not sub.hidden:
                sub_ctx = _context(sub, sub_name, ctx)
                lines += _command(sub, sub_ctx, f"{name} {sub_name}", skip)
    return lines


def render(main: click.Group, prog: str = "filetwin") -> str:
    """filetwin(1) as roff source."""
    try:
        release = version(prog)
    except PackageNotFoundError:
        release = "unknown"
    ctx = _context(main, prog, None)
    summary = (main.help or "").strip().splitlines()[0].rstrip(".").removeprefix(f"{prog} ")
    # --state-dir, --config, --timeout and --help, taken by every command, are
    # described once, under GLOBAL OPTIONS.
    skip = frozenset(r[0] for p in main.get_params(ctx) if (r := p.get_help_record(ctx)))
    skip |= {"--help"}
    lines = [
        f'.TH {prog.upper()} 1 "" "{prog} {release}" "User Commands"',
        ".SH NAME",
        f"{prog} \\- {_text(summary)}",
        ".SH SYNOPSIS",
        f".B {prog}\n[\\fIGLOBAL OPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]...",
        ".SH DESCRIPTION",
        *_paragraphs(main.help or ""),
        ".PP",
        f"{prog} \\fICOMMAND\\fR \\-\\-help explains each command; the same text is below. "
        "The global options are taken by every command too.",
        ".SH GLOBAL OPTIONS",
        *_options(main, ctx),
        ".SH COMMANDS",
    ]
    for name in main.list_commands(ctx):
        cmd = main.get_command(ctx, name)
        if cmd is not None and not cmd.hidden:
            sub_ctx = _context(cmd, name, ctx)
            lines += _command(cmd, sub_ctx, f"{prog} {name}", skip)
    lines.append(".SH EXIT STATUS")
    for code, meaning in EXIT_STATUS:
        lines.append(f".TP\n.B {code}\n{_text(meaning)}")
    lines.append(".SH ENVIRONMENT")
    for var, meaning in ENVIRONMENT:
        lines.append(f".TP\n.B {_text(var)}\n{_text(meaning)}")
    lines += [
        ".SH SEE ALSO",
        "The README, docs/cli.md, docs/configuration.md and docs/api.md of the "
        "filetwin sources; \\fBfiletwin completion\\fR for shell completion.",
    ]
    return "\n".join(lines) + "\n"
