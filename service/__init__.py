"""tickcast.service — everything that does I/O: feeds, Redis, the simulator, the CLI."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


class TickcastError(Exception):
    """Root of every error raised by :mod:`tickcast.service`."""


try:
    __version__ = version("tickcast")
except PackageNotFoundError:  # pragma: no cover - only when run from a bare checkout
    __version__ = "0+unknown"

__all__ = ["TickcastError", "__version__"]
