"""The console script answers --version and --help (in plain text)."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tickcast.service import __version__
from tickcast.service.bus.embedded import free_port
from tickcast.service.cli import build_parser, command_modules, main, plain_text
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


def parsers(
    parser: argparse.ArgumentParser, name: str = "tickcast"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """``parser`` and every subcommand's parser below it, by command line."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from parsers(sub, f"{name} {sub_name}")


REST_MARKUP = re.compile(r"``|:[a-z]+:`|`")


def test_every_help_text_is_plain_text_without_none_defaults() -> None:
    found = dict(parsers(build_parser()))
    assert {"tickcast run", "tickcast status", "tickcast config show"} <= set(found)
    assert {f"tickcast {name}" for name in command_modules()} <= set(found)
    for name, parser in found.items():
        text = parser.format_help()
        assert not REST_MARKUP.search(text), f"{name} --help: {REST_MARKUP.findall(text)}"
        assert "(default: None)" not in text, f"{name} --help"
        assert "(default: False)" not in text, f"{name} --help"
    backtest = found["tickcast backtest"].format_help()
    assert "(default: 1000)" in backtest, "a real default is still named"
    words = " ".join(backtest.split())
    assert "default: --horizon-ms alone --sample-ms" in words, "no second default after the own"
    run = found["tickcast run"].format_help()
    assert "tickcast run: ingest + worker + metrics" in " ".join(run.split())


def test_run_help_from_the_command_line_is_plain_text() -> None:
    done = subprocess.run([*CLI, "run", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "usage: tickcast run" in done.stdout
    assert not REST_MARKUP.search(done.stdout) and "default: None" not in done.stdout
    paragraphs = done.stdout.split("\n\n")
    assert any(p.startswith("Ctrl-C or q in the view") for p in paragraphs), "paragraphs kept"


def test_plain_text_drops_the_markup_and_keeps_the_words() -> None:
    assert plain_text("see :class:`~tickcast.service.live.service.Service` and ``--symbols``") == (
        "see Service and --symbols"
    )
    assert plain_text(":mod:`tickcast.service.bus.lease`") == "tickcast.service.bus.lease"
    assert plain_text("``--horizons\n1000,10000``") == "--horizons\n1000,10000"
