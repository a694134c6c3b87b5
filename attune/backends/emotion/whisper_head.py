"""The neural emotion backend: a small logistic head on the Whisper encoder's pooled states (``whisper``).

The head (``whisper_head_<model>.npz``, a few hundred KB, retrained by ``run_agent.py train-emotion --backend
whisper``) reads the mean-pooled encoder output of a turn. ``analyze(audio, rate)`` runs the encoder itself;
``analyze_states(states, audio)`` takes the states the ASR already computed for the turn
(````transcribe(..., encoder_states=True)````), which costs only the pooling and one matrix product. Like the
prosodic backend it keeps a running estimate of the speaker (pooled-state mean and spread), so a long call
reads the voice relative to itself while the first turn is read against the population.

An encoder name ``<model>_l<k>`` (``tiny.en_l2``) reads block ``k`` of that model instead of its last layer
(``whisper_layers.BlockEncoder``: CTranslate2 int8 over the same weights cut after block ``k``, over the clip's
own frames): the head hears more of the voice there, but the ASR's pass cannot be reused, so each turn pays a
pass of its own, ~13 ms of CPU for a 3.6 s turn (docs/BENCHMARKS.md, issue 20, third round).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np

from attune.backends.emotion.features import extract_markers
from attune.backends.emotion.model import EmotionModel
from attune.backends.emotion.posterior import result_from_probs
from attune.backends.emotion.prosodic import quality_factor, unusable_result
from attune.backends.emotion.whisper_encoder import FEATURES_VERSION, POOLINGS, WhisperEncoder, pool, states_for
from attune.backends.emotion.whisper_layers import BLOCK_FEATURES_VERSION, BlockEncoder
from attune.config import Config, EmotionConfig
from attune.core.audio import SAMPLE_RATE, measure_quality, prepare
from attune.core.emotion import EmotionResult, ProsodicMarkers
from attune.core.errors import BackendUnavailable, EmotionError

log = logging.getLogger("attune.emotion.whisper")

ENCODERS = ("tiny.en", "base", "tiny.en_l2")  # <model>: its last layer (the ASR's pass); <model>_l<k>: block k
# Mean and spread over the voiced rows clear of the noise floor: best held-out, clean and in babble (BENCHMARKS.md,
# issue 20, fifth round). A head keeps the pooling it was trained with (its feature kind): the tiny.en and base
# heads were trained on ``speechmeanstd`` and still read that.
DEFAULT_POOLING = "talkermeanstd"
HEAD_DIR = Path(__file__).parent
RETRAIN = "run_agent.py train-emotion --backend whisper"


def split_encoder(encoder: str) -> tuple[str, int | None]:
    """(Whisper model, block) of an encoder name: ``tiny.en`` -> (tiny.en, None: the last layer, as the ASR
    computes it), ``tiny.en_l2`` -> (tiny.en, 2)."""
    model, sep, layer = encoder.rpartition("_l")
    if sep and model and layer.isdigit():
        return model, int(layer)
    return encoder, None


@functools.lru_cache(maxsize=4)
def make_encoder(models_dir: Path, encoder: str) -> WhisperEncoder | BlockEncoder:
    """The encoder an encoder name reads: the ASR's own pass (its window, its last layer), or the pass cut
    after a block over the clip's own frames. One per process, shared by every session's reader (both are
    thread-safe): building one cuts and loads the model, 75-200 ms of CPU that each new session otherwise spent
    during its first turn, beside that turn's partial passes."""
    model, layer = split_encoder(encoder)
    folder = Path(models_dir) / f"whisper-{model}"
    return WhisperEncoder(folder) if layer is None else BlockEncoder(folder, layer)


def features_version(encoder: str) -> int:
    """The version of an encoder's pooled features (it keys the lab's feature cache)."""
    return FEATURES_VERSION if split_encoder(encoder)[1] is None else BLOCK_FEATURES_VERSION


def head_path(encoder: str) -> Path:
    return HEAD_DIR / f"whisper_head_{encoder}.npz"


def feature_kind(encoder: str, pooling: str = DEFAULT_POOLING) -> str:
    return f"whisper-{encoder}-{pooling}"


@functools.lru_cache(maxsize=4)
def _load_head(path: str, kind: str) -> EmotionModel:
    return EmotionModel.load(path, feature_kind=kind)


class WhisperEmotionBackend:
    """Emotion from Whisper encoder states. Keeps one speaker's running normalisation between calls.

    Not thread-safe (one conversation per instance); the encoder it may build is shared-safe.
    """

    name = "whisper"

    def __init__(self, config: EmotionConfig | None = None, *, head: EmotionModel | None = None,
                 encoder: WhisperEncoder | BlockEncoder | None = None, models_dir: Path | None = None) -> None:
        self.config = config or EmotionConfig()
        self.encoder_name = self.config.encoder
        if self.encoder_name not in ENCODERS:
            raise BackendUnavailable(f"unknown Whisper encoder {self.encoder_name!r} (known: {', '.join(ENCODERS)})",
                                     backend=self.name)
        if head is None:
            path = head_path(self.encoder_name)
            kinds = [feature_kind(self.encoder_name, p) for p in POOLINGS]
            head = self._load(path, kinds)
        self.head = head
        self.pooling = head.feature_kind.rsplit("-", 1)[-1]
        self._encoder = encoder
        self._models_dir = models_dir or Config().models_dir()
        self.model_name, self.layer = split_encoder(self.encoder_name)
        folder = self._models_dir / f"whisper-{self.model_name}"
        if encoder is None and not (folder / "model.bin").is_file():
            raise BackendUnavailable(f"no Whisper {self.encoder_name} model in {folder}",
                                     install_hint=".venv/bin/python -m attune.models install "
                                                  f"whisper-{self.model_name}", backend=self.name)
        self.normalizer = head.normalizer()
        self.adapt = True
        self.last_probs: np.ndarray | None = None

    @classmethod
    def from_config(cls, config: Config) -> WhisperEmotionBackend:
        return cls(config.emotion, models_dir=config.models_dir())

    def _load(self, path: Path, kinds: list[str]) -> EmotionModel:
        if not path.is_file():
            raise BackendUnavailable(f"no Whisper emotion head at {path}", install_hint=RETRAIN, backend=self.name)
        errors = []
        for kind in kinds:
            try:
                return _load_head(str(path), kind)
            except EmotionError as exc:
                errors.append(str(exc))
        raise BackendUnavailable(f"cannot load the Whisper emotion head: {errors[-1]}", install_hint=RETRAIN,
                                 backend=self.name)

    @property
    def encoder(self) -> WhisperEncoder | BlockEncoder:
        """The encoder for turns whose states nobody computed yet (built on first use)."""
        if self._encoder is None:
            self._encoder = make_encoder(self._models_dir, self.encoder_name)
        return self._encoder

    def reset_speaker(self) -> None:
        self.normalizer.reset()

    def analyze(self, audio: np.ndarray, sample_rate: int) -> EmotionResult:
        """Emotion of one stretch of audio (any rate; bad input raises): encodes it, then ``analyze_states``."""
        x, bad = prepare(audio, sample_rate)
        quality = measure_quality(x, SAMPLE_RATE, non_finite_fraction=bad, min_duration_s=self.config.min_duration_s)
        if not quality.usable:
            return unusable_result(self.name, quality, len(x) / SAMPLE_RATE)
        return self.analyze_states(self.encoder.states(x), x)

    def posteriors(self, states: np.ndarray, audio16k: np.ndarray) -> tuple[np.ndarray, float]:
        """Calibrated class posteriors of a turn's encoder states (T, d) and its 16 kHz audio, and the
        familiarity factor (0..1)."""
        v = pool(states, self.pooling, audio16k)
        if v.shape != (self.head.dim,):
            raise EmotionError(f"encoder states of width {np.shape(states)[-1]} do not fit the {self.encoder_name} "
                               f"head (expects pooled width {self.head.dim})", backend=self.name)
        z = self.normalizer.normalize(v)
        probs = self.head.probabilities(z, self.head.temperature(self.normalizer.familiarity))
        if self.adapt:
            self.normalizer.update(v)
        self.last_probs = probs
        return probs, self.head.familiar_factor(v)

    @property
    def reads_asr_pass(self) -> bool:
        """Whether a turn's reading can reuse the ASR's encoder pass (its last layer; a middle block's cannot)."""
        return self.layer is None

    def usable_states(self, states: np.ndarray | None, n_samples: int) -> bool:
        """Whether ``states`` (from the ASR) are this head's encoder's pass over a clip of ``n_samples`` (never
        for a middle layer: the ASR's pass is the last one)."""
        return (self.layer is None and states is not None and states.ndim == 2 and len(states) == states_for(n_samples)
                and 2 * states.shape[1] * (1 if self.pooling.endswith("meanstd") else 0.5) == self.head.dim)

    def analyze_turn(self, audio16k: np.ndarray, states: np.ndarray | None = None) -> EmotionResult:
        """A whole turn at its end: reuses ``states`` when they are this encoder's pass over the turn (the ASR's,
        ````transcribe(..., encoder_states=True)````), else encodes the turn itself."""
        x = np.asarray(audio16k, np.float32)
        if not self.usable_states(states, len(x)):
            return self.analyze(x, SAMPLE_RATE)
        assert states is not None
        return self.analyze_states(states, x)

    def analyze_states(self, states: np.ndarray, audio16k: np.ndarray,
                       markers: ProsodicMarkers | None = None) -> EmotionResult:
        """The result for a turn whose encoder states are known; ``audio16k`` gives quality and markers."""
        x = np.asarray(audio16k, np.float32)
        quality = measure_quality(x, SAMPLE_RATE, min_duration_s=self.config.min_duration_s)
        if not quality.usable:
            return unusable_result(self.name, quality, len(x) / SAMPLE_RATE)
        probs, familiar = self.posteriors(states, x)
        markers = markers if markers is not None else extract_markers(x, SAMPLE_RATE)
        speech_s = len(x) / SAMPLE_RATE if markers.level_dbfs > -200 else 0.0
        trust = quality_factor(quality, speech_s) * familiar
        return result_from_probs(probs, markers=markers, quality=quality, duration_s=len(x) / SAMPLE_RATE,
                                 backend=self.name, trust=trust)
