"""A fast lane for the hot paths: pre-packed RESP commands on one dedicated pool connection.

redis-py's asyncio pipeline packs every command argument by argument, takes the pool lock
twice and opens a read timeout per reply: at thousands of ticks per second that is most of the
cost of an XADD batch or an XREAD. :class:`Lane` keeps one connection of a client's pool for
itself (so connecting, AUTH, SELECT and TLS stay redis-py's, and ``client.aclose()`` closes it
too), writes a batch of commands packed by :func:`pack` / :func:`bulk` as one buffer, and
parses the replies with its own ``hiredis.Reader``.

Errors keep redis-py's types: a lost or refused connection raises ``redis.ConnectionError``, a
reply that does not come in time ``redis.TimeoutError`` (both drop the connection; the next
call reconnects), an error reply the exception redis-py maps it to (``redis.ResponseError``,
``redis.BusyLoadingError``...), raised after every reply of the batch was read, so the
connection stays usable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import hiredis
import redis
import redis.asyncio
from redis._parsers.base import BaseParser
from redis.asyncio.cluster import ClusterNode

DUPLICATE_ID: Final = "equal or smaller than the target stream top item"
"""Redis's refusal of an XADD whose explicit ID is not above the stream's last one: how a
re-sent entry with a fixed ID (a tick, a signal, a quarantined entry) is refused, not stored
twice."""
READ_CHUNK = 1 << 16
DRAIN_ABOVE = 1 << 16
"""Bytes waiting in the socket's write buffer above which a batch awaits ``drain()``."""


def bulk(value: bytes) -> bytes:
    """One RESP bulk string.

    Examples
    --------
    >>> bulk(b"XADD")
    b'$4\\r\\nXADD\\r\\n'
    """
    return b"$%d\r\n%b\r\n" % (len(value), value)


def pack(*args: bytes | str | int) -> bytes:
    """One RESP command (an array of bulk strings) from bytes, str or int arguments.

    Examples
    --------
    >>> pack("PING")
    b'*1\\r\\n$4\\r\\nPING\\r\\n'
    """
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            parts.append(bulk(arg))
        elif isinstance(arg, str):
            parts.append(bulk(arg.encode()))
        else:
            parts.append(bulk(b"%d" % arg))
    return b"".join(parts)


class Lane:
    """Send pre-packed command batches on one connection of ``client``'s pool.

    :meth:`call` sends a batch and returns its replies. :meth:`send` only writes (the replies
    become *owed*), :meth:`poll` parses the owed replies that have arrived without waiting, and
    :meth:`collect` waits for the rest: a caller can keep computing while Redis answers.

    Parameters
    ----------
    client : redis.asyncio.Redis or redis.asyncio.cluster.ClusterNode
        Its pool provides (and on ``aclose()`` closes) the connection; its
        ``socket_timeout`` bounds each wait beyond any ``BLOCK`` the commands ask for. On a
        Redis Cluster, one node of the cluster client (:mod:`tickcast.service.bus.cluster`):
        the connection is that node's (the cluster's credentials and TLS; closed with the
        cluster client).
    tolerate : str, optional
        Error replies containing this text are returned like other replies, never raised
        (e.g. :data:`DUPLICATE_ID` for XADDs with fixed IDs that may be sent twice).
    """

    def __init__(
        self, client: redis.asyncio.Redis | ClusterNode, *, tolerate: str | None = None
    ) -> None:
        self.client = client
        self.tolerate = tolerate
        if isinstance(client, ClusterNode):
            kwargs = client.connection_kwargs
            self._acquire: Callable[[], Awaitable[Any]] = self._node_connection
        else:
            kwargs = client.connection_pool.connection_kwargs
            self._acquire = client.connection_pool.get_connection
        self.timeout_s = float(kwargs.get("socket_timeout") or 5.0)
        self._conn: Any = None
        self._parser = hiredis.Reader()
        self._owed = 0
        self._got: list[Any] = []
        self._got_ns: list[int] = []
        self._fed_ns = 0
        self.times_ns: list[int] = []
        """Local time (ns) each reply returned by the last :meth:`call` was read at."""

    @property
    def owed(self) -> int:
        """Replies of sent commands not yet returned by :meth:`collect` or :meth:`call`."""
        return self._owed

    def send(self, data: bytes, n: int) -> bool:
        """Write ``data`` (``n`` packed commands) now, without waiting for the replies.

        Returns False, sending nothing, when the connection is not open (use :meth:`call`).
        """
        conn = self._conn
        writer = conn._writer if conn is not None else None
        if writer is None or writer.transport.is_closing():
            return False
        writer.write(data)
        self._owed += n
        return True

    async def poll(self, *, yield_first: bool = True) -> bool:
        """Give the event loop a turn (unless not ``yield_first``), parse what arrived; True
        once every owed reply is in."""
        if yield_first:
            await asyncio.sleep(0)
        conn = self._conn
        reader = conn._reader if conn is not None else None
        if reader is None:
            return True  # lost: collect() raises
        parser, got = self._parser, self._got
        while len(got) < self._owed:
            reply = parser.gets()
            if reply is not False:
                got.append(reply)
                self._got_ns.append(self._fed_ns)
            elif reader._buffer or reader.at_eof():
                parser.feed(await reader.read(READ_CHUNK))  # returns at once
                self._fed_ns = time.time_ns()
                if reader.at_eof():
                    return True
            else:
                return False
        return True

    async def collect(self, extra_s: float = 0.0) -> list[Any]:
        """Wait for every owed reply; return them in order (see :meth:`call` for errors)."""
        return await self.call(b"", 0, extra_s, owed=True)

    async def _connection(self) -> Any:
        conn = self._conn
        if self._owed and (conn is None or not conn.is_connected):
            self._owed = 0
            self._got, self._got_ns = [], []
            raise redis.ConnectionError("Redis connection lost with replies pending (fast lane)")
        if conn is None:
            conn = self._conn = await self._acquire()
            self._parser = hiredis.Reader()
        elif not self._owed and conn.is_connected and conn._reader.at_eof():
            await conn.disconnect(nowait=True)  # closed by Redis while idle (a restart)
        if not conn.is_connected:
            self._parser = hiredis.Reader()
            await conn.connect()
        return conn

    async def _node_connection(self) -> Any:
        """A connection of the cluster node this lane is on (connected by :meth:`_connection`)."""
        assert isinstance(self.client, ClusterNode)
        return self.client.acquire_connection()

    async def close(self) -> None:
        """Drop the connection (a cluster node's goes back to it, closed); the next call opens
        one again."""
        conn, self._conn = self._conn, None
        self._owed = 0
        self._got, self._got_ns = [], []
        if conn is not None:
            await conn.disconnect(nowait=True)
            if isinstance(self.client, ClusterNode):
                self.client.release(conn)

    async def call(
        self,
        data: bytes,
        n: int,
        extra_s: float = 0.0,
        *,
        owed: bool = False,
        check: bool = True,
    ) -> list[Any]:
        """Send ``data`` (``n`` packed commands) and return their ``n`` replies in order.

        The replies owed to earlier :meth:`send` calls are read (and checked) first, and
        returned too with ``owed``. ``extra_s`` lengthens the timeout (a ``BLOCK``). Without
        ``check``, error replies are returned (as ``hiredis.ReplyError``), not raised.

        Raises
        ------
        redis.ConnectionError, redis.TimeoutError
            The connection was lost, refused or too slow (it is dropped).
        redis.RedisError
            A command failed: the first error reply, as redis-py maps it (every reply was
            read).
        """
        conn = await self._connection()
        before, self._owed = self._owed, 0
        got, self._got = self._got, []
        self.times_ns, self._got_ns = self._got_ns, []
        try:
            async with asyncio.timeout(self.timeout_s + extra_s):
                replies = await self._exchange(conn, data, got, before + n)
        except TimeoutError:
            await conn.disconnect(nowait=True)
            raise redis.TimeoutError("Timeout reading from Redis (fast lane)") from None
        except OSError as exc:
            await conn.disconnect(nowait=True)
            raise redis.ConnectionError(f"Redis connection lost (fast lane): {exc}") from exc
        except BaseException:
            await conn.disconnect(nowait=True)
            raise
        if check:
            self._check(replies, self.tolerate)
        if not owed:
            del self.times_ns[:before]
            return replies[before:]
        return replies

    async def _exchange(self, conn: Any, data: bytes, out: list[Any], n: int) -> list[Any]:
        writer, reader = conn._writer, conn._reader
        if writer is None or reader is None:
            raise ConnectionResetError("connection closed")
        if data:
            writer.write(data)
        if writer.transport.get_write_buffer_size() > DRAIN_ABOVE:
            await writer.drain()
        parser = self._parser
        while len(out) < n:
            reply = parser.gets()
            if reply is False:
                chunk = await reader.read(READ_CHUNK)
                if not chunk:
                    raise ConnectionResetError("connection closed by Redis")
                parser.feed(chunk)
                self._fed_ns = time.time_ns()
                continue
            out.append(reply)
            self.times_ns.append(self._fed_ns)
        return out

    @staticmethod
    def _check(replies: list[Any], tolerate: str | None = None) -> None:
        for reply in replies:
            if isinstance(reply, hiredis.ReplyError):
                if tolerate is not None and tolerate in str(reply):
                    continue
                raise BaseParser.parse_error(str(reply))  # type: ignore[no-untyped-call]
