"""Reconnect policy: capped full-jitter backoff, error classification, the reconnect loop."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import redis.exceptions
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosedError, InvalidStatus, InvalidURI
from websockets.frames import Close
from websockets.http11 import Response

from tickcast.service.feed.reconnect import Backoff, backoff, is_retryable, reconnect_loop


def draws(attempt: int, n: int, base: float = 0.5, cap: float = 4.0) -> np.ndarray:
    """The ``attempt``-th delay of ``n`` independently seeded sequences."""
    out = []
    for seed in range(n):
        delays = backoff(base, cap, np.random.default_rng(seed))
        for _ in range(attempt):
            next(delays)
        out.append(next(delays))
    return np.array(out)


@pytest.mark.parametrize(("attempt", "bound"), [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (6, 4.0)])
def test_each_delay_is_uniform_below_an_exponential_bound_capped(
    attempt: int, bound: float
) -> None:
    d = draws(attempt, 400)
    assert d.min() >= 0.0
    assert d.max() < bound
    assert d.max() > 0.95 * bound
    assert abs(d.mean() - bound / 2) < 0.1 * bound


def test_delays_at_the_cap_are_spread_by_full_jitter_not_synchronised() -> None:
    d = draws(8, 400)
    assert d.std() == pytest.approx(4.0 / np.sqrt(12.0), rel=0.15)


def test_the_same_seed_gives_the_same_delays() -> None:
    a = backoff(0.1, 10.0, np.random.default_rng(7))
    b = backoff(0.1, 10.0, np.random.default_rng(7))
    assert [next(a) for _ in range(20)] == [next(b) for _ in range(20)]


@pytest.mark.parametrize(("base", "cap", "factor"), [(0.0, 1.0, 2.0), (2.0, 1.0, 2.0), (1, 2, 1)])
def test_nonsense_parameters_are_refused(base: float, cap: float, factor: float) -> None:
    with pytest.raises(ValueError):
        next(backoff(base, cap, np.random.default_rng(0), factor))


def test_reset_starts_the_sequence_again_from_base() -> None:
    policy = Backoff(0.5, 64.0, np.random.default_rng(1))
    late = [policy.next_delay() for _ in range(8)]
    assert policy.attempts == 8
    assert max(late) > 0.5
    policy.reset()
    assert policy.attempts == 0
    assert policy.next_delay() < 0.5


def _status(code: int) -> InvalidStatus:
    return InvalidStatus(Response(code, "status", Headers()))


@pytest.mark.parametrize(
    ("exc", "retry"),
    [
        (ConnectionRefusedError(), True),
        (ConnectionResetError(), True),
        (OSError("network unreachable"), True),
        (TimeoutError(), True),
        (ConnectionClosedError(None, Close(1011, "keepalive ping timeout")), True),
        (_status(503), True),
        (_status(429), True),
        (_status(404), False),
        (_status(401), False),
        (InvalidURI("x", "no scheme"), False),
        (redis.exceptions.ConnectionError("down"), True),
        (redis.exceptions.TimeoutError(), True),
        (redis.exceptions.BusyLoadingError(), True),
        (redis.exceptions.ReadOnlyError(), True),
        (redis.exceptions.AuthenticationError("WRONGPASS"), False),
        (redis.exceptions.ResponseError("WRONGTYPE"), False),
        (ValueError("bug"), False),
        (KeyError("bug"), False),
    ],
)
def test_network_trouble_is_retried_and_mistakes_are_not(exc: BaseException, retry: bool) -> None:
    assert is_retryable(exc) is retry


async def test_the_loop_retries_transient_errors_then_surfaces_a_real_mistake() -> None:
    calls: list[float] = []
    attempts = 0

    async def session(policy: Backoff) -> bool:
        nonlocal attempts
        attempts += 1
        if attempts <= 3:
            raise ConnectionRefusedError("refused")
        raise ValueError("bad configuration")

    def on_retry(exc: BaseException | None, delay: float) -> None:
        assert isinstance(exc, ConnectionRefusedError)
        calls.append(delay)

    policy = Backoff(0.001, 0.004, np.random.default_rng(0))
    with pytest.raises(ValueError, match="bad configuration"):
        await asyncio.wait_for(reconnect_loop(session, policy, on_retry=on_retry), 5.0)
    assert attempts == 4
    assert len(calls) == 3
    assert all(0.0 <= d < 0.004 for d in calls)


async def test_a_good_connection_resets_the_backoff_and_a_planned_one_reconnects_at_once() -> None:
    delays: list[float] = []
    ends = iter([False, False, False, True, False])

    async def session(policy: Backoff) -> bool:
        if len(delays) == 2:
            policy.reset()
        end = next(ends, None)
        if end is None:
            raise LookupError("no more sessions")
        return end

    def on_retry(exc: BaseException | None, delay: float) -> None:
        assert exc is None
        delays.append(delay)

    policy = Backoff(0.001, 1.0, np.random.default_rng(3), factor=10.0)
    with pytest.raises(LookupError):
        await asyncio.wait_for(reconnect_loop(session, policy, on_retry=on_retry), 5.0)
    assert len(delays) == 5
    assert delays[3] == 0.0  # planned reconnect
    assert policy.attempts == 2  # reset after the second end, then two ordinary ends
    assert delays[2] < 0.001 and delays[4] < 0.01
