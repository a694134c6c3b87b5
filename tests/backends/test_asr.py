"""ASR: the real faster-whisper tiny.en on real read speech, bad input, and the backend selection logic."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from attune.backends.asr.asr_factory import choose_asr_backend, create_asr
from attune.backends.asr.faster_whisper_backend import FasterWhisperASR
from attune.backends.base import ASRBackend
from attune.backends.registry import build
from attune.config import Config
from attune.core.audio import load_wav
from attune.core.errors import AudioInputError, BackendUnavailable, ConfigError
from attune.core.frames import AudioChunk
from attune_lab.bench_engines import normalize_words, word_errors
from tests.engines_util import installed_model, librivox_clips

LAYER = "real"  # STYLE.md layer 4: real models on real audio


@pytest.fixture(scope="module")
def tiny() -> FasterWhisperASR:
    return FasterWhisperASR(installed_model("whisper-tiny.en"))


def test_transcribes_read_speech_with_segment_timestamps(tiny: FasterWhisperASR) -> None:
    # Margins, measured here (AVX-512) and with CT2_FORCE_CPU_ISA=AVX2: WER 0.0 against 0.25, no_speech_prob
    # 0.056 / 0.052 against 0.5; on the five clips WER 0.0-0.29 and no_speech_prob 0.02-0.06 on both.
    wav, reference = librivox_clips()[0]
    samples, rate = load_wav(wav)
    assert isinstance(tiny, ASRBackend)
    result = tiny.transcribe(AudioChunk(samples, rate))
    ref = normalize_words(reference)
    assert word_errors(ref, normalize_words(result.text)) / len(ref) < 0.25
    assert "dashwood" in result.text.lower()
    assert result.segments and result.segments[0].start_s >= 0.0
    ends = [s.end_s for s in result.segments]
    assert ends == sorted(ends) and ends[-1] <= result.duration_s + 0.5
    assert result.no_speech_prob < 0.5
    assert abs(result.duration_s - len(samples) / rate) < 0.01


def test_other_rates_are_resampled(tiny: FasterWhisperASR) -> None:
    from attune.core.audio import resample

    wav, _ = librivox_clips()[1]
    samples, rate = load_wav(wav)
    result = tiny.transcribe(AudioChunk(resample(samples, rate, 44100), 44100))
    assert "young man" in result.text.lower()


def test_silence_reads_as_no_speech(tiny: FasterWhisperASR) -> None:
    # no_speech_prob 1.000 and an empty text, here and with CT2_FORCE_CPU_ISA=AVX2.
    noise = np.random.default_rng(0).normal(0, 1e-4, 16000 * 2).astype(np.float32)
    result = tiny.transcribe(AudioChunk(noise, 16000))
    assert result.no_speech_prob > 0.5 or result.text == ""


@pytest.mark.parametrize(("samples", "rate", "match"), [
    (np.zeros(0, np.float32), 16000, "empty"),
    (np.full(16000, np.nan, np.float32), 16000, "NaN"),
    (np.r_[np.zeros(8000), [np.inf]].astype(np.float32), 16000, "NaN/Inf"),
    (np.zeros(16000, np.float32), 0, "sample rate"),
    (np.zeros(100, np.float32), 16000, "too short"),
])
def test_bad_input_is_a_clear_error(tiny: FasterWhisperASR, samples: np.ndarray, rate: int, match: str) -> None:
    with pytest.raises(AudioInputError, match=match):
        tiny.transcribe(AudioChunk(samples, rate))


def test_auto_picks_mlx_only_on_apple_silicon() -> None:
    assert choose_asr_backend("auto", system="Darwin", machine="arm64", mlx_importable=True) == "mlx-whisper"
    assert choose_asr_backend("auto", system="Darwin", machine="arm64", mlx_importable=False) == "faster-whisper"
    assert choose_asr_backend("auto", system="Darwin", machine="x86_64", mlx_importable=True) == "faster-whisper"
    assert choose_asr_backend("auto", system="Linux", machine="aarch64", mlx_importable=True) == "faster-whisper"
    assert choose_asr_backend("auto") == "faster-whisper"  # this Linux x86_64 machine
    assert choose_asr_backend("mlx-whisper") == "mlx-whisper"


def test_mlx_missing_names_its_install_command_and_falls_back(caplog: pytest.LogCaptureFixture) -> None:
    installed_model("whisper-tiny.en")
    with pytest.raises(BackendUnavailable, match="pip install mlx-whisper"):
        build("asr", "mlx-whisper", Config())
    with caplog.at_level(logging.WARNING):
        asr = create_asr(Config(), backend="mlx-whisper")
    assert isinstance(asr, FasterWhisperASR)
    assert "mlx-whisper" in caplog.text and "pip install mlx-whisper" in caplog.text


def test_an_unknown_asr_backend_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="'asr.backend'.*'whisperx'"):
        create_asr(Config(), backend="whisperx")


def test_missing_model_folder_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match="attune.models install"):
        FasterWhisperASR(tmp_path)


def test_create_asr_base_model_transcribes() -> None:
    installed_model("whisper-base")
    asr = create_asr(Config(), model="base")
    wav, _ = librivox_clips()[4]
    assert "amiable" in asr.transcribe(AudioChunk(*load_wav(wav))).text.lower()


def test_transcribe_command_json(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    import run_agent

    installed_model("whisper-tiny.en")
    wav, _ = librivox_clips()[1]
    assert run_agent.main(["transcribe", "--input", str(wav), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "young man" in out["text"].lower() and out["segments"]


def test_word_error_rate_helper() -> None:
    assert word_errors(["a", "b", "c"], ["a", "x", "c", "d"]) == 2
    assert normalize_words("Mr. John's dog, ok!") == ["mister", "john's", "dog", "ok"]


def test_encoder_window_follows_the_clip() -> None:
    from attune.backends.asr.faster_whisper_backend import encoder_frames

    assert encoder_frames(2.0, 30.0) == 3000  # stock: always Whisper's 30 s window
    assert encoder_frames(2.0, 6.0) == 600  # the minimum window
    assert encoder_frames(7.3, 6.0) == 900  # clip + 1 s of silence, rounded up to a whole second
    assert encoder_frames(29.5, 6.0) == 3000  # never past Whisper's window
    assert all(encoder_frames(d / 10, 6.0) % 2 == 0 for d in range(1, 300))  # the encoder's conv needs even


def test_short_window_encodes_fewer_frames_and_still_transcribes() -> None:
    short = FasterWhisperASR(installed_model("whisper-tiny.en"), encoder_window_s=6.0)
    seen: list[int] = []
    full = short._full_encode

    def spy(features: np.ndarray) -> object:
        seen.append(int(features.shape[-1]))
        return full(features)

    short._full_encode = spy
    wav, reference = librivox_clips()[0]
    samples, rate = load_wav(wav)
    result = short.transcribe(AudioChunk(samples, rate))
    ref = normalize_words(reference)
    assert word_errors(ref, normalize_words(result.text)) / len(ref) < 0.25
    assert seen and max(seen) < 3000 and max(seen) >= len(samples) / rate * 100
    assert short._token_cap(len(samples)) is not None


def test_configured_window_reaches_the_backend() -> None:
    installed_model("whisper-tiny.en")
    asr = create_asr(Config(), encoder_window_s=8.0)
    assert isinstance(asr, FasterWhisperASR) and asr.encoder_window_s == 8.0
    assert FasterWhisperASR(installed_model("whisper-tiny.en"))._token_cap(16000) is None  # stock: uncapped


def test_a_sibling_shares_the_loaded_model_and_decodes_beside_it() -> None:
    """The partial passes' handle (memory, issue 13): the same CTranslate2 model (no second copy of the
    weights), a lock of its own, concurrent decodes that give the text one decode alone gives, and each
    thread's encoder states its own clip's."""
    import threading

    main = FasterWhisperASR(installed_model("whisper-tiny.en"), encoder_window_s=6.0, workers=2)
    twin = main.sibling()
    assert twin._model is main._model and twin._lock is not main._lock
    assert main._model.model.num_workers == 2  # two workers over one loaded model
    wav, _ = librivox_clips()[0]
    samples, rate = load_wav(wav)
    clip = AudioChunk(samples, rate)
    half = AudioChunk(samples[: len(samples) // 2], rate)
    alone = main.transcribe(clip).text
    out: dict[str, object] = {}

    def run(asr: FasterWhisperASR, chunk: AudioChunk, key: str) -> None:
        result = asr.transcribe(chunk, encoder_states=True)
        out[key] = result.text
        states = result.encoder_states
        out[key + "_frames"] = None if states is None else states.shape[0]

    threads = [threading.Thread(target=run, args=(main, clip, "main")),
               threading.Thread(target=run, args=(twin, half, "twin"))]
    with main._lock:  # the main handle busy: the sibling must not wait for it
        threads[1].start()
        threads[1].join(timeout=120)
        assert not threads[1].is_alive() and out["twin"]
    threads[0].start()
    threads[0].join(timeout=120)
    assert out["main"] == alone
    assert out["main_frames"] == -(-len(samples) // 320) and out["twin_frames"] == -(-(len(samples) // 2) // 320)


def test_a_sibling_without_fallback_decodes_once_at_temperature_0(monkeypatch) -> None:
    """``sibling(fallback=False)`` (the partial passes' handle, which only proposes words: what the pipeline's
    stack gives the listener) asks Whisper for one decode at temperature 0; the reply's handle keeps Whisper's
    fallback."""
    from attune.config import load_config
    from attune.pipeline.stack import _listen_asr

    main = FasterWhisperASR(installed_model("whisper-tiny.en"), encoder_window_s=6.0, workers=2)
    passes = main.sibling(fallback=False)
    assert main.sibling().temperatures == main.temperatures
    wired = _listen_asr(load_config(environ={}), main)
    assert isinstance(wired, FasterWhisperASR) and wired.temperatures == (0.0,) and wired._model is main._model
    seen: list[object] = []
    real = main._model.transcribe

    def recording(*args: object, **kwargs: object) -> object:
        seen.append(kwargs.get("temperature"))
        return real(*args, **kwargs)

    monkeypatch.setattr(main._model, "transcribe", recording)  # one model under both handles
    wav, _ = librivox_clips()[0]
    samples, rate = load_wav(wav)
    clip = AudioChunk(samples[: rate * 2], rate)
    assert passes.transcribe(clip).text == main.transcribe(clip).text  # clear speech: the first decode stands
    assert seen == [[0.0], [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]]
