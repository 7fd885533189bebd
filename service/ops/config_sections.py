"""The sections of :class:`~tickcast.service.ops.config.Settings`, one pydantic model each.

``redis``, ``exchange`` (with its per-venue websocket ``urls``), ``ingest``, ``worker``,
``metrics`` and ``sim``: their fields, defaults, bounds and validators. Unknown keys are errors;
``repr``/``str`` and JSON dumps redact credentials in URLs (:mod:`tickcast.service.ops.redaction`).
Merging the sources into one object is :mod:`tickcast.service.ops.config`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    SerializerFunctionWrapHandler,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_settings import NoDecode

from tickcast.service.ops.redaction import SecretUrl, looks_like_url, redact_url

DEFAULT_SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT")
REDIS_SCHEMES = ("redis", "rediss", "unix")


class _Section(BaseModel):
    """Base of every settings section: unknown keys are errors; ``repr``/``str`` and JSON
    dumps redact credentials in URLs (python-mode ``model_dump`` keeps values usable)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, (redact_url(value) if isinstance(value, str) else value)

    @field_serializer("*", mode="wrap", when_used="json")
    def _redact_json(self, value: Any, handler: SerializerFunctionWrapHandler) -> Any:
        out = handler(value)
        return redact_url(out) if isinstance(out, str) and looks_like_url(out) else out


def _split_list(value: Any) -> Any:
    """Accept ``"a,b"`` or a JSON list string (environment, CLI) as well as a list."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except ValueError as exc:
                raise ValueError(f"not a JSON list: {exc}") from exc
        return [item.strip() for item in text.split(",") if item.strip()]
    return value


class RedisSettings(_Section):
    """Where streams live. ``url=None`` runs a private redis-server under ``state_dir``."""

    url: SecretUrl | None = Field(
        default=None, description="redis://, rediss:// or unix:// URL; None = embedded"
    )
    username: str | None = Field(default=None, description="used when the URL has none")
    password: SecretStr | None = Field(default=None, description="used when the URL has none")
    prefix: str = Field(default="tickcast", min_length=1, pattern=r"^[^\s{}:]+$")
    tick_maxlen: int = Field(default=1_000_000, gt=0, description="XADD MAXLEN ~ of ticks")
    signal_maxlen: int = Field(default=100_000, gt=0, description="XADD MAXLEN ~ of signals")
    socket_timeout_s: float = Field(default=5.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    retry_attempts: int = Field(
        default=2, ge=0, description="client-level retries of a command on connection errors"
    )
    retry_base_s: float = Field(default=0.05, gt=0, description="first retry/backoff delay")
    retry_cap_s: float = Field(default=2.0, gt=0, description="longest retry/backoff delay")
    embedded_unix_socket: bool = Field(
        default=True, description="embedded server on a unix socket (else a loopback port)"
    )

    @field_validator("url", mode="after")
    @classmethod
    def _check_scheme(cls, url: SecretUrl | None) -> SecretUrl | None:
        if url is None:
            return None
        scheme = urlsplit(url.get_secret_value()).scheme.lower()
        if scheme not in REDIS_SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(REDIS_SCHEMES)}, not {scheme!r}")
        return url


class BinanceUsdmUrls(_Section):
    """Binance USDⓈ-M routed websocket bases (trade/bookTicker vs aggTrade/markPrice)."""

    public: str = "wss://fstream.binance.com/public"
    market: str = "wss://fstream.binance.com/market"


class ExchangeUrls(_Section):
    """Websocket base URLs per venue (tests point them at the simulator)."""

    binanceusdm: BinanceUsdmUrls = Field(default_factory=BinanceUsdmUrls)
    bybit: str = "wss://stream.bybit.com/v5/public/linear"
    okx: str = "wss://ws.okx.com:8443/ws/v5/public"
    bitget: str = "wss://ws.bitget.com/v2/ws/public"
    bingx: str = "wss://open-api-swap.bingx.com/swap-market"


class ExchangeSettings(_Section):
    """Which venue and symbols to ingest, and how to keep the connection alive."""

    name: str = Field(default="sim", min_length=1, description="sim or a ccxt venue id")
    symbols: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_SYMBOLS), min_length=1
    )
    urls: ExchangeUrls = Field(default_factory=ExchangeUrls)
    watchdog_s: float = Field(default=10.0, gt=0, description="silence before a reconnect")
    reconnect_base_s: float = Field(default=0.5, gt=0)
    reconnect_cap_s: float = Field(default=30.0, gt=0)
    ping_interval_s: float = Field(default=20.0, gt=0)
    ping_timeout_s: float = Field(default=20.0, gt=0)
    max_connection_s: float = Field(
        default=23.5 * 3600, gt=0, description="proactive reconnect before the venue's 24 h cut"
    )

    @field_validator("symbols", mode="before")
    @classmethod
    def _parse_symbols(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("symbols", mode="after")
    @classmethod
    def _check_symbols(cls, symbols: list[str]) -> list[str]:
        for symbol in symbols:
            if "/" not in symbol or any(c.isspace() or c in "{}" for c in symbol):
                raise ValueError(f"{symbol!r} is not a unified symbol like 'BTC/USDT:USDT'")
        return list(dict.fromkeys(symbols))


class IngestSettings(_Section):
    """The ingester's bounded queue and batching."""

    queue_max: int = Field(default=100_000, gt=0, description="ticks buffered before drops")
    batch_max: int = Field(default=1_000, gt=0, description="ticks per pipelined XADD batch")
    flush_interval_ms: int = Field(default=0, ge=0, description="longest wait to fill a batch")


class WorkerSettings(_Section):
    """The online learner's clock and checkpoint cadence."""

    horizon_ms: int = Field(default=1_000, gt=0)
    sample_ms: int = Field(default=100, gt=0)
    checkpoint_every_samples: int = Field(default=6_000, gt=0)
    checkpoint_every_s: float = Field(default=60.0, gt=0)
    read_count: int = Field(default=1_000, gt=0, description="ticks per XREAD")
    block_ms: int = Field(default=500, gt=0, description="XREAD BLOCK timeout")
    lease_ttl_s: float = Field(
        default=10.0,
        gt=0,
        description="run/worker: time to live of a symbol's ownership lease (renewed every third)",
    )
    handoff: bool = Field(
        default=True,
        description="tickcast run: take ticks from the in-process ingester once caught up "
        "(false: read every tick back from Redis)",
    )

    @model_validator(mode="after")
    def _lease_outlives_reads(self) -> WorkerSettings:
        """A lease is renewed between reads: a blocked read must not outlast a third of it."""
        if self.lease_ttl_s * 1000.0 < 3 * self.block_ms:
            raise ValueError(
                f"lease_ttl_s ({self.lease_ttl_s}) must be at least 3 x block_ms "
                f"({self.block_ms} ms): the lease is renewed between reads"
            )
        return self


class MetricsSettings(_Section):
    """The Prometheus endpoint."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=0, le=65535)


class SimSettings(_Section):
    """The built-in simulated exchange."""

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535, description="0 = a free port")
    speed: float = Field(default=1.0, ge=0, description="x real time; 0 = as fast as possible")
    seed: int = 0
