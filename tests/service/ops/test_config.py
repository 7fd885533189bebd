"""Settings: precedence (flags > environment > TOML file > defaults), errors, redaction."""

from __future__ import annotations

import json
import logging
import tomllib
from pathlib import Path

import pytest
from pydantic import SecretStr

from tickcast.service import TickcastError
from tickcast.service.cli import main
from tickcast.service.commands.config import to_toml
from tickcast.service.ops.config import (
    ConfigError,
    Settings,
    load_settings,
    nest_overrides,
    parse_assignment,
)
from tickcast.service.ops.config_sections import DEFAULT_SYMBOLS, default_urls
from tickcast.service.ops.redaction import SecretUrl, redact_url

SECRET = "hunter2-s3cret"
SECRET_URL = f"redis://alice:{SECRET}@db.example:6380/2"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No TICKCAST* variable from the calling shell leaks into these tests."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("TICKCAST"):
            monkeypatch.delenv(name)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tickcast.toml"
    path.write_text(text, encoding="utf-8")
    return path


# -- defaults and sources -------------------------------------------------------------------


def test_defaults_run_the_simulator_on_three_symbols_with_embedded_redis(tmp_path: Path) -> None:
    settings = load_settings(None, {})
    assert settings.exchange.name == ["sim"]
    assert settings.exchange.symbols == list(DEFAULT_SYMBOLS)
    assert settings.exchange.instruments() == [("sim", s) for s in DEFAULT_SYMBOLS]
    assert settings.redis.url is None
    assert settings.redis.prefix == "tickcast"
    assert settings.redis.tick_maxlen == 1_000_000
    assert settings.worker.horizon_ms == 1000 and settings.worker.sample_ms == 100
    assert (settings.metrics.host, settings.metrics.port) == ("127.0.0.1", 9464)
    assert settings.exchange.urls["binanceusdm"] == {
        "public": "wss://fstream.binance.com/public",
        "market": "wss://fstream.binance.com/market",
    }
    assert settings.exchange.urls["binancecoinm"] == {"public": "wss://dstream.binance.com"}
    assert settings.state_dir == tmp_path / "home" / ".local" / "state" / "tickcast"


def test_state_dir_follows_tickcast_state_dir_then_xdg_state_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert load_settings().state_dir == tmp_path / "xdg" / "tickcast"
    monkeypatch.setenv("TICKCAST_STATE_DIR", str(tmp_path / "explicit"))
    assert load_settings().state_dir == tmp_path / "explicit"
    monkeypatch.setenv("TICKCAST__STATE_DIR", str(tmp_path / "env-setting"))
    assert load_settings().state_dir == tmp_path / "env-setting"


SOURCES = ("default", "file", "env", "cli")


@pytest.mark.parametrize(
    ("low", "high"),
    [(lo, hi) for i, lo in enumerate(SOURCES) for hi in SOURCES[i + 1 :]],
)
def test_each_source_beats_every_source_below_it(
    low: str, high: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    values = {"default": 0, "file": 11, "env": 22, "cli": 33}
    active = {low, high}
    config_path = None
    if "file" in active:
        config_path = write_toml(tmp_path, f"[sim]\nseed = {values['file']}\n")
    if "env" in active:
        monkeypatch.setenv("TICKCAST__SIM__SEED", str(values["env"]))
    overrides = {"sim.seed": values["cli"]} if "cli" in active else {}
    settings = load_settings(config_path, overrides)
    assert settings.sim.seed == values[high]


def test_sections_merge_key_by_key_across_sources(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = write_toml(
        tmp_path,
        '[exchange]\nname = "binanceusdm"\nwatchdog_s = 3.0\n'
        '[exchange.urls.binanceusdm]\npublic = "ws://127.0.0.1:9/public"\n',
    )
    monkeypatch.setenv("TICKCAST__EXCHANGE__WATCHDOG_S", "4.5")
    monkeypatch.setenv("TICKCAST__EXCHANGE__RECONNECT_CAP_S", "7")
    settings = load_settings(path, {"exchange.symbols": ["ETH/USDT:USDT"]})
    ex = settings.exchange
    assert ex.name == ["binanceusdm"]
    assert ex.watchdog_s == 4.5
    assert ex.reconnect_cap_s == 7.0
    assert ex.symbols == ["ETH/USDT:USDT"]
    assert ex.urls["binanceusdm"]["public"] == "ws://127.0.0.1:9/public"
    assert ex.urls["binanceusdm"]["market"] == "wss://fstream.binance.com/market"
    assert ex.ping_interval_s is None, "each venue's own keepalive interval"


@pytest.mark.parametrize(
    "raw", ["BTC/USDT:USDT, SOL/USDT:USDT", '["BTC/USDT:USDT", "SOL/USDT:USDT"]']
)
def test_symbols_come_from_the_environment_as_a_comma_list_or_json(
    raw: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TICKCAST__EXCHANGE__SYMBOLS", raw)
    assert load_settings().exchange.symbols == ["BTC/USDT:USDT", "SOL/USDT:USDT"]


def test_a_nested_url_comes_from_the_environment_keeping_its_siblings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TICKCAST__EXCHANGE__URLS__BINANCEUSDM__PUBLIC", "ws://127.0.0.1:5/public")
    urls = load_settings().exchange.urls
    defaults = default_urls()
    assert urls["binanceusdm"]["public"] == "ws://127.0.0.1:5/public"
    assert defaults["binanceusdm"]["public"].startswith("wss://")
    assert urls["binanceusdm"]["market"] == defaults["binanceusdm"]["market"]
    assert urls["binancecoinm"] == defaults["binancecoinm"]


def test_an_unparsable_environment_value_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKCAST__SIM", "{not json")
    with pytest.raises(ConfigError, match="environment"):
        load_settings()


def test_none_overrides_are_flags_not_given() -> None:
    settings = load_settings(None, {"exchange.symbols": None, "sim.speed": 0.0})
    assert settings.exchange.symbols == list(DEFAULT_SYMBOLS)
    assert settings.sim.speed == 0.0


def test_a_redis_url_with_username_and_password_is_accepted_for_both_schemes() -> None:
    for url in (SECRET_URL, f"rediss://alice:{SECRET}@db.example:6380/0"):
        settings = load_settings(None, {"redis.url": url})
        assert isinstance(settings.redis.url, SecretUrl)
        assert settings.redis.url.get_secret_value() == url


def test_set_flags_parse_toml_literals_and_fall_back_to_strings() -> None:
    assert parse_assignment("worker.horizon_ms=2000") == ("worker.horizon_ms", 2000)
    assert parse_assignment("metrics.enabled=false") == ("metrics.enabled", False)
    assert parse_assignment("exchange.name=bybit") == ("exchange.name", "bybit")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_assignment("no-equals-sign")


def test_conflicting_dotted_overrides_are_an_error() -> None:
    with pytest.raises(ConfigError, match="conflicts"):
        nest_overrides({"sim": 1, "sim.seed": 2})


# -- errors ---------------------------------------------------------------------------------


def test_a_missing_config_file_is_a_tickcast_error_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"nope\.toml: no such file") as info:
        load_settings(missing, {})
    assert isinstance(info.value, TickcastError)


def test_malformed_toml_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[sim]\nseed = = 3\n")
    with pytest.raises(ConfigError, match=r"tickcast\.toml.*line 2") as info:
        load_settings(path, {})
    assert isinstance(info.value.__cause__, tomllib.TOMLDecodeError)


def test_invalid_values_name_each_offending_key(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[worker]\nhorizon_ms = -5\n[metrics]\nport = "x"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path, {})
    message = str(info.value)
    assert "worker.horizon_ms" in message and "metrics.port" in message
    assert str(path) in message


def test_unknown_keys_are_rejected_so_typos_do_not_pass_silently(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[exchange]\nwatchdog = 3\n")
    with pytest.raises(ConfigError, match=r"exchange\.watchdog"):
        load_settings(path, {})


def test_a_venue_id_is_rejected_where_a_unified_symbol_belongs() -> None:
    with pytest.raises(ConfigError, match="not a unified symbol"):
        load_settings(None, {"exchange.symbols": ["BTCUSDT"]})


def test_a_bad_redis_url_error_does_not_echo_its_password() -> None:
    with pytest.raises(ConfigError, match=r"redis\.url") as info:
        load_settings(None, {"redis.url": f"http://alice:{SECRET}@h/0"})
    assert SECRET not in str(info.value)


# -- redaction ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (SECRET_URL, "redis://alice:***@db.example:6380/2"),
        (f"rediss://:{SECRET}@h:6379/0", "rediss://:***@h:6379/0"),
        (f"unix:///tmp/r.sock?db=0&password={SECRET}", "unix:///tmp/r.sock?db=0&password=***"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("wss://fstream.binance.com/public", "wss://fstream.binance.com/public"),
    ],
)
def test_redact_url_hides_only_the_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def secret_settings(tmp_path: Path) -> Settings:
    return load_settings(
        None,
        {
            "redis.url": SECRET_URL,
            "redis.password": SECRET,
            "exchange.urls.binancecoinm": f"wss://bob:{SECRET}@stream.example/v5",
        },
    )


def test_repr_str_and_display_never_show_a_secret(tmp_path: Path) -> None:
    settings = secret_settings(tmp_path)
    assert isinstance(settings.redis.password, SecretStr)
    assert settings.redis.password.get_secret_value() == SECRET
    for text in (
        repr(settings),
        str(settings),
        repr(settings.redis),
        str(settings.redis.url),
        json.dumps(settings.display()),
        settings.model_dump_json(),
        repr(settings.redis.model_dump()),
    ):
        assert SECRET not in text
    display = settings.display()
    assert display["redis"]["url"] == "redis://alice:***@db.example:6380/2"
    assert display["exchange"]["urls"]["binancecoinm"] == {
        "public": "wss://bob:***@stream.example/v5"
    }
    assert "redis://alice:***@db.example:6380/2" in repr(settings)


def test_logging_the_settings_never_shows_a_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = secret_settings(tmp_path)
    log = logging.getLogger("tickcast.test")
    with caplog.at_level(logging.INFO, logger="tickcast.test"):
        log.info("settings %s", settings)
        log.info("settings %r", settings)
        log.info("redis %s via %s", settings.redis, settings.redis.url)
    assert len(caplog.records) == 3
    assert SECRET not in caplog.text
    assert "alice:***@db.example" in caplog.text


# -- rendering and the command --------------------------------------------------------------


def test_to_toml_round_trips_through_tomllib_minus_unset_values(tmp_path: Path) -> None:
    display = secret_settings(tmp_path).display()
    display["redis"]["username"] = None
    parsed = tomllib.loads(to_toml(display))
    expected = json.loads(json.dumps(display))
    del expected["redis"]["username"]
    del expected["exchange"]["ping_interval_s"]  # unset: each venue's own
    for name in ("tls_ca_file", "tls_cert_file", "tls_key_file"):  # unset: no TLS files
        del expected["redis"][name]
    del expected["worker"]["init_model"]  # unset: no model to start from
    assert parsed == expected


def test_config_show_prints_the_merged_settings_with_secrets_redacted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_toml(tmp_path, "[sim]\nseed = 5\nspeed = 2.0\n")
    monkeypatch.setenv("TICKCAST__SIM__SPEED", "3.0")
    monkeypatch.setenv("TICKCAST__REDIS__URL", SECRET_URL)
    argv = ["config", "show", "--config", str(path), "--set", "sim.port=7000"]
    assert main([*argv, "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["sim"] == {"host": "127.0.0.1", "port": 7000, "speed": 3.0, "seed": 5}
    assert shown["redis"]["url"] == "redis://alice:***@db.example:6380/2"
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert SECRET not in out
    assert tomllib.loads(out)["sim"]["port"] == 7000


def test_config_show_reports_a_missing_file_as_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "show", "--config", str(tmp_path / "absent.toml")]) == 2
    assert "absent.toml: no such file" in capsys.readouterr().err
