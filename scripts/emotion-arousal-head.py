"""Would an output trained on arousal itself read arousal better than the nine classes' posteriors summed?

Issue 20 asks arousal UAR >= 0.92 on unseen English speakers; the shipped hybrid gives ~0.91 (the ``arousal``
grouping of ``labels.py``: anger, fear, happiness, surprise against sadness, boredom, calm, summed from the
fused class posteriors). This trains, in every leave-one-speaker-out fold of ``eval-emotion``'s protocol (the
same rows, the same degraded copies, ``evaluation.fold_rows``), a binary arousal head beside each nine-class
head (the same logistic model and speaker normalisation, on the files whose class has an arousal side) and
prints, per condition, English cold:

- the shipped reading's arousal (and group5) UAR;
- each binary head alone, and the two fused by log-odds at the hybrid's weights;
- the class posteriors with their arousal split moved to each side's binary head (geometric blend ``alpha``)
  before the hybrid's fusion, with every figure the issue asks, so a gain on arousal is seen with its price.

Usage: .venv/bin/python scripts/emotion-arousal-head.py --degraded DIR [--data DIR ...] [--augment C ...]
(the degraded folder ``attune degrade-emotion`` writes; ~80 s on two cores).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from attune.backends.emotion.hybrid import hybrid_probs
from attune.backends.emotion.labels import AROUSAL, CLASSES, group_of, grouping_matrix
from attune.backends.emotion.model import fit_temperature, softmax
from attune.backends.emotion.whisper_head import feature_kind
from attune.config import REPO_ROOT, load_config
from attune_lab.emotion import benchmark as bm
from attune_lab.emotion import evaluation as ev
from attune_lab.emotion.dataset import LabelledSet, list_utterances
from attune_lab.emotion.measures import score
from attune_lab.emotion.robustness import CLEAN, condition_set, held_out_conditions

DATA = [REPO_ROOT.parent / "shared" / "data" / "emodb-dev", REPO_ROOT.parent / "shared" / "data" / "ravdess-dev"]
CONDITIONS = ("phone", "room", "babble20", "babble10")
SIDE = np.array([group_of(c, AROUSAL) for c in range(len(CLASSES))])  # 0 high, 1 low, -1 neither
_A = grouping_matrix(AROUSAL)


def arousal_labels(data: LabelledSet) -> LabelledSet:
    """The rows whose class has an arousal side, labelled with it (0 high, 1 low: two of ``CLASSES``'s indices),
    so ``evaluation.train`` fits the binary head with the nine-class head's model and normalisation; the other
    seven classes are absent from its training and keep no weight."""
    keep = SIDE[data.labels] >= 0
    rows = data.subset(keep)
    return LabelledSet(tuple(replace(u, label=int(SIDE[u.label])) for u in rows.utterances), rows.features)


def held_out(clean: LabelledSet, tests: dict[str, LabelledSet], augment: list[LabelledSet], kind: str
             ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Cold held-out ({condition: nine-class logits}, {condition: familiarity factor}, {condition: arousal
    logits}): the nine-class head's as ``eval-emotion`` computes them (``robustness.held_out_conditions``), the
    binary head's over the same folds (``evaluation.fold_rows``)."""
    nine = held_out_conditions(clean, tests, kind, augment)
    train = ev.concat([clean, *augment])
    sets = {CLEAN: clean, **tests}
    arousal = {c: np.zeros((len(clean.utterances), 2)) for c in sets}
    for s in np.unique(clean.speakers):
        binary = ev.train(arousal_labels(train.subset(ev.fold_rows(train, s))), kind, None)
        rows = clean.speakers == s
        for c, data in sets.items():
            arousal[c][rows] = ev.apply_model(binary, data.subset(rows), "cold").logits[:, :2]
    return ({c: h["cold"].logits for c, h in nine.items()}, {c: h["cold"].ood for c, h in nine.items()}, arousal)


def binary_uar(p_high: np.ndarray, labels: np.ndarray) -> float:
    y = SIDE[labels]
    keep = y >= 0
    pred = (p_high[keep] < 0.5).astype(int)
    return float(np.mean([np.mean(pred[y[keep] == j] == j) for j in (0, 1)]))


def move_split(p: np.ndarray, p_high: np.ndarray, alpha: float) -> np.ndarray:
    """Class posteriors whose high/low arousal split moves towards ``p_high`` (log-odds blend ``alpha``); the
    mass of the classes without a side, and each side's inner proportions, stay."""
    high, low = p @ _A[:, 0], p @ _A[:, 1]
    mass = np.maximum(high + low, 1e-12)
    r = np.clip(high / mass, 1e-9, 1 - 1e-9)
    q = np.clip(p_high, 1e-9, 1 - 1e-9)
    lo = (1 - alpha) * np.log(r / (1 - r)) + alpha * np.log(q / (1 - q))
    new_high = mass / (1 + np.exp(-lo))
    out = p.copy()
    out[:, SIDE == 0] *= (new_high / np.maximum(high, 1e-12))[:, None]
    out[:, SIDE == 1] *= ((mass - new_high) / np.maximum(low, 1e-12))[:, None]
    return out / out.sum(axis=1, keepdims=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", action="append", default=None)
    ap.add_argument("--degraded", required=True, help="the folder `attune degrade-emotion` wrote")
    ap.add_argument("--augment", action="append", default=None, help=f"default: {', '.join(CONDITIONS)}")
    args = ap.parse_args()
    config = load_config()
    weight = config.emotion.hybrid_neural_weight
    neural, prosodic = feature_kind("tiny.en_l2"), "prosodic"
    utterances = list_utterances([Path(d) for d in (args.data or DATA)])
    sets = bm.feature_sets("hybrid", utterances, "tiny.en_l2", config.models_dir())
    tests = {c: {k: condition_set(s, Path(args.degraded), c, k, config.models_dir()) for k, s in sets.items()}
             for c in CONDITIONS}
    augment = {k: [tests[c][k] for c in (args.augment or CONDITIONS)] for k in sets}
    held = {k: held_out(s, {c: t[k] for c, t in tests.items()}, augment[k], k) for k, s in sets.items()}
    labels = sets[prosodic].labels
    en = sets[prosodic].corpora == "ravdess"
    side = SIDE[labels]
    temp = {k: fit_temperature(h[0][CLEAN], labels) for k, h in held.items()}
    temp_a = {k: fit_temperature(h[2][CLEAN][side >= 0], side[side >= 0]) for k, h in held.items()}

    def probs(k: str, c: str) -> np.ndarray:
        return softmax(held[k][0][c] / temp[k])

    def high(k: str, c: str) -> np.ndarray:
        return softmax(held[k][2][c] / temp_a[k])[:, 0]

    def fused(c: str, n: np.ndarray, p: np.ndarray) -> np.ndarray:
        return hybrid_probs(n, p, weight, held[neural][1][c], held[prosodic][1][c])

    print(f"English cold, leave-one-speaker-out; hybrid weight {weight}; arousal UAR unless named")
    for c in (CLEAN, *CONDITIONS):
        m = score(labels[en], fused(c, probs(neural, c), probs(prosodic, c))[en])
        qn, qp = high(neural, c), high(prosodic, c)
        both = {w: 1 / (1 + np.exp(-(w * np.log(qn / (1 - qn)) + (1 - w) * np.log(qp / (1 - qp)))))
                for w in (0.5, weight)}
        print(f"{c:9s} shipped {m['arousal_uar']:.3f} (group5 {m['group5_uar']:.3f}) | binary: Whisper "
              f"{binary_uar(qn[en], labels[en]):.3f}, prosody {binary_uar(qp[en], labels[en]):.3f}, "
              + ", ".join(f"fused at {w} {binary_uar(q[en], labels[en]):.3f}" for w, q in both.items()))
    f = fused(CLEAN, probs(neural, CLEAN), probs(prosodic, CLEAN))
    read_high = (f @ _A)[:, 0] > (f @ _A)[:, 1]
    print("shipped, clean: read as high arousal, per class: " + ", ".join(
        f"{name} {np.mean(read_high[en & (labels == i)]):.2f}" for i, name in enumerate(CLASSES)
        if np.any(en & (labels == i))))
    for alpha in (0.5, 1.0):
        print(f"-- the split moved to the binary heads, alpha {alpha} (English cold; German 7-class)")
        for c in (CLEAN, *CONDITIONS):
            f = fused(c, move_split(probs(neural, c), high(neural, c), alpha),
                      move_split(probs(prosodic, c), high(prosodic, c), alpha))
            m, g = score(labels[en], f[en]), score(labels[~en], f[~en])
            print(f"{c:9s} arousal {m['arousal_uar']:.3f} group5 {m['group5_uar']:.3f} valence {m['valence_uar']:.3f}"
                  f" class4 {m['class4_uar']:.3f} sad {m['sad_recall']:.3f} ECE {m['ece']:.3f} | German {g['uar']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
