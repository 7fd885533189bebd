"""Logging set-up for the CLI: plain text for terminals, one JSON object per line for daemons.

A JSON line carries ``ts`` (UTC ISO-8601), ``level``, ``logger``, ``msg``, ``exc`` (a traceback,
when any) and the record's context as fields of their own: ``venue``, ``symbol``, ``url``,
``error`` and any other ``extra=`` given to the logging call, plus those bound with
:func:`log_context` for the code running inside it (an asyncio task created inside keeps
them). Every string goes through :func:`~tickcast.service.ops.redaction.redact`, so a URL's
password never reaches a log line, in a field or in the message.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator
from typing import Any, Final

from tickcast.service.ops.redaction import redact, redact_url
from tickcast.service.ticks import Instrument

_CONTEXT: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "tickcast_log_context", default=None
)
#: Attributes every LogRecord has: whatever else a record carries came from ``extra=``.
_RECORD_ATTRIBUTES: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` (e.g. ``venue=...``) to every JSON log line written inside the block.

    Examples
    --------
    >>> with log_context(venue="sim"):
    ...     context_fields()
    {'venue': 'sim'}
    >>> context_fields()
    {}
    """
    token = _CONTEXT.set({**(_CONTEXT.get() or {}), **fields})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def context_fields() -> dict[str, Any]:
    """The fields bound by the enclosing :func:`log_context` blocks."""
    return dict(_CONTEXT.get() or {})


def _redacted(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return redact(value)
    if isinstance(value, BaseException):
        return redact_url(f"{type(value).__name__}: {value}")
    return redact(str(value))


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object (see the module docstring).

    Examples
    --------
    >>> record = logging.LogRecord("tickcast.x", logging.WARNING, "", 0,
    ...     "cannot reach %s", ("redis://u:pw@h/0",), None)
    >>> record.venue = "sim"
    >>> line = json.loads(JsonFormatter().format(record))
    >>> line["msg"], line["venue"], line["level"]
    ('cannot reach redis://u:***@h/0', 'sim', 'WARNING')
    """

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": redact_url_in_text(record.getMessage()),
        }
        fields = context_fields()
        fields.update((k, v) for k, v in vars(record).items() if k not in _RECORD_ATTRIBUTES)
        for key, value in fields.items():
            payload.setdefault(key, _redacted(value))
        if record.exc_info:
            payload["exc"] = redact_url_in_text(self.formatException(record.exc_info))
            if "error" not in payload and record.exc_info[1] is not None:
                payload["error"] = _redacted(record.exc_info[1])
        return json.dumps(payload, ensure_ascii=False, default=str)


def redact_url_in_text(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``.

    Examples
    --------
    >>> redact_url_in_text("connecting to redis://u:pw@h:6379/0 (try 2)")
    'connecting to redis://u:***@h:6379/0 (try 2)'
    """
    if "://" not in text:
        return text
    return " ".join(redact_url(word) if "://" in word else word for word in text.split(" "))


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Send log records to stderr at ``level`` in ``fmt`` (``"text"`` or ``"json"``)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def instrument_fields(instrument: Instrument) -> dict[str, str]:
    """The ``venue`` and ``symbol`` fields of a log line about ``instrument`` (``extra=``)."""
    return {"venue": instrument.venue, "symbol": instrument.symbol}
