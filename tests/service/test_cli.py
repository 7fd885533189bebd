"""The console script answers --version and --help."""

from __future__ import annotations

import subprocess
import sys

from tickcast.service import __version__
from tickcast.service.cli import main


def test_version_flag_prints_the_package_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tickcast.service.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == f"tickcast {__version__}"


def test_help_lists_the_program_name(capsys: object) -> None:
    assert main([]) == 0
