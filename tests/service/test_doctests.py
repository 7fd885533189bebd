"""Run every docstring example in tickcast.service as a doctest."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import tickcast.service


def test_every_service_docstring_example_runs() -> None:
    attempted = 0
    failures: list[str] = []
    for info in pkgutil.walk_packages(tickcast.service.__path__, "tickcast.service."):
        module = importlib.import_module(info.name)
        flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
        result = doctest.testmod(module, optionflags=flags)
        attempted += result.attempted
        if result.failed:
            failures.append(f"{info.name}: {result.failed} failed")
    assert not failures, failures
    assert attempted > 50, "tickcast.service has lost its doctest examples"
