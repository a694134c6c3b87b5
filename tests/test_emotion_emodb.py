"""Real acted speech (EmoDB dev speakers; skipped without the data): the estimates move the right way."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import run_agent
from attune.backends.emotion import evaluation as ev
from attune.backends.emotion.model import CLASSES
from attune.backends.emotion.prosodic import ProsodicBackend
from attune.core.audio import load_wav


@pytest.fixture(scope="session")
def corpus(emodb_dir: Path) -> ev.Corpus:
    return ev.load_corpus(emodb_dir)


def test_angry_is_more_aroused_than_sad_for_every_speaker(emodb_dir: Path) -> None:
    """Fresh backend per speaker, no speaker statistics beyond what it hears: W files beat T files on arousal."""
    by_speaker: dict[str, dict[str, list[float]]] = {}
    for path in ev.corpus_files(emodb_dir):
        spk, label = ev.parse_name(path) or ("", 0)
        if CLASSES[label] not in ("anger", "sadness"):
            continue
        by_speaker.setdefault(spk, {"anger": [], "sadness": []})
    for spk, groups in by_speaker.items():
        backend = ProsodicBackend()
        backend.adapt = False  # judge each file against the population prior only
        for path in sorted(emodb_dir.glob(f"{spk}*.wav")):
            label = CLASSES[(ev.parse_name(path) or ("", 0))[1]]
            if label in groups:
                audio, rate = load_wav(path)
                groups[label].append(backend.analyze(audio, rate).dimensions.arousal)
        assert np.median(groups["anger"]) > np.median(groups["sadness"]) + 0.2, spk
        assert min(groups["anger"]) > np.median(groups["sadness"]), spk


def test_leave_one_speaker_out_beats_chance_by_a_margin(corpus: ev.Corpus) -> None:
    m = ev.cross_validate(corpus)
    assert m["n_files"] == len(corpus.labels) >= 200
    assert m["uar"] > 0.45  # chance is 1/7
    assert m["arousal_uar"] > 0.85
    stranger = ev.cross_validate(corpus, speaker_norm=False)  # no statistics of the test speaker at all
    assert stranger["uar"] > 0.35 and stranger["arousal_uar"] > 0.8


def test_shipped_model_matches_its_features(corpus: ev.Corpus) -> None:
    backend = ProsodicBackend()
    assert backend.model is not None
    m = ev.evaluate_model(backend.model, corpus)
    assert m["uar"] > 0.8  # trained on these speakers: a sanity check of the shipped file, not a claim


def test_metrics_on_a_known_confusion() -> None:
    true = np.array([0, 0, 1, 1, 5, 5, 6])
    pred = np.array([0, 1, 1, 1, 5, 0, 6])
    m = ev.metrics(true, pred, np.array([0.9, 0.8, 0.2, 0.3, 0.1, 0.6, 0.5]))
    per_class = m["per_class"]
    assert isinstance(per_class, dict)
    assert per_class["anger"] == 0.5 and per_class["disgust"] is None
    assert m["uar"] == pytest.approx((0.5 + 1.0 + 0.5 + 1.0) / 4)
    assert m["arousal_uar"] == pytest.approx((1.0 + 0.75) / 2)  # W high; L,T low except one T at 0.6


def test_cli_eval_json(emodb_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_agent.main(["eval-emotion", "--data", str(emodb_dir), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"uar", "arousal_uar", "per_class", "n_files"} <= set(out) and out["n_files"] >= 200


def test_cli_train_writes_a_loadable_model(emodb_dir: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "model.json"
    assert run_agent.main(["train-emotion", "--data", str(emodb_dir), "--out", str(out)]) == 0
    assert ProsodicBackend(model_path=out).learned
    assert "leave-one-speaker-out" in capsys.readouterr().out


def test_cli_bench_prints_figures(emodb_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_agent.main(["bench-emotion", "--seconds", "5", "--data", str(emodb_dir), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["hops"] == 10 and figures["results"] == 9 and figures["cpu_ms_median"] > 0


def test_streamed_anger_reads_more_aroused_than_streamed_sadness(emodb_dir: Path) -> None:
    """The streaming path (per-hop tracks, 1 s windows) keeps the arousal ordering of whole files."""
    from attune.backends.emotion.detector import VoiceEmotionDetector, aggregate_results

    def turn_arousal(code: str) -> float:
        det = VoiceEmotionDetector()
        det.backend.adapt = False  # type: ignore[attr-defined]
        results = []
        for path in sorted(emodb_dir.glob(f"03*{code}?.wav"))[:4]:
            audio, rate = load_wav(path)
            det.reset_stream()
            results += det.analyze_streaming(audio, rate)
        agg = aggregate_results(results)
        assert agg is not None
        return agg.dimensions.arousal

    assert turn_arousal("W") > turn_arousal("T") + 0.2
