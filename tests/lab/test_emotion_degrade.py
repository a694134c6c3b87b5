"""The robustness sets: G.711, the phone band, the simulated room, babble at a set SNR, the written folders, and the
leave-one-speaker-out protocol with degraded copies (no copy of the held-out person ever joins the training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from attune.backends.emotion.labels import CLASSES, Utterance, parse_name
from attune.core.audio import SAMPLE_RATE, load_wav, write_wav
from attune.core.errors import AudioInputError
from attune_lab.emotion import degrade as dg
from attune_lab.emotion import evaluation as ev
from attune_lab.emotion.dataset import LabelledSet, list_utterances
from attune_lab.emotion.robustness import held_out_conditions

LAYER = "unit"  # STYLE.md layer 1: pure cores, no models


def _voice(seconds: float = 1.5, f0: float = 160.0, amp: float = 0.1, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    rng = np.random.default_rng(seed)
    x = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6)) / k for k in range(1, 30))
    return (amp * x * np.sin(np.pi * t / seconds) ** 2).astype(np.float32)


def test_mulaw_is_g711() -> None:
    """ITU-T G.711 mu-law: silence is 0xFF, full scale 0x80 / 0x00, and the decoder's table end points."""
    codes = dg.mulaw_encode(np.array([0, 32767, -32768, 1000, -1000]))
    assert codes[:3].tolist() == [0xFF, 0x80, 0x00]
    assert dg.mulaw_decode(np.array([0xFF, 0x80, 0x00, 0x7F], np.uint8)).tolist() == [0, 32124, -32124, 0]
    pcm = np.arange(-32768, 32768, 3)
    back = dg.mulaw_decode(dg.mulaw_encode(pcm)).astype(np.int64)
    loud = np.abs(pcm) > 1024
    assert np.max(np.abs(back - pcm)[loud] / np.abs(pcm)[loud]) < 0.07  # 8-bit log companding: ~6 % steps
    assert np.max(np.abs(back - pcm)[~loud]) <= 36  # fine steps near zero (half a 64 step + the 14-bit cut)


def test_phone_is_narrowband_at_8khz() -> None:
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    low, mid, high = (0.2 * np.sin(2 * np.pi * f * t).astype(np.float32) for f in (100.0, 1000.0, 3900.0))
    rms = {name: float(np.sqrt(np.mean(dg.phone(x)[800:] ** 2))) for name, x in
           (("low", low), ("mid", mid), ("high", high))}
    assert len(dg.phone(mid)) == dg.PHONE_RATE
    assert rms["mid"] > 0.12 and rms["low"] < 0.3 * rms["mid"] and rms["high"] < 0.3 * rms["mid"]


def test_room_reverberates_and_keeps_the_level() -> None:
    room = dg.draw_room(3)
    assert dg.ROOM_RT60_S[0] <= room.rt60_s <= dg.ROOM_RT60_S[1]
    assert dg.ROOM_DISTANCE_M[0] - 0.01 <= room.distance_m <= dg.ROOM_DISTANCE_M[1] + 0.8  # + the height step
    x = np.zeros(2 * SAMPLE_RATE, np.float32)
    x[: SAMPLE_RATE // 2] = _voice(0.5)
    wet = dg.in_room(x, room)
    assert abs(20 * np.log10(dg.active_level(wet) / dg.active_level(x))) < 0.5
    tail = wet[SAMPLE_RATE // 2 + 800: SAMPLE_RATE // 2 + 2400]
    assert np.sqrt(np.mean(tail ** 2)) > 1e-3 * dg.active_level(x)  # the room rings on after the voice stops


@pytest.mark.parametrize("snr_db", [20.0, 10.0])
def test_babble_is_mixed_at_the_snr(snr_db: float) -> None:
    rng = np.random.default_rng(1)
    sources = [_voice(1.0, f0, 0.05 * (i + 1), seed=i) for i, f0 in enumerate((110.0, 140.0, 190.0, 230.0, 260.0))]
    x = _voice(2.0)
    noise = dg.babble(len(x), sources, rng)
    mixed = dg.with_noise(x, noise, snr_db)
    added = mixed - x
    measured = 20 * np.log10(dg.active_level(x) / np.sqrt(np.mean(added ** 2)))
    assert abs(measured - snr_db) < 0.1
    with pytest.raises(AudioInputError):
        dg.babble(100, [], rng)


def test_written_sets_keep_names_labels_and_are_stable(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    names = [f"03-01-0{e}-01-01-01-{a:02d}.wav" for a in (1, 2) for e in (1, 4)]
    for i, name in enumerate(names):
        write_wav(src / name, _voice(1.0, 120.0 + 40 * i, seed=i), SAMPLE_RATE)
    utterances = list_utterances([src])
    folders = dg.write_degraded(utterances, tmp_path / "out", ("phone", "babble10"))
    for cond, folder in folders.items():
        got = list_utterances([folder])
        assert [u.path.name for u in got] == sorted(names) and [u.label for u in got] == [u.label for u in utterances]
        assert load_wav(folder / names[0])[1] == (dg.PHONE_RATE if cond == "phone" else SAMPLE_RATE)
    first = load_wav(folders["babble10"] / names[0])[0]
    (folders["babble10"] / names[0]).unlink()
    dg.write_degraded(utterances, tmp_path / "out", ("babble10",))
    np.testing.assert_array_equal(load_wav(folders["babble10"] / names[0])[0], first)  # same seed, same file
    with pytest.raises(AudioInputError):
        dg.write_degraded(utterances, tmp_path / "out", ("underwater",))


def test_babblemix_records_the_voices_and_no_fold_trains_on_its_own_voice(tmp_path: Path) -> None:
    """A babblemix copy babbles two other speakers of its corpus at an SNR drawn from 5-20 dB, writes who they
    were to voices.json, and a fold drops every copy in which its held-out speaker is heard."""
    src = tmp_path / "src"
    src.mkdir()
    for a in range(1, 5):
        for e in (1, 4):
            write_wav(src / f"03-01-0{e}-01-01-01-{a:02d}.wav", _voice(1.0, 100.0 + 30 * a, seed=a + e), SAMPLE_RATE)
    utterances = list_utterances([src])
    folder = dg.write_degraded(utterances, tmp_path / "out", ("babblemix",))["babblemix"]
    copies = list_utterances([folder])
    heard = dg.voices_heard(copies)
    for u, voices in zip(copies, heard, strict=True):
        assert len(voices) == dg.BABBLEMIX_VOICES and u.speaker not in voices
        assert voices <= {v.speaker for v in utterances}
        x, y = load_wav(src / u.path.name)[0], load_wav(folder / u.path.name)[0]
        snr = 20 * np.log10(dg.active_level(x) / np.sqrt(np.mean((y - x) ** 2)))
        assert dg.BABBLEMIX_SNR_DB[0] - 0.5 < snr < dg.BABBLEMIX_SNR_DB[1] + 0.5
    assert dg.voices_heard(utterances) == [frozenset()] * len(utterances)  # clean files: no one else heard
    again = dg.write_degraded(utterances, tmp_path / "again", ("babblemix",))["babblemix"]
    assert (again / dg.VOICES_FILE).read_text() == (folder / dg.VOICES_FILE).read_text()  # seeded by the name
    tagged = tuple(Utterance(u.path, u.corpus, f"{u.speaker}@babblemix", u.label) for u in copies)
    data = LabelledSet(tagged, np.zeros((len(tagged), 2)))
    for s in sorted({u.speaker for u in utterances}):
        keep = ev.fold_rows(data, s)
        assert keep.tolist() == [u.speaker != s and s not in v for u, v in zip(copies, heard, strict=True)]
        assert not keep.all()  # someone babbles each speaker in (4 speakers, two voices per copy)


def _random_set(tag: str = "") -> LabelledSet:
    """Six speakers, random features, random labels: nothing to learn but each file itself."""
    rng = np.random.default_rng(0)
    utts = tuple(Utterance(Path(f"03-01-01-01-01-{i:02d}-{s:02d}.wav"), "ravdess", f"ravdess:{s:02d}{tag}",
                           int(rng.integers(len(CLASSES)))) for s in range(1, 7) for i in range(40))
    return LabelledSet(utts, rng.standard_normal((len(utts), 12)))


def test_a_held_out_persons_copies_never_train_their_model() -> None:
    """A copy identical to the clean file would be read perfectly if it leaked; held out, it reads at chance."""
    clean = _random_set()
    copy = LabelledSet(_random_set("@phone").utterances, clean.features.copy())
    for augment in ([], [copy]):
        held = ev.loso(clean, "whisper-tiny.en-mean", "cold", 1e-4, augment)
        assert np.mean(held.logits.argmax(axis=1) == clean.labels) < 0.3
    both = held_out_conditions(clean, {"phone": copy}, "whisper-tiny.en-mean", [copy], 1e-4)
    np.testing.assert_allclose(both["phone"]["cold"].logits, both["clean"]["cold"].logits)
    assert parse_name(copy.utterances[0].path) is not None


def test_the_commands_write_sets_and_refuse_what_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    import run_agent

    src = tmp_path / "src"
    src.mkdir()
    for a in (1, 2):
        write_wav(src / f"03-01-04-01-01-01-{a:02d}.wav", _voice(1.0, 110.0 * a, seed=a), SAMPLE_RATE)
    out = tmp_path / "degraded"
    assert run_agent.main(["degrade-emotion", "--data", str(src), "--out", str(out), "--condition", "phone",
                           "--condition", "babble20"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["babble20", "phone"] and len(list(out.glob("*/*.wav"))) == 4
    capsys.readouterr()
    for argv, says in ((["--augment", "phone"], "--augment needs --degraded"),
                       (["--degraded", str(tmp_path / "nowhere")], "no degraded copies"),
                       (["--degraded", str(out), "--augment", "room"], "no degraded copies room")):
        assert run_agent.main(["eval-emotion", "--data", str(src), "--backend", "hybrid", *argv]) == 1
        assert says in capsys.readouterr().err
    assert run_agent.main(["eval-emotion", "--data", str(src), "--backend", "emotion2vec", "--degraded",
                           str(out)]) == 1
    assert "learned backends" in capsys.readouterr().err
