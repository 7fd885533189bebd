"""The Signal contract: what subscribers read from ``<prefix>:{<venue>:<SYMBOLID>}:signals``.

A signal is one prediction made at a sample time ``t_ms`` (exchange event time) for the log
return over the next ``horizon_ms``, with the rolling prequential scores of the model that made
it and the local tick->signal latency. Its JSON schema is published by ``tickcast schema
signal``; ``v`` is the schema version, bumped on any change a reader could trip over (new
optional fields do not bump it: readers ignore unknown keys).

Versions. Version 2 (:data:`SCHEMA_VERSION`) adds ``horizons``: the predictions of the same
sample for the worker's extra horizons (``worker.extra_horizons_ms``), each with its own
``horizon_ms``, ``ret_bps``, ``p_up``, ``model_version`` and rolling scores; the main fields
stay the first horizon's. A signal carries ``v: 2`` exactly when it carries ``horizons``: a
service with one horizon (the default) still publishes ``v: 1`` signals, unchanged, so readers
of version 1 keep reading them; :class:`Signal` decodes both versions.

A stream entry holds one field, ``b"s"``, with the signal as a compact JSON object. The
publisher builds it with :func:`signal_fields` once :func:`signal_fault` found nothing wrong
(a prediction with a non-finite return, a P(up) outside [0, 1] or a reference price that is
not a positive number is never published: the worker counts and skips it), and
:func:`encode_signal`; subscribers validate it with :func:`decode_signal`
(``Signal.model_validate_json``), which refuses NaN and infinities anywhere. The extra
horizons are held to the same rule: a signal one of whose horizons has a non-finite return or
a P(up) outside [0, 1] is not published at all (whole or not at all: a horizon is never
silently missing from a signal).

No published value is ever ``null``: a rolling score that is undefined (the hit rate before any
scored label, the IC of a constant prediction) is left out of the object, and reads back as
``None`` -- in the main fields and in each horizon alike; a single-horizon signal has no
``horizons`` key (``None``). Signals written by earlier versions carried ``null`` there; they
still decode.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, TypeGuard

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tickcast.service import TickcastError

SCHEMA_VERSION: Final = 2
"""The current version: that of a signal with extra horizons (one without is version 1)."""
SINGLE_HORIZON_VERSION: Final = 1
"""The version of a signal without ``horizons`` (as version 1 wrote it)."""
FIELD: Final = b"s"
SCHEMA_ID: Final = "urn:tickcast:schema:signal:v2"


_UNDEFINED = "absent while undefined (nothing scored yet), never null (older publishers wrote null)"


class SignalDecodeError(TickcastError):
    """A signals stream entry could not be decoded into a :class:`Signal`."""


_CONFIG = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False, protected_namespaces=())


class HorizonForecast(BaseModel):
    """The prediction of a signal's sample for one extra horizon (schema version 2)."""

    model_config = ConfigDict(**_CONFIG, title="tickcast horizon forecast")

    horizon_ms: int = Field(gt=0, description="prediction horizon, ms")
    ret_bps: float = Field(
        description="predicted log return of the reference price over this horizon, bps"
    )
    p_up: float = Field(ge=0.0, le=1.0, description="predicted probability of an up move")
    model_version: int = Field(ge=0, description="this horizon's model: weight updates so far")
    hit_rate: float | None = Field(
        default=None, ge=0.0, le=1.0, description=f"rolling hit rate; {_UNDEFINED}"
    )
    ic: float | None = Field(default=None, ge=-1.0, le=1.0, description=f"rolling IC; {_UNDEFINED}")
    skill_vs_zero: float | None = Field(
        default=None, description=f"rolling skill vs the zero predictor; {_UNDEFINED}"
    )


class Signal(BaseModel):
    """One published prediction (see the module docstring for the stream layout)."""

    model_config = ConfigDict(**_CONFIG, title="tickcast signal")

    v: Literal[1, 2] = Field(
        default=1, description="schema version: 2 when the signal carries horizons, else 1"
    )
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
        default=None,
        ge=0.0,
        le=1.0,
        description=f"rolling hit rate on nonzero labels; {_UNDEFINED}",
    )
    ic: float | None = Field(
        default=None,
        ge=-1.0,
        le=1.0,
        description=f"rolling Pearson IC (prediction vs label); {_UNDEFINED}",
    )
    skill_vs_zero: float | None = Field(
        default=None,
        description=f"rolling skill vs the zero predictor: 1 - MSE / MSE_zero; {_UNDEFINED}",
    )
    latency_us: int = Field(
        ge=0,
        description="local receive of the tick that closed the sample to the signal's hand-off "
        "to Redis, us (the publisher's own time: without the XADD round trip)",
    )
    recv_us: int | None = Field(
        default=None,
        gt=0,
        description="local receive time of the tick that closed the sample, us since the epoch "
        "(the publishing host's clock): a subscriber on a clock in step measures tick -> signal "
        "readable as its receive time minus this; absent in signals of earlier publishers",
    )
    horizons: tuple[HorizonForecast, ...] | None = Field(
        default=None,
        min_length=1,
        description="version 2: the same sample's predictions for the extra horizons (the "
        "fields above are the first horizon's); absent in version 1",
    )

    @model_validator(mode="after")
    def _check_horizons(self) -> Signal:
        """``horizons`` present exactly in version 2; every horizon distinct."""
        if (self.horizons is not None) != (self.v == 2):
            raise ValueError("a signal carries horizons exactly when its version is 2")
        seen = [self.horizon_ms, *(h.horizon_ms for h in self.horizons or ())]
        if len(set(seen)) != len(seen):
            raise ValueError(f"horizons repeat: {seen}")
        return self


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
            "of the model that made it; in version 2, the same for each extra horizon."
        ),
    }


#: Why a prediction cannot be published (:func:`signal_fault`), short fixed strings.
FAULT_RETURN: Final = "expected return not finite"
FAULT_P_UP: Final = "P(up) not in [0, 1]"
FAULT_PRICE: Final = "reference price not a positive finite number"


def signal_fault(
    ret_bps: float,
    p_up: float,
    ref_price: float,
    horizons: Sequence[Mapping[str, Any]] = (),
) -> str | None:
    """Why a signal with these values would break the contract (a ``FAULT_*`` reason), or
    None: a finite ``ret_bps``, a ``p_up`` in [0, 1], a finite ``ref_price`` > 0, and the same
    ``ret_bps`` and ``p_up`` rules for each of ``horizons`` (:func:`horizon_fields` dicts; a
    horizon's fault names it).

    Examples
    --------
    >>> signal_fault(0.5, 0.6, 100.0), signal_fault(float("nan"), 0.6, 100.0)
    (None, 'expected return not finite')
    >>> signal_fault(0.5, float("nan"), 100.0), signal_fault(0.5, 0.6, float("inf"))
    ('P(up) not in [0, 1]', 'reference price not a positive finite number')
    >>> signal_fault(0.5, 0.6, 100.0, [{"horizon_ms": 10_000, "ret_bps": 0.1, "p_up": 1.5}])
    'P(up) not in [0, 1] (horizon 10000 ms)'
    """
    fault = _forecast_fault(ret_bps, p_up)
    if fault is not None:
        return fault
    if not (ref_price > 0.0 and ref_price - ref_price == 0.0):
        return FAULT_PRICE
    for h in horizons:
        fault = _forecast_fault(h["ret_bps"], h["p_up"])
        if fault is not None:
            return f"{fault} (horizon {h['horizon_ms']} ms)"
    return None


def _forecast_fault(ret_bps: float, p_up: float) -> str | None:
    """:data:`FAULT_RETURN` or :data:`FAULT_P_UP` when a forecast may not be published."""
    if ret_bps - ret_bps != 0.0:  # NaN and +-inf give NaN
        return FAULT_RETURN
    if not 0.0 <= p_up <= 1.0:
        return FAULT_P_UP
    return None


def _defined(x: float | None, lo: float, hi: float) -> TypeGuard[float]:
    """Whether a rolling score is defined: finite and in its range ``[lo, hi]``."""
    return x is not None and x - x == 0.0 and lo <= x <= hi


def _add_scores(
    fields: dict[str, Any], hit_rate: float | None, ic: float | None, skill_vs_zero: float | None
) -> None:
    """Add the rolling scores that are defined to ``fields`` (the others are left out)."""
    if _defined(hit_rate, 0.0, 1.0):
        fields["hit_rate"] = float(hit_rate)
    if _defined(ic, -1.0, 1.0):
        fields["ic"] = float(ic)
    if _defined(skill_vs_zero, -math.inf, math.inf):
        fields["skill_vs_zero"] = float(skill_vs_zero)


def horizon_fields(
    *,
    horizon_ms: int,
    ret_bps: float,
    p_up: float,
    model_version: int,
    hit_rate: float | None,
    ic: float | None,
    skill_vs_zero: float | None,
) -> dict[str, Any]:
    """Return one extra horizon of a signal (an item of ``horizons``) as a plain dict, its
    undefined rolling scores left out, as :func:`signal_fields` does.

    Examples
    --------
    >>> horizon_fields(horizon_ms=10_000, ret_bps=1.5, p_up=0.6, model_version=7,
    ...                hit_rate=0.55, ic=float("nan"), skill_vs_zero=None)
    {'horizon_ms': 10000, 'ret_bps': 1.5, 'p_up': 0.6, 'model_version': 7, 'hit_rate': 0.55}
    """
    fields: dict[str, Any] = {
        "horizon_ms": int(horizon_ms),
        "ret_bps": float(ret_bps),
        "p_up": float(p_up),
        "model_version": int(model_version),
    }
    _add_scores(fields, hit_rate, ic, skill_vs_zero)
    return fields


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
    horizons: Sequence[dict[str, Any]] = (),
    recv_us: int | None = None,
) -> dict[str, Any]:
    """Return the signal as a plain dict in schema order (the publisher's cheap path).

    An undefined rolling score (``None``, NaN, infinite, or outside its range) is left out;
    the other values are not checked here: :func:`signal_fault` tells whether they may be
    published. ``horizons`` (:func:`horizon_fields` dicts) makes a version-2 signal; without
    them the signal is version 1.

    Examples
    --------
    >>> f = signal_fields(venue="sim", symbol="BTC/USDT:USDT", t_ms=100, horizon_ms=1000,
    ...                   ret_bps=0.5, p_up=0.6, ref_price=100.0, model_version=0,
    ...                   hit_rate=float("nan"), ic=None, skill_vs_zero=-0.25, latency_us=0)
    >>> [k for k in ("hit_rate", "ic", "skill_vs_zero") if k in f], f["v"]
    (['skill_vs_zero'], 1)
    """
    fields: dict[str, Any] = {
        "v": SCHEMA_VERSION if horizons else SINGLE_HORIZON_VERSION,
        "venue": venue,
        "symbol": symbol,
        "t_ms": int(t_ms),
        "horizon_ms": int(horizon_ms),
        "ret_bps": float(ret_bps),
        "p_up": float(p_up),
        "ref_price": float(ref_price),
        "model_version": int(model_version),
    }
    _add_scores(fields, hit_rate, ic, skill_vs_zero)
    fields["latency_us"] = int(latency_us)
    if recv_us is not None:
        fields["recv_us"] = int(recv_us)
    if horizons:
        fields["horizons"] = list(horizons)
    return fields


def encode_signal(fields: dict[str, Any] | Signal) -> dict[bytes, bytes]:
    """Return the stream entry (``{b"s": json}``) of a signal dict or :class:`Signal` (whose
    undefined values are left out, as the publisher leaves them out)."""
    data = fields.model_dump(exclude_none=True) if isinstance(fields, Signal) else fields
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
