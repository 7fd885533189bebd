"""JSON log lines: context and ``extra=`` as fields of their own, secrets redacted everywhere."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from tickcast.service.ops.logs import JsonFormatter, instrument_fields, log_context
from tickcast.service.ticks import Instrument


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """Records of the ``tickcast.test`` logger, as JSON lines, into a buffer."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tickcast.test")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        logger.removeHandler(handler)


def records(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_fields_come_from_the_context_and_from_extra(lines: io.StringIO) -> None:
    log = logging.getLogger("tickcast.test")
    with log_context(venue="bybit", url="wss://u:hunter2@stream.example/ws?token=abc"):
        log.warning("feed failed; retry in %.1f s", 1.5, extra={"error": "OSError: refused"})
        log.info("row", extra=instrument_fields(Instrument("bybit", "BTC/USDT:USDT")))
    log.info("outside")
    first, second, third = records(lines)
    assert first["venue"] == "bybit" and first["error"] == "OSError: refused"
    assert first["url"] == "wss://u:***@stream.example/ws?token=***"
    assert first["msg"] == "feed failed; retry in 1.5 s" and first["level"] == "WARNING"
    assert second["symbol"] == "BTC/USDT:USDT"
    assert "venue" not in third and "url" not in third


def test_a_password_in_the_message_or_a_traceback_is_redacted(lines: io.StringIO) -> None:
    log = logging.getLogger("tickcast.test")
    try:
        raise ConnectionError("cannot reach redis://worker:s3cret@10.0.0.1:6379/0")
    except ConnectionError:
        log.exception("lost redis://worker:s3cret@10.0.0.1:6379/0")
    (line,) = records(lines)
    text = json.dumps(line)
    assert "s3cret" not in text
    assert line["msg"] == "lost redis://worker:***@10.0.0.1:6379/0"
    assert line["error"] == "ConnectionError: cannot reach redis://worker:***@10.0.0.1:6379/0"


async def test_a_task_created_inside_a_context_keeps_its_fields(lines: io.StringIO) -> None:
    log = logging.getLogger("tickcast.test")

    async def feed() -> None:
        await asyncio.sleep(0)
        log.info("tick")

    with log_context(venue="okx"):
        task = asyncio.get_running_loop().create_task(feed())
    await task
    (line,) = records(lines)
    assert line["venue"] == "okx"
