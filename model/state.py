"""Byte form of a learner's state: a tree of dicts, lists, scalars and numpy arrays.

:func:`pack_state` writes it without pickle (a JSON header and the arrays' raw bytes), so that
a snapshot read back from Redis or a file cannot run code; :func:`unpack_state` reads it back
exactly.
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

import numpy as np

from . import ModelError

__all__ = ["LearnerError", "pack_state", "unpack_state"]

_MAGIC = b"TCLEARN2"


class LearnerError(ModelError):
    """Invalid learner hyperparameters or a snapshot that cannot be restored."""


def pack_state(tree: Any) -> bytes:
    """Serialise a tree of dicts, lists, scalars and numpy arrays without pickle.

    Layout: ``MAGIC``, an 8-byte little-endian header length, a JSON header (the tree with
    each array replaced by ``{"__array__": i}``, plus dtype and shape of each array), then
    the arrays' raw bytes back to back. Floats round-trip exactly (JSON writes the shortest
    repr; NaN and infinities as JSON extensions).

    Examples
    --------
    >>> tree = {"a": np.arange(3.0), "b": [1, 0.1, "x"], "c": {"d": np.int64(7)}}
    >>> back = unpack_state(pack_state(tree))
    >>> back["a"].tolist(), back["b"], back["c"]
    ([0.0, 1.0, 2.0], [1, 0.1, 'x'], {'d': 7})
    """
    arrays: list[np.ndarray] = []

    def encode(obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            arrays.append(obj if obj.flags.c_contiguous else obj.copy(order="C"))
            return {"__array__": len(arrays) - 1}
        if isinstance(obj, dict):
            return {str(k): encode(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [encode(v) for v in obj]
        if isinstance(obj, np.generic):
            return obj.item()
        return obj

    body = encode(tree)
    meta = [{"dtype": a.dtype.str, "shape": list(a.shape)} for a in arrays]
    header = json.dumps({"tree": body, "arrays": meta}, separators=(",", ":")).encode()
    buf = io.BytesIO()
    buf.write(_MAGIC)
    buf.write(len(header).to_bytes(8, "little"))
    buf.write(header)
    for a in arrays:
        buf.write(a.tobytes())
    return buf.getvalue()


def unpack_state(data: bytes) -> Any:
    """Inverse of :func:`pack_state`; raises :class:`LearnerError` on malformed bytes."""
    try:
        if data[: len(_MAGIC)] != _MAGIC:
            raise ValueError("bad magic")
        start = len(_MAGIC) + 8
        size = int.from_bytes(data[len(_MAGIC) : start], "little")
        header = json.loads(data[start : start + size])
        offset = start + size
        arrays = []
        for meta in header["arrays"]:
            dtype = np.dtype(meta["dtype"])
            if dtype.hasobject:
                raise ValueError("object arrays are not allowed")
            shape = tuple(int(n) for n in meta["shape"])
            nbytes = dtype.itemsize * math.prod(shape)
            if offset + nbytes > len(data):
                raise ValueError("truncated array data")
            arrays.append(
                np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=offset)
                .reshape(shape)
                .copy()
            )
            offset += nbytes
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise LearnerError(f"not a learner snapshot: {exc}") from exc

    def decode(obj: Any) -> Any:
        if isinstance(obj, dict):
            if set(obj) == {"__array__"}:
                return arrays[obj["__array__"]]
            return {k: decode(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [decode(v) for v in obj]
        return obj

    return decode(header["tree"])
