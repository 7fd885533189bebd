"""The Signal contract: what subscribers read from ``<prefix>:{<venue>:<SYMBOLID>}:signals``.

A signal is one prediction made at a sample time ``t_ms`` (exchange event time) for the log
return over the next ``horizon_ms``, with the rolling prequential scores of the model that made
it and the local tick->signal latency. Its JSON schema is published by ``tickcast schema
signal``; ``v`` is the schema version, bumped on any change a reader could trip over (new
optional fields do not bump it: readers ignore unknown keys).

A stream entry holds one field, ``b"s"``, with the signal as a compact JSON object. Publishers
build it from a plain dict with :func:`encode_signal` (no validation: the worker's values are
typed at the source); subscribers validate it with :func:`decode_signal`
(``Signal.model_validate_json``). Rolling scores are ``null`` until there is something to score.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tickcast.service import TickcastError

SCHEMA_VERSION: Final = 1
FIELD: Final = b"s"
SCHEMA_ID: Final = "urn:tickcast:schema:signal:v1"


class SignalDecodeError(TickcastError):
    """A signals stream entry could not be decoded into a :class:`Signal`."""


class Signal(BaseModel):
    """One published prediction (see the module docstring for the stream layout)."""

    model_config = ConfigDict(
        frozen=True, extra="ignore", title="tickcast signal", protected_namespaces=()
    )

    v: Literal[1] = Field(default=1, description="schema version")
    venue: str = Field(description="venue id, e.g. 'binanceusdm' or 'sim'")
    symbol: str = Field(description="ccxt unified symbol, e.g. 'BTC/USDT:USDT'")
    t_ms: int = Field(gt=0, description="sample time: exchange event time, ms since the epoch")
    horizon_ms: int = Field(gt=0, description="prediction horizon, ms")
    ret_bps: float = Field(
        description="predicted log return of the reference price over the horizon, bps"
    )
    p_up: float = Field(ge=0.0, le=1.0, description="predicted probability of an up move")
    ref_price: float = Field(gt=0.0, description="reference price at t_ms (mid, else last trade)")
    model_version: int = Field(ge=0, description="model version: weight updates so far")
    hit_rate: float | None = Field(
        default=None, ge=0.0, le=1.0, description="rolling hit rate on nonzero labels"
    )
    ic: float | None = Field(
        default=None, ge=-1.0, le=1.0, description="rolling Pearson IC (prediction vs label)"
    )
    skill_vs_zero: float | None = Field(
        default=None, description="rolling skill vs the zero predictor: 1 - MSE / MSE_zero"
    )
    latency_us: int = Field(
        ge=0, description="tick->signal latency: local receive of the sampling tick to publish, us"
    )


def signal_json_schema() -> dict[str, Any]:
    """Return the published JSON schema (draft 2020-12) of :class:`Signal`."""
    schema = Signal.model_json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
        "description": (
            "A tickcast prediction: the predicted log return of a symbol's reference price over "
            "the next horizon_ms from the sample time t_ms, with the rolling prequential scores "
            "of the model that made it."
        ),
    }


def _finite_or_none(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def signal_fields(
    *,
    venue: str,
    symbol: str,
    t_ms: int,
    horizon_ms: int,
    ret_bps: float,
    p_up: float,
    ref_price: float,
    model_version: int,
    hit_rate: float | None,
    ic: float | None,
    skill_vs_zero: float | None,
    latency_us: int,
) -> dict[str, Any]:
    """Return the signal as a plain dict in schema order (the publisher's cheap path).

    Non-finite rolling scores become ``None``; nothing else is checked.
    """
    return {
        "v": SCHEMA_VERSION,
        "venue": venue,
        "symbol": symbol,
        "t_ms": int(t_ms),
        "horizon_ms": int(horizon_ms),
        "ret_bps": float(ret_bps),
        "p_up": float(p_up),
        "ref_price": float(ref_price),
        "model_version": int(model_version),
        "hit_rate": _finite_or_none(hit_rate),
        "ic": _finite_or_none(ic),
        "skill_vs_zero": _finite_or_none(skill_vs_zero),
        "latency_us": int(latency_us),
    }


def encode_signal(fields: dict[str, Any] | Signal) -> dict[bytes, bytes]:
    """Return the stream entry (``{b"s": json}``) of a signal dict or :class:`Signal`."""
    data = fields.model_dump() if isinstance(fields, Signal) else fields
    return {FIELD: orjson.dumps(data)}


def decode_signal(entry: Mapping[Any, Any]) -> Signal:
    """Validate a stream entry into a :class:`Signal`.

    Raises
    ------
    SignalDecodeError
        When the entry has no signal field or the JSON does not satisfy the schema.
    """
    raw = entry.get(FIELD)
    if raw is None:
        raw = entry.get("s")
    if raw is None:
        raise SignalDecodeError(f"signal entry has no {FIELD!r} field: {sorted(entry)!r}")
    try:
        return Signal.model_validate_json(raw)
    except ValidationError as exc:
        raise SignalDecodeError(f"invalid signal entry: {exc}") from exc
