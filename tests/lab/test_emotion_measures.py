"""Loop-free units of the emotion benchmarks: both corpora's file names, the groupings, UARs, ECE, fusion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from attune.backends.emotion.hybrid import hybrid_probs
from attune.backends.emotion.labels import CLASSES, GROUP5, parse_name
from attune.backends.emotion.model import train_model
from attune.backends.emotion.posterior import result_from_probs
from attune.core.audio import AudioQuality
from attune.core.emotion import CATEGORY_GROUP, ProsodicMarkers
from attune.core.errors import AudioInputError
from attune_lab.emotion.dataset import list_utterances
from attune_lab.emotion.evaluation import apply_model
from attune_lab.emotion.measures import format_report, grouped_uar, reliability, score, uar

LAYER = "unit"  # STYLE.md layer 1: a pure core, loop-free, no models

C = CLASSES.index
GOOD = AudioQuality(-20.0, -3.0, 17.0, 0.0, False, False, False)


@pytest.mark.real
def test_both_file_name_layouts() -> None:
    u = parse_name("x/03-01-04-02-01-02-05.wav")
    assert u is not None and (u.corpus, u.speaker, CLASSES[u.label]) == ("ravdess", "ravdess:05", "sadness")
    e = parse_name("03a01Wa.wav")
    assert e is not None and (e.corpus, e.speaker, CLASSES[e.label]) == ("emodb", "emodb:03", "anger")
    assert parse_name("03-01-09-01-01-01-01.wav") is None  # no emotion 09
    assert parse_name("README.wav") is None and parse_name("notes.txt") is None


@pytest.mark.real
def test_list_utterances_reads_a_mixed_folder_and_refuses_an_empty_one(tmp_path: Path) -> None:
    for name in ("03-01-02-01-01-01-01.wav", "11b02Ld.wav", "other.wav"):
        (tmp_path / name).write_bytes(b"")
    assert [u.corpus for u in list_utterances([tmp_path])] == ["ravdess", "emodb"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(AudioInputError, match="no EmoDB"):
        list_utterances([tmp_path / "empty"])
    with pytest.raises(AudioInputError, match="not found"):
        list_utterances([tmp_path / "absent"])


def test_uar_and_grouped_uar() -> None:
    assert uar(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 3) == pytest.approx(0.75)
    labels = np.array([C("anger"), C("fear"), C("sadness"), C("calm"), C("neutral")])
    probs = np.eye(len(CLASSES))[[C("disgust"), C("happiness"), C("boredom"), C("calm"), C("neutral")]]
    assert grouped_uar(labels, probs, GROUP5) == pytest.approx((0.5 + 1 + 1 + 1) / 4)  # fear heard as happy
    m = score(labels, probs)
    assert m["valence_uar"] == pytest.approx((2 / 3 + 1.0) / 2)  # unpleasant 2 of 3 right, pleasant 1 of 1
    assert m["arousal_uar"] == pytest.approx(1.0)  # fear heard as happiness is still high arousal
    assert "confusion" in format_report(m)


def test_reliability_and_ece() -> None:
    conf = np.array([0.95, 0.95, 0.15, 0.15])
    ece, rows = reliability(conf, np.array([True, True, False, False]))
    assert ece == pytest.approx(0.1)  # each bin 0.05 (0.95 vs 1.0) or 0.15 (0.15 vs 0) off: mean 0.1
    assert [r["n"] for r in rows] == [2, 2]
    ece_bad, _ = reliability(conf, np.array([False, False, True, True]))
    assert ece_bad > 0.8


def test_fusion_weights_the_more_confident_side() -> None:
    neural = np.full(len(CLASSES), 0.02)
    neural[C("sadness")] = 1 - 0.02 * (len(CLASSES) - 1)
    prosodic = np.full(len(CLASSES), 1 / len(CLASSES))
    fused = hybrid_probs(neural[None], prosodic[None], 0.5)[0]
    assert fused.argmax() == C("sadness") and fused.sum() == pytest.approx(1.0)
    assert hybrid_probs(neural[None], prosodic[None], 0.0)[0] == pytest.approx(prosodic)
    unfamiliar = hybrid_probs(neural[None], prosodic[None], 0.9, np.array([0.0]))[0]
    assert unfamiliar == pytest.approx(prosodic)  # an unfamiliar voice: the neural side carries no weight
    off_channel = hybrid_probs(neural[None], prosodic[None], 0.1, None, np.array([0.0]))[0]
    assert off_channel == pytest.approx(neural)  # DSP features off their training distribution: no weight


def test_the_default_fusion_leans_on_the_whisper_head() -> None:
    """The shipped weight (chosen by leave-one-speaker-out, BENCHMARKS issue 20 fourth round) gives the neural
    side the larger share: two equally sure sides that disagree resolve to the Whisper head's class."""
    from attune.config import EmotionConfig

    weight = EmotionConfig().hybrid_neural_weight
    assert 0.5 < weight < 1.0  # prosody keeps a say (its markers and its share of the category)
    neural = np.full(len(CLASSES), 0.05)
    neural[C("sadness")] = 1 - 0.05 * (len(CLASSES) - 1)
    prosodic = np.roll(neural, C("calm") - C("sadness"))  # as sure, of calm
    assert prosodic.argmax() == C("calm")
    fused = hybrid_probs(neural[None], prosodic[None], weight)[0]
    assert fused.argmax() == C("sadness") and fused[C("sadness")] > 1.5 * fused[C("calm")]
    even = hybrid_probs(neural[None], prosodic[None], 0.5)[0]
    assert even[C("sadness")] < 1.2 * even[C("calm")]  # at 0.5 nearly a tie (the groups' confidences differ)


def test_result_primary_carries_the_group_decision() -> None:
    p = np.zeros(len(CLASSES))
    p[[C("anger"), C("fear"), C("disgust")]] = 0.2  # negative-activated 0.6 in total ...
    p[C("happiness")] = 0.4  # ... although happiness is the single most likely class
    r = result_from_probs(p, markers=ProsodicMarkers(), quality=GOOD, duration_s=2.0, backend="t")
    assert CATEGORY_GROUP[r.primary.emotion].value == "negative_activated"
    assert r.confidence == pytest.approx(0.6)
    assert result_from_probs(p, markers=ProsodicMarkers(), quality=GOOD, duration_s=2.0, backend="t",
                             trust=0.5).confidence == pytest.approx(0.3)


def test_warm_mode_adapts_to_a_speaker_offset() -> None:
    """A test speaker whose features sit far from the population: cold reads them all as one class, warm
    learns the offset from their own files and separates them again."""
    from attune.backends.emotion.labels import Utterance
    from attune_lab.emotion.dataset import LabelledSet

    rng = np.random.default_rng(0)
    d, classes = 6, (C("anger"), C("sadness"))
    rows, labels, spk = [], [], []
    for s in range(4):
        for k, c in enumerate(classes):
            centre = np.zeros(d)
            centre[k] = 2.0
            rows.append(centre + rng.normal(0, 0.5, (20, d)))
            labels += [c] * 20
            spk += [f"s{s}"] * 20
    model = train_model(np.vstack(rows), np.array(labels), spk, feature_kind="toy")
    offset = np.r_[-2.0, 2.0, 0, 0, 0, 0]  # this voice sounds "sad" to the population in everything it says
    test_rows = np.vstack([np.r_[2.0, 0, 0, 0, 0, 0] + offset, np.r_[0, 2.0, 0, 0, 0, 0] + offset])
    test_rows = np.repeat(test_rows, 20, axis=0) + rng.normal(0, 0.5, (40, d))
    utts = tuple(Utterance(Path(f"{i}.wav"), "toy", "new", classes[i // 20]) for i in range(40))
    test = LabelledSet(utts, test_rows)
    acc = {mode: np.mean(apply_model(model, test, mode).logits.argmax(1) == test.labels)
           for mode in ("cold", "warm")}
    assert acc["cold"] < 0.65 and acc["warm"] > acc["cold"] + 0.2


def test_evaluate_shipped_scores_any_backend_cold_and_warm(tmp_path: Path) -> None:
    """A backend without retraining (emotion2vec's path) through analyze: a fresh one per file when cold, one
    per speaker when warm; its categories read back as classes."""
    from attune.core.audio import write_wav
    from attune.core.emotion import EmotionCategory
    from attune_lab.emotion.benchmark import evaluate_shipped
    from tests.emotion_signals import syllables
    from tests.fakes import make_result

    for emo in ("04", "05"):
        for actor in ("01", "02"):
            write_wav(tmp_path / f"03-01-{emo}-01-01-01-{actor}.wav", syllables(seconds=0.5), 16000)
    made: list[object] = []

    class ReadsEverythingAngry:
        name = "fake"

        def analyze(self, audio: np.ndarray, rate: int) -> object:
            return make_result(EmotionCategory.ANGRY, 0.0, 0.5, audio)

    def make() -> object:
        made.append(1)
        return ReadsEverythingAngry()

    out = evaluate_shipped(make, list_utterances([tmp_path]), ("cold", "warm"))
    assert len(made) == 4 + 2  # four files cold, two speakers warm
    m = out["cold"]["shipped"]["all"]  # type: ignore[index]
    assert m["per_class"]["anger"] == 1.0 and m["per_class"]["sadness"] == 0.0 and m["uar"] == 0.5
