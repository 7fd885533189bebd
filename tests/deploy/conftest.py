"""The deployment tests: their shared helpers (``deploy_support.py``, imported by name: this
folder goes on ``sys.path`` here, so no test module imports another), and the fixtures they
share."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """This process's environment without any TICKCAST variable."""
    for name in list(os.environ):
        if name.startswith("TICKCAST"):
            monkeypatch.delenv(name)
    yield monkeypatch
