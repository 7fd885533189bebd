"""No look-ahead: on a pure random walk the learner scores a coin toss, and a leak shows.

The market is a seeded random walk of the mid (quotes) with random trades: nothing in the past
predicts the future. Over more than 20,000 samples the prequential hit rate must be 50% +- 2%
and the IC near zero. A learner that peeks at the tick closing each sample interval (the
classic "ticks at the boundary" leak) must fail the very same check.
"""

from __future__ import annotations

import numpy as np

from tickcast.model.learner import OnlineLearner, Prediction, Scored
from tickcast.model.metrics import MetricsSummary
from tickcast.service.ticks import Tick, quote, trade

START = 1_700_000_000_000
SECONDS = 2_100  # 21,000 samples of 100 ms


def random_walk(seconds: float, seed: int) -> list[Tick]:
    """Quotes of a random-walk mid (one tick of 0.1 up or down) and random trades."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 14)
    times = START + np.cumsum(rng.exponential(1000.0 / 14.0, n)).astype(np.int64)
    is_trade = rng.random(n) < 0.3
    moves = np.where(rng.random(n) < 0.5, 1, -1) * (rng.random(n) < 0.6) * ~is_trade
    mids = 50_000.0 + 0.1 * np.cumsum(moves)
    sides = np.where(rng.random(n) < 0.5, 1, -1)
    sizes = np.round(rng.lognormal(-3.0, 1.0, n), 3) + 0.001
    bid_sizes = np.round(rng.lognormal(1.0, 0.8, n), 3) + 0.001
    ask_sizes = np.round(rng.lognormal(1.0, 0.8, n), 3) + 0.001
    ticks: list[Tick] = []
    for i in range(n):
        ms = int(times[i])
        mid = float(mids[i])
        if is_trade[i]:
            price = mid + 0.05 * int(sides[i])
            ticks.append(trade("rw", "RW/USDT:USDT", ms, ms, price, float(sizes[i]), int(sides[i])))
        else:
            bid, ask = mid - 0.05, mid + 0.05
            ticks.append(
                quote(
                    "rw", "RW/USDT:USDT", ms, ms, bid, float(bid_sizes[i]), ask, float(ask_sizes[i])
                )
            )
    return ticks


def looks_unpredictable(s: MetricsSummary) -> bool:
    """The random-walk check: a coin-toss hit rate and no correlation."""
    return abs(s.hit_rate - 0.5) <= 0.02 and abs(s.ic) <= 0.05


class PeekingLearner(OnlineLearner):
    """Leaky on purpose: a sample's features see the tick that closes its interval.

    The reference price (the label's start) is still read before that tick, so the features
    know the first move of the label.
    """

    _tick: Tick

    def update(self, tick: Tick) -> list[Prediction]:
        self._tick = tick
        return super().update(tick)

    def _observe(self, t_ms: int) -> tuple[float, np.ndarray]:
        ref = self.features.reference_price
        saved = self.features.state_dict()
        self.features.update(self._tick)
        raw = self.features.vector(t_ms, out=self._x_raw)
        self.features.load_state_dict(saved)
        return ref, raw


def _score(learner: OnlineLearner, ticks: list[Tick]) -> MetricsSummary:
    for tick in ticks:
        learner.update(tick)
    return learner.metrics.cumulative()


def test_a_random_walk_scores_fifty_percent_and_no_ic() -> None:
    ticks = random_walk(SECONDS, seed=20)
    learner = OnlineLearner()
    s = _score(learner, ticks)
    assert s.n_scored >= 20_000
    assert s.n_nonzero >= 15_000
    assert looks_unpredictable(s), s
    assert s.skill_vs_zero < 0.01  # nothing to learn: no skill over predicting zero


def test_the_linear_baseline_also_scores_a_coin_toss() -> None:
    from tickcast.model.metrics import summarize

    ticks = random_walk(SECONDS, seed=21)
    learner = OnlineLearner()
    labels: list[float] = []
    linear: list[float] = []

    def keep(s: Scored) -> None:
        labels.append(s.label_bps)
        linear.append(s.linear_bps)

    learner.on_score = keep
    _score(learner, ticks)
    assert len(labels) >= 20_000
    assert looks_unpredictable(summarize(labels, linear))


def test_a_learner_that_peeks_at_the_closing_tick_fails_the_same_check() -> None:
    ticks = random_walk(SECONDS, seed=20)
    s = _score(PeekingLearner(), ticks)
    assert s.n_scored >= 20_000
    assert not looks_unpredictable(s)
    assert s.hit_rate > 0.52 and s.ic > 0.03  # the leak is learnt against the rule's prior
