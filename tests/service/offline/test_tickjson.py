"""tickcast's JSONL tick format: exact round trips, version checks, errors chained to the cause."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import orjson
import pytest

from tickcast.service import TickcastError
from tickcast.service.offline import tickjson
from tickcast.service.offline.tickjson import VERSION, TickJsonError, decode, encode, encode_many
from tickcast.service.ticks import Tick, quote, trade
from tickcast.service.venues.binance.usdm import VENUE as USDM

TRADE_TICK = trade("binanceusdm", "BTC/USDT:USDT", 1723161256322, 1723161255088176367,
                   61800.3, 0.006, 1, "5266583935")  # fmt: skip
QUOTE_TICK = quote("binanceusdm", "BTC/USDT:USDT", 1723161256313, 1723161255088169167,
                   61800.2, 2.507, 61800.3, 2.51, 5123107839020)  # fmt: skip


@pytest.fixture(scope="module")
def real_ticks(binance_recording: Path) -> list[Tick]:
    parser = USDM.parser()
    with gzip.open(binance_recording, "rb") as fh:
        return [t for line in fh for t in parser.parse(line.partition(b" ")[2], 1)]


def test_every_real_tick_survives_a_round_trip_bit_exactly(real_ticks: list[Tick]) -> None:
    assert len(real_ticks) == 87_402
    for tick in real_ticks:
        back = decode(encode(tick))
        assert back == tick
        assert [type(v) for v in back] == [type(v) for v in tick]


def test_a_line_is_one_versioned_json_object_without_a_newline() -> None:
    line = encode(TRADE_TICK)
    assert b"\n" not in line
    obj = orjson.loads(line)
    assert obj["v"] == VERSION == 1
    assert list(obj) == ["v", "venue", "symbol", "kind", "event_ms", "recv_ns",
                         "price", "size", "side", "trade_id"]  # fmt: skip
    assert list(orjson.loads(encode(QUOTE_TICK)))[6:] == [
        "bid", "bid_size", "ask", "ask_size", "update_id",
    ]  # fmt: skip


def test_the_documented_example_lines_decode_to_their_ticks() -> None:
    doc = tickjson.__doc__ or ""
    lines = [ln.strip().encode() for ln in doc.splitlines() if ln.strip().startswith('{"v"')]
    assert [decode(ln) for ln in lines] == [TRADE_TICK, QUOTE_TICK]
    assert lines == [encode(TRADE_TICK), encode(QUOTE_TICK)]


def test_encode_many_writes_newline_terminated_lines() -> None:
    blob = encode_many([TRADE_TICK, QUOTE_TICK])
    assert blob.endswith(b"\n")
    assert [decode(ln) for ln in blob.splitlines()] == [TRADE_TICK, QUOTE_TICK]
    assert decode(blob.splitlines()[0].decode() + "\r\n") == TRADE_TICK


@pytest.mark.parametrize("version", [2, 0, "1", None, 1.0, True])
def test_another_version_is_refused(version: object) -> None:
    obj = orjson.loads(encode(TRADE_TICK))
    obj["v"] = version
    with pytest.raises(TickJsonError, match="version"):
        decode(orjson.dumps(obj))


def test_a_missing_version_is_refused() -> None:
    obj = orjson.loads(encode(QUOTE_TICK))
    del obj["v"]
    with pytest.raises(TickJsonError, match="version"):
        decode(orjson.dumps(obj))


def test_unknown_keys_are_ignored() -> None:
    obj = orjson.loads(encode(QUOTE_TICK))
    obj["note"] = "added by a later minor version"
    assert decode(orjson.dumps(obj)) == QUOTE_TICK


BAD_EDITS: list[tuple[str, dict[str, object], str]] = [
    ("missing price", {"price": None}, "missing key 'price'"),
    ("text price", {"price": "61800.3"}, "price must be a number"),
    ("float time", {"event_ms": 1.5}, "event_ms must be int"),
    ("bool side", {"side": True}, "side must be int"),
    ("numeric trade id", {"trade_id": 5}, "trade_id must be str"),
    ("unknown kind", {"kind": "bar"}, "unknown kind"),
    ("zero price", {"price": 0.0}, "price not positive"),
    ("bad side", {"side": 2}, "bad side flag"),
    ("negative time", {"event_ms": -1}, "event time"),
]


@pytest.mark.parametrize(
    ("edit", "message"), [c[1:] for c in BAD_EDITS], ids=[c[0] for c in BAD_EDITS]
)
def test_an_invalid_line_raises_a_module_error_naming_the_problem(
    edit: dict[str, object], message: str
) -> None:
    obj = orjson.loads(encode(TRADE_TICK))
    for key, value in edit.items():
        if value is None:
            del obj[key]
        else:
            obj[key] = value
    with pytest.raises(TickJsonError, match=message):
        decode(orjson.dumps(obj))


def test_a_crossed_quote_line_is_refused() -> None:
    obj = orjson.loads(encode(QUOTE_TICK))
    obj["bid"] = 70000.0
    with pytest.raises(TickJsonError, match="bid above ask"):
        decode(orjson.dumps(obj))


def test_errors_are_chained_to_their_cause() -> None:
    with pytest.raises(TickJsonError) as not_json:
        decode(b'{"v":1,')
    assert isinstance(not_json.value.__cause__, orjson.JSONDecodeError)
    with pytest.raises(TickJsonError) as missing:
        decode(b'{"v":1,"venue":"sim"}')
    assert isinstance(missing.value.__cause__, KeyError)
    with pytest.raises(TickJsonError, match="not a JSON object"):
        decode(b"[1]")
    assert issubclass(TickJsonError, TickcastError)


@pytest.mark.parametrize(
    "tick",
    [
        TRADE_TICK._replace(price=math.nan),
        TRADE_TICK._replace(size=math.inf),
        TRADE_TICK._replace(side=0),
        QUOTE_TICK._replace(ask=61800.0),
        QUOTE_TICK._replace(kind="bar"),
    ],
)
def test_an_invalid_tick_is_not_written(tick: Tick) -> None:
    with pytest.raises(TickJsonError, match="invalid tick"):
        encode(tick)


def test_a_tick_with_a_field_of_the_wrong_type_is_not_written() -> None:
    with pytest.raises(TickJsonError) as err:
        encode(TRADE_TICK._replace(recv_ns=2**70))
    assert isinstance(err.value.__cause__, TypeError)
