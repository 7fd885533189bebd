"""Redis connections of the service: bytes responses, RESP2, timeouts and bounded retries, and
the credentials and TLS files of the settings wherever a client is made (the service, its
health check, the ``status`` and ``subscribe`` commands): every client tickcast makes on a
configured Redis comes from :func:`connect` or :func:`probe`."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import redis
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from tickcast.service.ops.config import ConfigError, Settings
from tickcast.service.ops.redaction import redact_url


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


def tls(url: str, settings: Settings) -> dict[str, str]:
    """``ssl_ca_certs`` / ``ssl_certfile`` / ``ssl_keyfile`` client arguments from the
    ``redis.tls_*`` settings given (a ``rediss://`` URL verifies the server's certificate and
    host name in any case: against the system's CAs when ``redis.tls_ca_file`` is unset).

    Examples
    --------
    >>> tls("rediss://db:6380/0", Settings(redis={"tls_ca_file": __file__}))  # doctest: +ELLIPSIS
    {'ssl_ca_certs': '.../connection.py'}
    >>> tls("redis://db:6379/0", Settings())
    {}

    Raises
    ------
    ConfigError
        When a ``redis.tls_*`` file is set but ``url`` is not ``rediss://``: the settings ask
        for TLS and the connection would not have it.
    """
    cfg = settings.redis
    files = {
        "ssl_ca_certs": cfg.tls_ca_file,
        "ssl_certfile": cfg.tls_cert_file,
        "ssl_keyfile": cfg.tls_key_file,
    }
    given = {name: str(path) for name, path in files.items() if path is not None}
    if given and urlsplit(url).scheme.lower() != "rediss":
        raise ConfigError(
            f"redis.tls_* files are set but the Redis URL {redact_url(url)} is not rediss://: "
            "use a rediss:// URL (TLS), or unset them"
        )
    return given


def connect(url: str, settings: Settings) -> redis.asyncio.Redis:
    """Open an asyncio Redis client on ``url`` (bytes responses, RESP2, timeouts and
    client-level retries from ``settings.redis``, its :func:`credentials` and :func:`tls`)."""
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
        **tls(url, settings),
    }
    return redis.asyncio.Redis.from_url(url, **kwargs)


def probe(url: str, settings: Settings, timeout_s: float) -> redis.Redis:
    """A sync client for short checks (health): ``timeout_s`` on every wait, no retries, the
    settings' :func:`credentials` and :func:`tls`."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        **credentials(url, settings),
        **tls(url, settings),
    )
