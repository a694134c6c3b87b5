"""The conversation on the embedded stack (Whisper tiny.en, Qwen2.5 0.5B, Piper, Silero VAD) with real speech
(espeak-ng): the transcript holds the spoken words, the reply is speech of plausible length, barge-in cuts it.

Skipped where the embedded models are not installed (``bash scripts/setup.sh`` installs them).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from attune.config import load_config
from attune.core import events as ev
from attune.core.audio import FRAME, FRAME_S, SAMPLE_RATE, load_wav, prepare
from attune.pipeline.session import Session
from attune.transports.file import stream_file
from attune_lab.latency import frame_levels, voice_to_voice

LAYER = "real"  # STYLE.md layer 4: real models on real audio

MODELS = ("whisper-tiny.en", "qwen2.5-0.5b", "piper-joe")


def _config():  # the fast LLM keeps this test short on 2 cores
    # The first sounds are rendered at start-up.
    return load_config(environ={}, overrides={"llm": {"model": "qwen2.5-0.5b", "max_tokens": 48},
                                              "agent": {"acknowledgements": True}})


@pytest.fixture(scope="module")
def stack():
    models = pytest.importorskip("attune.models", reason="engines not installed")
    from attune.pipeline.stack import build_backends

    is_verified = models.is_verified
    config = _config()
    cache = config.models_dir()
    missing = [m for m in MODELS if not is_verified(cache, m)]
    if missing:
        pytest.skip(f"embedded models not installed: {missing}")
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    backends = build_backends(config)
    from attune.pipeline.stack import warm_up

    asyncio.run(warm_up(backends, config))
    return config, backends


def _say(tmp_path: Path, text: str) -> np.ndarray:
    wav = tmp_path / "say.wav"
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(wav), text], check=True)
    samples, rate = load_wav(wav)
    mono, _ = prepare(samples, rate, SAMPLE_RATE)
    return np.concatenate([np.zeros(SAMPLE_RATE // 2, np.float32), mono])


def test_a_spoken_turn_is_transcribed_and_answered_with_speech(stack, tmp_path) -> None:
    from attune.pipeline.stack import for_session

    config, backends = stack
    audio = _say(tmp_path, "I lost my keys again and I am running late for work.")

    async def go():
        async with Session(config, for_session(config, backends)) as s:
            run = await stream_file(s, audio, speed=4.0)
        return s, run

    session, run = asyncio.run(go())
    assert len(session.turns) == 1, [e.type for e in run.events if e.type != ev.AUDIO_DELTA]
    trace = session.turns[0].to_dict()
    words = trace["transcript"].lower()
    assert "keys" in words and "late" in words
    seen = [(e.type, e.data.get("reason")) for e in run.events if e.type not in (ev.AUDIO_DELTA,
                                                                                    ev.EMOTION_MEASUREMENT)]
    assert trace["status"] == "completed" and trace["reply_text"], (trace, seen)
    # Reply audio: speech of plausible length for its text (Piper speaks ~2-4 words per second).
    voiced_s = float(np.sum(frame_levels(run.output, run.output_rate) > -50)) * FRAME_S
    n_words = len(trace["reply_text"].split())
    assert 0.15 * n_words <= voiced_s <= 1.2 * n_words + 1.0
    measured = voice_to_voice(audio, SAMPLE_RATE, run.output, run.output_rate)
    assert measured is not None and measured[2] > 0  # the reply comes after the user stopped
    if backends.emotion is not None:
        assert any(e.type == ev.EMOTION_MEASUREMENT for e in run.events)
        assert any(e.type == ev.EMOTION_TURN and e.data["emotion"] for e in run.events)


def test_barge_in_cuts_a_real_reply_short(stack, tmp_path) -> None:
    from attune.pipeline.stack import for_session

    config, backends = stack
    question = _say(tmp_path, "Tell me a long story about the sea and the old lighthouse keeper.")
    interruption = _say(tmp_path, "Please stop now.")  # no pause inside: one turn, one barge-in

    async def go():
        async with Session(config, for_session(config, backends)) as s:
            seen: list = []
            frames = [question[i:i + FRAME] for i in range(0, len(question) - FRAME + 1, FRAME)]
            silence = np.zeros(FRAME, np.float32)
            for f in frames:
                await s.push_audio(f)
                await asyncio.sleep(0.01)
            for _ in range(3000):  # until the model's words are heard (not only a first sound), then 0.6 s more
                await s.push_audio(silence)
                await asyncio.sleep(0.01)
                while not s.events.empty():
                    seen.append(s.events.get_nowait())
                if any(e.type == ev.TRANSCRIPT_DELTA for e in seen):
                    break
            for _ in range(30):
                await s.push_audio(silence)
                await asyncio.sleep(0.01)
            for i in range(0, len(interruption) - FRAME + 1, FRAME):
                await s.push_audio(interruption[i:i + FRAME])
                await asyncio.sleep(0.01)
            for _ in range(50):
                await s.push_audio(silence)
                await asyncio.sleep(0.01)
            while not s.events.empty():
                seen.append(s.events.get_nowait())
            return s, seen

    session, seen = asyncio.run(go())
    # The interruption is a turn of its own; on a fast machine its reply may be under way when the session
    # closes (reason session_closed). The reply that was cut is the barge-in's.
    cancelled = [e for e in seen if e.type == ev.RESPONSE_CANCELLED and e.data["reason"] == "barge_in"]
    assert len(cancelled) == 1, [e.type for e in seen if e.type != ev.AUDIO_DELTA]
    trace = cancelled[0].data["trace"]
    assert len(trace["heard_text"].split()) < len(trace["reply_text"].split())
    assert session.memory.exchanges[1].interrupted


def test_going_on_during_the_first_sound_is_one_turn_with_one_reply(stack, tmp_path) -> None:
    """Real VAD, end-of-turn model, Whisper, LLM and Piper: the person pauses after "My dog died this morning.",
    the turn is committed, its first sound starts, and they go on ("I miss him so much."). The sound stops, the
    reply is not kept, and the one reply answers both parts, which the ASR heard as one turn."""
    from dataclasses import replace

    from attune.pipeline.reply import ACK_INDEX
    from attune.pipeline.session_backends import StartupFigures
    from attune.pipeline.stack import for_session

    config, backends = stack
    first = _say(tmp_path, "My dog died this morning.")
    more = _say(tmp_path, "I miss him so much.")[SAMPLE_RATE // 2:]  # speech at once, no lead-in

    async def push(s: Session, samples: np.ndarray, seen: list) -> None:
        for i in range(0, len(samples) - FRAME + 1, FRAME):
            await s.push_audio(samples[i:i + FRAME])
            await asyncio.sleep(0.01)
            while not s.events.empty():
                seen.append(s.events.get_nowait())

    async def go():
        # An unmeasured LLM speed counts as a slow machine: the first sound is always played.
        session_backends = replace(for_session(config, backends), measured=StartupFigures(None))
        async with Session(config, session_backends) as s:
            seen: list = []
            silence = np.zeros(FRAME, np.float32)
            await push(s, first, seen)
            for _ in range(3000):
                if any(e.type == ev.AUDIO_DELTA and e.data["sentence"] == ACK_INDEX for e in seen):
                    break
                await push(s, silence, seen)
            await push(s, more, seen)
            for _ in range(6000):
                if any(e.type == ev.RESPONSE_DONE for e in seen):
                    break
                await push(s, silence, seen)
            return s, seen

    session, seen = asyncio.run(go())
    kinds = [(e.type, e.data.get("reason")) for e in seen if e.type in (ev.RESPONSE_CANCELLED, ev.RESPONSE_DONE)]
    assert kinds[:2] == [(ev.RESPONSE_CANCELLED, "premature_commit"), (ev.RESPONSE_DONE, None)], kinds
    assert len(session.turns) == 1
    trace = session.turns[0].to_dict()
    words = trace["transcript"].lower()
    assert "dog" in words and "miss" in words, words  # both parts, one turn
    assert trace["resumed"] is True and trace["reply_text"]
    assert [m.role for m in session.memory.messages()] == ["user", "assistant"]


def test_partial_passes_share_the_asr_model_instead_of_loading_a_second(stack) -> None:
    """Memory (issue 13): one Whisper model in the stack; the partial passes' handle is a sibling over it."""
    from attune.backends.asr.faster_whisper_backend import FasterWhisperASR

    config, backends = stack
    assert config.pipeline.partial_asr and isinstance(backends.asr, FasterWhisperASR)
    assert isinstance(backends.listen_asr, FasterWhisperASR) and backends.listen_asr is not backends.asr
    assert backends.listen_asr._model is backends.asr._model and backends.asr._model.model.num_workers == 2
