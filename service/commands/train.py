"""``tickcast train``: learn from recorded files and write a model file.

The ticks go through the parser, the streaming features and an online learner exactly as in
``tickcast backtest`` (event time, each sample predicted before its label is known and learnt
from once it is: no look-ahead); the learned model of the files' one symbol is then written to
``--out``. ``tickcast backtest``, ``run`` and ``worker`` start every symbol from it with
``--init MODEL``, and a live worker keeps learning from there. The file carries its format
version, the feature names and the settings it was trained with: a learner with other
settings refuses it.

Files of several symbols: name the one to train on with ``--symbols``.
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

from tickcast.service import TickcastError, __version__
from tickcast.service.commands.backtest import _symbols, add_model_options, learner_kwargs

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    """Add the ``train`` subcommand."""
    p = subparsers.add_parser(
        "train",
        help="learn from recorded files and write a model file (for --init)",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="recorded tick files (any format)")
    p.add_argument(
        "--out", type=Path, required=True, metavar="MODEL", help="the model file to write"
    )
    p.add_argument("--symbols", type=_symbols, help="the unified symbol to train on (one)")
    p.add_argument("--init", type=Path, metavar="MODEL", help="continue training from a model")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_model_options(p)
    p.set_defaults(func=run)


def _utc(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000.0))


def run(args: argparse.Namespace) -> int:
    """Train; write the model file; print a summary."""
    from tickcast.model import ModelError
    from tickcast.service.commands.backtest import BacktestError, ProgressBar
    from tickcast.service.offline.modelfile import load_init_model, save_model
    from tickcast.service.offline.readahead import read_ahead
    from tickcast.service.offline.readers import read_ticks
    from tickcast.service.offline.training import train

    if args.symbols is not None and len(args.symbols) != 1:
        raise BacktestError(f"train on one symbol at a time (--symbols gave {args.symbols})")
    kwargs = learner_kwargs(args)
    init = None if args.init is None else load_init_model(args.init, kwargs)
    missing = [f for f in args.files if not Path(f).is_file()]
    if missing:
        raise BacktestError(f"no such file: {', '.join(missing)}")
    show = not args.no_progress and sys.stderr.isatty()
    bar = ProgressBar(sys.stderr) if show else None
    try:
        ticks = read_ahead(partial(read_ticks, args.files, symbols=args.symbols))
        trained = train(ticks, kwargs, init=init, progress=bar)
    except (ValueError, ArithmeticError, ModelError) as exc:
        raise TickcastError(f"training failed: {exc}") from exc
    finally:
        if bar is not None:
            bar.close()
    info = {
        **trained.info(str(f) for f in args.files),
        "init_model": None if args.init is None else str(args.init),
        "tickcast": __version__,
    }
    path = save_model(trained.learner, args.out, info=info)
    hp = trained.learner.hyperparameters()
    print(
        f"trained {trained.symbol} on {trained.n_ticks:,} ticks "
        f"({_utc(trained.first_ms)} -> {_utc(trained.last_ms)} UTC, event time): "
        f"{trained.n_labels:,} labels learnt"
        + (f", continuing {args.init}" if args.init is not None else "")
    )
    print(
        f"prequential while training: IC {trained.ic:.4f}, hit {trained.hit_rate:.4f} "
        f"(every label scored before it was learnt)"
    )
    print(
        f"wrote {path} ({path.stat().st_size:,} bytes; horizon {hp['horizon_ms']} ms, "
        f"sample {hp['sample_ms']} ms, hidden {hp['hidden']})"
    )
    return 0
