"""Reconnect policy shared by every venue shell: backoff, error classification, one loop.

Three small pieces, after python-websockets' client and arq's connection handling:

* :func:`backoff` — a pure generator of delays, exponential with a cap and *full jitter*
  (each delay uniform in ``[0, min(cap, base * factor**n))``), as in M. Brooker, "Exponential
  Backoff And Jitter", AWS Architecture Blog, 2015. Full jitter spreads reconnecting clients
  so that a venue restart does not see them all come back at once.
* :func:`is_retryable` — which exceptions are worth another attempt (network, timeouts, server
  side 5xx/429, Redis connection trouble) and which are programmer or configuration errors.
* :func:`reconnect_loop` — runs one connection *session* after another, sleeping the next
  backoff delay between them; the session calls :meth:`Backoff.reset` once it has proved the
  connection good (subscribed and data flowing), so a long healthy run starts again from
  ``base`` after its next disconnect.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterator
from typing import NoReturn

import numpy as np
import redis.exceptions
import websockets.exceptions

logger = logging.getLogger(__name__)

#: HTTP statuses of a failed websocket handshake that may succeed later.
RETRYABLE_HTTP_STATUSES = frozenset({408, 418, 425, 429, 500, 502, 503, 504})
REDIS_CLUSTER_TRANSIENT = (
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.RedisClusterUnreachableError,
    redis.exceptions.SlotNotCoveredError,
)
"""What a Redis Cluster answers while a failover or a resharding is under way (the last two
are not ``RedisError``: catch them beside it)."""
REDIS_TRANSIENT = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    *REDIS_CLUSTER_TRANSIENT,
)
"""The Redis errors a retry loop catches (then asks :func:`is_retryable`)."""


def backoff(
    base: float, cap: float, rng: np.random.Generator, factor: float = 2.0
) -> Iterator[float]:
    """Yield reconnect delays (s): full jitter over an exponential capped at ``cap``.

    Parameters
    ----------
    base : float
        Upper bound of the first delay, seconds (> 0).
    cap : float
        Largest upper bound any delay can have, seconds (>= base).
    rng : numpy.random.Generator
        Seeded source of the jitter.
    factor : float
        Growth of the upper bound per attempt (> 1).

    Yields
    ------
    float
        Delay ``n`` (0-based), uniform in ``[0, min(cap, base * factor**n))``. Infinite.

    Examples
    --------
    >>> import numpy as np
    >>> delays = backoff(0.5, 4.0, np.random.default_rng(0))
    >>> [d < b for d, b in zip(delays, [0.5, 1.0, 2.0, 4.0, 4.0])]
    [True, True, True, True, True]
    """
    if not base > 0.0:
        raise ValueError(f"backoff base must be positive, got {base!r}")
    if not cap >= base:
        raise ValueError(f"backoff cap {cap!r} must be at least base {base!r}")
    if not factor > 1.0:
        raise ValueError(f"backoff factor must exceed 1, got {factor!r}")
    bound = base
    while True:
        yield float(rng.uniform(0.0, bound))
        bound = min(cap, bound * factor)


class Backoff:
    """A resettable :func:`backoff` sequence; counts attempts since the last reset.

    Parameters
    ----------
    base, cap, factor : float
        As in :func:`backoff`.
    rng : numpy.random.Generator
        Seeded source of the jitter.
    """

    def __init__(
        self, base: float, cap: float, rng: np.random.Generator, factor: float = 2.0
    ) -> None:
        self.base = base
        self.cap = cap
        self.factor = factor
        self.rng = rng
        self.attempts = 0
        self._delays = backoff(base, cap, rng, factor)

    def next_delay(self) -> float:
        """Return the next delay (s) and count the attempt."""
        self.attempts += 1
        return next(self._delays)

    def reset(self) -> None:
        """Start again from ``base`` (call after a connection proved good)."""
        if self.attempts:
            self.attempts = 0
            self._delays = backoff(self.base, self.cap, self.rng, self.factor)


def is_retryable(exc: BaseException) -> bool:
    """Return True when ``exc`` is a transient network or server condition worth retrying.

    Retryable: connection closed or refused, resets, DNS and socket errors (``OSError``),
    timeouts, websocket protocol errors and handshake answers 408/418/425/429/5xx, and Redis
    connection, timeout, loading and read-only-replica errors, and a Redis Cluster's
    :data:`REDIS_CLUSTER_TRANSIENT` ones. Not retryable: everything else
    (bad URL, authentication, a refused command, a Redis server certificate that does not
    verify, 4xx handshake answers, programmer errors) — retrying those only hides a mistake.

    Examples
    --------
    >>> is_retryable(ConnectionRefusedError()), is_retryable(ValueError("bad"))
    (True, False)
    """
    if isinstance(exc, websockets.exceptions.InvalidStatus):
        return exc.response.status_code in RETRYABLE_HTTP_STATUSES
    if isinstance(exc, websockets.exceptions.InvalidURI):
        return False
    if isinstance(
        exc,
        websockets.exceptions.ConnectionClosed
        | websockets.exceptions.InvalidHandshake
        | websockets.exceptions.ProtocolError,
    ):
        return True
    if isinstance(exc, REDIS_CLUSTER_TRANSIENT):
        return True
    if isinstance(exc, redis.exceptions.AuthenticationError | redis.exceptions.ResponseError):
        return isinstance(exc, redis.exceptions.BusyLoadingError | redis.exceptions.ReadOnlyError)
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return not certificate_refused(exc)
    return isinstance(exc, OSError | TimeoutError | EOFError)


def certificate_refused(exc: BaseException) -> bool:
    """Whether ``exc`` was caused by a TLS certificate that did not verify (a wrong CA file,
    a wrong host name: a configuration error, not a transient one)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


Session = Callable[[Backoff], Awaitable[bool]]


async def reconnect_loop(
    session: Session,
    policy: Backoff,
    *,
    classify: Callable[[BaseException], bool] = is_retryable,
    on_retry: Callable[[BaseException | None, float], None] | None = None,
    name: str = "connection",
) -> NoReturn:
    """Run ``session`` forever, sleeping a backoff delay between attempts.

    Parameters
    ----------
    session : callable
        ``async session(policy) -> bool``: one connection from open to close. It calls
        ``policy.reset()`` once the connection is good. It returns True to be restarted at
        once (a planned reconnect, e.g. before the venue's connection age limit), False after
        an ordinary end (the server closed, the watchdog fired), or raises.
    policy : Backoff
        Delay sequence; reset by the session, advanced here.
    classify : callable
        Decides which exceptions are retried; others propagate (as does cancellation).
    on_retry : callable, optional
        ``on_retry(exc_or_None, delay_s)`` before each sleep (counters, logs).
    name : str
        Label for log lines.
    """
    while True:
        error: BaseException | None = None
        try:
            immediate = await session(policy)
        except Exception as exc:
            if not classify(exc):
                raise
            error, immediate = exc, False
        delay = 0.0 if immediate else policy.next_delay()
        if on_retry is not None:
            on_retry(error, delay)
        if error is not None:
            logger.warning(
                "%s failed (%s: %s); retry in %.2f s",
                name,
                type(error).__name__,
                error,
                delay,
                extra={"error": f"{type(error).__name__}: {error}", "retry_in_s": delay},
            )
        else:
            logger.info("%s ended; reconnect in %.2f s", name, delay)
        if delay > 0.0:
            await asyncio.sleep(delay)
