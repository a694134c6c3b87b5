"""The emotion classes the learned backends predict, how the two dev corpora name them, and the groupings the
benchmarks score (the strategy's five groups, valence, arousal and the field's usual four classes).

Both corpora map into one label space, ``CLASSES``: EmoDB's seven (file ``SSTTTEV.wav``, emotion letter at
index 5) and RAVDESS's eight (``MM-VV-EE-II-SS-RR-AA.wav``, field 3 the emotion, field 7 the actor), which
share five. ``parse_name`` reads either layout into an ``Utterance``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLASSES = ("anger", "boredom", "disgust", "fear", "happiness", "sadness", "neutral", "calm", "surprise")
EMODB_CODES = {"W": "anger", "L": "boredom", "E": "disgust", "A": "fear", "F": "happiness", "T": "sadness",
               "N": "neutral"}
RAVDESS_CODES = {"01": "neutral", "02": "calm", "03": "happiness", "04": "sadness", "05": "anger", "06": "fear",
                 "07": "disgust", "08": "surprise"}
_RAVDESS = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")

# The strategy's decision (issue 9): which of five groups the voice falls in.
GROUP5: dict[str, tuple[str, ...]] = {
    "negative_activated": ("anger", "fear", "disgust"),
    "negative_deactivated": ("sadness", "boredom"),
    "positive_activated": ("happiness", "surprise"),
    "positive_deactivated": ("calm",),
    "neutral": ("neutral",),
}
# Binary groupings; files of classes in neither side do not enter that measure.
VALENCE: dict[str, tuple[str, ...]] = {
    "pleasant": ("happiness", "surprise", "calm"),
    "unpleasant": ("anger", "fear", "sadness", "disgust", "boredom"),
}
AROUSAL: dict[str, tuple[str, ...]] = {
    "high": ("anger", "fear", "happiness", "surprise"),
    "low": ("sadness", "boredom", "calm"),
}
CLASS4: dict[str, tuple[str, ...]] = {
    "angry": ("anger",), "happy": ("happiness",), "sad": ("sadness",), "neutral": ("neutral", "calm"),
}
GROUPINGS: dict[str, dict[str, tuple[str, ...]]] = {"group5": GROUP5, "valence": VALENCE, "arousal": AROUSAL,
                                                     "class4": CLASS4}


@dataclass(frozen=True)
class Utterance:
    """One labelled file: its corpus, a speaker id unique across corpora and its class index into CLASSES."""

    path: Path
    corpus: str  # "emodb" | "ravdess"
    speaker: str  # e.g. "emodb:03", "ravdess:01"
    label: int


def parse_name(path: str | Path) -> Utterance | None:
    """The utterance an EmoDB or RAVDESS file name describes; None when the name is neither layout."""
    p = Path(path)
    stem = p.stem
    m = _RAVDESS.match(stem)
    if m:
        if m.group(3) not in RAVDESS_CODES:
            return None
        return Utterance(p, "ravdess", f"ravdess:{m.group(7)}", CLASSES.index(RAVDESS_CODES[m.group(3)]))
    if len(stem) >= 6 and stem[:2].isdigit() and stem[5] in EMODB_CODES:
        return Utterance(p, "emodb", f"emodb:{stem[:2]}", CLASSES.index(EMODB_CODES[stem[5]]))
    return None


def grouping_matrix(grouping: dict[str, tuple[str, ...]]) -> np.ndarray:
    """(len(CLASSES), n_groups) 0/1 matrix: class probabilities @ it = group probabilities."""
    m = np.zeros((len(CLASSES), len(grouping)))
    for j, members in enumerate(grouping.values()):
        for c in members:
            m[CLASSES.index(c), j] = 1.0
    return m


def group_of(label: int, grouping: dict[str, tuple[str, ...]]) -> int:
    """Index of the group a class belongs to, or -1 when it belongs to none (then it is not scored)."""
    name = CLASSES[label]
    for j, members in enumerate(grouping.values()):
        if name in members:
            return j
    return -1
