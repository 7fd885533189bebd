"""The Signal contract: validation, stream encoding and the published JSON schema."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import pytest

from tickcast.service.schema import (
    FIELD,
    SCHEMA_VERSION,
    Signal,
    SignalDecodeError,
    decode_signal,
    encode_signal,
    signal_fields,
    signal_json_schema,
)


def fields(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = dict(
        venue="sim",
        symbol="BTC/USDT:USDT",
        t_ms=1_767_225_600_100,
        horizon_ms=1000,
        ret_bps=0.25,
        p_up=0.61,
        ref_price=60000.05,
        model_version=42,
        hit_rate=0.58,
        ic=0.21,
        skill_vs_zero=0.04,
        latency_us=87,
    )
    base.update(over)
    return signal_fields(**base)


def test_a_published_entry_decodes_to_the_same_values() -> None:
    entry = encode_signal(fields())
    assert list(entry) == [FIELD]
    sig = decode_signal(entry)
    assert sig.model_dump() == fields()
    assert sig.v == SCHEMA_VERSION


def test_floats_round_trip_exactly_through_the_stream_entry() -> None:
    price = 0.1 + 0.2
    sig = decode_signal(encode_signal(fields(ref_price=price, ret_bps=-1 / 3)))
    assert sig.ref_price == price
    assert sig.ret_bps == -1 / 3


def test_non_finite_rolling_scores_are_published_as_null() -> None:
    data = fields(hit_rate=math.nan, ic=math.inf, skill_vs_zero=None)
    raw = json.loads(encode_signal(data)[FIELD])
    assert raw["hit_rate"] is None and raw["ic"] is None and raw["skill_vs_zero"] is None
    assert decode_signal(encode_signal(data)).hit_rate is None


def test_decoding_accepts_string_keys_from_a_decoding_client() -> None:
    entry = {"s": encode_signal(fields())[FIELD].decode()}
    assert decode_signal(entry).symbol == "BTC/USDT:USDT"


@pytest.mark.parametrize(
    "bad",
    [
        {"p_up": 1.5},
        {"ref_price": 0.0},
        {"t_ms": 0},
        {"latency_us": -1},
        {"ic": 1.5},
        {"v": 2},
    ],
)
def test_entries_breaking_the_schema_are_rejected(bad: dict[str, Any]) -> None:
    data = fields()
    data.update(bad)
    with pytest.raises(SignalDecodeError):
        decode_signal(encode_signal(data))


def test_an_entry_without_the_signal_field_is_rejected() -> None:
    with pytest.raises(SignalDecodeError, match="no"):
        decode_signal({b"x": b"{}"})
    with pytest.raises(SignalDecodeError):
        decode_signal({FIELD: b"not json"})


def test_unknown_fields_from_a_newer_minor_version_are_ignored() -> None:
    raw = json.loads(encode_signal(fields())[FIELD])
    raw["new_optional_field"] = 1
    assert decode_signal({FIELD: json.dumps(raw).encode()}).t_ms == raw["t_ms"]


def test_signals_are_immutable() -> None:
    sig = Signal.model_validate(fields())
    with pytest.raises(ValueError):
        sig.p_up = 0.2  # type: ignore[misc]


def test_the_json_schema_names_every_field_and_the_version() -> None:
    schema = signal_json_schema()
    assert set(schema["properties"]) == set(fields())
    assert schema["properties"]["v"]["const"] == SCHEMA_VERSION
    assert {"venue", "symbol", "t_ms", "ret_bps", "p_up", "latency_us"} <= set(schema["required"])
    assert schema["$schema"].endswith("2020-12/schema")


def test_the_schema_command_prints_the_schema_as_json() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tickcast.service.cli", "schema", "signal"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout) == json.loads(json.dumps(signal_json_schema()))
