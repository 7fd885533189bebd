"""Fixtures shared by every test: the location of the recorded data beside the checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ``../shared`` folder that CI lays beside the checkout (data and wire samples)."""
    if not SHARED.is_dir():
        raise RuntimeError(f"expected the shared data folder at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def binance_recording(shared_dir: Path) -> Path:
    """Real Binance USD-M BTCUSDT traffic, ``<ns> <json>`` lines, gzipped."""
    return shared_dir / "data" / "binance-usdm-btcusdt-20240808.gz"


@pytest.fixture(scope="session")
def samples_dir(shared_dir: Path) -> Path:
    """Real wire messages of each venue, one per file."""
    return shared_dir / "exchange-samples"
