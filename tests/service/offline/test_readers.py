"""Recorded-data readers: every format, gz/zip/plain, headers, merge order, symbol filters."""

from __future__ import annotations

import gzip
import itertools
import zipfile
from collections.abc import Iterable
from pathlib import Path

import orjson
import pytest

from tickcast.service import ticks as contract
from tickcast.service.offline.readers import RecordingFormatError, iter_file, read_ticks
from tickcast.service.offline.tickjson import encode_many
from tickcast.service.ticks import QUOTE, TRADE, Tick
from tickcast.service.venues import base
from tickcast.service.venues.base import ParseStats
from tickcast.service.venues.binance.usdm import VENUE as USDM

BTC = "BTC/USDT:USDT"
AGG_HEADER = "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker"
BOOK_HEADER = (
    "update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,transaction_time,event_time"
)


@pytest.fixture(scope="module")
def recording_lines(binance_recording: Path) -> list[bytes]:
    with gzip.open(binance_recording, "rb") as fh:
        return fh.readlines()


@pytest.fixture(scope="module")
def real_ticks(recording_lines: list[bytes]) -> list[Tick]:
    """The recording's ticks as the parser makes them, in file order."""
    parser = USDM.parser()
    out: list[Tick] = []
    for line in recording_lines:
        ns, _, frame = line.partition(b" ")
        out += parser.parse(frame, int(ns))
    return out


def _write(path: Path, text: str | bytes, how: str = "plain") -> Path:
    data = text.encode() if isinstance(text, str) else text
    if how == "gz":
        path.write_bytes(gzip.compress(data))
    elif how == "zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(path.stem + ".csv", data)
    else:
        path.write_bytes(data)
    return path


def _agg_rows(ticks: Iterable[Tick]) -> list[str]:
    return [
        f"{t.trade_id},{t.price},{t.size},{t.trade_id},{t.trade_id},{t.event_ms},"
        f"{'true' if t.side == -1 else 'false'}"
        for t in ticks
        if t.kind == TRADE
    ]


def _book_rows(ticks: Iterable[Tick]) -> list[str]:
    return [
        f"{t.update_id},{t.bid},{t.bid_size},{t.ask},{t.ask_size},{t.event_ms},{t.event_ms + 1}"
        for t in ticks
        if t.kind == QUOTE
    ]


def _as_csv(t: Tick) -> Tick:
    """What a public-data CSV keeps of a tick: no receive time of its own."""
    return t._replace(recv_ns=t.event_ms * 1_000_000)


@pytest.mark.parametrize("how", ["plain", "gz"])
def test_a_recording_reads_like_the_parser_reads_its_frames(
    tmp_path: Path, recording_lines: list[bytes], real_ticks: list[Tick], how: str
) -> None:
    path = _write(tmp_path / "capture.bin", b"".join(recording_lines[:3000]), how)
    stats = ParseStats()
    ticks = list(iter_file(path, stats=stats))
    expected = real_ticks[: stats.total_parsed]
    assert ticks == expected
    assert stats.total_parsed + stats.total_skipped == 3000
    assert stats.rejected == {}


def test_the_whole_real_recording_reads_with_exact_counts(
    binance_recording: Path, real_ticks: list[Tick]
) -> None:
    stats = ParseStats()
    ticks = list(read_ticks([binance_recording], stats=stats))
    assert (stats.parsed_trades, stats.parsed_quotes) == (21_313, 66_089)
    assert stats.skipped == {base.SKIP_DEPTH: 6_551, base.SKIP_SNAPSHOT: 1}
    assert ticks == real_ticks


def test_the_2021_session_layout_reads_with_receive_times_from_each_line(
    samples_dir: Path,
) -> None:
    stats = ParseStats()
    path = samples_dir / "binance-usdm" / "recording-2021-07-22.ws.txt"
    ticks = list(iter_file(path, stats=stats))
    assert (stats.parsed_trades, stats.parsed_quotes) == (91, 613)
    assert stats.rejected == {}
    assert ticks[0].recv_ns == 1626992741062170000
    assert ticks[0].symbol == "SUSHI/USDT:USDT"
    sushi = list(iter_file(path, symbols=["SUSHIUSDT"]))
    assert sushi == [t for t in ticks if t.symbol == "SUSHI/USDT:USDT"]
    assert 0 < len(sushi) < len(ticks)


@pytest.mark.parametrize(
    ("how", "header"), list(itertools.product(["plain", "gz", "zip"], [True, False]))
)
def test_an_aggtrades_csv_reads_with_or_without_its_header(
    tmp_path: Path, real_ticks: list[Tick], how: str, header: bool
) -> None:
    trades = [t for t in real_ticks if t.kind == TRADE][:500]
    rows = ([AGG_HEADER] if header else []) + _agg_rows(trades)
    suffix = {"plain": ".csv", "gz": ".csv.gz", "zip": ".zip"}[how]
    path = _write(tmp_path / f"BTCUSDT-aggTrades-2024-08-08{suffix}", "\n".join(rows) + "\n", how)
    stats = ParseStats()
    assert list(iter_file(path, stats=stats)) == [_as_csv(t) for t in trades]
    assert (stats.parsed_trades, stats.total_rejected) == (500, 0)


@pytest.mark.parametrize(("how", "header"), [("plain", True), ("gz", False), ("zip", True)])
def test_a_bookticker_csv_reads_with_or_without_its_header(
    tmp_path: Path, real_ticks: list[Tick], how: str, header: bool
) -> None:
    quotes = [t for t in real_ticks if t.kind == QUOTE][:500]
    rows = ([BOOK_HEADER] if header else []) + _book_rows(quotes)
    suffix = {"plain": ".csv", "gz": ".csv.gz", "zip": ".zip"}[how]
    path = _write(tmp_path / f"BTCUSDT-bookTicker-2024-08-08{suffix}", "\r\n".join(rows), how)
    stats = ParseStats()
    assert list(iter_file(path, stats=stats)) == [_as_csv(t) for t in quotes]
    assert (stats.parsed_quotes, stats.total_rejected) == (500, 0)


def test_a_bookticker_row_without_transaction_time_uses_the_event_time(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "ETHUSDT-bookTicker-2024-08-08.csv", "7,10.5,1,10.6,2,,1700000000123\n"
    )
    (tick,) = iter_file(path)
    assert (tick.symbol, tick.event_ms, tick.update_id) == ("ETH/USDT:USDT", 1700000000123, 7)
    assert (tick.bid, tick.bid_size, tick.ask, tick.ask_size) == (10.5, 1.0, 10.6, 2.0)


def test_microsecond_times_are_read_as_milliseconds(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "BTCUSDT-aggTrades-2025-01-01.csv", "1,100,2,1,1,1735689600123456,true\n"
    )
    (tick,) = iter_file(path)
    assert (tick.event_ms, tick.side, tick.trade_id) == (1735689600123, -1, "1")


def test_a_tickjson_file_reads_back_what_was_written(
    tmp_path: Path, real_ticks: list[Tick]
) -> None:
    sample = real_ticks[:2000]
    for how in ("plain", "gz"):
        path = _write(tmp_path / f"ticks.{how}", encode_many(sample), how)
        stats = ParseStats()
        assert list(iter_file(path, stats=stats)) == sample
        assert stats.total_parsed == 2000


def test_files_merge_in_event_time_order_and_ties_keep_file_order(
    tmp_path: Path, real_ticks: list[Tick]
) -> None:
    window = real_ticks[:4000]
    trades = _write(tmp_path / "BTCUSDT-aggTrades-x.csv", "\n".join(_agg_rows(window)))
    quotes = _write(tmp_path / "BTCUSDT-bookTicker-x.csv.gz", "\n".join(_book_rows(window)), "gz")
    merged = list(read_ticks([trades, quotes]))
    assert len(merged) == len(window)
    expected = sorted(
        [(t.event_ms, 0, i, t) for i, t in enumerate(iter_file(trades))]
        + [(t.event_ms, 1, i, t) for i, t in enumerate(iter_file(quotes))],
        key=lambda k: k[:3],
    )
    assert merged == [k[3] for k in expected]
    times = [t.event_ms for t in merged]
    assert times == sorted(times)
    trade_ms = {t.event_ms for t in merged if t.kind == TRADE}
    tie_ms = next(t.event_ms for t in merged if t.kind == QUOTE and t.event_ms in trade_ms)
    swapped = list(read_ticks([quotes, trades]))
    assert next(t for t in merged if t.event_ms == tie_ms).kind == TRADE
    assert next(t for t in swapped if t.event_ms == tie_ms).kind == QUOTE
    assert sorted(swapped, key=lambda t: (t.event_ms, t.kind)) == sorted(
        merged, key=lambda t: (t.event_ms, t.kind)
    )


def test_a_symbol_filter_keeps_only_those_symbols_in_every_format(
    tmp_path: Path, binance_recording: Path, real_ticks: list[Tick]
) -> None:
    eth = [t._replace(symbol="ETH/USDT:USDT") for t in real_ticks[:300]]
    jsonl = _write(tmp_path / "mixed.jsonl", encode_many(real_ticks[:300] + eth))
    csv = _write(tmp_path / "ETHUSDT-aggTrades-2024-08-08.csv", "\n".join(_agg_rows(eth)))
    stats = ParseStats()
    kept = list(read_ticks([jsonl, csv, binance_recording], symbols={"ETH/USDT:USDT"}, stats=stats))
    assert {t.symbol for t in kept} == {"ETH/USDT:USDT"}
    assert len(kept) == 300 + len(_agg_rows(eth))
    assert stats.skipped[base.SKIP_UNSUBSCRIBED] == 300 + 87_402
    none = list(read_ticks([csv], symbols=[BTC]))
    assert none == []


def test_a_csv_symbol_comes_from_the_override_when_the_name_has_none(tmp_path: Path) -> None:
    path = _write(tmp_path / "trades.csv", AGG_HEADER + "\n1,100.5,2,1,1,1700000000000,false\n")
    with pytest.raises(RecordingFormatError, match=r"trades\.csv.*symbol="):
        list(iter_file(path))
    assert next(iter_file(path, symbol="ETHUSDT")).symbol == "ETH/USDT:USDT"
    assert next(read_ticks([path], symbol="SOL/USDC:USDC")).symbol == "SOL/USDC:USDC"


def test_bad_rows_are_counted_and_skipped(tmp_path: Path) -> None:
    rows = [
        "1,100.5,2,1,1,1700000000000,false",
        "2,abc,2,2,2,1700000000001,false",
        "3,-5,2,3,3,1700000000002,true",
        "4,100.5,2,4,4,1700000000003,maybe",
        "5,100.5,2",
        "6,nan,1,6,6,1700000000004,true",
        "7,100.5,3,7,7,1700000000005,true",
    ]
    path = _write(tmp_path / "BTCUSDT-aggTrades-2024-08-08.csv", "\n".join(rows) + "\n\n")
    stats = ParseStats()
    assert [t.trade_id for t in iter_file(path, stats=stats)] == ["1", "7"]
    assert stats.rejected == {
        base.REJECT_LINE: 3, contract.REJECT_PRICE: 1, contract.REJECT_NON_FINITE: 1,
    }  # fmt: skip
    book = _write(tmp_path / "BTCUSDT-bookTicker-2024-08-08.csv", "1,10,1,9,1,5,5\n2,9,1,10,1,6,6")
    stats = ParseStats()
    assert len(list(iter_file(book, stats=stats))) == 1
    assert stats.rejected == {contract.REJECT_CROSSED: 1}


def test_bad_lines_in_captures_and_tick_files_are_counted(
    tmp_path: Path, recording_lines: list[bytes], real_ticks: list[Tick]
) -> None:
    capture = _write(tmp_path / "cap", recording_lines[1] + b"garbage line\n" + recording_lines[2])
    stats = ParseStats()
    assert len(list(iter_file(capture, stats=stats))) == 2
    assert stats.rejected == {base.REJECT_LINE: 1}
    lines = encode_many(real_ticks[:2]).splitlines()
    ticks = _write(tmp_path / "t.jsonl", b"\n".join([lines[0], b'{"v":1}', b"[]", lines[1]]))
    stats = ParseStats()
    assert list(iter_file(ticks, stats=stats)) == real_ticks[:2]
    assert stats.rejected == {base.REJECT_LINE: 2}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"hello world\n", "unrecognised first line"),
        (b"a,b,c\n1,2,3\n", "unrecognised first line"),
        (b'{"stream":"btcusdt@trade","data":{}}\n', "not a tickcast tick"),
    ],
)
def test_an_unknown_format_names_the_file_and_the_accepted_formats(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = _write(tmp_path / "mystery.dat", content)
    with pytest.raises(RecordingFormatError, match=message) as err:
        list(read_ticks([path]))
    assert "mystery.dat" in str(err.value)
    assert "accepted formats" in str(err.value)


def test_a_tick_file_of_another_version_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "future.jsonl", b'{"v":2,"venue":"sim"}\n')
    with pytest.raises(RecordingFormatError, match=r"future\.jsonl: .*version 2"):
        list(read_ticks([path]))


def test_a_tick_file_whose_first_line_is_invalid_is_still_read(
    tmp_path: Path, real_ticks: list[Tick]
) -> None:
    crossed = orjson.loads(encode_many(real_ticks[:1]))
    crossed["bid"] = crossed["ask"] + 1.0
    first = orjson.dumps(crossed) + b"\n"
    path = _write(tmp_path / "t.jsonl", first + encode_many(real_ticks[1:4]))
    stats = ParseStats()
    assert list(iter_file(path, stats=stats)) == real_ticks[1:4]
    assert stats.rejected == {base.REJECT_LINE: 1}


def test_a_zip_with_several_files_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-aggTrades-2024-08-08.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.csv", "1,1,1,1,1,1,true\n")
        archive.writestr("b.csv", "1,1,1,1,1,1,true\n")
    with pytest.raises(RecordingFormatError, match="exactly one file"):
        list(iter_file(path))


def test_an_empty_file_yields_nothing(tmp_path: Path) -> None:
    assert list(iter_file(_write(tmp_path / "empty", "\n\n"))) == []
    assert list(read_ticks([_write(tmp_path / "empty.gz", b"", "gz")])) == []


def test_reading_is_lazy_and_stops_when_the_caller_stops(binance_recording: Path) -> None:
    stats = ParseStats()
    ticks = read_ticks([binance_recording], stats=stats)
    first = list(itertools.islice(ticks, 10))
    assert len(first) == 10
    assert stats.total_parsed < 1000, "a whole file is never read up front"
