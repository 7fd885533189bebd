"""The Signal contract: validation, stream encoding and the published JSON schema."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import pytest

from tickcast.service.schema import (
    FAULT_P_UP,
    FAULT_PRICE,
    FAULT_RETURN,
    FIELD,
    SCHEMA_ID,
    SCHEMA_VERSION,
    SINGLE_HORIZON_VERSION,
    Signal,
    SignalDecodeError,
    decode_signal,
    encode_signal,
    horizon_fields,
    signal_fault,
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


def horizon(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = dict(
        horizon_ms=10_000,
        ret_bps=1.25,
        p_up=0.57,
        model_version=40,
        hit_rate=0.53,
        ic=0.08,
        skill_vs_zero=0.01,
    )
    base.update(over)
    return horizon_fields(**base)


#: A signal exactly as version 1 of the publisher wrote it.
V1_ENTRY = (
    b'{"v":1,"venue":"sim","symbol":"BTC/USDT:USDT","t_ms":1767225600100,"horizon_ms":1000,'
    b'"ret_bps":0.25,"p_up":0.61,"ref_price":60000.05,"model_version":42,"hit_rate":0.58,'
    b'"ic":0.21,"skill_vs_zero":0.04,"latency_us":87}'
)


def test_a_published_entry_decodes_to_the_same_values() -> None:
    entry = encode_signal(fields())
    assert list(entry) == [FIELD]
    sig = decode_signal(entry)
    assert sig.model_dump(exclude_none=True) == fields()
    assert sig.v == SINGLE_HORIZON_VERSION == 1 and sig.horizons is None


def test_a_single_horizon_signal_is_still_written_and_read_as_version_1() -> None:
    assert encode_signal(fields())[FIELD] == V1_ENTRY, "byte for byte what version 1 wrote"
    sig = decode_signal({FIELD: V1_ENTRY})
    assert sig.v == 1 and sig.horizons is None and sig.ret_bps == 0.25


def test_a_signal_with_extra_horizons_is_version_2_and_round_trips() -> None:
    data = fields(horizons=[horizon(), horizon(horizon_ms=500, ret_bps=-0.5, p_up=0.3)])
    assert data["v"] == SCHEMA_VERSION == 2
    raw = json.loads(encode_signal(data)[FIELD])
    assert list(raw)[-1] == "horizons" and [h["horizon_ms"] for h in raw["horizons"]] == [
        10_000,
        500,
    ]
    sig = decode_signal(encode_signal(data))
    assert sig.v == 2 and sig.horizon_ms == 1000 and sig.ret_bps == 0.25
    assert sig.horizons is not None
    assert [(h.horizon_ms, h.ret_bps, h.p_up) for h in sig.horizons] == [
        (10_000, 1.25, 0.57),
        (500, -0.5, 0.3),
    ]
    assert sig.model_dump(exclude_none=True) == {**data, "horizons": tuple(data["horizons"])}
    assert decode_signal(encode_signal(sig)) == sig


def test_a_horizons_undefined_scores_are_left_out_never_null() -> None:
    data = fields(horizons=[horizon(hit_rate=math.nan, ic=None, skill_vs_zero=math.inf)])
    (raw,) = json.loads(encode_signal(data)[FIELD])["horizons"]
    assert set(raw) == {"horizon_ms", "ret_bps", "p_up", "model_version"}
    (h,) = decode_signal(encode_signal(data)).horizons or ()
    assert h.hit_rate is None and h.ic is None and h.skill_vs_zero is None


@pytest.mark.parametrize(
    "change",
    [
        {"v": 1},  # horizons in a version-1 signal
        {"horizons": []},
        {"horizons": [{"horizon_ms": 1000, "ret_bps": 0.1, "p_up": 0.5, "model_version": 1}]},
        {"horizons": [{"horizon_ms": 5000, "ret_bps": None, "p_up": 0.5, "model_version": 1}]},
        {"horizons": [{"horizon_ms": 5000, "ret_bps": 0.1, "p_up": 1.5, "model_version": 1}]},
        {"horizons": [{"horizon_ms": 5000, "ret_bps": 0.1, "model_version": 1}]},
    ],
)
def test_version_2_entries_breaking_the_schema_are_rejected(change: dict[str, Any]) -> None:
    data = fields(horizons=[horizon()])
    data.update(change)
    with pytest.raises(SignalDecodeError):
        decode_signal(encode_signal(data))


@pytest.mark.parametrize("text", [b'"ret_bps":NaN', b'"ret_bps":1e999', b'"p_up":Infinity'])
def test_a_non_finite_value_in_a_horizon_is_rejected(text: bytes) -> None:
    raw = encode_signal(fields(horizons=[horizon()]))[FIELD]
    head, _, tail = raw.partition(b'"horizons":')
    name = text.split(b":")[0]
    before, _, after = tail.partition(name + b":")
    bad = head + b'"horizons":' + before + text + after[after.index(b",") :]
    with pytest.raises(SignalDecodeError):
        decode_signal({FIELD: bad})


@pytest.mark.parametrize(
    ("values", "fault"),
    [
        ({"ret_bps": math.nan}, FAULT_RETURN + " (horizon 10000 ms)"),
        ({"ret_bps": -math.inf}, FAULT_RETURN + " (horizon 10000 ms)"),
        ({"p_up": math.nan}, FAULT_P_UP + " (horizon 10000 ms)"),
        ({"p_up": -0.1}, FAULT_P_UP + " (horizon 10000 ms)"),
        ({}, None),
    ],
)
def test_signal_fault_covers_every_horizon(values: dict[str, float], fault: str | None) -> None:
    horizons = [horizon(horizon_ms=500), horizon(**values)]
    assert signal_fault(0.5, 0.6, 100.0, horizons) == fault
    assert signal_fault(math.nan, 0.6, 100.0, horizons) == FAULT_RETURN, "the main fields first"


def test_floats_round_trip_exactly_through_the_stream_entry() -> None:
    price = 0.1 + 0.2
    sig = decode_signal(encode_signal(fields(ref_price=price, ret_bps=-1 / 3)))
    assert sig.ref_price == price
    assert sig.ret_bps == -1 / 3


def test_undefined_rolling_scores_are_left_out_never_null() -> None:
    data = fields(hit_rate=math.nan, ic=math.inf, skill_vs_zero=None)
    raw = json.loads(encode_signal(data)[FIELD])
    assert not {"hit_rate", "ic", "skill_vs_zero"} & set(raw)
    assert None not in raw.values()
    sig = decode_signal(encode_signal(data))
    assert sig.hit_rate is None and sig.ic is None and sig.skill_vs_zero is None


def test_a_score_outside_its_range_is_left_out_and_a_defined_one_kept() -> None:
    raw = json.loads(encode_signal(fields(hit_rate=1.5, ic=-0.5, skill_vs_zero=-3.0))[FIELD])
    assert "hit_rate" not in raw and raw["ic"] == -0.5 and raw["skill_vs_zero"] == -3.0


def test_null_scores_written_by_earlier_publishers_still_decode() -> None:
    raw = json.loads(encode_signal(fields())[FIELD])
    raw.update(hit_rate=None, ic=None, skill_vs_zero=None)
    sig = decode_signal({FIELD: json.dumps(raw).encode()})
    assert sig.hit_rate is None and sig.ic is None and sig.skill_vs_zero is None


@pytest.mark.parametrize(
    ("values", "fault"),
    [
        ((math.nan, 0.6, 100.0), FAULT_RETURN),
        ((math.inf, 0.6, 100.0), FAULT_RETURN),
        ((0.5, math.nan, 100.0), FAULT_P_UP),
        ((0.5, 1.2, 100.0), FAULT_P_UP),
        ((0.5, 0.6, math.nan), FAULT_PRICE),
        ((0.5, 0.6, math.inf), FAULT_PRICE),
        ((0.5, 0.6, 0.0), FAULT_PRICE),
        ((0.5, 0.0, 1e-12), None),
    ],
)
def test_signal_fault_names_what_may_not_be_published(
    values: tuple[float, float, float], fault: str | None
) -> None:
    assert signal_fault(*values) == fault


@pytest.mark.parametrize(
    "text", [b'"ret_bps":1e999', b'"ret_bps":null', b'"skill_vs_zero":-1e999', b'"p_up":NaN']
)
def test_entries_with_a_non_finite_or_null_value_are_rejected(text: bytes) -> None:
    raw = encode_signal(fields())[FIELD]
    name = text.split(b":")[0]
    head, _, tail = raw.partition(name + b":")
    value_end = tail.index(b",")
    with pytest.raises(SignalDecodeError):
        decode_signal({FIELD: head + text + tail[value_end:]})


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
    assert set(schema["properties"]) == set(fields(horizons=[horizon()], recv_us=1))
    assert "recv_us" not in fields() and "recv_us" not in schema["required"]
    assert schema["properties"]["v"]["enum"] == [1, 2]
    assert schema["$id"] == SCHEMA_ID == "urn:tickcast:schema:signal:v2"
    assert {"venue", "symbol", "t_ms", "ret_bps", "p_up", "latency_us"} <= set(schema["required"])
    assert "horizons" not in schema["required"]
    assert set(schema["$defs"]["HorizonForecast"]["properties"]) == set(horizon())
    assert schema["$schema"].endswith("2020-12/schema")


def test_the_schema_command_prints_the_schema_as_json() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tickcast.service.cli", "schema", "signal"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout) == json.loads(json.dumps(signal_json_schema()))
