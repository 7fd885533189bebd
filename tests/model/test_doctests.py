"""Run every docstring example in tickcast.model as a doctest."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import tickcast.model


def test_every_model_docstring_example_runs() -> None:
    attempted = 0
    failures: list[str] = []
    for info in pkgutil.iter_modules(tickcast.model.__path__):
        module = importlib.import_module(f"tickcast.model.{info.name}")
        flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
        result = doctest.testmod(module, optionflags=flags)
        attempted += result.attempted
        if result.failed:
            failures.append(f"{info.name}: {result.failed} failed")
    assert not failures, failures
    assert attempted > 0, "tickcast.model has no doctest examples"
