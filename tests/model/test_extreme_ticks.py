"""Finite ticks of any magnitude never make the model raise or output a non-finite value.

The service's edge bounds prices, sizes and event times (``tickcast.service.ticks``); these
tests feed the learner what the edge would refuse -- a trade at 1e308, a quote at 1.7e308
with sizes of 1e308, prices of 1e-300, sizes of 0 and 1e300, a zero spread, event times
years off, bursts at one timestamp -- in the middle of an ordinary stream, and check that
nothing raises, every prediction is finite with P(up) in [0, 1], a snapshot taken right
after restores and continues bit-identically, and learning goes on over the normal ticks
that follow.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from tickcast.model.features import StreamingFeatures
from tickcast.model.forecaster import Forecaster
from tickcast.model.learner import (
    FALLBACK_P_UP,
    FALLBACK_RET_BPS,
    OnlineLearner,
    Prediction,
    pack_state,
)
from tickcast.service.ticks import Tick, quote, trade

START = 1_700_000_000_000
YEAR_MS = 365 * 86_400_000
SETTLE_MS = 500  # the ordinary stream resumes this long after the extreme ticks


def _stream(seconds: float, seed: int, *, quotes: bool) -> list[Tick]:
    """An ordinary market: a mid random walk near 60,000 on a 0.1 grid, trades at the touch
    with lognormal sizes (and top-of-book quotes unless ``quotes`` is False)."""
    rng = np.random.default_rng(seed)
    ticks: list[Tick] = []
    t, mid = float(START), 60_000.0
    while t < START + seconds * 1000.0:
        t += rng.exponential(40.0)
        ms = int(t)
        if not quotes or rng.random() < 0.3:
            side = 1 if rng.random() < 0.5 else -1
            size = round(float(rng.lognormal(-3.0, 1.0)), 4)
            ticks.append(trade("sim", "X", ms, 0, mid + 0.05 * side, size, side))
        if rng.random() < 0.5:
            mid = round(mid + 0.1 * int(rng.choice([-1, 1])), 1)
        if quotes:
            bid_size, ask_size = np.round(rng.exponential(2.0, 2), 3)
            ticks.append(quote("sim", "X", ms, 0, mid - 0.05, bid_size, mid + 0.05, ask_size))
    return ticks


def _t(ms: int, price: float, size: float = 1.0, side: int = 1) -> Tick:
    return trade("sim", "X", ms, 0, price, size, side)


def _q(ms: int, bid: float, ask: float, bid_size: float = 1.0, ask_size: float = 1.0) -> Tick:
    return quote("sim", "X", ms, 0, bid, bid_size, ask, ask_size)


# Each case: the extreme ticks at event time t (the time of the first ordinary tick they
# replace), and whether the ordinary stream that follows is sampled again (a tick years
# ahead moves the event-time clock there: the ordinary ticks after it are stale).
Extreme = Callable[[int], list[Tick]]
CASES: dict[str, tuple[Extreme, bool]] = {
    "trade at 1e308": (lambda t: [_t(t, 1e308)], True),
    "trade at 1e308, notional overflowing": (lambda t: [_t(t, 1e308, 3.0)], True),
    "two trades of size 1e308": (lambda t: [_t(t, 1.0, 1e308)] * 2, True),
    "quote at 1.7e308, sizes 1e308": (lambda t: [_q(t, 1.7e308, 1.7e308, 1e308, 1e308)], True),
    "trade at 1e-300": (lambda t: [_t(t, 1e-300)], True),
    "trade at 1e-300, notional underflowing": (lambda t: [_t(t, 1e-300, 1e-30)], True),
    "quote at 1e-300": (lambda t: [_q(t, 1e-300, 1e-300)], True),
    "quote at the smallest float": (lambda t: [_q(t, 5e-324, 5e-324)], True),
    "quote from 1e-300 to 1.7e308": (lambda t: [_q(t, 1e-300, 1.7e308)], True),
    "trade of size 0": (lambda t: [_t(t, 60_000.0, 0.0)], True),
    "trade of size 1e300": (lambda t: [_t(t, 60_000.0, 1e300)], True),
    "quote with sizes 0": (lambda t: [_q(t, 59_999.0, 60_001.0, 0.0, 0.0)], True),
    "quote with sizes 1e300": (lambda t: [_q(t, 59_999.0, 60_001.0, 1e300, 1e300)], True),
    "quote with sizes 1.7e308 and 1": (lambda t: [_q(t, 59_999.0, 60_001.0, 1.7e308, 1.0)], True),
    "quote with equal bid and ask": (lambda t: [_q(t, 60_000.0, 60_000.0)], True),
    "event time years back": (
        lambda t: [_q(t - 10 * YEAR_MS, 61_000.0, 61_001.0), _t(t - 10 * YEAR_MS, 61_000.0)],
        True,
    ),
    "event time years ahead": (lambda t: [_q(t + 10 * YEAR_MS, 60_000.0, 60_000.1)], False),
    "a burst at one timestamp": (
        lambda t: (
            [_q(t, 60_000.0 + i, 60_000.1 + i) for i in range(500)]
            + [_t(t, 60_000.0 + i, 0.5, 1 - 2 * (i % 2)) for i in range(500)]
        ),
        True,
    ),
}
_RESUMING = [make for make, resumes in CASES.values() if resumes]
CASES["all of them in a row"] = (lambda t: [k for make in _RESUMING for k in make(t)], True)


def _run(learner: OnlineLearner, ticks: list[Tick]) -> list[Prediction]:
    out: list[Prediction] = []
    for tick in ticks:
        out += learner.update(tick)
    return out


def _assert_finite(predictions: list[Prediction]) -> None:
    for p in predictions:
        assert math.isfinite(p.ret_bps) and math.isfinite(p.linear_bps), p
        assert 0.0 <= p.p_up <= 1.0, p
        assert 0.0 < p.ref_price < math.inf, p


@pytest.mark.parametrize("quotes", [True, False], ids=["book and trades", "trades only"])
@pytest.mark.parametrize("case", list(CASES))
def test_extreme_ticks_never_raise_never_yield_non_finite_values_and_restart_exactly(
    case: str, quotes: bool
) -> None:
    extreme, resumes = CASES[case]
    ticks = _stream(120, seed=3, quotes=quotes)
    cut = len(ticks) // 2
    t_bad = ticks[cut].event_ms
    tail = [k for k in ticks[cut:] if k.event_ms >= t_bad + SETTLE_MS]
    learner = OnlineLearner(seed=1)

    before = _run(learner, ticks[:cut] + extreme(t_bad))
    blob = learner.snapshot()  # right after the extreme ticks
    version = learner.model_version
    after = _run(learner, tail)
    learner.flush()

    _assert_finite(before + after)
    counters = learner.counters()
    assert counters["n_nonfinite_predictions"] == 0  # finite all the way, no fallback
    assert counters["n_nonfinite_inputs"] == 0
    assert counters["n_update_skipped"] == 0
    if resumes:  # learning goes on over the ordinary ticks
        assert len(after) > 500
        assert learner.model_version > version + 500
    else:  # the clock waits for the future; quotes older than that one count as stale
        assert after == []
        assert learner.features.n_stale == sum(k.kind == "quote" for k in tail)
    for resumed in (OnlineLearner.from_snapshot(blob), OnlineLearner(seed=1)):
        resumed.restore(blob)
        assert _run(resumed, tail) == after
        assert resumed.snapshot() == learner.snapshot()


@pytest.mark.parametrize("case", list(CASES))
def test_every_feature_stays_finite_after_extreme_ticks(case: str) -> None:
    features = StreamingFeatures(windows_ms=(1000, 5000, 30000))
    ticks = _stream(30, seed=4, quotes=True)
    for tick in ticks[:100] + CASES[case][0](ticks[100].event_ms):
        features.update(tick)
        values = features.values(tick.event_ms + 1)
        assert all(math.isfinite(v) for v in values), dict(zip(features.names, values, strict=True))
        assert 0.0 < features.reference_price < math.inf
        assert math.isfinite(features.microprice)


def test_a_first_trade_whose_notional_underflows_reads_as_no_vwap() -> None:
    features = StreamingFeatures(windows_ms=(1000,))
    assert features.update(_t(START, 1e-300, 1e-30))  # price * size == 0.0
    values = dict(zip(features.names, features.values(START + 10), strict=True))
    assert values["vwap_dev_1000"] == 0.0 and values["trade_flow_1000"] == 1.0


def test_a_trade_that_would_overflow_the_sums_is_refused_and_counted() -> None:
    features = StreamingFeatures(windows_ms=(1000, 5000))
    assert features.update(_t(START, 1.0, 1e308))
    before = features.state_dict()
    assert not features.update(_t(START + 1, 1.0, 1e308))  # sizes: 2e308
    assert not features.update(_t(START + 2, 1e308, 3.0))  # notional 3e308
    assert features.n_invalid == 2
    after = features.state_dict()
    assert after.pop("n_invalid") == 2 and before.pop("n_invalid") == 0
    assert after == before


def test_the_vwap_deviation_of_prices_near_the_float_limits_is_their_log_ratio() -> None:
    features = StreamingFeatures(windows_ms=(1000,))
    features.update(_t(START, 1e-300, 1.0))  # VWAP 1e-300
    features.update(_q(START + 1, 1e300, 1e300))  # ref / VWAP = 1e600: overflows
    values = dict(zip(features.names, features.values(START + 2), strict=True))
    assert values["vwap_dev_1000"] == pytest.approx(600 * math.log(10.0) * 1e4, rel=1e-12)


def test_book_features_of_sizes_near_the_float_limit_are_those_of_their_halves() -> None:
    huge, same = StreamingFeatures(windows_ms=(1000,)), StreamingFeatures(windows_ms=(1000,))
    huge.update(_q(START, 99.0, 101.0, 1.5e308, 0.5e308))  # depth overflows
    same.update(_q(START, 99.0, 101.0, 3.0, 1.0))
    assert huge.values(START + 1) == same.values(START + 1)
    assert huge.microprice == pytest.approx(same.microprice, rel=1e-15)
    assert huge.microprice == pytest.approx(100.5)


# -- the guards behind the features: inputs, Hedge, the published forecast ------------------


class _NanAt(StreamingFeatures):
    """Features that read NaN for one input at one sample time (a broken feature)."""

    def __init__(self, t_ms: int) -> None:
        super().__init__(windows_ms=(1000, 5000))
        self.t_nan = t_ms

    def values(self, t_ms: int) -> list[float]:
        values = super().values(t_ms)
        if t_ms == self.t_nan:
            values[0] = math.nan
        return values


def test_a_non_finite_input_is_no_information_and_does_not_reach_the_moments() -> None:
    ticks = _stream(60, seed=5, quotes=True)
    t_nan = (ticks[len(ticks) // 2].event_ms // 100) * 100
    clean = OnlineLearner(seed=2, features=_NanAt(-1))
    broken = OnlineLearner(seed=2, features=_NanAt(t_nan))
    clean_preds, broken_preds = _run(clean, ticks), _run(broken, ticks)
    _assert_finite(broken_preds)
    assert broken.counters()["n_nonfinite_inputs"] == 1
    assert broken.counters()["n_nonfinite_predictions"] == 0
    # identical up to that sample; from it on, moments that skipped it (finite ones)
    i = [p.t_ms for p in clean_preds].index(t_nan)
    assert broken_preds[:i] == clean_preds[:i]
    assert broken_preds[i].ret_bps != clean_preds[i].ret_bps
    assert [p.t_ms for p in broken_preds] == [p.t_ms for p in clean_preds]
    assert np.isfinite(broken.forecaster.state_dict()["x_var"]).all()
    restored = OnlineLearner.from_snapshot(broken.snapshot())
    assert restored.counters()["n_nonfinite_inputs"] == 1


def test_standardise_reads_non_finite_inputs_as_zero_without_learning_them() -> None:
    kwargs = {"hidden": (4,), "lr": 1e-3, "fast_lr": 1e-2, "activation": "tanh", "seed": 0}
    forecaster = Forecaster(
        3,
        **kwargs,
        clip=1.5,
        scale_halflife=10.0,
        huber_delta=1.0,
        direction_weight=1.0,
        clip_norm=1.0,
        hedge_eta=0.2,
        hedge_halflife=100.0,
        linear_prior=1.0,
    )
    assert forecaster.standardise(np.array([math.nan, 1.0, 2.0])).tolist() == [0.0, 0.0, 0.0]
    for v in (1.0, 2.0, 3.0, 2.0):
        forecaster.standardise(np.array([v, -v, 0.0]))
    before = forecaster.state_dict()
    z = forecaster.standardise(np.array([math.inf, 3.0, 1e200]))  # 1e200: its square is inf
    assert z[0] == 0.0 and -1.5 <= z[1] <= 1.5 and z[2] == 1.5
    assert forecaster.n_nonfinite_inputs == 2
    after = forecaster.state_dict()
    assert after["x_mean"].tobytes() == before["x_mean"].tobytes()
    assert after["floats"] == before["floats"]


def test_a_forecast_that_is_not_finite_is_replaced_by_the_fallback_and_counted() -> None:
    ticks = _stream(60, seed=6, quotes=True)
    cut = len(ticks) // 2
    learner = OnlineLearner(seed=3)
    _run(learner, ticks[:cut])
    learner.forecaster.network.params[0][...] = math.nan  # something upstream broke
    after = _run(learner, ticks[cut:])
    learner.flush()
    _assert_finite(after)
    assert len(after) > 100
    assert {(p.ret_bps, p.p_up) for p in after} == {(FALLBACK_RET_BPS, FALLBACK_P_UP)}
    assert learner.counters()["n_nonfinite_predictions"] == len(after)
    assert learner.n_nonfinite_predictions == len(after)
    # the broken expert is charged the Hedge cap: the weights stay finite, the state restores
    assert all(math.isfinite(w) for w in learner.expert_weights)
    restored = OnlineLearner.from_snapshot(learner.snapshot())
    assert restored.n_nonfinite_predictions == len(after)


def test_a_snapshot_without_the_later_counters_restores_them_as_zero() -> None:
    ticks = _stream(60, seed=7, quotes=True)
    cut = len(ticks) // 2
    learner = OnlineLearner(seed=4)
    _run(learner, ticks[:cut])
    state = learner.state_dict()
    # the version-2 snapshot as the code before these counters wrote it
    del state["counters"]["n_nonfinite_predictions"]
    del state["model"]["n_nonfinite_inputs"]
    old = pack_state(state)
    resumed = OnlineLearner.from_snapshot(old)
    assert resumed.counters()["n_nonfinite_predictions"] == 0
    assert resumed.counters()["n_nonfinite_inputs"] == 0
    assert _run(resumed, ticks[cut:]) == _run(learner, ticks[cut:])
    assert resumed.snapshot() == learner.snapshot()


def test_hedge_charges_a_non_finite_error_the_cap_and_its_weights_stay_finite() -> None:
    from tickcast.model.ensemble import HedgeMix
    from tickcast.model.mlp import TwoHeadMLP

    experts = [TwoHeadMLP(2, (), seed=s) for s in (0, 1)]
    mix = HedgeMix(experts, eta=1.0, halflife=10.0, loss_cap=4.0)
    mix.observe([0.0, math.nan], 0.0)
    assert mix.state_dict()["loss"] == [0.0, 4.0]
    mix.observe([math.inf, 0.0], math.nan)  # a non-finite label: every expert pays the cap
    weights = mix.weights()
    assert np.isfinite(weights).all() and weights.sum() == pytest.approx(1.0)
    HedgeMix(experts, eta=1.0, halflife=10.0).load_state_dict(mix.state_dict())  # restores
