"""``eval-emotion``'s figures: every protocol and mode for one backend, as one JSON-ready dict.

For the learned backends (``prosodic``, ``whisper``, ``hybrid``) models are retrained without the test
speakers: leave-one-speaker-out over all speakers of the folders (reported per corpus) and, with both corpora,
across corpora (train on one, test on the other). Temperatures are fitted on the held-out logits of the same
protocol (one parameter per familiarity end; slightly optimistic for ECE, not for UAR). Other backends
(``emotion2vec``) run as shipped through ``analyze``, one fresh backend per file (cold) or per speaker (warm).
``cpu_per_turn`` times the shipped backend on real files: whole analysis and, for the Whisper heads, the
end-of-turn cost when the ASR's encoder pass is reused.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from attune.backends.emotion.hybrid import hybrid_probs
from attune.backends.emotion.labels import CLASSES, Utterance
from attune.backends.emotion.posterior import CLASS_CATEGORIES
from attune.backends.emotion.whisper_head import feature_kind
from attune.core.emotion import EmotionResult
from attune_lab.emotion import evaluation as ev
from attune_lab.emotion.dataset import LabelledSet, load_16k
from attune_lab.emotion.measures import score

LEARNED = ("prosodic", "whisper", "hybrid")
_CATEGORY_CLASS = {cat: CLASSES.index(cls) for cls, cats in CLASS_CATEGORIES.items() for cat in cats}


class HeldOutCache:
    """Held-out (labels, {mode: calibrated probs}) per feature kind and protocol, each computed once, with each
    row's familiarity factor under the model that read it (``familiar``)."""

    def __init__(self, sets: dict[str, LabelledSet]) -> None:
        self.sets = sets
        self._done: dict[tuple[str, str | None], tuple[np.ndarray, dict[str, np.ndarray]]] = {}
        self._familiar: dict[tuple[str, str | None], np.ndarray] = {}

    def get(self, kind: str, mode: str, train_corpus: str | None) -> tuple[np.ndarray, np.ndarray]:
        """(labels, calibrated probs) of one feature kind under a protocol (None: LOSO) and mode."""
        key = (kind, train_corpus)
        if key not in self._done:
            data = self.sets[kind]
            if train_corpus is None:
                cold, warm = ev.loso(data, kind, "cold"), ev.loso(data, kind, "warm")
                labels = data.labels
            else:
                test, cold = ev.cross_corpus(data, train_corpus, kind, "cold")
                _, warm = ev.cross_corpus(data, train_corpus, kind, "warm")
                labels = test.labels
            t_known, t_stranger = ev.calibrate(labels, cold, warm)
            self._done[key] = (labels, {m: ev.calibrated_probs(h, t_known, t_stranger)
                                        for m, h in (("cold", cold), ("warm", warm))})
            self._familiar[key] = cold.ood
        labels, probs = self._done[key]
        return labels, probs[mode]

    def familiar(self, kind: str, train_corpus: str | None) -> np.ndarray:
        """Each held-out row's ``familiar_factor`` (computed by ``get``)."""
        return self._familiar[(kind, train_corpus)]


def learned_probs(backend: str, cache: HeldOutCache, encoder: str, mode: str, train_corpus: str | None,
                  neural_weight: float) -> tuple[np.ndarray, np.ndarray]:
    """Held-out (labels, posteriors) of a learned backend; the hybrid fuses the other two as its backend does."""
    neural_kind = feature_kind(encoder)
    if backend == "prosodic":
        return cache.get("prosodic", mode, train_corpus)
    if backend == "whisper":
        return cache.get(neural_kind, mode, train_corpus)
    labels, p_probs = cache.get("prosodic", mode, train_corpus)
    _, n_probs = cache.get(neural_kind, mode, train_corpus)
    return labels, hybrid_probs(n_probs, p_probs, neural_weight, cache.familiar(neural_kind, train_corpus),
                                cache.familiar("prosodic", train_corpus))


def _figures(labels: np.ndarray, probs: np.ndarray, corpora: np.ndarray) -> dict[str, object]:
    out: dict[str, object] = {"all": score(labels, probs)}
    for c in sorted(set(corpora)):
        sel = corpora == c
        out[c] = score(labels[sel], probs[sel])
    return out


def evaluate_learned(backend: str, sets: dict[str, LabelledSet], encoder: str, modes: tuple[str, ...],
                     neural_weight: float) -> dict[str, object]:
    """{mode: {"loso": {corpus|all: figures}, "cross:<train>-><test>": figures}}."""
    any_set = next(iter(sets.values()))
    corpora = any_set.corpora
    names = sorted(set(corpora))
    out: dict[str, object] = {}
    cache = HeldOutCache(sets)
    for mode in modes:
        per: dict[str, object] = {}
        labels, probs = learned_probs(backend, cache, encoder, mode, None, neural_weight)
        per["loso"] = _figures(labels, probs, corpora)
        if len(names) > 1:
            for train in names:
                labels, probs = learned_probs(backend, cache, encoder, mode, train, neural_weight)
                test = next(n for n in names if n != train)
                per[f"cross:{train}->{test}"] = score(labels, probs)
        out[mode] = per
    return out


def result_probs(result: EmotionResult) -> np.ndarray:
    """Class posteriors read back from a result's top-3 categories (for backends without class posteriors)."""
    p = np.full(len(CLASSES), 1e-3)
    for pred in result.predictions:
        p[_CATEGORY_CLASS.get(pred.emotion, CLASSES.index("neutral"))] += pred.confidence
    return p / p.sum()


def evaluate_shipped(make: Callable[[], object], utterances: list[Utterance], modes: tuple[str, ...]
                     ) -> dict[str, object]:
    """Any backend through ``analyze``: cold = a fresh backend per file, warm = one per speaker, shuffled."""
    labels = np.array([u.label for u in utterances])
    corpora = np.array([u.corpus for u in utterances])
    out: dict[str, object] = {}
    rng = np.random.default_rng(ev.WARM_ORDER_SEED)
    for mode in modes:
        probs = np.zeros((len(utterances), len(CLASSES)))
        conf = np.zeros(len(utterances))
        backends: dict[str, object] = {}
        order = rng.permutation(len(utterances)) if mode == "warm" else np.arange(len(utterances))
        for i in order:
            u = utterances[i]
            if mode == "cold" or u.speaker not in backends:
                backends[u.speaker] = make()
            b = backends[u.speaker]
            r = b.analyze(load_16k(u.path), 16000)  # type: ignore[attr-defined]
            probs[i], conf[i] = result_probs(r), r.confidence
        out[mode] = {"shipped": {**_figures(labels, probs, corpora), "all": score(labels, probs, conf)}}
    return out


def cpu_per_turn(backend: object, utterances: list[Utterance], n: int = 20) -> dict[str, float]:
    """CPU ms of the shipped backend per turn at the end of a turn, over the first ``n`` files (p50, p95)."""
    picks = utterances[:: max(1, len(utterances) // n)][:n]
    clips = [load_16k(u.path) for u in picks]
    analyze = backend.analyze  # type: ignore[attr-defined]
    analyze(clips[0], 16000)  # warm-up: model load, FFT plans
    whole = []
    for x in clips:
        t0 = time.process_time()
        analyze(x, 16000)
        whole.append((time.process_time() - t0) * 1000.0)
    out = {"n": float(len(clips)), "whole_p50_ms": float(np.median(whole)),
           "whole_p95_ms": float(np.percentile(whole, 95))}
    neural = getattr(backend, "neural", backend)
    reuses_asr = getattr(neural, "layer", None) is None  # a middle-layer head (tiny.en_l2) runs its own pass
    if hasattr(backend, "analyze_states") and hasattr(neural, "encoder") and reuses_asr:
        states = [neural.encoder.states(x) for x in clips]
        reuse = []
        for s, x in zip(states, clips, strict=True):
            t0 = time.process_time()
            backend.analyze_states(s, x)
            reuse.append((time.process_time() - t0) * 1000.0)
        out["encoder_reused_p50_ms"] = float(np.median(reuse))
        out["encoder_reused_p95_ms"] = float(np.percentile(reuse, 95))
    return out


def feature_sets(backend: str, utterances: list[Utterance], encoder: str, models_dir: Path
                 ) -> dict[str, LabelledSet]:
    kinds = {"prosodic": ["prosodic"], "whisper": [feature_kind(encoder)],
             "hybrid": ["prosodic", feature_kind(encoder)]}[backend]
    return {k: ev.features_for(utterances, k, models_dir) for k in kinds}
