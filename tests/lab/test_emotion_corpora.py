"""Real acted speech (EmoDB and RAVDESS dev speakers; skipped without the data): held-out figures beat chance
by a margin, the estimates move the right way, and the commands print what the README says."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import run_agent
from attune.backends.emotion.labels import CLASSES
from attune.backends.emotion.prosodic import ProsodicBackend
from attune.config import Config
from attune.core.audio import load_wav
from attune_lab.emotion import evaluation as ev
from attune_lab.emotion.dataset import LabelledSet, list_utterances
from attune_lab.emotion.measures import score

LAYER = "real"  # STYLE.md layer 4: real models on real audio


@pytest.fixture(scope="session")
def prosodic_set(emodb_dir: Path, ravdess_dir: Path) -> LabelledSet:
    return ev.features_for(list_utterances([emodb_dir, ravdess_dir]), "prosodic", Config().models_dir())


def test_angry_is_more_aroused_than_sad_for_every_emodb_speaker(emodb_dir: Path) -> None:
    """Fresh backend per file, no speaker statistics: W files beat T files on arousal."""
    groups: dict[str, dict[str, list[float]]] = {}
    for u in list_utterances([emodb_dir]):
        if CLASSES[u.label] not in ("anger", "sadness"):
            continue
        backend = ProsodicBackend()
        backend.adapt = False
        audio, rate = load_wav(u.path)
        groups.setdefault(u.speaker, {"anger": [], "sadness": []})[CLASSES[u.label]].append(
            backend.analyze(audio, rate).dimensions.arousal)
    for spk, g in groups.items():
        assert np.median(g["anger"]) > np.median(g["sadness"]) + 0.2, spk


def test_prosodic_leave_one_speaker_out_beats_chance(prosodic_set: LabelledSet) -> None:
    for mode in ev.MODES:
        held = ev.loso(prosodic_set, "prosodic", mode)
        m = score(prosodic_set.labels, ev.calibrated_probs(held, 1.0, 1.0))
        assert m["n_files"] >= 600
        assert m["uar"] > 0.4 and m["arousal_uar"] > 0.8 and m["group5_uar"] > 0.5, (mode, m["uar"])
    test, held = ev.cross_corpus(prosodic_set, "emodb", "prosodic", "cold")
    assert set(test.corpora) == {"ravdess"}
    assert score(test.labels, ev.calibrated_probs(held, 1.0, 1.0))["arousal_uar"] > 0.6


def test_warm_beats_cold_on_emodb(prosodic_set: LabelledSet) -> None:
    emodb = prosodic_set.subset(prosodic_set.corpora == "emodb")
    uar = {mode: score(emodb.labels, ev.calibrated_probs(ev.loso(emodb, "prosodic", mode), 1.0, 1.0))["uar"]
           for mode in ev.MODES}
    assert uar["warm"] > uar["cold"]  # a speaker's own statistics help


def test_cli_eval_json_prints_every_measure(emodb_dir: Path, ravdess_dir: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert run_agent.main(["eval-emotion", "--data", str(emodb_dir), "--data", str(ravdess_dir), "--backend",
                           "prosodic", "--mode", "cold", "--cpu-files", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    cold = out["modes"]["cold"]
    assert {"loso", "cross:emodb->ravdess", "cross:ravdess->emodb"} <= set(cold)
    m = cold["loso"]["ravdess"]
    assert {"uar", "group5_uar", "valence_uar", "arousal_uar", "class4_uar", "ece", "reliability"} <= set(m)
    assert out["cpu_per_turn"]["whole_p50_ms"] > 0


def test_cli_eval_text_of_the_hybrid(ravdess_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_agent.main(["eval-emotion", "--data", str(ravdess_dir), "--backend", "hybrid", "--mode", "warm",
                           "--encoder", "tiny.en", "--cpu-files", "2"]) == 0  # the head that reuses the ASR's pass
    text = capsys.readouterr().out
    assert "[warm] loso ravdess: uar" in text and "reliability" in text and "reusing the ASR's encoder" in text


def test_cli_train_writes_a_loadable_model(emodb_dir: Path, ravdess_dir: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "model.json"
    assert run_agent.main(["train-emotion", "--data", str(emodb_dir), "--data", str(ravdess_dir),
                           "--output", str(out)]) == 0
    assert ProsodicBackend(model_path=out).learned
    assert "leave-one-speaker-out, cold" in capsys.readouterr().out


def test_cli_bench_prints_figures(emodb_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_agent.main(["bench-emotion", "--seconds", "5", "--data", str(emodb_dir), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["hops"] == 10 and figures["results"] == 9 and figures["cpu_ms_median"] > 0
