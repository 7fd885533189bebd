"""Redis connections of the service: bytes responses, RESP2, timeouts and bounded retries, and
the credentials and TLS files of the settings wherever a client is made (the service, its
health check, the ``status`` and ``subscribe`` commands): every client tickcast makes on a
configured Redis comes from :func:`connect` or :func:`probe`.

Redis Cluster
-------------
``redis.cluster`` says whether ``redis.url`` names a node of a Redis Cluster: ``true``,
``false``, or ``auto`` (the default), which asks the server once (``HELLO 2``: ``mode`` is
``cluster``; :func:`cluster_mode`, remembered per URL for the life of the process).
On a cluster, :func:`connect` returns a :class:`redis.asyncio.cluster.RedisCluster` and
:func:`probe` a :class:`redis.cluster.RedisCluster` (same responses, timeouts, credentials and
TLS; the URL's node is the first one asked for the slot map, the others are found from it);
otherwise plain clients. :func:`is_cluster` tells a caller which kind it holds: the hot paths
route each symbol's commands to the node that owns its slot
(:mod:`tickcast.service.bus.cluster`), everything else goes through redis-py's cluster client
(MOVED/ASK and failovers included). A ``unix://`` URL is never a cluster. In ``auto`` mode, a
server out of reach when first asked is taken for a single Redis (a debug line says so): set
``redis.cluster = true`` in a cluster deployment.
"""

from __future__ import annotations

import logging
from typing import Any, TypeAlias
from urllib.parse import urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.retry import Retry as SyncRetry

from tickcast.service.ops.config import ConfigError, Settings
from tickcast.service.ops.redaction import redact_url

log = logging.getLogger(__name__)

AsyncClient: TypeAlias = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster
"""What :func:`connect` returns: a plain client, or a cluster client on a Redis Cluster."""
SyncClient: TypeAlias = redis.Redis | redis.cluster.RedisCluster
"""What :func:`probe` returns."""

_DETECTED: dict[str, bool] = {}
"""``auto`` answers already known, per URL."""


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


def is_cluster(client: object) -> bool:
    """Whether ``client`` (from :func:`connect` or :func:`probe`) talks to a Redis Cluster.

    Examples
    --------
    >>> is_cluster(redis.asyncio.Redis()), is_cluster(redis.Redis())
    (False, False)
    """
    return isinstance(client, redis.asyncio.cluster.RedisCluster | redis.cluster.RedisCluster)


def cluster_mode(url: str, settings: Settings) -> bool:
    """Whether ``url`` is to be used as a Redis Cluster: ``redis.cluster`` when it says
    ``true`` or ``false``; with ``auto``, the server's own answer (``HELLO``), asked once per URL
    and process. ``unix://`` URLs are never clusters.

    Examples
    --------
    >>> cluster_mode("unix:///tmp/redis.sock", Settings())
    False
    >>> cluster_mode("redis://db:6379/0", Settings(redis={"cluster": True}))
    True

    Raises
    ------
    ConfigError
        ``redis.cluster = true`` with a ``unix://`` URL.
    """
    wanted = settings.redis.cluster
    unix = urlsplit(url).scheme.lower() == "unix"
    if wanted is True and unix:
        raise ConfigError(
            f"redis.cluster is true but {redact_url(url)} is a unix socket: a Redis Cluster "
            "is reached over TCP (redis:// or rediss://)"
        )
    if wanted is not True and (wanted is False or unix):
        return False
    if wanted is True:
        return True
    known = _DETECTED.get(url)
    if known is None:
        known = _ask_cluster_enabled(url, settings)
        if known is not None:
            _DETECTED[url] = known
    return bool(known)


def _ask_cluster_enabled(url: str, settings: Settings) -> bool | None:
    """Whether the server at ``url`` runs in cluster mode (``HELLO 2``'s ``mode``, which no ACL
    refuses; ``INFO cluster``'s ``cluster_enabled`` on a server without ``HELLO``); None when it
    cannot be asked (out of reach)."""
    cfg = settings.redis
    client = redis.Redis.from_url(
        url,
        socket_timeout=cfg.connect_timeout_s,
        socket_connect_timeout=cfg.connect_timeout_s,
        **credentials(url, settings),
        **tls(url, settings),
    )
    try:
        return _server_mode(client) == b"cluster"
    except redis.ResponseError as exc:
        log.debug("%s: %s; taking it for a single Redis", redact_url(url), exc)
        return False
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        log.debug(  # (what follows fails on its own, and says why)
            "cannot ask %s whether it is a Redis Cluster (%s); taking it for a single Redis "
            "(set redis.cluster to true or false to say)",
            redact_url(url),
            exc,
        )
        return None
    finally:
        client.close()


def _server_mode(client: redis.Redis) -> bytes:
    """``standalone``, ``cluster`` or ``sentinel``, as the server says."""
    try:
        reply: Any = client.execute_command("HELLO", "2")  # type: ignore[no-untyped-call]
    except redis.ResponseError:  # Redis < 6
        info: Any = client.info("cluster")
        return b"cluster" if int(info.get("cluster_enabled", 0)) else b"standalone"
    fields = reply if isinstance(reply, dict) else dict(zip(reply[::2], reply[1::2], strict=True))
    mode = fields.get(b"mode", fields.get("mode", b""))
    return mode if isinstance(mode, bytes) else str(mode).encode()


def _cluster_error(url: str, exc: redis.exceptions.RedisClusterException) -> ConfigError:
    return ConfigError(f"cannot use {redact_url(url)} as a Redis Cluster: {exc}")


def connect(url: str, settings: Settings) -> AsyncClient:
    """Open an asyncio Redis client on ``url`` (bytes responses, RESP2, timeouts and
    client-level retries from ``settings.redis``, its :func:`credentials` and :func:`tls`): a
    :class:`redis.asyncio.cluster.RedisCluster` when :func:`cluster_mode` says so (it connects
    on its first command), else a :class:`redis.asyncio.Redis`.

    Raises
    ------
    ConfigError
        A cluster URL naming a database other than 0.
    """
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
    if cluster_mode(url, settings):
        try:
            return redis.asyncio.cluster.RedisCluster.from_url(url, **kwargs)
        except redis.exceptions.RedisClusterException as exc:
            raise _cluster_error(url, exc) from exc
    return redis.asyncio.Redis.from_url(url, **kwargs)


def probe(url: str, settings: Settings, timeout_s: float) -> SyncClient:
    """A sync client for short checks (health): ``timeout_s`` on every wait, no retries, the
    settings' :func:`credentials` and :func:`tls`; a :class:`redis.cluster.RedisCluster` when
    :func:`cluster_mode` says so.

    Raises
    ------
    redis.RedisError
        A cluster client reads the slot map as it is made: no node answered.
    ConfigError
        A cluster URL naming a database other than 0.
    """
    kwargs: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        **credentials(url, settings),
        **tls(url, settings),
    }
    if cluster_mode(url, settings):
        try:
            return redis.cluster.RedisCluster.from_url(
                url, retry=SyncRetry(NoBackoff(), 0), **kwargs
            )
        except redis.exceptions.RedisClusterException as exc:
            if "db" in str(exc).lower():
                raise _cluster_error(url, exc) from exc
            raise redis.ConnectionError(
                f"no node of the cluster at {redact_url(url)} answered: {exc}"
            ) from exc
    return redis.Redis.from_url(url, **kwargs)
