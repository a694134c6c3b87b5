"""Evaluation and training on EmoDB-style folders (files named SSTTTEV.wav: speaker, text, emotion letter, version).

``load_corpus`` reads a folder into features, labels and speaker ids; ``evaluate_model`` scores the shipped
model with unsupervised per-speaker normalisation (each test speaker's statistics come from that speaker's own
files, no labels); ``cross_validate`` retrains leaving one speaker out at a time, the honest figure for unseen
speakers; ``evaluate_backend`` scores any backend through ``analyze`` via the taxonomy. Metrics: 7-class
unweighted average recall (UAR), per-class recall, confusion matrix, and binary arousal UAR.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from attune.backends.emotion.features import extract_features
from attune.backends.emotion.model import (
    CLASSES,
    EMODB_CODES,
    HIGH_AROUSAL,
    LOW_AROUSAL,
    EmotionModel,
    fit_temperature,
    normalize_by_speaker,
    train_model,
)
from attune.core.audio import load_wav
from attune.core.emotion import EmotionCategory, EmotionResult
from attune.core.errors import AudioInputError

E = EmotionCategory
# A taxonomy category read back as an EmoDB class, for backends that only give categories.
CATEGORY_CLASS: dict[EmotionCategory, str] = {
    **dict.fromkeys((E.ANGRY, E.FRUSTRATED, E.IMPATIENT, E.CONFIDENT), "anger"),
    **dict.fromkeys((E.ANXIOUS, E.NERVOUS, E.PANICKED, E.STRESSED, E.CONFUSED), "fear"),
    **dict.fromkeys((E.HAPPY, E.EXCITED, E.AMUSED, E.PLAYFUL, E.FLIRTY, E.CURIOUS), "happiness"),
    **dict.fromkeys((E.BORED, E.TIRED), "boredom"),
    **dict.fromkeys((E.SAD, E.DISAPPOINTED, E.HOPELESS, E.LONELY), "sadness"),
    **dict.fromkeys((E.NEUTRAL, E.CALM, E.CONTENT, E.THOUGHTFUL, E.AFFECTIONATE), "neutral"),
}


@dataclass(frozen=True)
class Corpus:
    files: tuple[Path, ...]
    features: np.ndarray  # (n, N_FEATURES)
    labels: np.ndarray  # class index into CLASSES
    speakers: tuple[str, ...]


def parse_name(path: Path) -> tuple[str, int] | None:
    """(speaker id, class index) from an EmoDB file name such as ``03a01Wa.wav``; None if it is not one."""
    stem = path.stem
    if len(stem) < 6 or stem[5] not in EMODB_CODES:
        return None
    return stem[:2], EMODB_CODES.index(stem[5])


def corpus_files(data_dir: str | Path) -> list[Path]:
    folder = Path(data_dir)
    if not folder.is_dir():
        raise AudioInputError(f"data folder not found: {folder}")
    files = [p for p in sorted(folder.glob("*.wav")) if parse_name(p)]
    if not files:
        raise AudioInputError(f"no EmoDB-named WAV files (SSTTTEV.wav) in {folder}")
    return files


def load_corpus(data_dir: str | Path) -> Corpus:
    """Features of every EmoDB-named WAV in ``data_dir``."""
    files = corpus_files(data_dir)
    feats, labels, speakers = [], [], []
    for f in files:
        audio, rate = load_wav(f)
        feats.append(extract_features(audio, rate))
        spk, label = parse_name(f) or ("", 0)
        labels.append(label)
        speakers.append(spk)
    return Corpus(tuple(files), np.array(feats), np.array(labels), tuple(speakers))


def metrics(true: np.ndarray, pred: np.ndarray, arousal_score: np.ndarray) -> dict[str, object]:
    """UAR, per-class recall, confusion matrix (rows true, columns predicted) and binary arousal UAR.

    ``arousal_score`` > 0.5 counts as high arousal; only W/A/F (high) and L/T (low) files enter arousal UAR.
    """
    k = len(CLASSES)
    confusion = np.zeros((k, k), int)
    np.add.at(confusion, (true, pred), 1)
    present = confusion.sum(axis=1) > 0
    recall = np.where(present, np.diag(confusion) / np.maximum(confusion.sum(axis=1), 1), np.nan)
    hi_idx = [CLASSES.index(c) for c in HIGH_AROUSAL]
    lo_idx = [CLASSES.index(c) for c in LOW_AROUSAL]
    is_hi, is_lo = np.isin(true, hi_idx), np.isin(true, lo_idx)
    said_hi = arousal_score > 0.5
    parts = [float(np.mean(said_hi[is_hi]))] if is_hi.any() else []
    parts += [float(np.mean(~said_hi[is_lo]))] if is_lo.any() else []
    return {
        "uar": float(np.nanmean(recall)),
        "arousal_uar": float(np.mean(parts)) if parts else float("nan"),
        "accuracy": float(np.mean(true == pred)),
        "per_class": {c: (None if np.isnan(r) else round(float(r), 4)) for c, r in zip(CLASSES, recall, strict=True)},
        "confusion": confusion.tolist(),
        "classes": list(CLASSES),
        "n_files": int(len(true)),
    }


def _arousal_from_probs(probs: np.ndarray) -> np.ndarray:
    hi = probs[:, [CLASSES.index(c) for c in HIGH_AROUSAL]].sum(axis=1)
    lo = probs[:, [CLASSES.index(c) for c in LOW_AROUSAL]].sum(axis=1)
    return hi / np.maximum(hi + lo, 1e-12)


def evaluate_model(model: EmotionModel, corpus: Corpus) -> dict[str, object]:
    """Score ``model`` on ``corpus`` with unsupervised per-speaker normalisation (speaker ids from file names)."""
    probs = model.probabilities(normalize_by_speaker(corpus.features, corpus.speakers))
    return metrics(corpus.labels, probs.argmax(axis=1), _arousal_from_probs(probs))


def loso_logits(corpus: Corpus, l2: float = 0.003, speaker_norm: bool = True) -> np.ndarray:
    """Held-out class logits of every file: for each speaker, a model trained on the other speakers.

    With ``speaker_norm`` the test speaker is z-scored against their own files (unsupervised); without it
    against the training population only, as a fresh detector sees a stranger's first utterance.
    """
    spk = np.asarray(corpus.speakers)
    logits = np.zeros((len(spk), len(CLASSES)))
    for s in np.unique(spk):
        test = spk == s
        model = train_model(corpus.features[~test], corpus.labels[~test], list(spk[~test]), l2=l2)
        z = (normalize_by_speaker(corpus.features[test], list(spk[test])) if speaker_norm
             else model.normalizer().normalize(corpus.features[test]))
        logits[test] = model.logits(z)
    return logits


def _softmax(logits: np.ndarray) -> np.ndarray:
    s = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(s)
    return p / p.sum(axis=1, keepdims=True)


def cross_validate(corpus: Corpus, l2: float = 0.003, speaker_norm: bool = True) -> dict[str, object]:
    """Leave-one-speaker-out metrics (see ``loso_logits``); argmax and arousal are temperature-free."""
    probs = _softmax(loso_logits(corpus, l2, speaker_norm))
    out = metrics(corpus.labels, probs.argmax(axis=1), _arousal_from_probs(probs))
    out["protocol"] = "leave-one-speaker-out"
    return out


def train_calibrated(corpus: Corpus, l2: float = 0.003, info: dict[str, object] | None = None
                     ) -> tuple[EmotionModel, dict[str, object]]:
    """The model trained on all of ``corpus``, with temperatures fitted on leave-one-speaker-out logits.

    Returns the model and the cross-validation metrics (speaker-normalised) it reports in its ``info``.
    """
    known = loso_logits(corpus, l2, speaker_norm=True)
    stranger = loso_logits(corpus, l2, speaker_norm=False)
    probs = _softmax(known)
    cv = metrics(corpus.labels, probs.argmax(axis=1), _arousal_from_probs(probs))
    meta = {"loso_uar": round(float(cv["uar"]), 4),  # type: ignore[arg-type]
            "loso_arousal_uar": round(float(cv["arousal_uar"]), 4), **(info or {})}  # type: ignore[arg-type]
    model = train_model(corpus.features, corpus.labels, corpus.speakers, l2=l2, info=meta)
    model = replace(model, temperature_known=fit_temperature(known, corpus.labels),
                    temperature_stranger=fit_temperature(stranger, corpus.labels))
    return model, cv


def evaluate_backend(analyze: Callable[[np.ndarray, int], EmotionResult], files: Sequence[Path]
                     ) -> dict[str, object]:
    """Score any backend's ``analyze`` through the taxonomy (top category -> class, arousal dimension)."""
    true, pred, arousal = [], [], []
    for f in files:
        audio, rate = load_wav(f)
        result = analyze(audio, rate)
        true.append((parse_name(f) or ("", 0))[1])
        pred.append(CLASSES.index(CATEGORY_CLASS.get(result.primary.emotion, "neutral")))
        arousal.append(result.dimensions.arousal)
    return metrics(np.array(true), np.array(pred), np.array(arousal))


def format_report(m: dict[str, object]) -> str:
    """Human-readable metrics: UARs, per-class recall and the confusion matrix."""
    lines = [f"files: {m['n_files']}", f"7-class UAR: {m['uar']:.3f} (chance 0.143)",
             f"arousal UAR (W,A,F vs L,T): {m['arousal_uar']:.3f}", f"accuracy: {m['accuracy']:.3f}",
             "per-class recall:"]
    per_class = m["per_class"]
    assert isinstance(per_class, dict)
    lines += [f"  {c:<10} {'-' if r is None else f'{r:.2f}'}" for c, r in per_class.items()]
    lines.append("confusion (rows true, columns predicted): " + " ".join(c[:4] for c in CLASSES))
    confusion = m["confusion"]
    assert isinstance(confusion, list)
    lines += [f"  {c[:4]:<5} " + " ".join(f"{v:4d}" for v in row) for c, row in zip(CLASSES, confusion, strict=True)]
    return "\n".join(lines)
