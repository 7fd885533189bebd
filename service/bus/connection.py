"""Redis connections of the service: bytes responses, RESP2, timeouts and bounded retries, and
the credentials of the settings wherever a client is made (the service, its health check, the
``status`` and ``subscribe`` commands)."""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from tickcast.service.ops.config import Settings


def credentials(url: str, settings: Settings) -> dict[str, str]:
    """``username`` / ``password`` client arguments from ``settings.redis`` when ``url`` carries
    none (a URL's own credentials win).

    Examples
    --------
    >>> s = Settings(redis={"username": "alice", "password": "s3cret"})
    >>> credentials("redis://db:6379/0", s), credentials("redis://bob:pw@db:6379/0", s)
    ({'password': 's3cret', 'username': 'alice'}, {})
    """
    cfg = settings.redis
    if cfg.password is None or "@" in url.partition("?")[0]:
        return {}
    out = {"password": cfg.password.get_secret_value()}
    if cfg.username:
        out["username"] = cfg.username
    return out


def connect(url: str, settings: Settings) -> redis.asyncio.Redis:
    """Open an asyncio Redis client on ``url`` (bytes responses, RESP2, timeouts and
    client-level retries from ``settings.redis``, its :func:`credentials`)."""
    cfg = settings.redis
    kwargs: dict[str, Any] = {
        "decode_responses": False,
        "protocol": 2,
        "socket_timeout": cfg.socket_timeout_s,
        "socket_connect_timeout": cfg.connect_timeout_s,
        "retry": Retry(
            ExponentialWithJitterBackoff(cfg.retry_cap_s, cfg.retry_base_s), cfg.retry_attempts
        ),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
        **credentials(url, settings),
    }
    return redis.asyncio.Redis.from_url(url, **kwargs)


def probe(url: str, settings: Settings, timeout_s: float) -> redis.Redis:
    """A sync client for short checks (health, discovery): ``timeout_s`` on every wait, no
    retries, the settings' :func:`credentials`."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        **credentials(url, settings),
    )
