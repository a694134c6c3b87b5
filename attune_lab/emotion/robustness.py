"""Emotion figures on degraded audio (``eval-emotion --degraded``) and the degraded copies as training data.

The degraded sets are folders ``degrade-emotion`` writes (``<dir>/<condition>/``, same file names as the clean
corpora). ``condition_set`` reads one as a ``LabelledSet`` in the clean set's row order, each speaker tagged
``<speaker>@<condition>`` (a channel is its own voice to the speaker normaliser). ``evaluate_conditions`` runs
leave-one-speaker-out once per speaker: the model trained on the other speakers' clean files (plus their copies
under the ``augment`` conditions) reads the held-out speaker's clean file and each degraded copy, cold and warm.
Temperatures come from the clean held-out logits only, as a shipped model's do, so the degraded reliability
diagrams show what a caller on a phone line would be told.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from attune.backends.emotion.hybrid import hybrid_probs
from attune.backends.emotion.labels import CLASSES, GROUP5, Utterance, grouping_matrix
from attune.backends.emotion.whisper_head import feature_kind
from attune.core.errors import AudioInputError
from attune_lab.emotion import evaluation as ev
from attune_lab.emotion.dataset import LabelledSet, list_utterances
from attune_lab.emotion.measures import score

CLEAN = "clean"
_G5 = grouping_matrix(GROUP5)


def condition_set(clean: LabelledSet, degraded_dir: Path, condition: str, kind: str, models_dir: Path
                  ) -> LabelledSet:
    """Features of the degraded copies under ``degraded_dir/condition`` in ``clean``'s row order."""
    folder = Path(degraded_dir) / condition
    found = {u.path.name: u for u in list_utterances([folder])}
    missing = [u.path.name for u in clean.utterances if u.path.name not in found]
    if missing:
        raise AudioInputError(f"{folder} lacks {len(missing)} of the clean files (e.g. {missing[0]}); "
                              "write them with `run_agent.py degrade-emotion`")
    utterances: list[Utterance] = [replace(found[u.path.name], speaker=f"{u.speaker}@{condition}")
                                   for u in clean.utterances]
    return ev.features_for(utterances, kind, models_dir)


def held_out_conditions(clean: LabelledSet, tests: dict[str, LabelledSet], kind: str,
                        augment: Sequence[LabelledSet] = (), l2: float | None = None
                        ) -> dict[str, dict[str, ev.HeldOut]]:
    """{condition: {mode: HeldOut}} for ``clean`` and each of ``tests`` (rows aligned with ``clean``), one model
    per held-out speaker trained on the others' clean rows and their ``augment`` rows (``ev.fold_rows``: none
    with the held-out voice in its babble)."""
    train = ev.concat([clean, *augment])
    sets = {CLEAN: clean, **tests}
    n = len(clean.utterances)
    out = {c: {m: ev.HeldOut(np.zeros((n, len(CLASSES))), np.zeros(n), np.ones(n)) for m in ev.MODES}
           for c in sets}
    for s in np.unique(clean.speakers):
        model = ev.train(train.subset(ev.fold_rows(train, s)), kind, l2)
        rows = clean.speakers == s
        for c, data in sets.items():
            for m in ev.MODES:
                part = ev.apply_model(model, data.subset(rows), m)
                h = out[c][m]
                h.logits[rows], h.familiarity[rows], h.ood[rows] = part.logits, part.familiarity, part.ood
    return out


def _figures(labels: np.ndarray, probs: np.ndarray, trust: np.ndarray, corpora: np.ndarray) -> dict[str, object]:
    """Per corpus: score() of the posteriors, plus the ECE and mean of the confidence after the familiarity
    discount (``trust``: what the backend would report before the audio-quality factor)."""
    out: dict[str, object] = {}
    for c in ["all", *sorted(set(corpora))]:
        sel = np.ones(len(labels), bool) if c == "all" else corpora == c
        m = score(labels[sel], probs[sel])
        conf = (probs[sel] @ _G5).max(axis=1) * trust[sel]
        discounted = score(labels[sel], probs[sel], conf)
        m["ece_trust"], m["mean_trust"] = discounted["ece"], discounted["mean_confidence"]
        m["reliability_trust"] = discounted["reliability"]
        out[c] = m
    return out


def evaluate_conditions(backend: str, clean: dict[str, LabelledSet], tests: dict[str, dict[str, LabelledSet]],
                        augment: dict[str, list[LabelledSet]], encoder: str, modes: Sequence[str],
                        neural_weight: float) -> dict[str, dict[str, object]]:
    """{mode: {condition: {all|corpus: figures}}} of a learned backend (prosodic, whisper or hybrid) clean and
    under each degradation; ``clean``/``tests``/``augment`` are keyed by feature kind."""
    neural = feature_kind(encoder)
    held = {kind: held_out_conditions(data, {c: t[kind] for c, t in tests.items()}, kind, augment.get(kind, ()))
            for kind, data in clean.items()}
    any_set = next(iter(clean.values()))
    labels, corpora = any_set.labels, any_set.corpora
    temps = {kind: ev.calibrate(labels, h[CLEAN]["cold"], h[CLEAN]["warm"]) for kind, h in held.items()}
    out: dict[str, dict[str, object]] = {m: {} for m in modes}
    for mode in modes:
        for cond in [CLEAN, *tests]:
            probs = {kind: ev.calibrated_probs(held[kind][cond][mode], *temps[kind]) for kind in held}
            trust = held[neural][cond][mode].ood if neural in held else held["prosodic"][cond][mode].ood
            if backend == "hybrid":  # fused as HybridBackend does: each side weighted by its familiarity too
                p = hybrid_probs(probs[neural], probs["prosodic"], neural_weight, trust,
                                 held["prosodic"][cond][mode].ood)
            else:
                p = probs[neural if backend == "whisper" else "prosodic"]
            out[mode][cond] = _figures(labels, p, trust, corpora)
    return out
