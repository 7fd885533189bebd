"""Credential redaction: URLs and secrets shown without their passwords.

:func:`redact_url` replaces the password of a URL (its userinfo or a ``password=``-like query
parameter) with ``***``; :func:`redact` applies it through nested plain data;
:class:`SecretUrl` is a pydantic secret whose ``str``/``repr``/JSON show the redacted URL while
``get_secret_value()`` returns the real one. Settings, logs and status output go through them so
that a credential never leaves in clear.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import Secret, SecretStr

REDACTED = "***"
_SECRET_QUERY = re.compile(r"([?&](?:password|pass|pwd|token|secret)=)[^&#]*", re.IGNORECASE)


def redact_url(url: str) -> str:
    """Return ``url`` with its password (userinfo or ``password=`` query) replaced by ``***``.

    Examples
    --------
    >>> redact_url("redis://user:s3cret@host:6379/0")
    'redis://user:***@host:6379/0'
    >>> redact_url("rediss://:s3cret@host/0")
    'rediss://:***@host/0'
    >>> redact_url("unix:///tmp/r.sock?db=0&password=x")
    'unix:///tmp/r.sock?db=0&password=***'
    >>> redact_url("wss://fstream.binance.com/public")
    'wss://fstream.binance.com/public'
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    if "@" in authority:
        userinfo, _, hostport = authority.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        authority = f"{user}:{REDACTED}@{hostport}" if colon else f"{user}@{hostport}"
    tail = _SECRET_QUERY.sub(rf"\g<1>{REDACTED}", tail)
    return f"{scheme}://{authority}{tail}"


def looks_like_url(value: str) -> bool:
    """Whether ``value`` has a ``scheme://`` part, so may carry credentials."""
    return "://" in value


def redact(value: Any) -> Any:
    """Deep copy of ``value`` (dicts, lists, strings) with every URL passed through
    :func:`redact_url` and every secret shown as its redacted display."""
    if isinstance(value, Secret | SecretStr):
        return str(value)
    if isinstance(value, str):
        return redact_url(value) if looks_like_url(value) else value
    if isinstance(value, Mapping):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


class SecretUrl(Secret[str]):
    """A URL that may hold credentials; ``str``/``repr``/JSON show it redacted.

    ``get_secret_value()`` returns the real URL.
    """

    def _display(self) -> str:
        return redact_url(self.get_secret_value())
