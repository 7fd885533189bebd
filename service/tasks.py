"""Ending asyncio tasks without losing the caller's own cancellation.

The usual ``task.cancel()`` then ``with suppress(CancelledError): await task`` has a flaw:
when the *caller* is cancelled while it waits there, that cancellation is suppressed too, and
a caller that loops (a feed reconnecting, a pool's rounds) goes on as if nothing had asked it
to stop. :func:`cancel_and_wait` waits for the tasks without taking their outcome as its own.

Examples
--------
>>> import asyncio
>>> async def main() -> bool:
...     task = asyncio.create_task(asyncio.sleep(60))
...     await cancel_and_wait(task)
...     return task.cancelled()
>>> asyncio.run(main())
True
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(*tasks: asyncio.Future[Any]) -> None:
    """Cancel ``tasks`` and wait until every one has ended, whatever it ended with (an error
    a task raised is retrieved, not raised). A cancellation of the caller while it waits is
    raised, not suppressed."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks)
    for task in tasks:
        if not task.cancelled():
            task.exception()  # it ended on its own first: its outcome is not the caller's
