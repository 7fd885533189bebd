"""Settings: one object, built once by the CLI and passed down.

Sources, highest precedence first: command-line flags (dotted ``overrides`` given to
:func:`load_settings`), environment variables ``TICKCAST__SECTION__KEY`` (e.g.
``TICKCAST__REDIS__URL``, ``TICKCAST__EXCHANGE__SYMBOLS=BTC/USDT:USDT,ETH/USDT:USDT``), a TOML
file (``--config``), and the defaults of the sections (:mod:`tickcast.service.ops.config_sections`).
Nested sections merge key by key, so a file that sets ``[exchange] name`` keeps the default
symbols. This module holds :class:`Settings` and that loading: the merge, the ``--set`` flags and
the error messages.

Secrets never leave in clear: ``redis.password`` is a ``SecretStr``; ``redis.url`` is a
:class:`~tickcast.service.ops.redaction.SecretUrl` whose ``str``/``repr`` show
``redis://user:***@host:6379/0``; every other URL with credentials is redacted in ``repr``/``str``
of the sections and in :meth:`Settings.display`. Use ``.get_secret_value()`` only where the real
value is needed (opening a connection).
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from tickcast.service import TickcastError
from tickcast.service.ops.config_sections import (
    ExchangeSettings,
    IngestSettings,
    MetricsSettings,
    RedisSettings,
    SimSettings,
    WorkerSettings,
)
from tickcast.service.ops.redaction import redact

__all__ = [
    "ENV_PREFIX",
    "ConfigError",
    "Settings",
    "default_state_dir",
    "load_settings",
    "nest_overrides",
    "parse_assignment",
    "settings_from_args",
]

ENV_PREFIX = "TICKCAST__"

_TOML_FILE: ContextVar[Path | None] = ContextVar("tickcast_toml_file", default=None)


class ConfigError(TickcastError):
    """The settings could not be loaded: missing or malformed file, or invalid values."""


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
    """The errors, location and message only (input values may hold secrets): one error on
    the same line, several one per line."""
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        location = ".".join(str(part) for part in error["loc"]) or "(root)"
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{location}: {message}")
    if len(lines) == 1:
        return " " + lines[0]
    return "".join(f"\n  {line}" for line in lines)


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
            f"invalid settings ({origin}, {ENV_PREFIX}* environment, command line):"
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
