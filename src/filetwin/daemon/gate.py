"""Shared/exclusive access to the repository within the daemon.

Jobs that add objects hold it shared; garbage collection holds it exclusive,
so that it never deletes a chunk a running job has just found present and is
about to reference.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Gate:
    def __init__(self) -> None:
        self._cond = asyncio.Condition()
        self._shared = 0
        self._exclusive = False
        self._waiting_exclusive = 0

    @asynccontextmanager
    async def shared(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._exclusive and not self._waiting_exclusive)
            self._shared += 1
        try:
            yield
        finally:
            async with self._cond:
                self._shared -= 1
                self._cond.notify_all()

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        async with self._cond:
            self._waiting_exclusive += 1
            try:
                await self._cond.wait_for(lambda: not self._exclusive and self._shared == 0)
            except BaseException:
                # Given up (cancelled): shared waiters held back for us may go on.
                self._waiting_exclusive -= 1
                self._cond.notify_all()
                raise
            self._waiting_exclusive -= 1
            self._exclusive = True
        try:
            yield
        finally:
            async with self._cond:
                self._exclusive = False
                self._cond.notify_all()

    async def idle(self) -> None:
        """Return once no holder, shared or exclusive, remains."""
        async with self._cond:
            await self._cond.wait_for(lambda: self._shared == 0 and not self._exclusive)
