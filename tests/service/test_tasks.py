"""cancel_and_wait: tasks end, their errors stay theirs, the caller's cancellation is kept."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from tickcast.service.tasks import cancel_and_wait


async def _slow_to_stop(stopped: asyncio.Event) -> None:
    """A task that takes a while to clean up once cancelled."""
    try:
        await asyncio.sleep(60)
    finally:
        await asyncio.sleep(0.2)
        stopped.set()


async def _loop_that_stops_a_helper(rounds: list[int], suppress: bool) -> None:
    """A loop (as a feed reconnecting) ending a helper task at each round, for 20 rounds."""
    while len(rounds) < 20:
        rounds.append(1)
        helper = asyncio.create_task(_slow_to_stop(asyncio.Event()))
        await asyncio.sleep(0)
        if suppress:  # the pattern cancel_and_wait replaces
            helper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await helper
        else:
            await cancel_and_wait(helper)


@pytest.mark.parametrize("suppress", [True, False])
async def test_a_loop_cancelled_while_it_ends_a_task_stops_only_with_cancel_and_wait(
    suppress: bool,
) -> None:
    rounds: list[int] = []
    loop_task = asyncio.create_task(_loop_that_stops_a_helper(rounds, suppress))
    await asyncio.sleep(0.05)  # inside the first round's wait for its helper
    loop_task.cancel()
    await asyncio.sleep(0.5)
    if suppress:  # the cancellation was swallowed: the loop went on
        assert not loop_task.done() and len(rounds) >= 2
        await loop_task  # its 20 rounds
    else:
        assert loop_task.cancelled() and rounds == [1]


async def test_every_task_has_ended_and_their_errors_are_not_the_callers() -> None:
    stopped = asyncio.Event()

    async def fails() -> None:
        raise ValueError("its own")

    slow = asyncio.create_task(_slow_to_stop(stopped))
    failed = asyncio.create_task(fails())
    await asyncio.sleep(0)
    await cancel_and_wait(slow, failed)
    assert stopped.is_set() and slow.cancelled()
    assert isinstance(failed.exception(), ValueError)
    await cancel_and_wait()  # nothing to end
