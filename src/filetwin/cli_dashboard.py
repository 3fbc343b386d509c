"""``filetwin dashboard``: print the dashboard's URL with its token, as Jupyter does.

The token is the state directory's ``dashboard.token`` (made on first use,
mode 0600). The URL is printed only once the daemon answers on the port with
that token, so what is printed works when opened.
"""

from __future__ import annotations

import sys

import click

from .cli_common import ctx_obj, emit_json, handle_errors, json_option, state_dir_option
from .daemon.dashboard_auth import load_or_create_token
from .errors import DaemonUnavailable, FiletwinError

#: how long to wait for the dashboard's answer (it is a local socket)
PROBE_TIMEOUT_S = 5.0


def probe(port: int, token: str) -> None:
    """Check that this daemon's dashboard answers on ``port`` with ``token``."""
    import http.client  # here: ~40 ms to import, which other commands need not pay

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=PROBE_TIMEOUT_S)
    try:
        conn.request(
            "GET",
            "/ping",
            headers={"Host": f"127.0.0.1:{port}", "Authorization": f"Bearer {token}"},
        )
        answer = conn.getresponse()
        answer.read()
    except OSError as e:
        raise DaemonUnavailable(
            f"the dashboard does not answer on 127.0.0.1:{port} ({e.strerror or e}); "
            "start the daemon (`filetwin daemon`, or its service) with this config"
        ) from None
    finally:
        conn.close()
    if answer.status != 200:
        raise FiletwinError(
            f"127.0.0.1:{port} answers {answer.status}, not as this daemon's dashboard: another "
            "program holds the port, or a daemon of another state directory "
            "(set another [dashboard] port)"
        )


@click.command()
@state_dir_option
@json_option
@click.option(
    "--no-check",
    is_flag=True,
    help="Print the URL without checking that the daemon serves it (e.g. before it starts).",
)
@handle_errors
def dashboard(as_json: bool, no_check: bool) -> None:
    """Print the web dashboard's URL, with its token, to open in a browser.

    The dashboard is served by the daemon on 127.0.0.1 only, when the config
    says so:

    \b
        [dashboard]
        enabled = true
        port = 8417

    Opening the URL sets a cookie and drops the token from the address bar.
    The token stays the same across restarts; delete STATE_DIR/dashboard.token
    (and restart the daemon) to make a new one. Exit 1 when the dashboard is not
    enabled, 3 when no daemon serves it.
    """
    config = ctx_obj().config()
    settings = config.dashboard
    if not settings.enabled:
        where = config.config_file or "the config file"
        raise FiletwinError(
            f"the dashboard is not enabled: add `[dashboard]` with `enabled = true` to {where} "
            "(see docs/dashboard.md), then restart the daemon"
        )
    config.ensure_state_dir()
    token = load_or_create_token(config.state_dir)
    if not no_check:
        probe(settings.port, token)
    url = f"http://127.0.0.1:{settings.port}/?token={token}"
    if as_json:
        emit_json({"url": url, "port": settings.port, "token": token})
        return
    click.echo(url)
    if sys.stdout.isatty():
        click.echo("open it in a browser on this machine (it listens on 127.0.0.1 only)", err=True)
