"""The ``on_event`` hook: a command of the user's, given each event as JSON.

It lets people wire mail, desktop notifications or chat to filetwin's
events. The command runs through the shell with the event on stdin, once per
event and one event at a time, in order; it may take up to ``HOOK_TIMEOUT_S``
and its failure is logged, never raised.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from ..table import as_json

log = logging.getLogger("filetwin.hooks")
HOOK_TIMEOUT_S = 30.0
#: one hook runs at a time, so the command gets the events in the order they
#: happened (asyncio.Lock wakes its waiters first come, first served)
_one_at_a_time = asyncio.Lock()


async def run_hook(command: str, event: dict[str, Any]) -> None:
    async with _one_at_a_time:
        await _run(command, event)


async def _run(command: str, event: dict[str, Any]) -> None:
    data = json.dumps(as_json(event)).encode() + b"\n"
    try:
        proc = await asyncio.create_subprocess_shell(
            command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _out, err = await asyncio.wait_for(proc.communicate(data), HOOK_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        log.warning("on_event hook %r ran past %s s and was killed", command, HOOK_TIMEOUT_S)
        return
    except OSError as e:
        log.warning("on_event hook %r could not run: %s", command, e)
        return
    if proc.returncode:
        log.warning(
            "on_event hook %r exited %s: %s",
            command,
            proc.returncode,
            err.decode(errors="replace").strip()[:500],
        )
