"""The time-based retention options of ``add`` and ``update`` (restic's ``forget``).

Declared here and added to cli.py's ``policy_options`` with one line. A bad
value is a usage error (exit 2) raised by click before any request is sent,
so nothing changes.
"""

from __future__ import annotations

from typing import Any

import click

from .cli_common import F
from .errors import UsageError
from .policy import MAX_KEEP, PERIOD_RULES, parse_duration


class Duration(click.ParamType):
    """``7d``, ``12h``, ``30m``, ``2w``, ``90s``, combined (``1d12h``) or plain
    seconds, as whole seconds; 0 turns the rule off."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_duration(str(value)) or 0
        except UsageError as e:
            self.fail(e.message, param, ctx)


_PERIOD_WORDS = {"hourly": "hour", "daily": "day", "weekly": "ISO week", "monthly": "month"}


def retention_options(f: F) -> F:
    """--keep-within and --keep-hourly/-daily/-weekly/-monthly, after --keep in --help."""
    for period in reversed(PERIOD_RULES):
        f = click.option(
            f"--keep-{period}",
            f"keep_{period}",
            type=click.IntRange(0, MAX_KEEP),
            default=None,
            metavar="N",
            help=f"Also keep the newest version of each of the last N {_PERIOD_WORDS[period]}s "
            "that have one (local time; 0: off, the default).",
        )(f)
    f = click.option(
        "--keep-within",
        "keep_within",
        type=Duration(),
        default=None,
        metavar="DURATION",
        help="Also keep every version made within DURATION of the newest one: "
        "7d, 12h, 30m (minutes), 2w, 90s, or combined (1d12h); 0: off, the default. "
        "A version any --keep rule keeps is kept; the newest always is.",
    )(f)
    return f
