"""Whisper through faster-whisper (CTranslate2, int8 on CPU), loaded from a local model folder only.

The model folder comes from the embedded install (``attune.models``); ``local_files_only`` keeps every code
path off the network, so it works with ``HF_HUB_OFFLINE=1``.

Whisper is trained on 30 s windows and faster-whisper pads every clip to one (3000 mel frames), so the encoder
costs the same for a 2 s turn as for a 30 s one (~550 ms for tiny.en on 2 cores). CTranslate2's encoder takes
any even number of frames, so with ``encoder_window_s`` below 30 a clip is encoded over
``max(encoder_window_s, clip + WINDOW_MARGIN_S)`` seconds instead, and decoded as usual: the padded features are
cut back before encoding (``WhisperModel.encode``, the one place faster-whisper hands features to the encoder).
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import Any

import numpy as np

from attune.backends.asr.asr_common import speech_segments, storage_to_states, validate_audio, whisper_folder
from attune.backends.base import Segment, Transcription
from attune.config import Config
from attune.core.audio import SAMPLE_RATE
from attune.core.errors import ASRError, BackendUnavailable
from attune.core.frames import AudioChunk

INSTALL_HINT = "bash scripts/setup.sh  (or: pip install faster-whisper==1.2.1)"
FULL_WINDOW_S = 30.0  # Whisper's own window
FRAMES_PER_S = 100  # mel frames per second (hop 160 at 16 kHz)
WINDOW_MARGIN_S = 1.0  # silence kept after the clip inside a shortened window
TOKENS_PER_S = 10  # decoded tokens allowed per second of a clip in a shortened window (speech is ~4-5)
WINDOW_STEP_FRAMES = 100  # window lengths are rounded up to whole seconds (an even frame count)
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # faster-whisper's own: decoded again, hotter, when unlikely


def encoder_frames(duration_s: float, window_s: float) -> int:
    """Mel frames the encoder sees for a clip of ``duration_s``: Whisper's 3000 at ``window_s`` >= 30, else the
    clip plus ``WINDOW_MARGIN_S`` of silence, at least ``window_s``, rounded up to a whole second, at most 3000."""
    full = int(FULL_WINDOW_S * FRAMES_PER_S)
    if window_s >= FULL_WINDOW_S:
        return full
    wanted = max(window_s, duration_s + WINDOW_MARGIN_S) * FRAMES_PER_S
    steps = -(-int(np.ceil(wanted)) // WINDOW_STEP_FRAMES)
    return min(full, steps * WINDOW_STEP_FRAMES)


class _Decode(threading.local):
    """What one thread's current ``transcribe`` call knows: its encoder window, its clip's length and the
    encoder's pass once made (class attributes are each thread's defaults)."""

    frames: int = int(FULL_WINDOW_S * FRAMES_PER_S)
    samples: int = 0
    encoding: Any = None


class FasterWhisperASR:
    """Blocking ``transcribe(chunk) -> Transcription``; one decode at a time per instance (a lock guards it).

    Segment times are seconds from the start of the chunk (add ``chunk.timestamp_s`` for stream time);
    segments Whisper flags as no-speech are dropped (``speech_segments``), so silence gives empty text;
    ``no_speech_prob`` is the lowest of all decoded segments' (1.0 when Whisper found no segment at all).

    ``workers`` > 1 loads the model for that many concurrent decodes (CTranslate2 replicas that share one copy
    of the weights); ``sibling()`` then gives a second handle over the same loaded model, with its own lock, so
    the partial passes never wait for the reply's transcription nor hold a second model in memory.
    """

    name = "faster-whisper"

    def __init__(self, model_dir: Path, *, compute_type: str = "int8", threads: int = 2, beam_size: int = 1,
                 language: str = "en", encoder_window_s: float = FULL_WINDOW_S, workers: int = 1) -> None:
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise BackendUnavailable(f"faster-whisper is not installed: {exc}", install_hint=INSTALL_HINT,
                                     backend=self.name) from exc
        if not (Path(model_dir) / "model.bin").is_file():
            raise BackendUnavailable(f"no Whisper model in {model_dir}",
                                     install_hint=".venv/bin/python -m attune.models install", backend=self.name)
        self.model_dir = Path(model_dir)
        self.beam_size = beam_size
        self.language = language
        self.encoder_window_s = encoder_window_s
        self.workers = workers
        self.temperatures: tuple[float, ...] = FALLBACK_TEMPERATURES
        self._lock = threading.Lock()
        try:
            self._model: Any = WhisperModel(str(model_dir), device="cpu", compute_type=compute_type,
                                            cpu_threads=threads, num_workers=workers, local_files_only=True)
        except (RuntimeError, ValueError, OSError) as exc:
            raise ASRError(f"cannot load Whisper model from {model_dir}: {exc}", backend=self.name) from exc
        self._full_encode = self._model.encode
        self._model.encode = self._encode  # the model's encode: features cut to the calling thread's window
        # Per calling thread (shared with siblings): the encoder window of its decode in progress and the first
        # encoder output of its last transcribe.
        self._last = _Decode()

    def sibling(self, *, fallback: bool = True) -> FasterWhisperASR:
        """Another handle over this loaded model (no second copy of the weights) with a lock of its own: its
        decodes run beside this one's when the model was loaded with ``workers`` >= 2, else they queue in
        CTranslate2. Per-thread state is shared, so each thread reads back its own encoder states.

        ``fallback=False``: it decodes once, greedily at temperature 0, where Whisper would decode again at
        rising temperatures when the result looks unlikely. A partial pass over the first half-second of a turn
        (pre-roll and an onset) is such audio: its five or six re-decodes took 0.75-1.05 s of both cores on 4 of 4
        RAVDESS turns. The pipeline's partial passes use it (``pipeline.stack._listen_asr``); the reply's final
        pass keeps the fallback."""
        twin = copy.copy(self)
        twin._lock = threading.Lock()
        if not fallback:
            twin.temperatures = (0.0,)
        return twin

    @classmethod
    def from_config(cls, config: Config) -> FasterWhisperASR:
        """Two workers when the pipeline runs partial passes (their ``sibling()`` shares the weights)."""
        a = config.asr
        return cls(whisper_folder(config), compute_type=a.compute_type, threads=a.threads, beam_size=a.beam_size,
                   language=a.language, encoder_window_s=a.encoder_window_s,
                   workers=2 if config.pipeline.partial_asr else 1)

    def _encode(self, features: np.ndarray) -> Any:
        frames = self._last.frames
        if features.shape[-1] > frames:
            features = np.ascontiguousarray(features[..., :frames])
        out = self._full_encode(features)
        if self._last.encoding is None:
            self._last.encoding = out
        return out

    def _encoder_states(self) -> np.ndarray | None:
        """The encoder's output over the clip this thread is transcribing, (ceil(samples / 320), d_model)
        float32, so the emotion head can reuse the pass; None where the decode never encoded. Covers the first
        30 s of the clip. Per thread, read inside ``transcribe``: no other call can come between."""
        encoding = self._last.encoding
        return None if encoding is None else storage_to_states(encoding, self._last.samples)

    def _token_cap(self, n_samples: int) -> int | None:
        """A bound on decoded tokens for a shortened window, where a looping decoder would otherwise run on."""
        if self._last.frames >= FULL_WINDOW_S * FRAMES_PER_S:
            return None
        return int(TOKENS_PER_S * n_samples / SAMPLE_RATE) + 8

    def transcribe(self, audio: AudioChunk, *, encoder_states: bool = False) -> Transcription:
        samples = validate_audio(audio)
        try:
            with self._lock:
                self._last.frames = encoder_frames(len(samples) / SAMPLE_RATE, self.encoder_window_s)
                self._last.encoding, self._last.samples = None, len(samples)
                segments_iter, info = self._model.transcribe(
                    samples, language=self.language, beam_size=self.beam_size, condition_on_previous_text=False,
                    vad_filter=False, without_timestamps=False, max_new_tokens=self._token_cap(len(samples)),
                    temperature=list(self.temperatures))
                raw = list(segments_iter)
                states = self._encoder_states() if encoder_states else None
        except (RuntimeError, ValueError) as exc:
            raise ASRError(f"Whisper decoding failed: {exc}", retryable=True, backend=self.name) from exc
        segments = tuple(Segment(round(s.start, 3), round(s.end, 3), s.text.strip()) for s in speech_segments(raw))
        text = " ".join(s.text for s in segments if s.text).strip()
        # The utterance's no-speech probability: the lowest over segments (any confident speech counts); 1.0 if none.
        no_speech = min((float(s.no_speech_prob) for s in raw), default=1.0)
        return Transcription(text=text, segments=segments, no_speech_prob=round(no_speech, 4),
                             language=info.language or self.language,
                             duration_s=len(samples) / SAMPLE_RATE, encoder_states=states)
