"""attune.core.dsp against scipy.signal (the reference it replaces on the runtime path), and the runtime's imports:
no command module, engine or pipeline pulls scipy in (about 78 MiB of RSS for scipy.signal alone)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from attune.core import dsp

LAYER = "unit"  # STYLE.md layer 1: a pure core, loop-free, no models

signal = pytest.importorskip("scipy.signal")
sfft = pytest.importorskip("scipy.fft")

FILTERS = [
    (6, 3000.0, "low", 16000),  # speech_dsp.lowpass
    (6, 7840.0, "low", 16000),
    (2, 1800.0, "high", 22050),  # prosody_dsp's breath noise
    (4, [300.0, 3400.0], "band", 16000),  # echo_path's telephone band
    (3, 500.0, "low", 8000),  # odd order: a first-order section
]


@pytest.mark.parametrize(("order", "cutoff", "btype", "fs"), FILTERS)
def test_butter_matches_scipy_sections(order: int, cutoff: float, btype: str, fs: int) -> None:
    ours = dsp.butter(order, cutoff, btype, fs=fs)
    ref = signal.butter(order, cutoff, btype=btype, fs=fs, output="sos")
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("order", "cutoff", "btype", "fs"), FILTERS)
def test_sosfilt_matches_scipy_with_and_without_state(order: int, cutoff: float, btype: str, fs: int) -> None:
    sos = signal.butter(order, cutoff, btype=btype, fs=fs, output="sos")
    x = np.random.default_rng(1).standard_normal(5003)
    np.testing.assert_allclose(dsp.sosfilt(sos, x), signal.sosfilt(sos, x), atol=1e-10)
    zi = signal.sosfilt_zi(sos)
    np.testing.assert_allclose(dsp.sosfilt_zi(sos), zi, rtol=1e-9, atol=1e-12)
    for n in (1, 63, 64, 65, 1000):  # block edges: the final state is the state after exactly n samples
        y, zf = dsp.sosfilt(sos, x[:n], zi=zi * 0.5)
        y_ref, zf_ref = signal.sosfilt(sos, x[:n], zi=zi * 0.5)
        np.testing.assert_allclose(y, y_ref, atol=1e-10)
        np.testing.assert_allclose(zf, zf_ref, atol=1e-10)


def test_sosfilt_in_pieces_equals_one_pass() -> None:
    sos = dsp.butter(2, 1800.0, "high", fs=22050)
    x = np.random.default_rng(2).standard_normal(3000)
    zi = dsp.sosfilt_zi(sos) * 0.0
    parts = []
    for piece in np.array_split(x, [100, 777, 2048]):
        y, zi = dsp.sosfilt(sos, piece, zi=zi)
        parts.append(y)
    np.testing.assert_allclose(np.concatenate(parts), dsp.sosfilt(sos, x), atol=1e-12)


@pytest.mark.parametrize(("up", "down", "n"), [(160, 441, 22050), (2, 1, 1000), (1, 3, 4800), (1, 2, 7),
                                               (320, 441, 3), (16, 15, 1601), (2, 2, 10)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_resample_poly_matches_scipy(up: int, down: int, n: int, dtype: type) -> None:
    x = np.random.default_rng(3).standard_normal(n).astype(dtype)
    ours, ref = dsp.resample_poly(x, up, down), signal.resample_poly(x, up, down)
    assert ours.dtype == ref.dtype and ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=2e-6 if dtype is np.float32 else 1e-12)


def test_find_peaks_matches_scipy_on_plateaus_and_ties() -> None:
    rng = np.random.default_rng(4)
    for _ in range(100):
        x = np.round(rng.standard_normal(300) * 3).cumsum()  # integer steps: flat tops and equal heights
        expected = signal.find_peaks(x, prominence=2.0, distance=10)[0]
        np.testing.assert_array_equal(dsp.find_peaks(x, prominence=2.0, distance=10), expected)
    assert len(dsp.find_peaks(np.zeros(50), prominence=2.0, distance=10)) == 0


def test_dct_ortho_matches_scipy() -> None:
    m = np.random.default_rng(5).standard_normal((50, 40)).astype(np.float32)
    np.testing.assert_allclose(dsp.dct_ortho(m, axis=1), sfft.dct(m, type=2, norm="ortho", axis=1), atol=2e-6)


def test_bad_filter_arguments_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="Nyquist"):
        dsp.butter(2, 9000.0, "low", fs=16000)
    with pytest.raises(ValueError, match="unsupported"):
        dsp.butter(2, 100.0, "band", fs=16000)
    with pytest.raises(ValueError, match="order"):
        dsp.butter(0, 100.0, "low", fs=16000)


RUNTIME_MODULES = [
    "attune.commands.conversation", "attune.commands.engines", "attune.commands.analyze",
    "attune.commands.expression", "attune.commands.serve", "attune.commands.run_kiosk", "attune.pipeline.stack",
    "attune.transports.file", "attune.transports.microphone", "attune.backends.emotion.features",
    "attune.backends.emotion.model", "attune.agent.prosody_dsp", "attune.agent.speech_dsp",
]


def test_the_runtime_path_does_not_import_scipy() -> None:
    code = ("import importlib, sys\n"
            f"for m in {RUNTIME_MODULES!r}: importlib.import_module(m)\n"
            "print(sorted(k for k in sys.modules if k == 'scipy' or k.startswith('scipy.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout
