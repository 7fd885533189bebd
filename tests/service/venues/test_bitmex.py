"""BitMEX closed on 2026-09-23: refused live in one line, its recorded frames still parse."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickcast.service.cli import main
from tickcast.service.offline.readers import read_ticks
from tickcast.service.ticks import REJECT_SIDE, Tick
from tickcast.service.venues import base
from tickcast.service.venues.bitmex import VENUE
from tickcast.service.venues.registry import source
from tickcast.service.venues.venue import VenueError


def test_the_real_trade_frame_parses_with_its_base_size(samples_dir: Path) -> None:
    frame = (samples_dir / "bitmex" / "trade.json").read_bytes()
    parser = VENUE.parser()
    assert parser.parse(frame, 5) == [
        Tick("bitmex", "UNI/USDT:USDT", "trade", 1626993370014, 5, 17.297, 16.73101673101673, 1,
             "39744121-c20e-44ba-8cc8-a6b8cdf72885")
    ]  # fmt: skip
    assert parser.stats.as_dict()["skipped"] == {} and parser.stats.total_rejected == 0


@pytest.mark.parametrize(
    ("frame", "counted"),
    [
        (b'{"table":"quote","action":"insert","data":[]}', ("skipped", base.SKIP_OTHER_EVENT)),
        (b'{"success":true,"subscribe":"trade:XBTUSD"}', ("skipped", base.SKIP_ACK)),
        (b'{"table":"trade","action":"insert","data":[{"symbol":"XBTUSD"}]}',
         ("rejected", base.REJECT_MISSING)),
        (b'{"table":"trade","action":"insert","data":[{"timestamp":"2021-07-22T22:36:10.014Z",'
         b'"symbol":"XBTUSD","side":"Up","size":1,"price":1,"trdMatchID":"x",'
         b'"homeNotional":1}]}', ("rejected", REJECT_SIDE)),
        (b"not json", ("rejected", base.REJECT_JSON)),
    ],
)  # fmt: skip
def test_other_tables_and_bad_trades_are_counted_never_raised(
    frame: bytes, counted: tuple[str, str]
) -> None:
    parser = VENUE.parser()
    assert parser.parse(frame, 0) == []
    outcome, reason = counted
    assert getattr(parser.stats, outcome) == {reason: 1}


def test_choosing_bitmex_live_says_in_one_line_that_the_venue_closed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for spec in ("bitmex", "sim:bitmex"):
        with pytest.raises(VenueError, match="closed on 2026-09-23"):
            source(spec)
    assert main(["run", "--exchange", "bitmex", "--no-view"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "BitMEX closed on 2026-09-23" in err


def test_a_recording_of_bitmex_frames_still_reads_for_backtests(
    samples_dir: Path, tmp_path: Path
) -> None:
    frame = (samples_dir / "bitmex" / "trade.json").read_bytes().strip()
    path = tmp_path / "bitmex.txt"
    path.write_bytes(b"1626993370100000000 " + frame + b"\n")
    stats = base.ParseStats()
    ticks = list(read_ticks([path], stats=stats))
    assert [(t.venue, t.symbol, t.price) for t in ticks] == [("bitmex", "UNI/USDT:USDT", 17.297)]
    assert ticks[0].recv_ns == 1626993370100000000
