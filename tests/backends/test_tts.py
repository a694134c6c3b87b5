"""Real Piper and espeak-ng voices, their native prosody controls, and bad input."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from attune.backends.tts.espeak_backend import EspeakTTS
from attune.backends.tts.piper_backend import PiperTTS
from attune.backends.tts.prosody_map import espeak_flags, piper_controls
from attune.core.errors import BackendUnavailable, TTSError
from attune.core.frames import AudioChunk
from attune.core.prosody import ProsodyParameters, profile_for
from attune.pipeline.splitter import SentenceSplitter
from tests.engines_util import installed_model

LAYER = "real"  # STYLE.md layer 4: real models on real audio

TWO_SENTENCES = "Hello there, it is good to hear from you. How was your day?"


@pytest.fixture(scope="module")
def piper() -> PiperTTS:
    return PiperTTS(installed_model("piper-joe"))


@pytest.fixture(scope="module")
def espeak() -> EspeakTTS:
    try:
        return EspeakTTS()
    except BackendUnavailable as exc:
        pytest.skip(str(exc))


async def _chunks(tts: Any, text: str, prosody: ProsodyParameters | None = None) -> list[AudioChunk]:
    return [c async for c in tts.synthesize(text, prosody)]


def _voiced_seconds(chunk: AudioChunk) -> float:
    return float(np.mean(np.abs(chunk.samples) > 0.01)) * chunk.duration_s


@pytest.mark.parametrize("which", ["piper", "espeak"])
async def test_speaks_the_text_as_given(which: str, request: pytest.FixtureRequest) -> None:
    """No re-splitting: one chunk per call, the whole text in it."""
    tts = request.getfixturevalue(which)
    chunks = await _chunks(tts, TWO_SENTENCES)
    assert len(chunks) == 1
    assert all(c.sample_rate == 22050 and c.samples.dtype == np.float32 for c in chunks)
    total = sum(c.duration_s for c in chunks)
    assert 2.0 < total < 8.0  # ~13 words of speech
    assert chunks[0].timestamp_s == 0.0
    assert all(np.isfinite(c.samples).all() and np.abs(c.samples).max() <= 1.0 for c in chunks)
    assert all(_voiced_seconds(c) > 0.3 for c in chunks)


@pytest.mark.parametrize("which", ["piper", "espeak"])
async def test_an_abbreviation_stays_one_utterance_from_the_splitter_to_the_voice(
        which: str, request: pytest.FixtureRequest) -> None:
    """The one splitter is the pipeline's: "3 p.m. today" is one sentence there and one utterance in the voice."""
    tts = request.getfixturevalue(which)
    splitter = SentenceSplitter(first_clause_min_words=4)
    pieces = splitter.push("We can meet at 3 p.m. today. ") + splitter.push("Does that suit you?") + splitter.flush()
    assert pieces == ["We can meet at 3 p.m. today.", "Does that suit you?"]
    spoken = [await _chunks(tts, piece) for piece in pieces]
    assert [len(chunks) for chunks in spoken] == [1, 1]
    assert spoken[0][0].duration_s > 1.0  # the whole sentence, "today" included


@pytest.mark.parametrize("which", ["piper", "espeak"])
async def test_speech_rate_changes_duration(which: str, request: pytest.FixtureRequest) -> None:
    tts = request.getfixturevalue(which)
    text = "I understand how you feel, and I am here with you."
    slow = sum(c.duration_s for c in await _chunks(tts, text, ProsodyParameters(speech_rate=0.75)))
    fast = sum(c.duration_s for c in await _chunks(tts, text, ProsodyParameters(speech_rate=1.4)))
    assert fast < 0.85 * slow


@pytest.mark.parametrize("which", ["piper", "espeak"])
@pytest.mark.parametrize("text", ["", "   ", "...!?", 42])
async def test_unspeakable_text_is_a_clear_error(which: str, text: Any, request: pytest.FixtureRequest) -> None:
    tts = request.getfixturevalue(which)
    with pytest.raises(TTSError) as err:
        await _chunks(tts, text)
    assert err.value.retryable is False


def test_missing_espeak_names_the_apt_command() -> None:
    with pytest.raises(BackendUnavailable, match="apt-get install espeak-ng"):
        EspeakTTS(binary="espeak-ng-not-installed")


def test_missing_piper_voice_names_the_install_command(tmp_path: Any) -> None:
    with pytest.raises(BackendUnavailable, match="attune.models install piper-joe"):
        PiperTTS(tmp_path / "none.onnx")


def test_prosody_maps_to_native_controls() -> None:
    neutral = piper_controls(None)
    assert (neutral.length_scale, neutral.noise_scale, neutral.noise_w) == (1.0, 0.667, 0.8)
    fast = piper_controls(ProsodyParameters(speech_rate=1.25, pitch_variance=1.5))
    assert fast.length_scale == pytest.approx(0.8) and fast.noise_w > neutral.noise_w
    assert piper_controls(ProsodyParameters(pitch_variance=0.5)).noise_scale < neutral.noise_scale
    # Livelier profiles get more varied Piper output (noise terms follow pitch variance), flatter ones less.
    excited, bored = (piper_controls(profile_for(e)) for e in ("excited", "bored"))
    assert excited.noise_scale > neutral.noise_scale > bored.noise_scale
    assert espeak_flags(None) == ["-s", "175", "-p", "50", "-a", "100"]
    flags = espeak_flags(ProsodyParameters(speech_rate=0.8, pitch_shift_semitones=-3, volume_db=6))
    assert flags == ["-s", "140", "-p", "38", "-a", "200"]


def test_bench_tts_command_prints_figures(capsys: pytest.CaptureFixture[str], espeak: EspeakTTS) -> None:
    import json

    import run_agent

    assert run_agent.main(["bench-tts", "--providers", "espeak", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["provider"] == "espeak" and row["sentences"] == 4 and 0 < row["rtf"] < 1
    assert row["first_audio_ms_p50"] > 0
