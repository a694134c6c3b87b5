"""Shared fixtures. Nothing here may reach a model hub: HF_HUB_OFFLINE is forced on for every test."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
# The speech cache of this test run: its own directory, never the user's (a command run as a subprocess inherits it).
_SPEECH_CACHE = tempfile.mkdtemp(prefix="attune-test-speech-")
os.environ["ATTUNE_SPEECH_CACHE__DIR"] = _SPEECH_CACHE
atexit.register(shutil.rmtree, _SPEECH_CACHE, True)

REPO_ROOT = Path(__file__).resolve().parent.parent
EMODB_DIR = Path(os.environ.get("ATTUNE_EMODB_DIR", REPO_ROOT.parent / "shared" / "data" / "emodb-dev"))
RAVDESS_DIR = Path(os.environ.get("ATTUNE_RAVDESS_DIR", REPO_ROOT.parent / "shared" / "data" / "ravdess-dev"))


@pytest.fixture(scope="session")
def emodb_dir() -> Path:
    """The EmoDB development folder, or a clean skip where it is absent."""
    if not EMODB_DIR.is_dir() or not any(EMODB_DIR.glob("*.wav")):
        pytest.skip(f"EmoDB data not found at {EMODB_DIR}")
    return EMODB_DIR


@pytest.fixture(scope="session")
def ravdess_dir() -> Path:
    """The RAVDESS development folder (actors 01-06, 16 kHz), or a clean skip where it is absent."""
    if not RAVDESS_DIR.is_dir() or not any(RAVDESS_DIR.glob("*.wav")):
        pytest.skip(f"RAVDESS data not found at {RAVDESS_DIR}")
    return RAVDESS_DIR


def tone(freq_hz: float = 220.0, seconds: float = 1.0, rate: int = 16000, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


# The four layers of ../shared/STYLE.md. Every test module names its layer (``LAYER = "unit"``) and a test of
# another layer in it says so with its own marker (``@pytest.mark.real``); ``pytest -m unit`` runs one layer.
LAYERS = ("unit", "stage", "fakes", "real")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if any(m.name in LAYERS for m in item.own_markers):
            continue
        layer = getattr(getattr(item, "module", None), "LAYER", None)
        if layer not in LAYERS:
            raise pytest.UsageError(f"{item.nodeid}: its module names no LAYER (one of {', '.join(LAYERS)})")
        item.add_marker(getattr(pytest.mark, layer))
