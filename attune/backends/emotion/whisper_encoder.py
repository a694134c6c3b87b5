"""Whisper's encoder states for emotion: the same pass the ASR runs, and their pooling into one vector per turn.

``WhisperEncoder.states(audio)`` computes the log-mel features exactly as faster-whisper's transcription does
(the clip's features, padded to Whisper's 3000 frames, cut to the ASR's encoder window) and returns the
encoder's output over the clip only: shape (ceil(n_samples / 320), d_model), one row per 20 ms. In a
conversation the ASR already ran this pass (````transcribe(..., encoder_states=True)````) and the emotion head
reuses it; ``pool`` turns states of any length into the fixed vector the head reads.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from attune.backends.asr.asr_common import SAMPLES_PER_STATE, states_for, storage_to_states
from attune.backends.asr.faster_whisper_backend import FULL_WINDOW_S, encoder_frames
from attune.core.audio import SAMPLE_RATE
from attune.core.errors import BackendUnavailable, EmotionError

__all__ = ["FEATURES_VERSION", "POOLINGS", "SAMPLES_PER_STATE", "WhisperEncoder", "pool", "speech_rows", "states_for",
           "storage_to_states"]
POOLINGS = ("mean", "meanstd", "speechmean", "speechmeanstd", "talkermean", "talkermeanstd")
# speech*: over the voiced rows only; talker*: over the voiced rows that stand clear of the clip's noise floor
FEATURES_VERSION = 2  # bump when the states or pooling change (it keys the feature cache)
SPEECH_RANGE_DB = 35.0  # a row is speech when its 20 ms RMS is within this of the clip's loudest row
NOISE_FLOOR_PERCENTILE = 5.0  # the clip's noise floor: this percentile of its 20 ms block levels
TALKER_ABOVE_FLOOR_DB = 15.0  # talker* pooling: a row must also be this far above the noise floor ...
TALKER_KEEP_DB = 15.0  # ... unless it is within this of the loudest row (a clip with no pause keeps its speech)
INSTALL_HINT = ".venv/bin/python -m attune.models install whisper-tiny.en"


def speech_rows(audio16k: np.ndarray, n_rows: int, above_floor_db: float | None = None) -> np.ndarray:
    """Boolean mask over ``n_rows`` encoder rows: the 20 ms blocks within SPEECH_RANGE_DB of the loudest one
    (one row of margin each side), so pooling skips the silence before and after the words.

    With ``above_floor_db`` a block must also stand that far above the clip's noise floor (its
    NOISE_FLOOR_PERCENTILE block level) or within TALKER_KEEP_DB of the loudest: in a café the other voices
    fill the pauses to within 35 dB of the talker, and pooling them in reads the babble as the caller (10 dB
    babble: 99 % of a RAVDESS file's rows counted as speech, against 49 % clean). A clean clip's floor lies
    far below (RAVDESS: median 69 dB under the loudest block), so the rule leaves it as it was."""
    x = np.asarray(audio16k, np.float64)
    n = min(n_rows, len(x) // SAMPLES_PER_STATE)
    mask = np.zeros(n_rows, bool)
    if n == 0:
        return np.ones(n_rows, bool)
    blocks = x[: n * SAMPLES_PER_STATE].reshape(n, SAMPLES_PER_STATE)
    db = 10.0 * np.log10(np.mean(blocks * blocks, axis=1) + 1e-12)
    threshold = db.max() - SPEECH_RANGE_DB
    if above_floor_db is not None:
        floor = float(np.percentile(db, NOISE_FLOOR_PERCENTILE))
        threshold = max(threshold, min(floor + above_floor_db, db.max() - TALKER_KEEP_DB))
    loud = db >= threshold
    loud = loud | np.r_[loud[1:], False] | np.r_[False, loud[:-1]]
    mask[:n] = loud
    return mask if mask.any() else np.ones(n_rows, bool)


def pool(states: np.ndarray, pooling: str = "mean", audio16k: np.ndarray | None = None) -> np.ndarray:
    """One vector from (T, d) encoder states: ``mean`` (d,) or ``meanstd`` (2d,: mean then std over time);
    the ``speech`` variants pool only the rows ``speech_rows(audio16k)`` marks, the ``talker`` variants only those
    clear of the noise floor too (``speech_rows(audio16k, n, TALKER_ABOVE_FLOOR_DB)``; both need the audio)."""
    x = np.asarray(states, np.float64)
    if x.ndim != 2 or len(x) == 0 or not np.isfinite(x).all():
        raise EmotionError(f"encoder states must be a finite (T, d) array, got shape {x.shape}")
    if pooling not in POOLINGS:
        raise EmotionError(f"unknown pooling {pooling!r} (known: {', '.join(POOLINGS)})")
    if pooling.startswith(("speech", "talker")):
        if audio16k is None:
            raise EmotionError(f"pooling {pooling!r} needs the clip's audio")
        floor_db = TALKER_ABOVE_FLOOR_DB if pooling.startswith("talker") else None
        x = x[speech_rows(audio16k, len(x), floor_db)]
    if pooling.endswith("meanstd"):
        return np.concatenate([x.mean(axis=0), x.std(axis=0)])
    return x.mean(axis=0)


class WhisperEncoder:
    """A faster-whisper model used only for its encoder. Thread-safe (one encode at a time)."""

    def __init__(self, model_dir: str | Path, *, threads: int = 2, compute_type: str = "int8",
                 window_s: float = 6.0) -> None:
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise BackendUnavailable(f"faster-whisper is not installed: {exc}",
                                     install_hint="pip install faster-whisper==1.2.1") from exc
        if not (Path(model_dir) / "model.bin").is_file():
            raise BackendUnavailable(f"no Whisper model in {model_dir}", install_hint=INSTALL_HINT)
        self.model_dir = Path(model_dir)
        self.window_s = window_s
        self._lock = threading.Lock()
        self._model: Any = WhisperModel(str(model_dir), device="cpu", compute_type=compute_type,
                                        cpu_threads=threads, local_files_only=True)

    @property
    def dim(self) -> int:
        return int(self._model.model.encode(self._features(np.zeros(SAMPLE_RATE, np.float32))).shape[-1])

    def _features(self, audio16k: np.ndarray) -> np.ndarray:
        from faster_whisper.audio import pad_or_trim

        feats = self._model.feature_extractor(np.asarray(audio16k, np.float32))
        content = feats.shape[-1] - 1  # as faster-whisper's generate_segments: the padding frame is not content
        feats = pad_or_trim(feats[..., : min(content, int(FULL_WINDOW_S * 100))])
        frames = encoder_frames(len(audio16k) / SAMPLE_RATE, self.window_s)
        return np.ascontiguousarray(feats[..., :frames][None])

    def states(self, audio16k: np.ndarray) -> np.ndarray:
        """Encoder output over a 16 kHz mono float clip (at most 30 s are read): (states_for(n), d) float32."""
        x = np.asarray(audio16k, np.float32)
        if x.ndim != 1 or len(x) == 0:
            raise EmotionError(f"the Whisper encoder needs a non-empty mono clip, got shape {x.shape}")
        x = x[: int(FULL_WINDOW_S * SAMPLE_RATE)]
        from faster_whisper.transcribe import get_ctranslate2_storage

        feats = get_ctranslate2_storage(self._features(x))
        with self._lock:
            out = self._model.model.encode(feats, to_cpu=False)
        return storage_to_states(out, len(x))
