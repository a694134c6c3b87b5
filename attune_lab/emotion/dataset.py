"""Labelled dev corpora as feature matrices: the files of EmoDB and RAVDESS folders, and a feature cache.

``list_utterances(dirs)`` reads any mix of EmoDB- and RAVDESS-named folders; ``feature_matrix`` computes one
feature vector per file (prosodic DSP features or pooled Whisper encoder states) and keeps them in an NPZ
cache outside the repository (``~/.cache/attune/emotion-features``), keyed by file name, size and mtime, so
training and evaluation re-read the audio only when it changed. The data itself never enters the repository.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attune.backends.emotion.labels import Utterance, parse_name
from attune.core.audio import SAMPLE_RATE, load_wav, resample
from attune.core.errors import AudioInputError

log = logging.getLogger("attune.emotion.dataset")

CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "attune" / "emotion-features"


@dataclass(frozen=True)
class LabelledSet:
    """Utterances with one feature row each: ``features`` (n, d), ``labels`` (n,), ``speakers`` (n,)."""

    utterances: tuple[Utterance, ...]
    features: np.ndarray

    @property
    def labels(self) -> np.ndarray:
        return np.array([u.label for u in self.utterances], int)

    @property
    def speakers(self) -> np.ndarray:
        return np.array([u.speaker for u in self.utterances])

    @property
    def corpora(self) -> np.ndarray:
        return np.array([u.corpus for u in self.utterances])

    def subset(self, mask: np.ndarray) -> LabelledSet:
        idx = np.flatnonzero(mask)
        return LabelledSet(tuple(self.utterances[i] for i in idx), self.features[idx])


def list_utterances(dirs: Sequence[str | Path]) -> list[Utterance]:
    """Every EmoDB- or RAVDESS-named WAV in the folders, in name order; AudioInputError if a folder has none."""
    out: list[Utterance] = []
    for d in dirs:
        folder = Path(d)
        if not folder.is_dir():
            raise AudioInputError(f"data folder not found: {folder}")
        found = [u for u in (parse_name(p) for p in sorted(folder.glob("*.wav"))) if u is not None]
        if not found:
            raise AudioInputError(f"no EmoDB (SSTTTEV.wav) or RAVDESS (MM-VV-EE-II-SS-RR-AA.wav) files in {folder}")
        out.extend(found)
    return out


def load_16k(path: Path) -> np.ndarray:
    audio, rate = load_wav(path)
    return resample(audio, rate, SAMPLE_RATE) if rate != SAMPLE_RATE else audio


def _key(utterances: Sequence[Utterance], kind: str) -> str:
    h = hashlib.sha256(kind.encode())
    for u in utterances:
        st = u.path.stat()
        h.update(f"{u.path.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def feature_matrix(utterances: Sequence[Utterance], kind: str, extract: Callable[[np.ndarray], np.ndarray],
                   cache_dir: Path | None = CACHE_DIR) -> LabelledSet:
    """One row of ``extract(audio16k)`` per utterance, cached under ``cache_dir`` (None: no cache)."""
    path = None if cache_dir is None else cache_dir / f"{kind}-{_key(utterances, kind)}.npz"
    if path is not None and path.is_file():
        return LabelledSet(tuple(utterances), np.load(path)["features"])
    log.info("computing %s features for %d files", kind, len(utterances))
    rows = np.stack([np.asarray(extract(load_16k(u.path)), np.float64) for u in utterances])
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, features=rows)
    return LabelledSet(tuple(utterances), rows)
