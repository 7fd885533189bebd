"""Settings: one object, built once by the CLI and passed down.

Sources, highest precedence first: command-line flags (dotted ``overrides`` given to
:func:`load_settings`), environment variables ``TICKCAST__SECTION__KEY`` (e.g.
``TICKCAST__REDIS__URL``, ``TICKCAST__EXCHANGE__SYMBOLS=BTC/USDT:USDT,ETH/USDT:USDT``), a TOML
file (``--config``), and the defaults below. Nested sections merge key by key, so a file that
sets ``[exchange] name`` keeps the default symbols.

Secrets never leave in clear: ``redis.password`` is a ``SecretStr``; ``redis.url`` is a
:class:`SecretUrl` whose ``str``/``repr`` show ``redis://user:***@host:6379/0``; every other URL
with credentials is redacted in ``repr``/``str`` of the sections and in
:meth:`Settings.display`. Use ``.get_secret_value()`` only where the real value is needed
(opening a connection).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Secret,
    SecretStr,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_serializer,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from tickcast.service import TickcastError

ENV_PREFIX = "TICKCAST__"
REDACTED = "***"
DEFAULT_SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT")
REDIS_SCHEMES = ("redis", "rediss", "unix")
_SECRET_QUERY = re.compile(r"([?&](?:password|pass|pwd|token|secret)=)[^&#]*", re.IGNORECASE)

_TOML_FILE: ContextVar[Path | None] = ContextVar("tickcast_toml_file", default=None)


class ConfigError(TickcastError):
    """The settings could not be loaded: missing or malformed file, or invalid values."""


# -- redaction ------------------------------------------------------------------------------


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


def _looks_like_url(value: str) -> bool:
    return "://" in value


def redact(value: Any) -> Any:
    """Deep copy of ``value`` (dicts, lists, strings) with every URL passed through
    :func:`redact_url` and every secret shown as its redacted display."""
    if isinstance(value, Secret | SecretStr):
        return str(value)
    if isinstance(value, str):
        return redact_url(value) if _looks_like_url(value) else value
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
        return redact_url(out) if isinstance(out, str) and _looks_like_url(out) else out


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


# -- sections -------------------------------------------------------------------------------


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
    handoff: bool = Field(
        default=True,
        description="tickcast run: take ticks from the in-process ingester once caught up "
        "(false: read every tick back from Redis)",
    )


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


def default_state_dir() -> Path:
    """``$TICKCAST_STATE_DIR``, else ``$XDG_STATE_HOME/tickcast``, else
    ``~/.local/state/tickcast``."""
    explicit = os.environ.get("TICKCAST_STATE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "tickcast"
    return Path.home() / ".local" / "state" / "tickcast"


class Settings(BaseSettings):
    """Every setting of a tickcast process; see the module docstring for the sources."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        case_sensitive=False,
        extra="forbid",
        validate_assignment=True,
    )

    state_dir: Path = Field(default_factory=default_state_dir)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    exchange: ExchangeSettings = Field(default_factory=ExchangeSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    sim: SimSettings = Field(default_factory=SimSettings)

    @field_validator("state_dir", mode="after")
    @classmethod
    def _expand_state_dir(cls, path: Path) -> Path:
        return path.expanduser()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """CLI overrides (init kwargs) > environment > TOML file (set by :func:`load_settings`)."""
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_TOML_FILE.get())
        return (init_settings, env_settings, toml)

    def display(self) -> dict[str, Any]:
        """The merged settings as JSON-ready plain data with every secret redacted."""
        data: dict[str, Any] = redact(self.model_dump(mode="json"))
        return data


# -- loading --------------------------------------------------------------------------------


def nest_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Turn dotted keys into nested dicts, dropping ``None`` values (flags not given).

    Examples
    --------
    >>> nest_overrides({"redis.url": "redis://h/0", "exchange.symbols": None, "sim.seed": 3})
    {'redis': {'url': 'redis://h/0'}, 'sim': {'seed': 3}}
    """
    nested: dict[str, Any] = {}
    for dotted, value in overrides.items():
        if value is None:
            continue
        *parents, leaf = dotted.split(".")
        node = nested
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {dotted!r} conflicts with override {part!r}")
            node = child
        if isinstance(node.get(leaf), dict):
            raise ConfigError(f"override {dotted!r} conflicts with a nested override")
        node[leaf] = value
    return nested


def _format_validation_error(exc: ValidationError) -> str:
    """One line per error, location and message only (input values may hold secrets)."""
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        location = ".".join(str(part) for part in error["loc"]) or "(root)"
        lines.append(f"  {location}: {error['msg']}")
    return "\n".join(lines)


def _check_toml_file(path: Path) -> None:
    """Raise :class:`ConfigError` naming ``path`` unless it is a readable TOML file."""
    if not path.is_file():
        raise ConfigError(f"config file {path}: no such file")
    try:
        with path.open("rb") as f:
            tomllib.load(f)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path}: {exc}") from exc


def load_settings(
    config_path: Path | str | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Merge defaults < TOML file < environment < ``overrides`` into one :class:`Settings`.

    Parameters
    ----------
    config_path
        TOML file (``--config``); ``None`` for none.
    overrides
        Dotted keys from command-line flags, e.g. ``{"exchange.symbols": [...],
        "redis.url": "redis://..."}``; ``None`` values are ignored.

    Raises
    ------
    ConfigError
        A missing or malformed file, or values that fail validation; the message names the
        file and each offending key (never the values, which may be secrets).
    """
    path = Path(config_path).expanduser() if config_path is not None else None
    if path is not None:
        _check_toml_file(path)
    init = nest_overrides(overrides or {})
    origin = f"config file {path}" if path is not None else "no config file"
    token = _TOML_FILE.set(path)
    try:
        return Settings(**init)
    except ValidationError as exc:
        raise ConfigError(
            f"invalid settings ({origin}, {ENV_PREFIX}* environment, command line):\n"
            + _format_validation_error(exc)
        ) from exc
    except SettingsError as exc:
        raise ConfigError(f"invalid settings ({origin}, {ENV_PREFIX}* environment): {exc}") from exc
    finally:
        _TOML_FILE.reset(token)


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse a ``--set KEY=VALUE`` flag; VALUE is a TOML literal, else a plain string.

    Examples
    --------
    >>> parse_assignment("sim.seed=7")
    ('sim.seed', 7)
    >>> parse_assignment("redis.url=redis://127.0.0.1:6379/0")
    ('redis.url', 'redis://127.0.0.1:6379/0')
    >>> parse_assignment('exchange.symbols=["BTC/USDT:USDT"]')
    ('exchange.symbols', ['BTC/USDT:USDT'])
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects KEY=VALUE, got {text!r}")
    try:
        value: Any = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


# -- command-line helpers -------------------------------------------------------------------


def settings_from_args(
    args: argparse.Namespace, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Load settings for a subcommand: its ``--config`` and ``--set`` flags (added by
    :func:`tickcast.service.commands.config.add_config_arguments`), then the command's own
    flags in ``overrides`` (dotted keys; ``None`` = flag not given) on top."""
    merged: dict[str, Any] = dict(
        parse_assignment(text) for text in getattr(args, "set_overrides", None) or ()
    )
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return load_settings(getattr(args, "config", None), merged)
