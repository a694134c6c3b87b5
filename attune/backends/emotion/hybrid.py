"""The hybrid emotion backend (``hybrid``): the Whisper head for the category, prosody for the fine detail.

Both learned backends give calibrated posteriors over the same nine classes; the hybrid fuses them as a
confidence-weighted product of experts (``hybrid_probs``; weight ``emotion.hybrid_neural_weight``
on the neural side), takes the category and its confidence from the fusion and the prosodic markers (pitch,
rate, pauses, tremor) from the DSP. Without the Whisper head or encoder it cannot be built and the registry
falls back to prosody alone; if the encoder fails on one turn, that turn is read by prosody alone.
"""

from __future__ import annotations

import logging

import numpy as np

from attune.backends.emotion.labels import GROUP5, grouping_matrix
from attune.backends.emotion.model import softmax
from attune.backends.emotion.posterior import result_from_probs
from attune.backends.emotion.prosodic import ProsodicBackend, quality_factor
from attune.backends.emotion.whisper_head import WhisperEmotionBackend
from attune.config import Config, EmotionConfig
from attune.core.audio import SAMPLE_RATE, measure_quality, prepare
from attune.core.emotion import EmotionResult
from attune.core.errors import EmotionError

log = logging.getLogger("attune.emotion.hybrid")
_G5 = grouping_matrix(GROUP5)


def hybrid_probs(neural: np.ndarray, prosodic: np.ndarray, neural_weight: float,
                 neural_familiar: np.ndarray | None = None, prosodic_familiar: np.ndarray | None = None
                 ) -> np.ndarray:
    """Confidence-weighted product of experts over rows of class posteriors (n, len(CLASSES)).

    p ~ p_n^a * p_p^b with a = w c_n, b = (1 - w) c_p, normalised to a + b = 1, where c is each side's
    group5 confidence times its familiarity factor (``EmotionModel.familiar_factor``: 1 for features like the
    training rows) and w = ``neural_weight``. On a phone line the DSP features (band energies, spectral
    shape) leave the training distribution while the encoder's hardly move, so the neural side takes over.
    """
    n = np.atleast_2d(neural)
    p = np.atleast_2d(prosodic)
    fam_n = np.ones(len(n)) if neural_familiar is None else np.asarray(neural_familiar, np.float64)
    fam_p = np.ones(len(p)) if prosodic_familiar is None else np.asarray(prosodic_familiar, np.float64)
    a = neural_weight * (n @ _G5).max(axis=1) * fam_n
    b = (1.0 - neural_weight) * (p @ _G5).max(axis=1) * fam_p
    total = np.maximum(a + b, 1e-9)
    log = (a / total)[:, None] * np.log(n + 1e-9) + (b / total)[:, None] * np.log(p + 1e-9)
    return softmax(log)


class HybridBackend:
    """Neural category + prosodic markers, fused by confidence. One speaker's running statistics per instance."""

    name = "hybrid"

    def __init__(self, config: EmotionConfig | None = None, *, neural: WhisperEmotionBackend | None = None,
                 prosodic: ProsodicBackend | None = None) -> None:
        self.config = config or EmotionConfig()
        self.neural = neural or WhisperEmotionBackend(self.config)
        self.prosodic = prosodic or ProsodicBackend(self.config)
        self.neural_weight = self.config.hybrid_neural_weight

    @classmethod
    def from_config(cls, config: Config) -> HybridBackend:
        return cls(config.emotion, neural=WhisperEmotionBackend.from_config(config),
                   prosodic=ProsodicBackend.from_config(config))

    def reset_speaker(self) -> None:
        self.neural.reset_speaker()
        self.prosodic.reset_speaker()

    def analyze(self, audio: np.ndarray, sample_rate: int) -> EmotionResult:
        """Emotion of one stretch of audio: encodes it with Whisper, then ``analyze_states``."""
        x, _ = prepare(audio, sample_rate)
        states = None
        if measure_quality(x, SAMPLE_RATE, min_duration_s=self.config.min_duration_s).usable:
            try:
                states = self.neural.encoder.states(x)
            except (EmotionError, RuntimeError, ValueError) as exc:
                log.warning("Whisper encoder failed, reading this turn by prosody alone: %s", exc)
        return self.analyze_states(states, x)

    @property
    def reads_asr_pass(self) -> bool:
        return self.neural.reads_asr_pass

    def analyze_turn(self, audio16k: np.ndarray, states: np.ndarray | None = None) -> EmotionResult:
        """A whole turn at its end, reusing the ASR's encoder ``states`` when they fit (else it encodes)."""
        x = np.asarray(audio16k, np.float32)
        if not self.neural.usable_states(states, len(x)):
            return self.analyze(x, SAMPLE_RATE)
        return self.analyze_states(states, x)

    def analyze_states(self, states: np.ndarray | None, audio16k: np.ndarray) -> EmotionResult:
        """The fused result for a turn; ``states`` None (no encoder pass) gives the prosodic result alone."""
        x = np.asarray(audio16k, np.float32)
        voice = self.prosodic.analyze(x, SAMPLE_RATE)
        p_probs = self.prosodic.last_probs
        if states is None or not voice.quality.usable or p_probs is None:
            return voice
        self.prosodic.last_probs = None
        try:
            n_probs, familiar = self.neural.posteriors(states, x)
        except EmotionError as exc:
            log.warning("Whisper head failed, reading this turn by prosody alone: %s", exc)
            return voice
        fused = hybrid_probs(n_probs, p_probs, self.neural_weight, np.array([familiar]),
                             np.array([self.prosodic.last_familiar]))[0]
        speech_s = len(x) / SAMPLE_RATE if voice.markers.level_dbfs > -200 else 0.0
        trust = quality_factor(voice.quality, speech_s) * familiar
        return result_from_probs(fused, markers=voice.markers, quality=voice.quality, duration_s=voice.duration_s,
                                 backend=self.name, trust=trust)
