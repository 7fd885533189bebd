"""Reading ahead in a child process: the same ticks in the same order, errors raised here."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from tickcast.service.offline.readahead import ReadAheadError, read_ahead
from tickcast.service.offline.readers import RecordingFormatError, read_ticks


def test_the_child_reads_the_recording_tick_for_tick(binance_recording: Path) -> None:
    ahead = list(read_ahead(partial(read_ticks, [binance_recording]), background=True))
    here = list(read_ticks([binance_recording]))
    assert len(ahead) == len(here) == 87_402
    assert ahead == here
    assert not multiprocessing.active_children()


def test_reading_here_gives_the_same_items() -> None:
    assert list(read_ahead(lambda: iter(range(10)), batch=3, background=False)) == list(range(10))


def _fails_after_three() -> Iterator[int]:
    yield from (1, 2, 3)
    raise ValueError("frame 4 is bad")


def test_an_error_of_the_source_is_raised_here_after_the_items_before_it() -> None:
    seen: list[int] = []
    with pytest.raises(ValueError, match="frame 4 is bad"):
        for item in read_ahead(_fails_after_three, batch=2, background=True):
            seen.append(item)
    assert seen == [1, 2, 3]


def test_a_file_in_no_known_format_is_refused_as_when_read_here(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are not ticks\n")
    with pytest.raises(RecordingFormatError, match=r"notes\.txt") as here:
        list(read_ticks([path]))
    with pytest.raises(RecordingFormatError) as ahead:
        list(read_ahead(partial(read_ticks, [path]), background=True))
    assert str(ahead.value) == str(here.value)


class _UnpicklableError(Exception):
    def __init__(self, code: int, why: str) -> None:
        super().__init__(f"{code}: {why}")


def _raises_unpicklable() -> Iterator[int]:
    yield 1
    raise _UnpicklableError(7, "a lock cannot travel")


def test_an_error_that_cannot_travel_arrives_as_text() -> None:
    with pytest.raises(ReadAheadError, match="_UnpicklableError: 7: a lock cannot travel"):
        list(read_ahead(_raises_unpicklable, background=True))


def _dies() -> Iterator[int]:
    yield 1
    os._exit(3)


def test_a_child_that_dies_is_reported_with_its_exit_code() -> None:
    with pytest.raises(ReadAheadError, match="ended early \\(exit code 3\\)"):
        list(read_ahead(_dies, batch=1, background=True))


def test_a_reader_that_stops_early_leaves_no_process_behind() -> None:
    items = read_ahead(lambda: iter(range(10**9)), batch=100, background=True)
    assert [next(items) for _ in range(150)] == list(range(150))
    assert len(multiprocessing.active_children()) == 1
    items.close()  # type: ignore[attr-defined]
    assert not multiprocessing.active_children()


_KILLED_PARENT = """
import os, sys, time
from tickcast.service.offline.readahead import read_ahead
import multiprocessing
items = read_ahead(lambda: iter(range(10**9)), batch=100, background=True)
next(items)
print(multiprocessing.active_children()[0].pid, flush=True)
time.sleep(60)
"""


def test_the_child_ends_when_its_parent_is_killed() -> None:
    with subprocess.Popen([sys.executable, "-c", _KILLED_PARENT], stdout=subprocess.PIPE) as parent:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        parent.kill()
    for _ in range(200):  # its next write finds no reader
        if not Path(f"/proc/{child}").exists() or "Z" in _state(child):
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the reading process {child} outlived its parent")


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return "Z"
