"""The fixtures the deployment tests share (their helpers are in ``deploy_support.py``,
imported by name: this folder is on pytest's ``pythonpath``)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """This process's environment without any TICKCAST variable."""
    for name in list(os.environ):
        if name.startswith("TICKCAST"):
            monkeypatch.delenv(name)
    yield monkeypatch
