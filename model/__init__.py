"""tickcast.model — the learning core: numpy and the standard library only, no I/O."""

from __future__ import annotations


class ModelError(Exception):
    """Root of every error raised by :mod:`tickcast.model`."""


__all__ = ["ModelError"]
