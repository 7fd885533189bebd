"""Trained model files: what ``tickcast train`` writes and ``--init`` reads.

A model file is one ASCII header line, then the body::

    tickcast-model <version> <body bytes> <body sha256>\\n
    <body>

The body is :func:`~tickcast.model.state.pack_state` of ``{"model": ..., "info": ...}`` (no
pickle: a JSON header, then the arrays' raw bytes): ``model`` is
:meth:`OnlineLearner.model_state() <tickcast.model.learner.OnlineLearner.model_state>` (its
format and version, the feature and input names, the hyperparameters it was trained with, the
experts, the Hedge mix and the linear baseline), ``info`` what it was trained on (symbol,
ticks, labels, event-time span, source files, tickcast version), for people.

Files are written atomically (a temporary file in the same folder, then a rename). Reading
refuses, with one :class:`ModelFileError` naming the file and the reason, anything else: not a
model file, another version, a body shorter or longer than the header says (truncated), a
checksum that does not match (damaged), a body that does not decode. :func:`check_model` then
refuses a model the learner it is to start does not fit (other features or settings; each
difference is named). Nothing is ever read silently in another way.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from tickcast.model import ModelError
from tickcast.model.learner import MODEL_FORMAT, MODEL_VERSION
from tickcast.model.state import pack_state, unpack_state
from tickcast.service import TickcastError

__all__ = [
    "MAGIC",
    "ModelFile",
    "ModelFileError",
    "check_model",
    "load_init_model",
    "load_model",
    "read_model",
    "save_model",
]

#: The first word of every model file.
MAGIC: Final = MODEL_FORMAT
#: The longest header line read (the real one is about 100 bytes).
_MAX_HEADER: Final = 256


class ModelFileError(TickcastError):
    """A model file that cannot be written, read, or used to start a learner."""


class _HasModelState(Protocol):
    def model_state(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ModelFile:
    """A model file's content: ``model`` (:meth:`OnlineLearner.model_state` output) and
    ``info`` (what it was trained on; informative only)."""

    model: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)


def save_model(
    learner_or_state: _HasModelState | Mapping[str, Any],
    path: str | Path,
    *,
    info: Mapping[str, Any] | None = None,
) -> Path:
    """Write a learner's model (or a :meth:`~OnlineLearner.model_state` dict) to ``path``
    atomically; create the folder if need be; return the path.

    Raises
    ------
    ModelFileError
        The state is not a model, or the file cannot be written.
    """
    path = Path(path).expanduser()
    if isinstance(learner_or_state, Mapping):
        model = dict(learner_or_state)
    else:
        model = learner_or_state.model_state()
    if model.get("format") != MODEL_FORMAT or model.get("version") != MODEL_VERSION:
        raise ModelFileError(
            f"not a tickcast model of version {MODEL_VERSION} "
            f"(format {model.get('format')!r}, version {model.get('version')!r})"
        )
    body = pack_state({"model": model, "info": dict(info or {})})
    digest = hashlib.sha256(body).hexdigest()
    header = f"{MAGIC} {MODEL_VERSION} {len(body)} {digest}\n".encode("ascii")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(header)
                out.write(body)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise ModelFileError(f"cannot write the model file {path}: {exc}") from exc
    return path


def read_model(path: str | Path) -> ModelFile:
    """Read a model file written by :func:`save_model`.

    Raises
    ------
    ModelFileError
        No such file, not a model file, another version, truncated or damaged.
    """
    path = Path(path).expanduser()
    what = f"model file {path}"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"no such model file: {path}") from None
    except OSError as exc:
        raise ModelFileError(f"cannot read the {what}: {exc}") from exc
    end = data.find(b"\n", 0, _MAX_HEADER)
    words = data[: max(end, 0)].split(b" ")
    if end < 0 or words[0] != MAGIC.encode():
        raise ModelFileError(
            f"{path} is not a tickcast model file (it does not start with {MAGIC!r}; "
            "model files are written by `tickcast train`)"
        )
    if len(words) != 4 or not words[1].isdigit() or not words[2].isdigit():
        raise ModelFileError(f"{what}: malformed header line {data[:end]!r}")
    version = int(words[1])
    if version != MODEL_VERSION:
        raise ModelFileError(
            f"{what} is of format version {version}; this tickcast reads version "
            f"{MODEL_VERSION} only (train the model again with this version)"
        )
    body = data[end + 1 :]
    size = int(words[2])
    if len(body) != size:
        state = "truncated" if len(body) < size else "longer than its header says"
        raise ModelFileError(f"{what} is {state} ({len(body)} of {size} body bytes)")
    if hashlib.sha256(body).hexdigest().encode() != words[3]:
        raise ModelFileError(f"{what} is damaged (its checksum does not match)")
    try:
        tree = unpack_state(body)
    except ModelError as exc:
        raise ModelFileError(f"{what} does not decode: {exc}") from exc
    model = tree.get("model") if isinstance(tree, dict) else None
    info = tree.get("info") if isinstance(tree, dict) else None
    if not isinstance(model, dict) or not isinstance(info, dict):
        raise ModelFileError(f"{what} holds no model")
    if model.get("format") != MODEL_FORMAT or model.get("version") != MODEL_VERSION:
        raise ModelFileError(
            f"{what} holds a model of format {model.get('format')!r} version "
            f"{model.get('version')!r}; this tickcast reads {MODEL_FORMAT!r} version "
            f"{MODEL_VERSION}"
        )
    return ModelFile(model, info)


def load_model(path: str | Path) -> dict[str, Any]:
    """The model of a model file (:meth:`OnlineLearner.model_state` output); see
    :func:`read_model`."""
    return read_model(path).model


def check_model(
    model: Mapping[str, Any], learner_kwargs: Mapping[str, Any], *, source: str = "the model"
) -> None:
    """Raise :class:`ModelFileError` unless ``model`` can start an
    ``OnlineLearner(**learner_kwargs)``: same features and inputs, same settings except
    ``rolling_window``, ``max_gap_ms`` and ``seed`` (every difference is named)."""
    from tickcast.model.learner import OnlineLearner

    try:  # a copy: the learner would keep the model's arrays
        OnlineLearner(**learner_kwargs).warm_start(copy.deepcopy(dict(model)))
    except ModelError as exc:
        raise ModelFileError(f"{source} cannot start this learner: {exc}") from exc


def load_init_model(path: str | Path, learner_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Read the model file ``path`` and :func:`check_model` it against ``learner_kwargs``;
    return the model. What ``--init MODEL`` does before anything else."""
    model = load_model(path)
    check_model(model, learner_kwargs, source=f"model file {Path(path).expanduser()}")
    return model
