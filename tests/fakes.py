"""Fakes for every backend kind, with knobs for errors and delays, and a driver that streams scripted audio into
a session, so the whole pipeline runs in milliseconds. Their real counterparts are tested in the embedded-stack
tests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from attune.agent.brain import NeutralPlan
from attune.backends.base import ChatMessage, Completion, Gate, LLMCapabilities, TokenStream, Transcription
from attune.config import load_config
from attune.core.audio import FRAME as AUDIO_FRAME
from attune.core.audio import FRAME_S, measure_quality
from attune.core.emotion import (
    EmotionCategory,
    EmotionResult,
    PrimaryDimensions,
    ProsodicMarkers,
    dimensions_to_likely_emotions,
    predictions_from_scores,
)
from attune.core.errors import ASRError, LLMError, TTSError
from attune.core.events import SessionEvent
from attune.core.frames import AudioChunk
from attune.pipeline.session import Session, SessionBackends
from attune.pipeline.session_backends import StartupFigures, Voice
from attune.pipeline.turn import EnergyVAD

RATE = 16000
FRAME = AUDIO_FRAME  # samples in one streamed 20 ms frame
ECHO_LEVEL = np.float32(0.005)  # the agent's voice leaking into the microphone: below the VAD, distinctive value


class FixedASR:
    name = "fixed"

    def __init__(self, text: str = "hello there", *, delay_s: float = 0.0, fail: bool = False) -> None:
        self.text, self.delay_s, self.fail = text, delay_s, fail
        self.calls: list[AudioChunk] = []

    def transcribe(self, audio: AudioChunk, *, encoder_states: bool = False) -> Transcription:
        self.calls.append(audio)
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail:
            raise ASRError("fake ASR failure", retryable=True)
        return Transcription(self.text, duration_s=audio.duration_s)


class FixedEndOfTurn:
    """The end-of-turn model's stand-in: the same P(complete) for every turn; ``calls`` counts the questions."""

    def __init__(self, probability: float = 0.95) -> None:
        self.probability = probability
        self.calls = 0

    def complete_probability(self, samples: np.ndarray) -> float:
        self.calls += 1
        return self.probability


class ScriptedLLM:
    """Streams ``tokens``; ``fail_after`` raises LLMError after that many tokens; ``delay_s`` before each token."""

    name = "scripted"

    def __init__(self, tokens: Sequence[str] = ("Hello,", " nice", " to", " hear", " you.", " How", " are",
                                                 " you?"),
                 *, delay_s: float = 0.0, fail_after: int | None = None) -> None:
        self.tokens, self.delay_s, self.fail_after = list(tokens), delay_s, fail_after
        self.calls: list[list[ChatMessage]] = []
        self.cancelled = 0
        self.prefills: list[str] = []  # the user's words so far, per prefill() call

    capabilities = LLMCapabilities(prefill=True)

    def prefill(self, messages: Sequence[ChatMessage], *, keep_back: int = 0, max_new: int = 16) -> int:
        """Records the words; "evaluates" them once (0 for words already seen), as llama-cpp's would."""
        words = messages[-1].content
        if self.prefills and self.prefills[-1] == words:
            return 0
        self.prefills.append(words)
        return len(words.split())

    def stream(self, messages: Sequence[ChatMessage], *, max_tokens: int = 128, temperature: float = 0.7
               ) -> TokenStream:
        """The script's tokens; the completion reports the prompt as one token per word and nothing cached."""
        self.calls.append(list(messages))
        words = sum(len(m.content.split()) for m in messages)
        return TokenStream(lambda report: self._pieces(max_tokens, report, words))

    async def _pieces(self, max_tokens: int, report: Any, words: int) -> AsyncGenerator[str, None]:
        report(Completion(prompt_tokens=words, ttft_s=self.delay_s))
        try:
            for i, tok in enumerate(self.tokens[:max_tokens]):
                if self.fail_after is not None and i >= self.fail_after:
                    raise LLMError("fake LLM dropped the connection", retryable=True)
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                yield tok
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled += 1
            raise


class GatedLLM(ScriptedLLM):
    """A ``ScriptedLLM`` that honours its stream's gate as the llama-cpp engine does: closed, it writes no token
    after the one in progress. ``written`` counts the tokens it has produced (a pump that reads eagerly, as the
    server's does, takes each as it comes)."""

    def __init__(self, tokens: Sequence[str] = ("Hello,", " nice", " to", " hear", " you.", " How", " are",
                                                 " you?"), **kw: Any) -> None:
        super().__init__(tokens, **kw)
        self.written = 0
        self.gate: Gate | None = None  # the last stream's

    def stream(self, messages: Sequence[ChatMessage], *, max_tokens: int = 128, temperature: float = 0.7
               ) -> TokenStream:
        self.calls.append(list(messages))
        gate = self.gate = Gate()

        async def pieces(report: Any) -> AsyncGenerator[str, None]:
            report(Completion(prompt_tokens=1))
            for tok in self.tokens[:max_tokens]:
                if not gate.is_open:
                    await asyncio.to_thread(gate.wait, 10.0)  # the engine's thread, held
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                self.written += 1
                yield tok

        return TokenStream(pieces, gate)


class ToneTTS:
    """A 440 Hz tone, ``seconds_per_word`` long per word, in 100 ms chunks; ``fail_on`` fails that sentence."""

    name = "tone"

    def __init__(self, sample_rate: int = 16000, *, seconds_per_word: float = 0.25, fail_on: int | None = None,
                 delay_s: float = 0.0) -> None:
        self.sample_rate, self.seconds_per_word, self.fail_on, self.delay_s = (
            sample_rate, seconds_per_word, fail_on, delay_s)
        self.texts: list[str] = []

    async def synthesize(self, text: str, prosody: Any = None) -> AsyncIterator[AudioChunk]:
        self.texts.append(text)
        if self.fail_on is not None and len(self.texts) - 1 == self.fail_on:
            raise TTSError("fake TTS crashed", retryable=False)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        n = int(len(text.split()) * self.seconds_per_word * self.sample_rate)
        t = np.arange(n) / self.sample_rate
        audio = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
        step = self.sample_rate // 10
        for i in range(0, n, step):
            yield AudioChunk(audio[i:i + step], self.sample_rate)


class FakeEmotion:
    """Streaming detector: one result per 500 ms hop once 1 s is buffered; records every sample it is fed."""

    def __init__(self, emotion: EmotionCategory = EmotionCategory.SAD, *, fail: bool = False) -> None:
        self.emotion, self.fail = emotion, fail
        self.fed: list[np.ndarray] = []
        self.resets = 0
        self._buf = np.zeros(0, dtype=np.float32)
        self._t = 0.0
        self._next_hop = 1.0

    def reset_stream(self) -> None:
        self.resets += 1
        self._buf, self._t, self._next_hop = np.zeros(0, dtype=np.float32), 0.0, 1.0

    def hops_ready(self, n_samples: int) -> int:
        return 1  # always analysed off the loop, as a real detector's hop is

    def analyze_streaming(self, chunk: np.ndarray, sample_rate: int = RATE) -> list[EmotionResult]:
        from attune.core.errors import EmotionError

        if self.fail:
            raise EmotionError("fake emotion failure")
        self.fed.append(chunk.copy())
        self._buf = np.concatenate([self._buf, chunk])[-RATE:]
        self._t += len(chunk) / sample_rate
        out = []
        while self._t >= self._next_hop:
            out.append(make_result(self.emotion, self._next_hop - 1.0, self._next_hop, self._buf))
            self._next_hop += 0.5
        return out


class StatesASR(FixedASR):
    """A FixedASR that, like FasterWhisperASR, exposes its encoder pass of the last clip (one row per 20 ms)."""

    def __init__(self, text: str = "hello there", width: int = 8) -> None:
        super().__init__(text)
        self.width = width
        self._n = 0

    def transcribe(self, audio: AudioChunk, *, encoder_states: bool = False) -> Transcription:
        n = -(-len(audio.samples) * 16000 // audio.sample_rate // 320)
        result = super().transcribe(audio)
        return replace(result, encoder_states=np.ones((n, self.width), np.float32)) if encoder_states else result


class FakeTurnEmotion:
    """A whole-turn reader (``analyze_turn``): records what it was given and reads every turn as ``emotion``;
    ``fail`` raises an EmotionError instead; ``reads_asr_pass`` False: a middle-block reader (tiny.en_l2)."""

    def __init__(self, emotion: EmotionCategory = EmotionCategory.ANGRY, *, confidence: float = 0.8,
                 fail: bool = False, reads_asr_pass: bool = True) -> None:
        self.emotion, self.confidence, self.fail = emotion, confidence, fail
        self.reads_asr_pass = reads_asr_pass
        self.calls: list[tuple[int, tuple[int, ...] | None]] = []

    def analyze_turn(self, audio16k: np.ndarray, states: np.ndarray | None = None) -> EmotionResult:
        from attune.core.errors import EmotionError

        self.calls.append((len(audio16k), None if states is None else tuple(states.shape)))
        if self.fail:
            raise EmotionError("fake turn emotion failure")
        return make_result(self.emotion, 0.0, len(audio16k) / 16000, audio16k, confidence=self.confidence)


def make_result(emotion: EmotionCategory, start: float, end: float, audio: np.ndarray | None = None,
                confidence: float = 0.6) -> EmotionResult:
    from attune.core.emotion import CATEGORY_VAD

    v, a, d = CATEGORY_VAD[emotion]
    dims = PrimaryDimensions(v, a, d)
    scores = [(c, p) for c, p in dimensions_to_likely_emotions(dims)]
    scores = [(emotion, 0.9)] + [(c, p * 0.1) for c, p in scores if c is not emotion]
    samples = audio if audio is not None and audio.size else np.full(RATE, 0.1, dtype=np.float32)
    return EmotionResult(dims, predictions_from_scores(scores, 0.6), ProsodicMarkers(),
                         measure_quality(samples, RATE), end - start, "fake", confidence,
                         stream_start_s=start, stream_end_s=end)


def calm_planner(user: EmotionResult | None, strategy: str) -> NeutralPlan:
    return NeutralPlan(strategy=strategy, expressed_emotion=EmotionCategory.CALM, reason="test plan")


@dataclass
class Harness:
    asr: FixedASR = field(default_factory=FixedASR)
    llm: ScriptedLLM = field(default_factory=ScriptedLLM)
    tts: ToneTTS = field(default_factory=ToneTTS)
    emotion: Any = field(default_factory=FakeEmotion)
    turn_emotion: Any = None
    overrides: dict[str, Any] = field(default_factory=dict)
    planner: Callable[..., Any] = calm_planner
    aggregate: Callable[..., Any] = field(default=lambda rs: rs[-1] if rs else None)
    dsp_factory: Callable[..., Any] | None = None
    end_of_turn: Any = None  # e.g. FixedEndOfTurn
    phrases: Any = None  # a PhraseVoice over the harness's TTS (the speech cache)
    llm_speed: Any = None  # an LLMSpeed, as warm_up measures it
    admission: Any = None  # the shared LLM's door (``pipeline.shedding.Admission``); None = never shed

    def session(self) -> Session:
        # Partial passes call the ASR while the user speaks; tests that count ASR calls keep them off. The scripted
        # reply's first sentence ("Hello, nice to hear you.") is one piece, as the tests read it: the default one-word
        # first clause ("Hello," alone) is the splitter's tests' and the pacing tests'.
        pipeline = {"vad": "energy", "output_sample_rate": 16000, "partial_asr": False, "first_clause_min_words": 2,
                    **self.overrides.get("pipeline", {})}
        config = load_config(environ={}, overrides={**self.overrides, "pipeline": pipeline})
        backends = SessionBackends(asr=self.asr, llm=self.llm, voice=Voice(self.tts, self.phrases),
                                   vad=EnergyVAD(), emotion=self.emotion,
                                   aggregate=self.aggregate, planner=self.planner,
                                   dsp_factory=self.dsp_factory, turn_emotion=self.turn_emotion,
                                   end_of_turn=self.end_of_turn, measured=StartupFigures(self.llm_speed),
                                   admission=self.admission)
        return Session(config, backends)


def speech_frame(i: int) -> np.ndarray:
    t = (np.arange(FRAME) + i * FRAME) / RATE
    return (0.3 * np.sin(2 * np.pi * 200.0 * t)).astype(np.float32)


@dataclass
class Driver:
    """Streams scripted input into a session and collects its events. ``echo`` leaks the agent's output back into
    the input at ``ECHO_LEVEL`` (a constant value a user's voice never produces exactly)."""

    session: Session
    echo: bool = False
    events: list[SessionEvent] = field(default_factory=list)
    echo_frames: int = 0
    _i: int = 0

    async def frame(self, speech: bool) -> None:
        frame = speech_frame(self._i) if speech else np.zeros(FRAME, dtype=np.float32)
        if self.echo and self._agent_sounding():
            frame = frame + ECHO_LEVEL if speech else np.full(FRAME, ECHO_LEVEL, dtype=np.float32)
            self.echo_frames += 1
        self._i += 1
        await self.session.push_audio(frame)
        await asyncio.sleep(0.001)  # let the session's tasks and worker threads move
        while not self.session.events.empty():
            self.events.append(self.session.events.get_nowait())

    def _agent_sounding(self) -> bool:
        return any(e.type == "response.output_audio.delta" and e.audio is not None
                   and e.audio.timestamp_s <= self.session.now < e.audio.end_s + FRAME_S for e in self.events[-20:])

    async def speak(self, seconds: float) -> None:
        for _ in range(int(round(seconds * 1000 / 20))):
            await self.frame(True)

    async def silence(self, seconds: float) -> None:
        for _ in range(int(round(seconds * 1000 / 20))):
            await self.frame(False)

    async def silence_until(self, predicate: Callable[[list[SessionEvent]], bool], max_s: float = 20.0) -> None:
        for _ in range(int(max_s * 50)):
            if predicate(self.events):
                return
            await self.frame(False)
        raise AssertionError(f"condition not met within {max_s} s of stream time; events: "
                             f"{[e.type for e in self.events if e.type != 'response.output_audio.delta']}")

    async def until_idle(self, max_s: float = 30.0) -> None:
        await self.silence(0.1)
        await self.silence_until(lambda _: self.session.idle, max_s)

    def types(self) -> list[str]:
        return [e.type for e in self.events if e.type != "response.output_audio.delta"]

    def of(self, kind: str) -> list[SessionEvent]:
        return [e for e in self.events if e.type == kind]


class PitchedTTS:
    """A TTS provider that speaks a ``base_hz`` tone, ``seconds_per_word`` per word. With ``native`` it applies the
    prosody's pitch shift and volume itself, as espeak-ng does (``-p``, ``-a``); without, it leaves them to the DSP,
    as Piper does. ``fail`` fails every request before any audio. ``raw`` keeps each request's output."""

    def __init__(self, name: str, *, native: bool, sample_rate: int = 22050, base_hz: float = 200.0,
                 seconds_per_word: float = 0.25) -> None:
        self.name, self.native, self.sample_rate, self.base_hz = name, native, sample_rate, base_hz
        self.seconds_per_word = seconds_per_word
        self.fail = False
        self.raw: list[np.ndarray] = []

    async def synthesize(self, text: str, prosody: Any = None) -> AsyncIterator[AudioChunk]:
        if self.fail:
            raise TTSError(f"{self.name} is down", retryable=True, backend=self.name)
        shift = prosody.pitch_shift_semitones if (self.native and prosody is not None) else 0.0
        gain = 10 ** (prosody.volume_db / 20) if (self.native and prosody is not None) else 1.0
        n = int(len(text.split()) * self.seconds_per_word * self.sample_rate)
        t = np.arange(n) / self.sample_rate
        audio = (0.3 * gain * np.sin(2 * np.pi * self.base_hz * 2 ** (shift / 12) * t)).astype(np.float32)
        self.raw.append(audio)
        step = self.sample_rate // 10
        for i in range(0, n, step):
            yield AudioChunk(audio[i:i + step], self.sample_rate)


def peak_hz(samples: np.ndarray, rate: int) -> float:
    """The frequency of the strongest spectral peak (0.1 Hz resolution per second of audio x 8): a tone's f0."""
    x = np.asarray(samples, dtype=np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)), n=8 * len(x)))
    return float(np.argmax(spectrum) * rate / (8 * len(x)))


def level(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
