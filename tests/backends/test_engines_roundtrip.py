"""Real engines end to end: what Piper and espeak-ng say, Whisper tiny.en hears (speech, not just noise)."""

from __future__ import annotations

import numpy as np
import pytest

from attune.backends.asr.faster_whisper_backend import FasterWhisperASR
from attune.backends.tts.espeak_backend import EspeakTTS
from attune.backends.tts.piper_backend import PiperTTS
from attune.core.errors import BackendUnavailable
from attune.core.frames import AudioChunk
from attune_lab.bench_engines import normalize_words, word_errors
from tests.engines_util import installed_model

LAYER = "real"  # STYLE.md layer 4: real models on real audio

TEXT = "I am glad you called. Let us take a slow breath together."


@pytest.fixture(scope="module")
def asr() -> FasterWhisperASR:
    return FasterWhisperASR(installed_model("whisper-tiny.en"))


@pytest.mark.parametrize(("which", "max_wer"), [("piper", 0.1), ("espeak", 0.25)])
async def test_whisper_hears_what_the_voice_said(asr: FasterWhisperASR, which: str, max_wer: float) -> None:
    if which == "piper":
        tts: PiperTTS | EspeakTTS = PiperTTS(installed_model("piper-joe"))
    else:
        try:
            tts = EspeakTTS()
        except BackendUnavailable as exc:
            pytest.skip(str(exc))
    chunks = [c async for c in tts.synthesize(TEXT)]
    audio = np.concatenate([c.samples for c in chunks])
    heard = asr.transcribe(AudioChunk(audio, chunks[0].sample_rate)).text
    ref = normalize_words(TEXT)
    assert word_errors(ref, normalize_words(heard)) / len(ref) <= max_wer, heard
