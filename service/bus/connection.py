"""Redis connections of the service: bytes responses, RESP2, timeouts and bounded retries."""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from tickcast.service.ops.config import Settings


def connect(url: str, settings: Settings) -> redis.asyncio.Redis:
    """Open an asyncio Redis client on ``url`` (bytes responses, RESP2, timeouts and
    client-level retries from ``settings.redis``; its username/password fill in when the URL
    has none)."""
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
    }
    if cfg.password is not None and "@" not in url.partition("?")[0]:
        kwargs["password"] = cfg.password.get_secret_value()
        if cfg.username:
            kwargs["username"] = cfg.username
    return redis.asyncio.Redis.from_url(url, **kwargs)
