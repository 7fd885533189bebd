"""The Redis bus: key names and tick codec, connections, the fast RESP lane, the tick writer and
reader, leases, checkpoints, and the embedded redis-server with its discovery.

Keys (DESIGN.md §3), one hash slot per symbol thanks to the ``{...}`` Redis Cluster hash tag::

    <prefix>:{<venue>:<SYMBOLID>}:ticks     tick stream (XADD MAXLEN ~ redis.tick_maxlen)
    <prefix>:{<venue>:<SYMBOLID>}:signals   signal stream
    <prefix>:{<venue>:<SYMBOLID>}:ckpt      checkpoint

(:mod:`tickcast.service.bus.keys`); the encoding of a tick entry is
:mod:`tickcast.service.bus.codec`.
"""

from __future__ import annotations

from tickcast.service import TickcastError


class BusError(TickcastError):
    """Root of the bus errors."""
