"""Pipecat's smart-turn v3 end-of-turn model (BSD-2-Clause) run through onnxruntime, with its own feature
extraction: the last 8 s of the turn at 16 kHz (zero-padded at the front), normalised to zero mean and unit
variance, as an 80-band Whisper log-mel spectrogram of 800 frames.

The ONNX file ships inside the ``pipecat-ai`` wheel; ``attune.models`` extracts and verifies it (model
``smart-turn-v3``), Pipecat itself is never installed. The model's signature, read from the file:
``input_features`` float32 [n, 80, 800] in, ``logits`` [n, 1] out (already a sigmoid: P(the turn is complete)).
The features follow ``transformers.WhisperFeatureExtractor(chunk_length=8)`` as Pipecat vendors it (Slaney mel
filters, periodic Hann window, centred reflect-padded STFT, log10, 8 dB dynamic range, (x + 4) / 4).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from attune.core.audio import SAMPLE_RATE
from attune.core.errors import BackendError, BackendUnavailable

WINDOW_S = 8  # s of the turn's end the model hears
WINDOW_SAMPLES = WINDOW_S * SAMPLE_RATE  # 128000
N_FFT = 400  # samples per STFT frame (25 ms)
HOP = 160  # samples between frames (10 ms)
N_MELS = 80
N_FRAMES = WINDOW_SAMPLES // HOP  # 800 frames in, after the trailing one is dropped
COMPLETE_THRESHOLD = 0.5  # Pipecat's: probability above this = the turn is complete
INSTALL_HINT = ".venv/bin/python -m attune.models install smart-turn-v3"


def _hz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    freq = np.atleast_1d(np.asarray(freq, dtype=np.float64))
    mels = 3.0 * freq / 200.0
    high = freq >= 1000.0
    mels[high] = 15.0 + np.log(freq[high] / 1000.0) * (27.0 / np.log(6.4))
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.atleast_1d(np.asarray(mels, dtype=np.float64))
    freq = 200.0 * mels / 3.0
    high = mels >= 15.0
    freq[high] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mels[high] - 15.0))
    return freq


def mel_filters(n_mels: int = N_MELS, n_fft: int = N_FFT, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Slaney-normalised triangular filters, shape (n_fft // 2 + 1, n_mels), 0 Hz to Nyquist."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.array([0.0]))[0], _hz_to_mel(np.array([rate / 2.0]))[0],
                                   n_mels + 2))
    bins = np.linspace(0, rate // 2, n_fft // 2 + 1)
    slopes = edges[None, :] - bins[:, None]
    widths = np.diff(edges)
    down = -slopes[:, :-2] / widths[:-1]
    up = slopes[:, 2:] / widths[1:]
    filters = np.maximum(0.0, np.minimum(down, up))
    return filters * (2.0 / (edges[2: n_mels + 2] - edges[:n_mels]))[None, :]


_FILTERS = mel_filters()
_WINDOW = np.hanning(N_FFT + 1)[:-1]  # periodic Hann, as torch.hann_window


def last_window(samples: np.ndarray) -> np.ndarray:
    """The last ``WINDOW_S`` of ``samples`` (16 kHz mono), zero-padded at the front to exactly that length."""
    x = np.asarray(samples, dtype=np.float32).ravel()
    if x.size >= WINDOW_SAMPLES:
        return x[-WINDOW_SAMPLES:]
    return np.concatenate([np.zeros(WINDOW_SAMPLES - x.size, dtype=np.float32), x])


def log_mel(window: np.ndarray) -> np.ndarray:
    """Whisper-style log-mel features of one 8 s window: float32 (80, 800), roughly in [-1, 1]."""
    x = np.asarray(window, dtype=np.float32)
    if x.shape != (WINDOW_SAMPLES,):
        raise ValueError(f"expected {WINDOW_SAMPLES} samples, got shape {x.shape}")
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    padded = np.pad(x.astype(np.float64), (N_FFT // 2, N_FFT // 2), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    power = np.abs(np.fft.rfft(frames * _WINDOW, axis=-1)) ** 2  # (801, 201)
    mel = np.log10(np.maximum(1e-10, power @ _FILTERS)).T[:, :-1]  # (80, 800)
    mel = np.maximum(mel, mel.max() - 8.0)
    return ((mel + 4.0) / 4.0).astype(np.float32)


def default_model_path() -> Path:
    """The installed ONNX file (``models.cache_dir``/smart-turn-v3); ``BackendUnavailable`` when missing."""
    from attune.config import load_config
    from attune.models import model_path

    config = load_config()
    return model_path(config.models_dir(), "smart-turn-v3")


class SmartTurn:
    """``complete_probability(turn_audio) -> float``: P(the turn is finished), from its last 8 s. Blocking
    (~40-60 ms on one core); the pipeline calls it off the event loop. One onnxruntime thread, sequential, so it
    never spins workers against Whisper and llama.cpp on a small machine."""

    name = "smart-turn-v3"

    def __init__(self, model_path: str | Path | None = None, *, threads: int = 1) -> None:
        try:
            import onnxruntime
        except ImportError as exc:
            raise BackendUnavailable("smart-turn needs onnxruntime", install_hint="pip install faster-whisper==1.2.1",
                                     backend=self.name) from exc
        path = Path(model_path) if model_path else default_model_path()
        if not path.is_file():
            raise BackendUnavailable(f"no smart-turn model at {path}", install_hint=INSTALL_HINT, backend=self.name)
        opts = onnxruntime.SessionOptions()
        opts.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = threads
        opts.log_severity_level = 4
        # The model is int8. On x86-64 without VNNI (AVX2, AVX-512 without VNNI) onnxruntime's default u8s8
        # kernel can saturate its 16-bit intermediates, so the same audio reads differently there; the exact u8u8
        # kernel computes what a VNNI machine does (a little slower). onnxruntime ignores it where VNNI exists.
        opts.add_session_config_entry("session.x64quantprecision", "1")
        try:
            self._session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"],
                                                         sess_options=opts)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors for a bad file
            raise BackendError(f"cannot load smart-turn model {path}: {exc}", backend=self.name) from exc

    def complete_probability(self, samples: np.ndarray) -> float:
        """``samples``: the turn so far, 16 kHz mono float32 (any length; the last 8 s count)."""
        features = log_mel(last_window(samples))[None, :, :]
        try:
            out = self._session.run(None, {"input_features": features})
        except Exception as exc:  # noqa: BLE001
            raise BackendError(f"smart-turn inference failed: {exc}", retryable=True, backend=self.name) from exc
        return float(np.asarray(out[0]).ravel()[0])
