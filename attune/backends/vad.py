"""Voice activity detectors: Silero (onnxruntime) and a level gate, each a ``VoiceActivity`` with ``from_config``.

The turn detector (``attune.pipeline.turn``) asks one of these for a speech probability per 32 ms chunk; which
one is ``pipeline.vad`` (``attune.core.catalog.VAD``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from attune.config import Config
from attune.core.errors import BackendUnavailable

VAD_CHUNK = 512  # samples per VAD decision at 16 kHz (32 ms), what Silero expects
VAD_CONTEXT = 64  # samples of the previous chunk Silero v5/v6 prepend to each chunk


class VoiceActivity(Protocol):
    """A per-chunk speech probability. ``probability`` takes exactly ``VAD_CHUNK`` samples at 16 kHz."""

    def probability(self, chunk: np.ndarray) -> float: ...

    def reset(self) -> None: ...


class SileroVAD:
    """Silero VAD v6 (the ONNX file bundled with faster-whisper) run chunk by chunk, keeping its LSTM state.

    The model's signature, read from the file: ``input`` float32 [n, 576] (64 samples of context + 512 new),
    ``h``/``c`` float32 [1, 1, 128] in, ``speech_probs`` [n] and ``hn``/``cn`` out; 16 kHz only.
    """

    def __init__(self, model_path: str | Path | None = None) -> None:
        try:
            import onnxruntime
        except ImportError as exc:
            raise BackendUnavailable("Silero VAD needs onnxruntime", install_hint="pip install faster-whisper==1.2.1",
                                     backend="silero") from exc
        path = Path(model_path) if model_path else default_silero_path()
        opts = onnxruntime.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 4
        self._session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"],
                                                     sess_options=opts)
        self.reset()

    @classmethod
    def from_config(cls, config: Config) -> SileroVAD:
        return cls()

    def reset(self) -> None:
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(VAD_CONTEXT, dtype=np.float32)

    def probability(self, chunk: np.ndarray) -> float:
        x = np.concatenate([self._context, chunk.astype(np.float32, copy=False)])[None, :]
        out, self._h, self._c = self._session.run(None, {"input": x, "h": self._h, "c": self._c})
        self._context = x[0, -VAD_CONTEXT:].copy()
        return float(np.asarray(out).ravel()[0])


def default_silero_path() -> Path:
    """The Silero ONNX file shipped inside faster-whisper (or the ``silero-vad`` wheel)."""
    for module, rel in (("faster_whisper", "assets/silero_vad_v6.onnx"), ("silero_vad", "data/silero_vad.onnx")):
        try:
            mod = __import__(module)
        except ImportError:
            continue
        candidate = Path(os.path.dirname(mod.__file__ or "")) / rel
        if candidate.is_file():
            return candidate
    raise BackendUnavailable("no Silero VAD model file found", install_hint="pip install faster-whisper==1.2.1",
                             backend="silero")


class EnergyVAD:
    """A level gate: probability 1 above ``threshold_dbfs`` RMS, else 0. For tests and as a dependency-free fallback."""

    def __init__(self, threshold_dbfs: float = -40.0) -> None:
        self.threshold = 10 ** (threshold_dbfs / 20.0)

    @classmethod
    def from_config(cls, config: Config) -> EnergyVAD:
        return cls()

    def probability(self, chunk: np.ndarray) -> float:
        level = float(np.sqrt(np.mean(np.square(chunk, dtype=np.float64)))) if chunk.size else 0.0
        return 1.0 if level >= self.threshold else 0.0

    def reset(self) -> None:
        return None
