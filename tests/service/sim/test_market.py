"""The synthetic market: realistic structure, a planted learnable effect and an honest oracle.

The quality checks compute the features contract's observables from the ticks with numpy
(samples every 100 ms on event time, ticks with event_ms < t), label each sample with the
1000 ms log return of the mid, and compare the oracle with least-squares fits trained on the
first half of the samples and scored on the second half, pooled over the three symbols.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from tickcast.service.sim.market import (
    DEFAULT_SYMBOLS,
    MarketError,
    OracleError,
    SymbolSpec,
    SyntheticMarket,
    bayes_hit_rate,
)
from tickcast.service.ticks import QUOTE, TRADE, Tick, invalid_reason

SEED = 7
SECONDS = 1800
HORIZON_MS = 1000
SAMPLE_MS = 100
WINDOWS_MS = (1000, 5000, 30000)


@dataclass
class Samples:
    """One symbol's samples: times (n,), observables {name: (n,)}, labels (n,), oracle (n,)."""

    t_ms: np.ndarray
    x: dict[str, np.ndarray]
    label: np.ndarray
    expected: np.ndarray
    leaky: np.ndarray


@dataclass
class Run:
    market: SyntheticMarket
    ticks: list[Tick]
    samples: dict[str, Samples]


def _ew_ratios(t_ms: np.ndarray, num: np.ndarray, den: np.ndarray, tau: float) -> np.ndarray:
    """EW sum(num) / EW sum(den) after each event, decaying over event time (ms)."""
    out = np.empty(len(t_ms))
    a = b = 0.0
    prev = int(t_ms[0]) if len(t_ms) else 0
    for k, (t, n, d) in enumerate(zip(t_ms.tolist(), num.tolist(), den.tolist(), strict=True)):
        decay = math.exp(-(t - prev) / tau)
        a, b, prev = a * decay + n, b * decay + d, t
        out[k] = a / b if b > 1e-12 else 0.0
    return out


def _last_before(times: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Index of the last event with time < t (-1 when none)."""
    return np.searchsorted(times, t, side="left") - 1


def _samples(market: SyntheticMarket, ticks: list[Tick], symbol: str) -> Samples:
    quotes = [k for k in ticks if k.symbol == symbol and k.kind == QUOTE]
    trades = [k for k in ticks if k.symbol == symbol and k.kind == TRADE]
    q_ms = np.array([k.event_ms for k in quotes])
    bid, ask = np.array([k.bid for k in quotes]), np.array([k.ask for k in quotes])
    bid_size = np.array([k.bid_size for k in quotes])
    ask_size = np.array([k.ask_size for k in quotes])
    mid = 0.5 * (bid + ask)
    micro = (bid * ask_size + ask * bid_size) / (bid_size + ask_size)
    tr_ms = np.array([k.event_ms for k in trades])
    side = np.array([k.side for k in trades], dtype=np.float64)
    size = np.array([k.size for k in trades])

    t = np.arange(market.start_ms + 1000, market.start_ms + 1000 * SECONDS - HORIZON_MS, SAMPLE_MS)
    iq, iq_h, iq_half = (_last_before(q_ms, t + lag) for lag in (0, HORIZON_MS, HORIZON_MS // 2))
    iq_back = np.maximum(_last_before(q_ms, t - 1000), 0)
    it = _last_before(tr_ms, t)
    x = {
        "book_imbalance": ((bid_size - ask_size) / (bid_size + ask_size))[iq],
        "microprice_bps": 1e4 * ((micro - mid) / mid)[iq],
        "spread_bps": 1e4 * ((ask - bid) / mid)[iq],
        "return_1000": 1e4 * np.log(mid[iq] / mid[iq_back]),
    }
    for w in WINDOWS_MS:
        flow = _ew_ratios(tr_ms, side * size, size, w)
        count = _ew_ratios(tr_ms, side, np.ones_like(side), w)
        x[f"trade_flow_{w}"] = np.where(it >= 0, flow[np.maximum(it, 0)], 0.0)
        x[f"trade_count_imb_{w}"] = np.where(it >= 0, count[np.maximum(it, 0)], 0.0)
    oracle = market.oracle
    half = HORIZON_MS // 2
    return Samples(
        t_ms=t,
        x=x,
        label=np.log(mid[iq_h] / mid[iq]),
        expected=oracle.expected_returns(symbol, t, HORIZON_MS),
        # E[label | everything before t + H/2]: what an oracle peeking half a horizon ahead says
        leaky=np.log(mid[iq_half] / mid[iq]) + oracle.expected_returns(symbol, t + half, half),
    )


@pytest.fixture(scope="module")
def run() -> Run:
    market = SyntheticMarket(seed=SEED)
    ticks = list(market.ticks(SECONDS))
    samples = {s.symbol: _samples(market, ticks, s.symbol) for s in DEFAULT_SYMBOLS}
    return Run(market, ticks, samples)


Basis = Callable[[dict[str, np.ndarray]], list[np.ndarray]]


def _linear_basis(x: dict[str, np.ndarray]) -> list[np.ndarray]:
    return list(x.values())


def _nonlinear_basis(x: dict[str, np.ndarray]) -> list[np.ndarray]:
    imb, flow = x["book_imbalance"], x["trade_flow_5000"]
    return [*_linear_basis(x), np.tanh(2.0 * imb), np.tanh(3.0 * flow) * (1.0 - 3.0 * imb**2)]


def _flexible_basis(x: dict[str, np.ndarray]) -> list[np.ndarray]:
    imb, f5, f1 = x["book_imbalance"], x["trade_flow_5000"], x["trade_flow_1000"]
    lean5, lean1 = np.tanh(3.0 * f5), np.tanh(3.0 * f1)
    return [
        *_linear_basis(x),
        *(imb**k for k in (3, 5)),
        *(np.tanh(b * imb) for b in (1.5, 2.5, 4.0)),
        *(g * imb**k for g in (f5, lean5, lean1, f5**3) for k in (0, 2, 4)),
        *(g * np.abs(imb) for g in (f5, lean5, f1)),
        f5 * f1 * imb,
        f5**2 * imb,
    ]


def _pooled_fit_hit_rate(run: Run, basis: Basis) -> tuple[float, float]:
    """Least squares per symbol on the first half; (fit, oracle) hit rates on the second."""
    fitted, expected, realised = [], [], []
    for s in run.samples.values():
        design = np.column_stack([np.ones(len(s.label)), *basis(s.x)])
        n = len(s.label) // 2
        beta, *_ = np.linalg.lstsq(design[:n], s.label[:n], rcond=None)
        fitted.append(design[n:] @ beta)
        expected.append(s.expected[n:])
        realised.append(s.label[n:])
    y = np.concatenate(realised)
    return bayes_hit_rate(np.concatenate(fitted), y), bayes_hit_rate(np.concatenate(expected), y)


def test_the_bayes_hit_rate_lies_between_sixty_and_seventy_five_percent(run: Run) -> None:
    for symbol, s in run.samples.items():
        assert 0.60 <= bayes_hit_rate(s.expected, s.label) <= 0.75, symbol


def test_a_linear_fit_on_the_observables_falls_visibly_short_of_bayes(run: Run) -> None:
    linear, bayes = _pooled_fit_hit_rate(run, _linear_basis)
    assert bayes - linear >= 0.02


def test_a_small_nonlinear_fit_on_the_same_observables_gets_close_to_bayes(run: Run) -> None:
    nonlinear, bayes = _pooled_fit_hit_rate(run, _nonlinear_basis)
    assert nonlinear >= 0.97 * bayes


def test_no_fit_on_the_observables_beats_the_oracle(run: Run) -> None:
    flexible, bayes = _pooled_fit_hit_rate(run, _flexible_basis)
    assert flexible <= bayes + 0.004  # about two standard errors of the difference
    assert flexible >= 0.97 * bayes


def test_an_oracle_peeking_half_a_horizon_ahead_scores_far_above_the_honest_one(
    run: Run,
) -> None:
    for symbol, s in run.samples.items():
        honest = bayes_hit_rate(s.expected, s.label)
        assert honest < 0.80, symbol
        assert bayes_hit_rate(s.leaky, s.label) > honest + 0.08, symbol


def test_most_one_second_labels_are_nonzero(run: Run) -> None:
    for symbol, s in run.samples.items():
        assert np.mean(s.label == 0.0) < 0.10, symbol


def _by_symbol(ticks: list[Tick]) -> dict[str, list[Tick]]:
    out: dict[str, list[Tick]] = defaultdict(list)
    for k in ticks:
        out[k.symbol].append(k)
    return out


def test_the_same_seed_gives_the_same_ticks_and_another_seed_does_not() -> None:
    first = list(SyntheticMarket(seed=3).ticks(20))
    assert first == list(SyntheticMarket(seed=3).ticks(20))
    assert first != list(SyntheticMarket(seed=4).ticks(20))


def test_a_symbol_simulated_alone_gives_the_ticks_it_gives_in_company() -> None:
    together = _by_symbol(list(SyntheticMarket(seed=5).ticks(20)))
    alone = list(SyntheticMarket(DEFAULT_SYMBOLS[1:2], seed=5).ticks(20))
    assert alone == together[DEFAULT_SYMBOLS[1].symbol]


def test_successive_calls_continue_the_market() -> None:
    whole = list(SyntheticMarket(seed=2).ticks(12))
    market = SyntheticMarket(seed=2)
    parts = list(market.ticks(2.5)) + list(market.ticks(0)) + list(market.ticks(9.5))
    assert parts == whole
    assert all(k.event_ms < market.start_ms + 2500 for k in parts[: len(parts) // 10])


def test_an_endless_stream_keeps_going() -> None:
    market = SyntheticMarket(seed=1)
    stream = market.ticks()
    ticks = [next(stream) for _ in range(5000)]
    assert ticks[-1].event_ms > market.start_ms + 60_000


def test_every_tick_is_valid_and_ticks_come_in_event_time_order(run: Run) -> None:
    assert all(invalid_reason(k) is None for k in run.ticks)
    event_ms = np.array([k.event_ms for k in run.ticks])
    assert np.all(np.diff(event_ms) >= 0)
    assert event_ms[0] == run.market.start_ms
    latency = np.array([k.recv_ns for k in run.ticks]) - event_ms * 1_000_000
    assert latency.min() > 0 and np.median(latency) < 5_000_000
    assert {k.venue for k in run.ticks} == {"sim"}


def test_trade_ids_are_sequential_and_update_ids_increase_per_symbol(run: Run) -> None:
    for symbol, ticks in _by_symbol(run.ticks).items():
        ids = [k.trade_id for k in ticks if k.kind == TRADE]
        assert ids == [str(i) for i in range(1, len(ids) + 1)], symbol
        updates = np.array([k.update_id for k in ticks if k.kind == QUOTE])
        assert np.all(np.diff(updates) > 0), symbol


def test_prices_and_sizes_lie_on_the_tick_and_lot_grids(run: Run) -> None:
    specs = {s.symbol: s for s in DEFAULT_SYMBOLS}
    for symbol, ticks in _by_symbol(run.ticks).items():
        spec = specs[symbol]
        prices = np.array([[k.price, k.bid, k.ask] for k in ticks]).ravel()
        sizes = np.array([[k.size, k.bid_size, k.ask_size] for k in ticks]).ravel()
        for values, step in ((prices, spec.tick_size), (sizes, spec.lot_size)):
            steps = values / step
            assert np.max(np.abs(steps - np.round(steps))) < 1e-6, symbol
        assert abs(ticks[0].bid / spec.price - 1.0) < 1e-3, symbol


def test_trades_print_at_the_touch_on_their_aggressor_side(run: Run) -> None:
    for symbol, ticks in _by_symbol(run.ticks).items():
        touch: Tick | None = None
        for k in ticks:
            if k.kind == QUOTE:
                touch = k
            else:
                assert touch is not None
                assert k.price == (touch.ask if k.side > 0 else touch.bid), symbol


def test_the_aggressor_mix_leans_to_the_heavy_side_of_the_book(run: Run) -> None:
    for symbol, ticks in _by_symbol(run.ticks).items():
        imbalance, sides = 0.0, []
        for k in ticks:
            if k.kind == QUOTE:
                imbalance = (k.bid_size - k.ask_size) / (k.bid_size + k.ask_size)
            else:
                sides.append((imbalance, k.side))
        lean, side = np.array(sides).T
        assert np.mean(side[lean > 0.5]) > 0.2 > -0.2 > np.mean(side[lean < -0.5]), symbol


def test_the_spread_is_mostly_one_tick_and_wider_when_volatile(run: Run) -> None:
    specs = {s.symbol: s for s in DEFAULT_SYMBOLS}
    for symbol, ticks in _by_symbol(run.ticks).items():
        quotes = [k for k in ticks if k.kind == QUOTE]
        spread = np.round(np.array([k.ask - k.bid for k in quotes]) / specs[symbol].tick_size)
        assert 0.75 < np.mean(spread == 1) < 0.97, symbol
        minute = (np.array([k.event_ms for k in quotes]) - run.market.start_ms) // 60_000
        log_mid = np.log(np.array([k.bid + k.ask for k in quotes]))
        move = np.abs(np.diff(log_mid, prepend=log_mid[0]))
        vol = np.bincount(minute, move) / np.bincount(minute)
        wide = np.bincount(minute, spread > 1) / np.bincount(minute)
        assert np.corrcoef(vol, wide)[0, 1] > 0.3, symbol


def test_trades_come_in_bursts_with_heavy_tailed_sizes(run: Run) -> None:
    for symbol, ticks in _by_symbol(run.ticks).items():
        trades = [k for k in ticks if k.kind == TRADE]
        second = (np.array([k.event_ms for k in trades]) - run.market.start_ms) // 1000
        counts = np.bincount(second, minlength=SECONDS)
        assert counts.var() > 2.0 * counts.mean(), symbol  # a Poisson process gives 1
        sizes = np.array([k.size for k in trades])
        assert sizes.mean() > 1.5 * np.median(sizes), symbol
        assert sizes.max() > 30.0 * np.median(sizes), symbol


def test_volatility_clusters_over_minutes(run: Run) -> None:
    for symbol, s in run.samples.items():
        per_second = s.label[:: 1000 // SAMPLE_MS]
        vol = np.sqrt(np.mean(per_second[: len(per_second) // 60 * 60].reshape(-1, 60) ** 2, 1))
        assert np.corrcoef(vol[:-1], vol[1:])[0, 1] > 0.3, symbol


def test_the_oracle_answers_only_within_its_memory() -> None:
    market = SyntheticMarket(seed=1, oracle_memory_s=30.0)
    for _ in market.ticks(120):
        pass
    symbol = DEFAULT_SYMBOLS[0].symbol
    assert math.isfinite(market.oracle.expected_return(symbol, market.start_ms + 110_000, 1000))
    with pytest.raises(OracleError, match="memory"):
        market.oracle.expected_return(symbol, market.start_ms + 10_000, 1000)
    with pytest.raises(OracleError, match="unknown symbol"):
        market.oracle.expected_return("XRP/USDT:USDT", market.start_ms + 110_000, 1000)


def test_a_market_without_oracle_memory_has_a_disabled_oracle() -> None:
    market = SyntheticMarket(seed=1, oracle_memory_s=None)
    assert len(list(market.ticks(5))) > 100
    with pytest.raises(OracleError, match="disabled"):
        market.oracle.expected_return(DEFAULT_SYMBOLS[0].symbol, market.start_ms + 1000, 1000)


def test_asking_the_oracle_ahead_of_the_stream_changes_neither_ticks_nor_answers() -> None:
    symbol, t = DEFAULT_SYMBOLS[2].symbol, 1_767_225_600_000 + 7_300
    eager = SyntheticMarket(seed=9)
    answer = eager.oracle.expected_return(symbol, t, 1000)
    lazy = SyntheticMarket(seed=9)
    assert list(eager.ticks(10)) == list(lazy.ticks(10))
    assert lazy.oracle.expected_return(symbol, t, 1000) == answer != 0.0
    assert eager.oracle.expected_return(symbol, eager.start_ms, 1000) == 0.0  # nothing known yet


def test_the_scalar_and_vectorised_oracle_agree(run: Run) -> None:
    symbol, s = next(iter(run.samples.items()))
    picks = s.t_ms[::997]
    scalar = [run.market.oracle.expected_return(symbol, int(t), HORIZON_MS) for t in picks]
    np.testing.assert_allclose(scalar, s.expected[::997], rtol=1e-12, atol=1e-15)


def test_the_bayes_hit_rate_scores_signs_on_nonzero_labels_only() -> None:
    expected = np.array([1.0, -2.0, 3.0, 0.0, -1.0])
    realised = np.array([0.5, 0.1, 0.0, 2.0, -0.3])
    assert bayes_hit_rate(expected, realised) == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    assert math.isnan(bayes_hit_rate(expected, np.zeros(5)))
    with pytest.raises(OracleError):
        bayes_hit_rate(expected, realised[:3])


def test_nonsense_parameters_are_rejected() -> None:
    spec = DEFAULT_SYMBOLS[0]
    with pytest.raises(MarketError):
        SymbolSpec(**{**spec.__dict__, "tick_size": 0.0})
    with pytest.raises(MarketError):
        SymbolSpec(**{**spec.__dict__, "effect": math.nan})
    with pytest.raises(MarketError):
        SyntheticMarket([spec, spec])
    with pytest.raises(MarketError):
        SyntheticMarket().ticks(-1.0)


def test_realised_labels_regress_on_the_oracle_with_unit_slope(run: Run) -> None:
    for symbol, s in run.samples.items():
        slope = float(s.expected @ s.label / (s.expected @ s.expected))
        assert 0.88 < slope < 1.12, symbol
