"""The chaos suite (see ``harness.py``): its modules import ``harness`` by name, and the
figures of every scenario are printed as one table at the end of the session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import LONG, REPORTS, table


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the scenarios' figures (``make chaos`` shows the long version's)."""
    if not REPORTS:
        return
    version = "long" if LONG else "short"
    terminalreporter.section(f"chaos scenarios ({version} version)")
    terminalreporter.write_line(table(REPORTS))
