"""Ticks read and parsed in a child process while this one learns: a two-stage pipeline.

Reading a recording (decompressing, decoding JSON, parsing and validating each frame) costs
about as much as the learners that consume its ticks: on the shared BTCUSDT recording each
takes half of a backtest's time. :func:`read_ahead` runs the reading in a forked child process
that sends the ticks in pickled batches through a pipe, so that on two cores or more both
stages run at once. The pipe's buffer bounds what is in flight (the child blocks when this
process lags), the ticks arrive in the order the source made them, and an error raised by the
source (a file in no known format, say) is raised again here, at the same point of the stream.
Where ``fork`` is not available, or there is one core, the source is simply iterated here.

Examples
--------
>>> list(read_ahead(lambda: range(5), batch=2))
[0, 1, 2, 3, 4]
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from tickcast.service import TickcastError

__all__ = ["ReadAheadError", "read_ahead"]

T = TypeVar("T")

_ITEMS, _END, _ERROR = "items", "end", "error"


class ReadAheadError(TickcastError):
    """The reading process ended without finishing, or failed with an error that could not
    be sent back as it was."""


def read_ahead(
    source: Callable[[], Iterable[T]], *, batch: int = 1024, background: bool | None = None
) -> Iterator[T]:
    """The items of ``source()``, made in a child process (see the module docstring).

    Parameters
    ----------
    source : callable
        Makes the iterable to read; called in the child (it need not be picklable: the
        child is forked), or here when reading in the background is off.
    batch : int
        Items per message through the pipe.
    background : bool or None
        Read in a child process; None (default): when ``fork`` exists and there are two
        cores or more.
    """
    if background is None:
        background = _can_fork() and (os.cpu_count() or 1) > 1
    if not background:
        yield from source()
        return
    context = multiprocessing.get_context("fork")
    receiving, sending = context.Pipe(duplex=False)
    child = context.Process(target=_produce, args=(source, sending, receiving, batch), daemon=True)
    child.start()
    sending.close()
    try:
        while True:
            try:
                kind, payload = pickle.loads(receiving.recv_bytes())
            except EOFError:
                child.join()
                raise ReadAheadError(
                    f"the reading process ended early (exit code {child.exitcode})"
                ) from None
            if kind == _ITEMS:
                yield from payload
            elif kind == _ERROR:
                raise payload
            else:
                return
    finally:
        receiving.close()
        if child.is_alive():
            child.terminate()
        child.join()


def _can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def _produce(
    source: Callable[[], Iterable[Any]], sending: Connection, receiving: Connection, batch: int
) -> None:
    """The child: send :func:`_messages`. Ctrl-C is the parent's to handle (it stops this
    process); a parent that stopped reading, or died, closes the pipe, which ends this one
    quietly (so the child closes its copy of the reading end first)."""
    receiving.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for message in _messages(source, batch):
            sending.send_bytes(pickle.dumps(message, pickle.HIGHEST_PROTOCOL))
    except (BrokenPipeError, ConnectionResetError):
        pass  # the parent stopped reading
    finally:
        sending.close()


def _messages(source: Callable[[], Iterable[Any]], batch: int) -> Iterator[tuple[str, Any]]:
    """``source()`` in batches, then the end, or the items before an error and the error
    (as it is when it survives pickling, else its text in a :class:`ReadAheadError`)."""
    items: list[Any] = []
    try:
        for item in source():
            items.append(item)
            if len(items) >= batch:
                yield _ITEMS, items
                items = []
    except Exception as exc:
        if items:
            yield _ITEMS, items
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:
            exc = ReadAheadError(f"{type(exc).__name__}: {exc}")
        yield _ERROR, exc
        return
    if items:
        yield _ITEMS, items
    yield _END, None
