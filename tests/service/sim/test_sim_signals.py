"""``tickcast sim`` switches its ``silent`` fault from outside: SIGUSR1 silences a running
simulator (connections stay open, no data frames), SIGUSR2 makes it send again."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator

from websockets.asyncio.client import ClientConnection, connect

STREAMS = "/public/stream?streams=ethusdt@trade/ethusdt@bookTicker"


@contextlib.asynccontextmanager
async def sim_command() -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """A ``tickcast sim`` on a free port, twenty times real time: the process and its base URL;
    stopped with SIGTERM (exit code 0 checked) on the way out."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tickcast.service.cli", "sim", "--symbols", "ETH/USDT:USDT",
        "--speed", "20", "--port", "0", stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        first = await line(proc)
        assert first.startswith("simulated"), first
        yield proc, first.split()[-1]
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30.0)
    assert code == 0


async def line(proc: asyncio.subprocess.Process) -> str:
    """The next line the process prints (10 s at most)."""
    assert proc.stdout is not None
    return (await asyncio.wait_for(proc.stdout.readline(), 10.0)).decode().strip()


async def printed(proc: asyncio.subprocess.Process, text: str) -> bool:
    """Whether the process prints the line ``text`` (after its start-up plan, its routes and
    their subscriptions) with no more than 10 s between lines."""
    while True:
        got = await line(proc)
        if got == text:
            return True
        if not got.startswith(("public:", "market:", "subscribe:")):
            return False


async def frames(ws: ClientConnection, n: int) -> None:
    """Receive ``n`` frames (10 s at most)."""
    async with asyncio.timeout(10.0):
        for _ in range(n):
            await ws.recv(decode=False)


async def falls_quiet(ws: ClientConnection, gap: float = 1.0, within: float = 10.0) -> bool:
    """Whether ``ws`` receives nothing for ``gap`` seconds at some point in the next ``within``
    seconds (frames sent before a switch may still be on their way)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        try:
            await asyncio.wait_for(ws.recv(decode=False), gap)
        except TimeoutError:
            return True
    return False


async def test_sigusr1_silences_a_running_sim_and_sigusr2_makes_it_send_again() -> None:
    async with sim_command() as (proc, base):
        ws = await connect(base + STREAMS)
        try:
            await frames(ws, 20)
            assert not await falls_quiet(ws, within=3.0), "a sending simulator never pauses 1 s"
            proc.send_signal(signal.SIGUSR1)
            assert await printed(proc, "silent: sending no data")
            assert await falls_quiet(ws), "still sending after SIGUSR1"
            proc.send_signal(signal.SIGUSR2)
            assert await printed(proc, "sending data again")
            await frames(ws, 20)  # on the same connection: silence kept it open
        finally:
            ws.transport.abort()
