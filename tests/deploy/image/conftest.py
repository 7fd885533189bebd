"""The image's smoke test runs under ``make image`` only: ``make test`` (plain ``pytest``)
does not collect this folder, since it needs docker and a built image.

It is collected when ``TICKCAST_IMAGE`` names the image to test (``make image`` sets it to
``tickcast:<version>``) or when this folder or a file in it is named on the command line
(then ``tickcast:latest``). Once collected, a missing docker, daemon or image fails the tests:
they never skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _named(config: pytest.Config) -> bool:
    """Whether a command-line argument points at this folder or into it."""
    root = config.invocation_params.dir
    for arg in config.args:
        path = (root / arg.split("::", 1)[0]).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Leave this folder's test files out unless asked for (see the module docstring)."""
    if collection_path.suffix != ".py" or collection_path.name == "conftest.py":
        return None
    if os.environ.get("TICKCAST_IMAGE") or _named(config):
        return None
    return True
