"""Tick-to-prediction cost of :class:`~tickcast.model.learner.OnlineLearner` at sample boundaries.

Usage: ``.venv/bin/python bench/predict.py [FILE] [--repeat N]``. The recording's ticks are
read once into a list (parsing is not timed) and fed through a fresh learner ``N`` times. Each
``update()`` call that returns a prediction is timed (``time.perf_counter_ns``): that is the
prediction step a live worker waits for (features vector, standardise and clip, network,
linear expert and linear baseline, Hedge mix); the learning it triggers is left to
:meth:`~tickcast.model.learner.OnlineLearner.flush`, called outside the timed region. As a
reference measured in the same run, ``features.vector`` alone is timed at the same
boundaries. A digest of every prediction's bits and of the final snapshot is printed: two
versions of the code that print the same digest predict and learn bit-identically. (Since
the snapshot carries the non-finite counters, ``n_nonfinite_inputs`` and
``n_nonfinite_predictions``, the digest of the same predictions is ``98f97c75ee98bd38``.)

Measured on the 2-core development machine with other jobs running (numpy 2.4.6,
Python 3.11.7, 3 runs of 3,444 predictions, digest ``55261fc40e5b5a93`` both times)::

    step                                 median us   p99 us
    update() at a boundary, before            40.4     77.0
    update() at a boundary, after             28.0     60.0
    features.vector alone, before              8.4     11.3
    features.vector alone, after               6.6     11.2

The prediction step runs cold (the learning in ``flush`` between two boundaries evicts it
from the caches): the learner's ``_sample`` alone, repeated in a tight loop, takes about
20 us (28.5 us before).
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import struct
import time
from pathlib import Path

import numpy as np

from tickcast.model.learner import OnlineLearner
from tickcast.service.offline.readers import read_ticks
from tickcast.service.ticks import Tick

RECORDING = Path(__file__).resolve().parents[2] / "shared/data/binance-usdm-btcusdt-20240808.gz"


def run(ticks: list[Tick]) -> tuple[list[int], list[int], str, int]:
    """Feed ``ticks`` to a fresh learner; return the ns of each predicting update, the ns of
    ``features.vector`` at the same boundaries, a digest of the predictions and their count."""
    learner = OnlineLearner(horizon_ms=1000, sample_ms=100)
    update, flush, clock = learner.update, learner.flush, time.perf_counter_ns
    vector = learner.features.vector
    buf = np.zeros(learner.features.n_features)
    digest = hashlib.sha256()
    pack = struct.Struct("<q5d").pack
    step_ns: list[int] = []
    ref_ns: list[int] = []
    n_predictions = 0
    for tick in ticks:
        t0 = clock()
        out = update(tick)
        t1 = clock()
        if out:
            t = out[-1].t_ms
            step_ns.append((t1 - t0) // len(out))
            r0 = clock()
            vector(t, out=buf)
            ref_ns.append(clock() - r0)
            for p in out:
                digest.update(pack(p.t_ms, p.ret_bps, p.p_up, p.linear_bps, p.ref_price, p.ic))
            n_predictions += len(out)
        flush()
    digest.update(learner.snapshot())
    return step_ns, ref_ns, digest.hexdigest()[:16], n_predictions


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, default=RECORDING)
    parser.add_argument("--repeat", type=int, default=3, help="runs; figures pooled over all")
    args = parser.parse_args()
    ticks = list(read_ticks([args.path]))
    step: list[int] = []
    ref: list[int] = []
    digests = set()
    n = 0
    for _ in range(args.repeat):
        s, r, d, n = run(ticks)
        step += s
        ref += r
        digests.add(d)
    print(f"numpy {np.__version__}, Python {platform.python_version()}, {len(ticks)} ticks")
    print(f"{n} predictions per run, {args.repeat} runs, digest {', '.join(sorted(digests))}")
    print(f"{'step':<36}{'median us':>10}{'p99 us':>9}")
    for label, ns in (
        ("update() at a sample boundary", step),
        ("reference: features.vector alone", ref),
    ):
        a = np.array(ns) / 1e3
        print(f"{label:<36}{np.median(a):>10.1f}{np.percentile(a, 99):>9.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
