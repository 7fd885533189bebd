"""The console script answers --version and --help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tickcast.service import __version__
from tickcast.service.bus.embedded import free_port
from tickcast.service.cli import main
from tickcast.service.venues.registry import VENUES, venue

from support import CLI, environment


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


def test_an_unreachable_redis_is_a_one_line_error_not_a_traceback(tmp_path: Path) -> None:
    env = environment(tmp_path, TICKCAST__REDIS__URL=f"redis://127.0.0.1:{free_port()}/0")
    done = subprocess.run(
        [*CLI, "subscribe", "--count", "1"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "tickcast: error: Redis unreachable" in done.stderr
    assert "Traceback" not in done.stderr


def test_venues_lists_every_registered_venue_and_what_it_is_given(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["venues", "--json"]) == 0
    rows = {row["exchange"]: row for row in map(json.loads, capsys.readouterr().out.splitlines())}
    assert set(rows) == set(VENUES)
    assert rows["okx"]["urls"] == dict(venue("okx").routes)
    assert rows["okx"]["keepalive"] == "sends ping every 20 s"
    assert rows["bingx"]["keepalive"] == "answers the venue's pings"
    assert rows["bitmex"]["retired"] and not rows["bybit"]["retired"]
    assert all(row["markets_shipped"] >= 5 for row in rows.values())
    assert main(["venues"]) == 0
    table = capsys.readouterr().out
    assert "retired: recordings only" in table and table.rstrip().endswith("on loopback")
