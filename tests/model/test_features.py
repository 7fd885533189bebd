"""Streaming features against direct batch computations (numpy over the whole tick list)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from tickcast.model.features import FeaturesError, StreamingFeatures
from tickcast.service.ticks import Tick, quote, trade

WINDOWS = (1000, 5000, 30000)


def make_trade(t: int, price: float, size: float, side: int) -> Tick:
    return trade("sim", "BTC/USDT:USDT", t, t * 1_000_000, price, size, side)


def make_quote(t: int, bid: float, bid_size: float, ask: float, ask_size: float) -> Tick:
    return quote("sim", "BTC/USDT:USDT", t, t * 1_000_000, bid, bid_size, ask, ask_size)


def random_ticks(seed: int, n: int, stale_every: int = 0) -> list[Tick]:
    """A random market: a mid random walk on a 0.5 grid, bursty times, heavy-tailed sizes.

    With ``stale_every``, every that many ticks one is sent with an event time in the past.
    """
    rng = np.random.default_rng(seed)
    t, mid, ticks = 1_700_000_000_000, 60_000.0, []
    gaps = np.array([0, 0, 1, 3, 20, 80, 300, 1500, 12_000])
    for i in range(n):
        t += int(rng.choice(gaps))
        when = t - int(rng.integers(1, 5000)) if stale_every and i % stale_every == 1 else t
        if rng.random() < 0.45:
            side = int(rng.choice([-1, 1]))
            size = float(np.round(rng.lognormal(-4.0, 1.5), 3))
            ticks.append(make_trade(when, mid + side * 0.25, size, side))
        else:
            mid += 0.5 * int(rng.choice([-1, 0, 0, 1]))
            half = 0.25 * int(rng.choice([1, 1, 1, 3]))
            sizes = np.round(rng.exponential(2.0, 2), 3)
            ticks.append(make_quote(when, mid - half, sizes[0], mid + half, sizes[1]))
    return ticks


def accepted(ticks: Sequence[Tick]) -> list[Tick]:
    """The ticks the stale rule keeps: none older than the last kept tick of its kind."""
    newest: dict[str, int] = {}
    kept = []
    for tick in ticks:
        if tick.event_ms >= newest.get(tick.kind, 0):
            newest[tick.kind] = tick.event_ms
            kept.append(tick)
    return kept


def batch_vector(
    ticks: Sequence[Tick],
    t: int,
    windows: Sequence[int] = WINDOWS,
    return_windows: Sequence[int] = WINDOWS,
    rsi_window: int = 10000,
) -> np.ndarray:
    """Every feature at event time ``t`` from the accepted ticks, by the obvious formulas."""
    ticks = accepted(ticks)
    trades = [k for k in ticks if k.kind == "trade"]
    quotes = [k for k in ticks if k.kind == "quote"]
    tt = np.array([k.event_ms for k in trades], dtype=float)
    price = np.array([k.price for k in trades])
    size = np.array([k.size for k in trades])
    side = np.array([k.side for k in trades], dtype=float)
    tq = np.array([k.event_ms for k in quotes], dtype=float)
    bid = np.array([k.bid for k in quotes])
    ask = np.array([k.ask for k in quotes])
    mid = (bid + ask) / 2
    dx = np.diff(np.log(mid)) * 1e4  # zero where the mid did not move: adds nothing
    tdx = tq[1:]
    ref = mid[-1] if quotes else (price[-1] if trades else math.nan)

    def ew(times: np.ndarray, values: np.ndarray, tau: float) -> float:
        return float(np.sum(values * np.exp(-(t - times) / tau)))

    out: dict[str, float] = {}
    if quotes:
        q = quotes[-1]
        imb = (
            (q.bid_size - q.ask_size) / (q.bid_size + q.ask_size) if q.bid_size + q.ask_size else 0
        )
        micro = (q.bid * q.ask_size + q.ask * q.bid_size) / (q.bid_size + q.ask_size)
        out |= {
            "book_imbalance": imb,
            "microprice_dev": (micro - mid[-1]) / mid[-1] * 1e4,
            "spread": (q.ask - q.bid) / mid[-1] * 1e4,
        }
    for w in windows:
        count = ew(tt, np.ones_like(tt), w)
        out[f"trade_intensity_{w}"] = math.log1p(count / (w / 1000))
        out[f"realised_vol_{w}"] = math.sqrt(ew(tdx, dx**2, w) / (w / 1000))
        if count > 1e-9:
            out[f"trade_count_imb_{w}"] = ew(tt, side, w) / count
            out[f"trade_flow_{w}"] = ew(tt, side * size, w) / ew(tt, size, w)
            vwap = ew(tt, price * size, w) / ew(tt, size, w)
            out[f"vwap_dev_{w}"] = math.log(ref / vwap) * 1e4
    for w in return_windows:
        out[f"return_{w}"] = ew(tdx, dx, w)
    if len(dx) and ew(tdx, np.abs(dx), rsi_window) > 1e-9:
        up = ew(tdx, np.maximum(dx, 0), rsi_window)
        down = ew(tdx, np.maximum(-dx, 0), rsi_window)
        out["rsi"] = (100 * up / (up + down) - 50) / 50
    first = min(k.event_ms for k in ticks) if ticks else 0
    for name, group in (("time_since_trade", tt), ("time_since_quote", tq)):
        last = group[-1] if len(group) else first
        out[name] = math.log1p((t - last) / 1000) if ticks else 0.0
    names = StreamingFeatures(windows, return_windows_ms=return_windows, rsi_window_ms=rsi_window)
    return np.array([out.get(name, 0.0) for name in names.names])


def sample_times(ticks: Sequence[Tick], every_ms: int) -> list[int]:
    """The multiples of ``every_ms`` after the first tick, up to the newest one."""
    first, last = ticks[0].event_ms, max(k.event_ms for k in ticks)
    return list(range((first // every_ms + 1) * every_ms, last + 1, every_ms))


def compare_at_samples(
    ticks: Sequence[Tick], features: StreamingFeatures, every_ms: int, **params: Any
) -> int:
    """Feed ``ticks`` as the learner does and check each sample against the batch vector."""
    samples = iter(sample_times(ticks, every_ms))
    due = next(samples, None)
    seen: list[Tick] = []
    checked = 0
    for tick in ticks:
        while due is not None and tick.event_ms >= due:
            expected = batch_vector(seen, due, **params)
            got = features.vector(due)
            np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9, err_msg=f"t={due}")
            checked += 1
            due = next(samples, None)
        features.update(tick)
        seen.append(tick)
    return checked


def by_name(features: StreamingFeatures, t: int) -> dict[str, float]:
    return dict(zip(features.names, features.vector(t).tolist(), strict=True))


def test_the_names_follow_the_windows_in_a_fixed_order() -> None:
    f = StreamingFeatures((200, 2000), return_windows_ms=(500,), rsi_window_ms=3000)
    assert f.names[:5] == (
        "book_imbalance",
        "microprice_dev",
        "spread",
        "trade_flow_200",
        "trade_flow_2000",
    )
    assert f.names[-5:] == (
        "vwap_dev_2000",
        "return_500",
        "rsi",
        "time_since_trade",
        "time_since_quote",
    )
    assert f.n_features == len(f.names) == len(set(f.names)) == 3 + 5 * 2 + 1 + 3
    assert f.vector(0).shape == (f.n_features,)
    assert f.vector(0).dtype == np.float64


def test_hand_made_ticks_give_the_textbook_values() -> None:
    f = StreamingFeatures((1000,), rsi_window_ms=1000)
    f.update(make_quote(10_000, 99.0, 1.0, 101.0, 3.0))
    f.update(make_trade(10_500, 101.0, 3.0, 1))
    f.update(make_trade(10_500, 99.0, 1.0, -1))
    f.update(make_quote(11_000, 100.0, 2.0, 102.0, 2.0))  # mid 100 -> 101
    x = by_name(f, 12_000)
    assert x["book_imbalance"] == 0.0
    assert x["microprice_dev"] == 0.0
    assert x["spread"] == pytest.approx(2 / 101 * 1e4)
    assert x["trade_flow_1000"] == pytest.approx((3 - 1) / (3 + 1))
    assert x["trade_count_imb_1000"] == 0.0
    assert x["trade_intensity_1000"] == pytest.approx(math.log1p(2 * math.exp(-1.5)))
    dx = math.log(101 / 100) * 1e4
    assert x["realised_vol_1000"] == pytest.approx(math.sqrt(dx**2 * math.exp(-1)))
    assert x["vwap_dev_1000"] == pytest.approx(math.log(101 / 100.5) * 1e4)
    assert x["return_1000"] == pytest.approx(dx * math.exp(-1))
    assert x["rsi"] == 1.0
    assert x["time_since_trade"] == pytest.approx(math.log1p(1.5))
    assert x["time_since_quote"] == pytest.approx(math.log1p(1.0))
    assert (f.mid, f.microprice, f.reference_price, f.last_event_ms) == (
        101.0,
        101.0,
        101.0,
        11_000,
    )


def test_microprice_deviation_is_half_the_spread_times_the_imbalance() -> None:
    f = StreamingFeatures()
    f.update(make_quote(1000, 100.0, 9.0, 100.5, 1.0))
    x = by_name(f, 1000)
    micro = (100.0 * 1.0 + 100.5 * 9.0) / 10.0
    assert f.microprice == pytest.approx(micro)
    assert x["microprice_dev"] == pytest.approx((micro - 100.25) / 100.25 * 1e4)
    assert x["microprice_dev"] == pytest.approx(0.5 * x["spread"] * x["book_imbalance"])
    assert x["book_imbalance"] == pytest.approx(0.8)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_feature_matches_the_batch_computation_on_random_ticks(seed: int) -> None:
    ticks = random_ticks(seed, 400)
    checked = compare_at_samples(ticks, StreamingFeatures(), every_ms=250)
    assert checked > 100


def test_the_return_is_the_log_mid_minus_its_continuous_time_moving_average() -> None:
    quotes = [tick for tick in random_ticks(13, 300) if tick.kind == "quote"]
    f = StreamingFeatures()
    for tick in quotes:
        f.update(tick)
    times = np.array([q.event_ms for q in quotes], dtype=float)
    x = np.log([(q.bid + q.ask) / 2 for q in quotes])
    t = times[-1] + 700
    for tau in WINDOWS:
        # EMA started at the first mid; each mid held until the next quote weighs the integral
        # of the kernel exp(-(t - s) / tau) / tau over its holding interval.
        ends = np.append(times[1:], t)
        weights = np.exp(-(t - ends) / tau) - np.exp(-(t - times) / tau)
        ema = x[0] * math.exp(-(t - times[0]) / tau) + np.sum(x * weights)
        expected = (x[-1] - ema) * 1e4
        assert by_name(f, int(t))[f"return_{tau}"] == pytest.approx(expected, rel=1e-6, abs=1e-7)


def test_other_windows_match_the_batch_computation_too() -> None:
    params: dict[str, Any] = {"windows": (300, 7000), "return_windows": (100, 300, 60_000)}
    params["rsi_window"] = 2000
    f = StreamingFeatures((300, 7000), return_windows_ms=(100, 300, 60_000), rsi_window_ms=2000)
    assert compare_at_samples(random_ticks(7, 300), f, every_ms=100, **params) > 100


def test_stale_ticks_are_skipped_counted_and_leave_no_trace() -> None:
    ticks = random_ticks(3, 400, stale_every=17)
    f, clean = StreamingFeatures(), StreamingFeatures()
    skipped = [tick for tick in ticks if not f.update(tick)]
    for tick in accepted(ticks):
        assert clean.update(tick)
    assert len(skipped) == f.n_stale == len(ticks) - len(accepted(ticks)) > 5
    assert clean.n_stale == 0
    t = ticks[-1].event_ms + 1
    np.testing.assert_array_equal(f.vector(t), clean.vector(t))
    np.testing.assert_allclose(f.vector(t), batch_vector(ticks, t), rtol=1e-9, atol=1e-9)


def test_staleness_is_judged_per_kind_and_equal_times_are_accepted() -> None:
    f = StreamingFeatures()
    assert f.update(make_trade(5000, 100.0, 1.0, 1))
    assert f.update(make_quote(4000, 99.5, 1.0, 100.5, 1.0))  # older than the trade: fine
    assert f.update(make_trade(5000, 100.0, 1.0, -1))  # same time as the last trade
    assert f.update(make_quote(4000, 99.5, 2.0, 100.5, 1.0))
    assert not f.update(make_trade(4999, 100.0, 1.0, 1))
    assert not f.update(make_quote(3999, 99.0, 1.0, 101.0, 1.0))
    assert f.n_stale == 2
    assert f.last_event_ms == 5000
    assert by_name(f, 6000)["book_imbalance"] == pytest.approx(1 / 3)


def test_invalid_ticks_are_skipped_and_counted_without_poisoning_the_features() -> None:
    f = StreamingFeatures()
    f.update(make_quote(1000, 99.0, 1.0, 101.0, 1.0))
    f.update(make_trade(1000, 100.0, 1.0, 1))
    bad = [
        make_trade(2000, math.nan, 1.0, 1),
        make_trade(2000, 100.0, -1.0, 1),
        make_trade(2000, 100.0, math.inf, 1),
        make_quote(2000, 101.0, 1.0, 99.0, 1.0),
        make_quote(2000, 99.0, math.nan, 101.0, 1.0),
        make_quote(2000, 0.0, 1.0, 101.0, 1.0),
        Tick("sim", "BTC/USDT:USDT", "funding", 2000, 0),
    ]
    before = f.state_dict()
    assert not any(f.update(tick) for tick in bad)
    assert f.n_invalid == len(bad)
    after = f.state_dict()
    assert after.pop("n_invalid") == len(bad)
    assert before.pop("n_invalid") == 0
    assert after == before
    assert np.isfinite(f.vector(3000)).all()


def test_before_any_tick_every_feature_is_zero_and_the_levels_are_nan() -> None:
    f = StreamingFeatures()
    np.testing.assert_array_equal(f.vector(1_700_000_000_000), np.zeros(f.n_features))
    assert math.isnan(f.reference_price)
    assert math.isnan(f.mid)
    assert math.isnan(f.microprice)
    assert f.last_event_ms == 0


def test_with_trades_only_the_reference_is_the_last_trade_and_the_book_is_neutral() -> None:
    f = StreamingFeatures((1000,))
    f.update(make_trade(1000, 100.0, 1.0, 1))
    f.update(make_trade(1200, 102.0, 1.0, -1))
    x = by_name(f, 1500)
    assert f.reference_price == 102.0
    assert math.isnan(f.mid)
    assert x["book_imbalance"] == x["spread"] == x["microprice_dev"] == 0.0
    assert x["return_1000"] == x["realised_vol_1000"] == x["rsi"] == 0.0
    a, b = math.exp(-0.5), math.exp(-0.3)
    vwap = (100 * a + 102 * b) / (a + b)
    assert x["vwap_dev_1000"] == pytest.approx(1e4 * math.log(102 / vwap))
    assert x["time_since_quote"] == pytest.approx(math.log1p(0.5))  # since the first tick


@pytest.mark.parametrize("gap_ms", [60_000, 10**7, 10**12])
def test_features_stay_finite_and_decay_to_neutral_after_long_gaps(gap_ms: int) -> None:
    ticks = random_ticks(4, 300)
    f = StreamingFeatures()
    for tick in ticks:
        f.update(tick)
    t = ticks[-1].event_ms + gap_ms
    x = f.vector(t)
    assert np.isfinite(x).all()
    np.testing.assert_allclose(x, batch_vector(ticks, t), rtol=1e-9, atol=1e-9)
    named = dict(zip(f.names, x.tolist(), strict=True))
    if gap_ms >= 10**7:  # more than 300 windows: every EW sum is ~0
        for w in WINDOWS:
            for name in ("trade_flow", "trade_count_imb", "vwap_dev"):
                assert named[f"{name}_{w}"] == 0.0
            for name in ("trade_intensity", "realised_vol", "return"):
                assert named[f"{name}_{w}"] == pytest.approx(0.0, abs=1e-50)
        assert named["rsi"] == 0.0
    assert named["time_since_trade"] >= math.log1p(gap_ms / 1000)


def test_reading_the_vector_does_not_change_the_state() -> None:
    ticks = random_ticks(5, 300)
    f, g = StreamingFeatures(), StreamingFeatures()
    for tick in ticks:
        f.vector(tick.event_ms + 12_345)
        f.vector(tick.event_ms - 777)
        f.update(tick)
        g.update(tick)
    assert f.state_dict() == g.state_dict()


def test_a_sample_time_before_the_newest_tick_counts_as_that_tick_time() -> None:
    f = StreamingFeatures()
    for tick in random_ticks(6, 100):
        f.update(tick)
    np.testing.assert_array_equal(f.vector(0), f.vector(f.last_event_ms))


def test_the_out_buffer_is_filled_and_returned() -> None:
    f = StreamingFeatures()
    for tick in random_ticks(8, 50):
        f.update(tick)
    out = np.full(f.n_features, np.nan)
    assert f.vector(f.last_event_ms + 10, out=out) is out
    np.testing.assert_array_equal(out, f.vector(f.last_event_ms + 10))
    with pytest.raises(FeaturesError, match="shape"):
        f.vector(0, out=np.zeros(f.n_features + 1))


def test_a_state_dict_round_trip_then_more_ticks_is_bit_identical_to_no_interruption() -> None:
    ticks = random_ticks(9, 600, stale_every=50)
    whole, first = StreamingFeatures(), StreamingFeatures()
    for tick in ticks[:300]:
        whole.update(tick)
        first.update(tick)
    state = json.loads(json.dumps(first.state_dict()))  # plain values only
    resumed = StreamingFeatures()
    resumed.load_state_dict(state)
    assert resumed.state_dict() == first.state_dict()
    for tick in ticks[300:]:
        assert whole.update(tick) == resumed.update(tick)
        t = tick.event_ms + 50
        assert whole.vector(t).tobytes() == resumed.vector(t).tobytes()
    assert whole.state_dict() == resumed.state_dict()
    assert resumed.n_stale == whole.n_stale > 0


def test_the_state_dict_holds_copies() -> None:
    f = StreamingFeatures()
    for tick in random_ticks(10, 100):
        f.update(tick)
    state = f.state_dict()
    state["trades"]["acc"][0][0] = 1e9
    state["mids"]["acc"][0][0] = 1e9
    assert f.state_dict() != state
    g = StreamingFeatures()
    g.load_state_dict(f.state_dict())
    g.update(make_trade(f.last_event_ms + 1, 60_000.0, 1.0, 1))
    assert f.state_dict() != g.state_dict()


def skeleton(value: Any) -> Any:
    """The shape of a nested state: containers and key names kept, leaves replaced by types."""
    if isinstance(value, dict):
        return {k: skeleton(v) for k, v in value.items()}
    if isinstance(value, list):
        return [skeleton(v) for v in value]
    return type(value).__name__


def test_memory_does_not_grow_with_the_number_of_ticks() -> None:
    ticks = random_ticks(11, 5000)
    f = StreamingFeatures()
    for tick in ticks[:20]:
        f.update(tick)
    early = f.state_dict()
    for tick in ticks[20:]:
        f.update(tick)
    late = f.state_dict()
    assert skeleton(late) == skeleton(early)
    assert len(json.dumps(late)) < 2000
    assert set(vars(f)) == set(vars(StreamingFeatures()))


def test_loading_a_state_of_other_windows_or_a_malformed_state_fails_cleanly() -> None:
    f = StreamingFeatures()
    for tick in random_ticks(12, 100):
        f.update(tick)
    good = f.state_dict()
    other = StreamingFeatures((1000, 5000))
    with pytest.raises(FeaturesError, match="hyperparameters"):
        other.load_state_dict(good)
    fresh = StreamingFeatures()
    before = fresh.state_dict()
    for broken in (
        {**good, "version": 99},
        {**good, "book": [1.0, 2.0]},
        {**good, "trades": {**good["trades"], "acc": [[0.0] * 5]}},
        {**good, "mids": {**good["mids"], "acc": "nope"}},
        {k: v for k, v in good.items() if k != "t_quote"},
    ):
        with pytest.raises(FeaturesError):
            fresh.load_state_dict(broken)
        assert fresh.state_dict() == before
    fresh.load_state_dict({**good, "windows_ms": tuple(good["windows_ms"])})
    assert fresh.state_dict() == good


@pytest.mark.parametrize(
    "kwargs",
    [
        {"windows_ms": ()},
        {"windows_ms": (1000, 1000)},
        {"windows_ms": (0, 1000)},
        {"windows_ms": (1000.5,)},
        {"return_windows_ms": (-5,)},
        {"rsi_window_ms": 0},
    ],
)
def test_bad_windows_are_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(FeaturesError):
        StreamingFeatures(**kwargs)
