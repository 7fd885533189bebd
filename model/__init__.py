"""tickcast.model — the learning core: numpy and the standard library only, no I/O.

The public classes, importable from here as River users expect:

>>> from tickcast.model import MLP, OnlineLearner, TwoHeadMLP
>>> OnlineLearner().input_names[0]
'book_imbalance'
"""

from __future__ import annotations


class ModelError(Exception):
    """Root of every error raised by :mod:`tickcast.model`."""


# The submodules import ModelError from here: they are imported once it exists.
from .clock import SampleClock  # noqa: E402
from .ensemble import HedgeMix  # noqa: E402
from .features import StreamingFeatures  # noqa: E402
from .forecaster import Forecast, Forecaster  # noqa: E402
from .horizons import MultiHorizonLearner, MultiPrediction  # noqa: E402
from .learner import LearnerError, OnlineLearner, Prediction, Scored  # noqa: E402
from .metrics import PrequentialMetrics, summarize  # noqa: E402
from .mlp import MLP, TwoHeadMLP  # noqa: E402
from .optim import SGD, Adam  # noqa: E402
from .rls import BayesLinear  # noqa: E402

__all__ = [
    "MLP",
    "SGD",
    "Adam",
    "BayesLinear",
    "Forecast",
    "Forecaster",
    "HedgeMix",
    "LearnerError",
    "ModelError",
    "MultiHorizonLearner",
    "MultiPrediction",
    "OnlineLearner",
    "Prediction",
    "PrequentialMetrics",
    "SampleClock",
    "Scored",
    "StreamingFeatures",
    "TwoHeadMLP",
    "summarize",
]
