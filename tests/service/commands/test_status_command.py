"""``tickcast status`` against a real redis-server: the symbols with ticks, and the configured
ones that have none yet."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from tickcast.service.bus import codec, keys
from tickcast.service.cli import main
from tickcast.service.ticks import trade

from support import use_environment

BTC, ETH, SOL = "BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"


@pytest.fixture
def env(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Status reads the session redis-server (with BTC's ticks on ``sim``) and no other
    settings than the test gives."""
    use_environment(monkeypatch, tmp_path, TICKCAST__REDIS__URL=redis_url)
    return redis_url


def add_ticks(client: redis.Redis, symbol: str, n: int = 3) -> None:
    now_ms = time.time_ns() // 1_000_000
    for i in range(n):
        tick = trade("sim", symbol, now_ms + i, time.time_ns(), 60_000.0, 0.1, 1, str(i + 1))
        client.xadd(keys.ticks_key("tickcast", "sim", symbol), codec.encode(tick))  # type: ignore[arg-type]


def status(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["status", "--json", *args])
    rows = json.loads(capsys.readouterr().out)["symbols"]
    return code, {(row["venue"], row["symbol"]): row for row in rows}


def table(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, str]:
    main(["status", *args])
    lines = capsys.readouterr().out.splitlines()
    return {line.split()[1]: line for line in lines[2:]}


def test_configured_symbols_without_ticks_are_listed_after_those_with_ticks(
    env: str, redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    add_ticks(redis_client, BTC)
    configured = ("--set", f'exchange.symbols=["{BTC}", "{ETH}"]')
    code, rows = status(capsys, *configured)
    assert code == 0
    assert list(rows) == [("sim", BTC), ("sim", ETH)]
    assert rows[("sim", BTC)]["ticks_in_stream"] == 3
    assert rows[("sim", ETH)]["ticks_in_stream"] == 0
    assert rows[("sim", ETH)]["last_tick_age_s"] is None
    lines = table(capsys, *configured)
    assert "no ticks yet" in lines[ETH] and "no ticks yet" not in lines[BTC]


def test_configured_symbols_of_a_venue_without_any_tick_are_listed(
    env: str, redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    add_ticks(redis_client, BTC)
    code, rows = status(capsys, "--set", 'exchange.name=["sim", "okx"]')
    assert code == 0
    assert [row for row in rows if row[0] == "okx"] == [("okx", BTC), ("okx", ETH), ("okx", SOL)]
    assert all(rows[("okx", s)]["ticks_in_stream"] == 0 for s in (BTC, ETH, SOL))


def test_on_the_built_in_defaults_a_symbol_without_ticks_is_listed_once_a_process_holds_it(
    env: str, redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    add_ticks(redis_client, BTC)
    _, rows = status(capsys)
    assert list(rows) == [("sim", BTC)], "the defaults name symbols nobody may run"
    redis_client.set(keys.symbol_key("tickcast", "sim", ETH, "owner"), "host1:4242:abc")
    _, rows = status(capsys)
    assert list(rows) == [("sim", BTC), ("sim", ETH)]
    assert rows[("sim", ETH)]["worker_owner"] == "host1:4242:abc"
    assert rows[("sim", ETH)]["ticks_in_stream"] == 0
    assert "host1:4242" in table(capsys)[ETH]


def test_without_any_tick_status_lists_the_configured_symbols_and_exits_one(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, rows = status(capsys, "--set", f'exchange.symbols=["{SOL}"]')
    assert code == 1
    assert list(rows) == [("sim", SOL)]
    assert rows[("sim", SOL)]["ticks_in_stream"] == 0


def test_symbols_given_on_the_command_line_are_the_only_rows(
    env: str, redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    add_ticks(redis_client, BTC)
    code, rows = status(capsys, "--symbols", ETH, "--set", f'exchange.symbols=["{SOL}"]')
    assert code == 1
    assert list(rows) == [("sim", ETH)]
