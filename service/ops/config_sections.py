"""The sections of :class:`~tickcast.service.ops.config.Settings`, one pydantic model each.

``redis``, ``exchange`` (with its per-venue websocket ``urls``), ``ingest``, ``worker``,
``metrics`` and ``sim``: their fields, defaults, bounds and validators. Unknown keys are errors;
``repr``/``str`` and JSON dumps redact credentials in URLs (:mod:`tickcast.service.ops.redaction`).
Merging the sources into one object is :mod:`tickcast.service.ops.config`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    SecretStr,
    SerializerFunctionWrapHandler,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_settings import NoDecode

from tickcast.service.ops.redaction import SecretUrl, looks_like_url, redact, redact_url
from tickcast.service.ticks import Instrument
from tickcast.service.venues import registry
from tickcast.service.venues.venue import VenueError

DEFAULT_SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT")
REDIS_SCHEMES = ("redis", "rediss", "unix")


class _Section(BaseModel):
    """Base of every settings section: unknown keys are errors; ``repr``/``str`` and JSON
    dumps redact credentials in URLs (python-mode ``model_dump`` keeps values usable)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, (redact(value) if isinstance(value, str | dict) else value)

    @field_serializer("*", mode="wrap", when_used="json")
    def _redact_json(self, value: Any, handler: SerializerFunctionWrapHandler) -> Any:
        out = handler(value)
        if isinstance(out, dict):
            return redact(out)
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
    tls_ca_file: FilePath | None = Field(
        default=None,
        description="rediss:// only: CA certificates (PEM) the server's certificate must chain "
        "to; default: the system's",
    )
    tls_cert_file: FilePath | None = Field(
        default=None, description="rediss:// only: client certificate (PEM), when the server asks"
    )
    tls_key_file: FilePath | None = Field(
        default=None, description="the client certificate's key (PEM; default: in the cert file)"
    )
    prefix: str = Field(default="tickcast", min_length=1, pattern=r"^[^\s{}:]+$")
    tick_maxlen: int = Field(default=1_000_000, gt=0, description="XADD MAXLEN ~ of ticks")
    signal_maxlen: int = Field(default=100_000, gt=0, description="XADD MAXLEN ~ of signals")
    quarantine_maxlen: int = Field(
        default=10_000,
        gt=0,
        description="XADD MAXLEN ~ of each symbol's quarantine stream (ticks the worker skipped)",
    )
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
    cluster: bool | Literal["auto"] = Field(
        default="auto",
        description="Redis Cluster: true (the URL names one node of a cluster, the others are "
        "found from it), false (a single Redis), or auto (ask the server once, HELLO; "
        "a server out of reach then is taken for a single Redis: set true for a cluster)",
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

    @model_validator(mode="after")
    def _check_tls(self) -> RedisSettings:
        if self.tls_key_file is not None and self.tls_cert_file is None:
            raise ValueError("redis.tls_key_file needs redis.tls_cert_file")
        return self


def default_urls() -> dict[str, dict[str, str]]:
    """Every registered live venue's websocket URLs, by venue and route."""
    out: dict[str, dict[str, str]] = {}
    for name in registry.VENUES:
        venue = registry.venue(name)
        if venue.retired is None:
            out[name] = dict(venue.routes)
    return out


class ExchangeSettings(_Section):
    """Which venues and symbols to ingest, and how to keep the connections alive."""

    name: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [registry.SIM],
        min_length=1,
        description="sources, comma-separated: sim, sim:<venue>, <venue> or ccxt:<id>",
    )
    symbols: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_SYMBOLS), min_length=1
    )
    venue_symbols: dict[str, list[str]] = Field(
        default_factory=dict,
        description="per source (as named in exchange.name): its own symbols, else 'symbols'",
    )
    urls: dict[str, dict[str, str]] = Field(
        default_factory=default_urls, description="websocket URL of each venue's routes"
    )
    watchdog_s: float = Field(default=10.0, gt=0, description="silence before a reconnect")
    reconnect_base_s: float = Field(default=0.5, gt=0)
    reconnect_cap_s: float = Field(default=30.0, gt=0)
    ping_interval_s: float | None = Field(
        default=None, gt=0, description="client keepalive pings (s); default: each venue's own"
    )
    ping_timeout_s: float = Field(default=20.0, gt=0, description="longest wait for a pong")
    max_connection_s: float = Field(
        default=23.5 * 3600, gt=0, description="proactive reconnect before the venue's 24 h cut"
    )
    event_time_window_s: float = Field(
        default=600.0,
        ge=0,
        allow_inf_nan=False,
        description="refuse ticks stamped further than this from the local clock (0: no check, "
        "for replays of old recordings); keep the host's clock synchronised",
    )
    max_price_jump: float = Field(
        default=0.5,
        ge=0,
        allow_inf_nan=False,
        description="refuse prices moving more than this fraction from the last accepted one, "
        "until 5 in a row confirm the move (0: no check)",
    )
    max_frame_bytes: int = Field(
        default=4 * 2**20,
        gt=0,
        le=2**28,
        description="reject (and count as 'oversized frame') websocket frames larger than this; "
        "the connection reads up to 4x this before it must close",
    )

    @field_validator("name", "symbols", mode="before")
    @classmethod
    def _parse_list(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("name", mode="after")
    @classmethod
    def _check_sources(cls, names: list[str]) -> list[str]:
        names = [n.strip() for n in names]
        try:
            registry.sources(names, live=True)
        except VenueError as exc:
            raise ValueError(str(exc)) from exc
        return names

    @field_validator("symbols", mode="after")
    @classmethod
    def _check_symbols(cls, symbols: list[str]) -> list[str]:
        return _unified(symbols)

    @field_validator("urls", mode="before")
    @classmethod
    def _merge_urls(cls, value: Any) -> Any:
        """Overrides merge into the defaults route by route; a single URL names a one-route
        venue's only route."""
        if not isinstance(value, dict):
            return value
        merged = default_urls()
        for venue, routes in value.items():
            known = merged.get(venue)
            if known is None:
                raise ValueError(f"no live venue {venue!r}: use one of {', '.join(merged)}")
            if isinstance(routes, str) and len(known) == 1:
                routes = {next(iter(known)): routes}
            if not isinstance(routes, dict):
                raise ValueError(f"{venue}: expected a table of routes ({', '.join(known)})")
            unknown = sorted(set(routes) - set(known))
            if unknown:
                raise ValueError(f"{venue} has no route {', '.join(unknown)} ({', '.join(known)})")
            known.update(routes)
        return merged

    @model_validator(mode="after")
    def _check_venue_symbols(self) -> ExchangeSettings:
        named = {s.spec: s.label for s in self.sources()}
        for key, symbols in self.venue_symbols.items():
            if key not in named and key not in named.values():
                raise ValueError(
                    f"venue_symbols names {key!r}, which is not in exchange.name "
                    f"({', '.join(named)})"
                )
            if not symbols:
                raise ValueError(f"venue_symbols.{key} is empty")
            self.venue_symbols[key] = _unified(symbols)
        return self

    def sources(self) -> list[registry.Source]:
        """The sources of :attr:`name` (see :mod:`tickcast.service.venues.registry`)."""
        return registry.sources(self.name)

    def symbols_of(self, source: registry.Source) -> list[str]:
        """``source``'s symbols: its own ``venue_symbols`` entry, else :attr:`symbols`."""
        own = self.venue_symbols.get(source.spec) or self.venue_symbols.get(source.label)
        return list(own) if own else list(self.symbols)

    def instruments(self) -> list[Instrument]:
        """Every (venue label, symbol) the settings name, in source order."""
        return [
            Instrument(s.label, symbol) for s in self.sources() for symbol in self.symbols_of(s)
        ]


def _unified(symbols: list[str]) -> list[str]:
    for symbol in symbols:
        if "/" not in symbol or any(c.isspace() or c in "{}" for c in symbol):
            raise ValueError(f"{symbol!r} is not a unified symbol like 'BTC/USDT:USDT'")
    return list(dict.fromkeys(symbols))


class IngestSettings(_Section):
    """The ingester's bounded queue and batching."""

    queue_max: int = Field(default=100_000, gt=0, description="ticks buffered before drops")
    batch_max: int = Field(default=1_000, gt=0, description="ticks per pipelined XADD batch")
    flush_interval_ms: int = Field(default=0, ge=0, description="longest wait to fill a batch")


MAX_EXTRA_HORIZONS = 7
"""The most extra horizons per symbol (each costs about one learner's work per sample)."""


class WorkerSettings(_Section):
    """The online learner's clock, the model it starts from, and the checkpoint cadence."""

    horizon_ms: int = Field(default=1_000, gt=0)
    extra_horizons_ms: Annotated[list[Annotated[int, Field(gt=0)]], NoDecode] = Field(
        default_factory=list,
        max_length=MAX_EXTRA_HORIZONS,
        description="more horizons (ms) learned per symbol beside horizon_ms, each published in "
        "the signal's 'horizons' (schema version 2); distinct, none equal to horizon_ms",
    )
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
    init_model: Path | None = Field(
        default=None,
        description="run/worker: a model file (tickcast train) every symbol without a "
        "checkpoint starts from; a checkpoint always wins",
    )

    @field_validator("extra_horizons_ms", mode="before")
    @classmethod
    def _parse_horizons(cls, value: Any) -> Any:
        return _split_list(value)

    @model_validator(mode="after")
    def _horizons_distinct(self) -> WorkerSettings:
        """Every horizon once: the extra ones distinct, none the main ``horizon_ms``."""
        extra = self.extra_horizons_ms
        if self.horizon_ms in extra or len(set(extra)) != len(extra):
            raise ValueError(
                f"extra_horizons_ms {extra} must be distinct and differ from horizon_ms "
                f"({self.horizon_ms})"
            )
        return self

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
