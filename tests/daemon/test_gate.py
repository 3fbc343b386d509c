"""The repository gate: shared holders exclude gc, waiting gc blocks newcomers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from filetwin.daemon.gate import Gate


def run(body: Callable[[Gate], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(body(Gate()))


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def hold_shared(gate: Gate, log: list[str], name: str, release: asyncio.Event) -> None:
    async with gate.shared():
        log.append(f"{name} in")
        await release.wait()
    log.append(f"{name} out")


async def hold_exclusive(gate: Gate, log: list[str], release: asyncio.Event) -> None:
    async with gate.exclusive():
        log.append("x in")
        await release.wait()
    log.append("x out")


def test_shared_holders_share() -> None:
    async def body(gate: Gate) -> None:
        log: list[str] = []
        go = asyncio.Event()
        tasks = [asyncio.create_task(hold_shared(gate, log, n, go)) for n in "ab"]
        await settle()
        assert log == ["a in", "b in"]
        go.set()
        await asyncio.gather(*tasks)
        await asyncio.wait_for(gate.idle(), 1)

    run(body)


def test_exclusive_waits_for_shared_and_blocks_newcomers() -> None:
    async def body(gate: Gate) -> None:
        log: list[str] = []
        free_a, free_x, free_b = asyncio.Event(), asyncio.Event(), asyncio.Event()
        a = asyncio.create_task(hold_shared(gate, log, "a", free_a))
        await settle()
        x = asyncio.create_task(hold_exclusive(gate, log, free_x))
        await settle()
        b = asyncio.create_task(hold_shared(gate, log, "b", free_b))
        await settle()
        assert log == ["a in"]  # x waits for a; b waits behind x
        idle = asyncio.create_task(gate.idle())
        free_a.set()
        await settle()
        assert log == ["a in", "a out", "x in"]
        assert not idle.done()
        free_x.set()
        free_b.set()
        await asyncio.gather(a, x, b)
        assert log[3:] == ["x out", "b in", "b out"]
        await asyncio.wait_for(idle, 1)

    run(body)


def test_exclusive_excludes_exclusive() -> None:
    async def body(gate: Gate) -> None:
        log: list[str] = []
        first, second = asyncio.Event(), asyncio.Event()
        t1 = asyncio.create_task(hold_exclusive(gate, log, first))
        await settle()
        t2 = asyncio.create_task(hold_exclusive(gate, log, second))
        await settle()
        assert log == ["x in"]
        first.set()
        second.set()
        await asyncio.gather(t1, t2)
        assert log == ["x in", "x out", "x in", "x out"]

    run(body)


def test_cancelled_exclusive_waiter_lets_shared_in() -> None:
    async def body(gate: Gate) -> None:
        log: list[str] = []
        free_a, free_x, free_b = asyncio.Event(), asyncio.Event(), asyncio.Event()
        a = asyncio.create_task(hold_shared(gate, log, "a", free_a))
        await settle()
        x = asyncio.create_task(hold_exclusive(gate, log, free_x))
        await settle()
        b = asyncio.create_task(hold_shared(gate, log, "b", free_b))
        await settle()
        assert log == ["a in"]
        x.cancel()  # e.g. a gc task cancelled at shutdown
        await settle()
        assert log == ["a in", "b in"], "a shared waiter stays blocked by a gone exclusive"
        free_a.set()
        free_b.set()
        await asyncio.gather(a, b)
        await asyncio.wait_for(gate.idle(), 1)

    run(body)
