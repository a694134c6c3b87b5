"""Held-out evaluation and training of the learned emotion models on the dev corpora (EmoDB and RAVDESS).

Protocols: leave-one-speaker-out over every speaker of the folders given (``loso``) and across corpora (train
on one, test on the other: ``cross_corpus``). Modes, as a detector meets a voice: ``cold`` (every utterance
read by a fresh detector: population prior only) and ``warm`` (one detector per speaker, the speaker's files in
a fixed shuffled order, the running speaker estimate adapting as in a long call). ``held_out`` returns
held-out logits and each row's familiarity; ``calibrate`` fits the temperatures; ``hybrid_probs`` fuses two
backends' posteriors the way ``HybridBackend`` does. Feature rows come from ``dataset.feature_matrix``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from attune.backends.emotion.features import extract_features
from attune.backends.emotion.labels import CLASSES, Utterance
from attune.backends.emotion.model import PROSODIC, EmotionModel, fit_temperature, softmax, train_model
from attune.core.errors import EmotionError
from attune_lab.emotion.dataset import LabelledSet, feature_matrix

MODES = ("cold", "warm")
WARM_ORDER_SEED = 0  # the order a warm detector hears a speaker's files (name order groups RAVDESS by emotion)
DEFAULT_L2 = {PROSODIC: 0.003, "whisper": 0.01}


def default_l2(kind: str) -> float:
    return DEFAULT_L2[PROSODIC] if kind == PROSODIC else DEFAULT_L2["whisper"]


def features_for(utterances: list[Utterance], kind: str, models_dir: Path) -> LabelledSet:
    """Feature rows of ``kind``: ``prosodic`` or ``whisper-<encoder>-<pooling>`` (whisper_head.ENCODERS,
    whisper_encoder.POOLINGS)."""
    if kind == PROSODIC:
        from attune.backends.emotion.features import FEATURES_VERSION as PROSODIC_VERSION

        return feature_matrix(utterances, f"{kind}-v{PROSODIC_VERSION}", lambda a: extract_features(a, 16000))
    from attune.backends.emotion.whisper_encoder import POOLINGS, WhisperEncoder, pool
    from attune.backends.emotion.whisper_head import features_version, make_encoder
    from attune.backends.emotion.whisper_layers import BlockEncoder

    parts = kind.split("-")
    if len(parts) != 3 or parts[0] != "whisper" or parts[2] not in POOLINGS:
        raise EmotionError(f"unknown feature kind {kind!r} (prosodic | whisper-tiny.en-mean | ...)")
    encoder: list[WhisperEncoder | BlockEncoder] = []
    span = next((v for v in ("speech", "talker") if parts[2].startswith(v)), "")

    def extract(audio: np.ndarray) -> np.ndarray:
        if not encoder:
            encoder.append(make_encoder(models_dir, parts[1]))
        return pool(encoder[0].states(audio), f"{span}meanstd", audio)

    full = feature_matrix(utterances, f"whisper-{parts[1]}-{span}meanstd-v{features_version(parts[1])}", extract)
    if not parts[2].endswith("meanstd"):
        return replace(full, features=full.features[:, : full.features.shape[1] // 2])
    return full


@dataclass(frozen=True)
class HeldOut:
    """Held-out logits (n, len(CLASSES)) of a test set with each row's familiarity (0 stranger .. 1 known)."""

    logits: np.ndarray
    familiarity: np.ndarray
    ood: np.ndarray  # each row's familiar_factor (1 in distribution)


def apply_model(model: EmotionModel, test: LabelledSet, mode: str) -> HeldOut:
    """Logits of ``test`` as a cold or warm detector would compute them (see the module docstring)."""
    if mode not in MODES:
        raise EmotionError(f"unknown mode {mode!r} (cold | warm)")
    n = len(test.utterances)
    logits = np.zeros((n, len(CLASSES)))
    fam = np.zeros(n)
    ood = np.array([model.familiar_factor(x) for x in test.features])
    if mode == "cold":
        logits[:] = model.logits(model.normalizer().normalize(test.features))
        return HeldOut(logits, fam, ood)
    rng = np.random.default_rng(WARM_ORDER_SEED)
    for s in np.unique(test.speakers):
        rows = np.flatnonzero(test.speakers == s)
        norm = model.normalizer()
        for i in rng.permutation(rows):
            fam[i] = norm.familiarity
            logits[i] = model.logits(norm.normalize(test.features[i]))[0]
            norm.update(test.features[i])
    return HeldOut(logits, fam, ood)


def concat(sets: Sequence[LabelledSet]) -> LabelledSet:
    """The rows of several sets, in order."""
    return LabelledSet(tuple(u for s in sets for u in s.utterances), np.vstack([s.features for s in sets]))


def base_speakers(speakers: np.ndarray) -> np.ndarray:
    """The person behind each speaker id: ``ravdess:01@phone`` (a degraded copy, robustness.py) is ravdess:01."""
    return np.array([str(s).split("@", 1)[0] for s in speakers])


def fold_rows(data: LabelledSet, speaker: str) -> np.ndarray:
    """The rows a model that must not know ``speaker`` may train on: not theirs (nor a degraded copy of
    theirs), and no copy with their voice in its babble (``degrade.voices_heard``)."""
    from attune_lab.emotion.degrade import voices_heard

    heard = np.array([speaker in v for v in voices_heard(data.utterances)], bool)
    return (base_speakers(data.speakers) != speaker) & ~heard


def loso(data: LabelledSet, kind: str, mode: str, l2: float | None = None,
         augment: Sequence[LabelledSet] = ()) -> HeldOut:
    """Leave-one-speaker-out held-out logits over every speaker in ``data``; the ``augment`` rows (degraded
    copies) of every speaker but the held-out one join the training (``fold_rows``)."""
    n = len(data.utterances)
    out = HeldOut(np.zeros((n, len(CLASSES))), np.zeros(n), np.ones(n))
    extra = concat(augment) if augment else None
    for s in np.unique(data.speakers):
        test = data.speakers == s
        train_set = data.subset(~test)
        if extra is not None:
            train_set = concat([train_set, extra.subset(fold_rows(extra, s))])
        model = train(train_set, kind, l2)
        part = apply_model(model, data.subset(test), mode)
        out.logits[test], out.familiarity[test], out.ood[test] = part.logits, part.familiarity, part.ood
    return out


def cross_corpus(data: LabelledSet, train_corpus: str, kind: str, mode: str, l2: float | None = None
                 ) -> tuple[LabelledSet, HeldOut]:
    """Train on every speaker of ``train_corpus``; held-out logits on the other corpus's files."""
    train_rows = data.corpora == train_corpus
    if not train_rows.any() or train_rows.all():
        raise EmotionError(f"cross-corpus needs files of {train_corpus!r} and of another corpus")
    test = data.subset(~train_rows)
    return test, apply_model(train(data.subset(train_rows), kind, l2), test, mode)


def train(data: LabelledSet, kind: str, l2: float | None) -> EmotionModel:
    """The logistic model of ``kind`` on every row of ``data`` (the kind's default L2 unless given)."""
    return train_model(data.features, data.labels, list(data.speakers), l2=default_l2(kind) if l2 is None else l2,
                       feature_kind=kind)


def calibrated_probs(held: HeldOut, t_known: float, t_stranger: float) -> np.ndarray:
    """Posteriors with each row's temperature interpolated on its familiarity (as EmotionModel.temperature)."""
    t = t_stranger + (t_known - t_stranger) * np.clip(held.familiarity, 0.0, 1.0)
    return softmax(held.logits / t[:, None])


def calibrate(labels: np.ndarray, cold: HeldOut, warm: HeldOut) -> tuple[float, float]:
    """(temperature_known, temperature_stranger): fitted on warm rows the detector knows, and on cold rows."""
    known = warm.familiarity >= 0.5
    t_known = fit_temperature(warm.logits[known], labels[known]) if known.sum() >= 20 else 1.0
    return t_known, fit_temperature(cold.logits, labels)



def train_shipped(data: LabelledSet, kind: str, l2: float | None = None, info: dict[str, object] | None = None,
                  progress: Callable[[str], None] | None = None, augment: Sequence[LabelledSet] = ()
                  ) -> tuple[EmotionModel, dict[str, float]]:
    """The model trained on all of ``data`` (and the degraded copies ``augment``), its temperatures fitted on
    leave-one-speaker-out logits of the clean files.

    Returns the model and the held-out figures it records in ``info`` (cold and warm UAR, group5 UAR).
    """
    from attune_lab.emotion.measures import score

    say = progress or (lambda _msg: None)
    say(f"leave-one-speaker-out ({len(np.unique(data.speakers))} speakers), cold")
    cold = loso(data, kind, "cold", l2, augment)
    say("leave-one-speaker-out, warm")
    warm = loso(data, kind, "warm", l2, augment)
    t_known, t_stranger = calibrate(data.labels, cold, warm)
    figures: dict[str, float] = {}
    for mode, held in (("cold", cold), ("warm", warm)):
        m = score(data.labels, calibrated_probs(held, t_known, t_stranger))
        for key in ("uar", "group5_uar", "valence_uar", "arousal_uar", "class4_uar", "sad_recall", "ece"):
            figures[f"loso_{mode}_{key}"] = round(float(m[key]), 4)  # type: ignore[arg-type]
    model = train(concat([data, *augment]), kind, l2)
    corpora = sorted(set(data.corpora))
    model = replace(model, temperature_known=t_known, temperature_stranger=t_stranger,
                    info={**model.info, **figures, "corpora": corpora, **(info or {})})
    return model, figures
