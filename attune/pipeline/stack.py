"""The embedded stack for a session: the configured ASR, LLM, TTS router, VAD, emotion detector, strategy and
prosody DSP, built once and shared by every session of a process; plus a warm-up so the first turn is not slow.

Every engine comes from the catalogue (``attune.core.catalog``) through its kind's ``create_*`` entry point; the
emotion detector runs the backend ``emotion.backend`` names.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Any

import numpy as np

from attune.agent.brain import default_planner
from attune.backends.asr.asr_factory import create_asr
from attune.backends.base import ASRBackend, ChatMessage, LLMBackend, TurnEmotion
from attune.backends.llm.llm_factory import create_llm
from attune.backends.tts.cache import speech_cache_from_config
from attune.backends.tts.tts_factory import create_tts
from attune.config import Config
from attune.core.errors import BackendError
from attune.core.frames import AudioChunk
from attune.core.machine import LLMSpeed
from attune.pipeline.listening import BackgroundWorker, EndOfTurnModel
from attune.pipeline.pacing import lone_voice_to_voice_ms
from attune.pipeline.phrases import PhraseVoice, prewarm, stock_phrases
from attune.pipeline.session import default_aggregate, default_dsp_factory
from attune.pipeline.session_backends import SessionBackends, Voice
from attune.pipeline.turn import create_vad

log = logging.getLogger(__name__)


def build_backends(config: Config, *, emotion: bool = True) -> SessionBackends:
    """Every engine a session needs, from ``config``. A missing engine raises ``BackendUnavailable`` with the
    install command; a missing emotion detector only turns emotion analysis off (logged). The result serves one
    session; ``for_session()`` gives the next session its own stream state over the same engines."""
    background = BackgroundWorker() if config.pipeline.partial_asr or config.pipeline.prefill_llm else None
    asr = create_asr(config)  # on this thread: its CTranslate2 workers keep normal priority (see _listen_asr)
    llm = create_llm(config)
    tts = create_tts(config)
    dsp = default_dsp_factory()
    phrases = PhraseVoice(tts, dsp if config.expression.apply_prosody else None,
                          config.pipeline.output_sample_rate, speech_cache_from_config(config))
    backends = SessionBackends(asr=asr, llm=llm, voice=Voice(tts, phrases), vad=create_vad(config),
                               aggregate=default_aggregate(), planner=default_planner(), dsp_factory=dsp,
                               end_of_turn=_end_of_turn_model(config), background=background,
                               listen_asr=_listen_asr(config, asr) if background is not None else None)
    return for_session(config, backends) if emotion else backends


def _listen_asr(config: Config, asr: ASRBackend) -> ASRBackend | None:
    """For faster-whisper, a second handle over the ASR's own model (``sibling()``: CTranslate2 replicas sharing
    one copy of the weights), so partial passes never wait for the reply's ASR. A second, one-thread model of the
    passes' own cost 59 MiB of RSS and a 106 MiB peak while it loaded (docs/BENCHMARKS.md, "Memory"). The price:
    the passes decode in CTranslate2's workers, which take the priority of the thread that loaded the model, i.e.
    normal priority, not the worker's nice +10. Loading the model in the niced worker instead put the reply's own
    ASR at nice +10 too, and on a loaded machine that took ASR done from about 0.5-1.1 s to 9.3 s."""
    from attune.backends.asr.faster_whisper_backend import FasterWhisperASR

    if config.pipeline.partial_asr and isinstance(asr, FasterWhisperASR):
        # One decode at temperature 0, without Whisper's fallback (the reply's final pass keeps it): the fallback
        # spent up to a second of both cores re-decoding a short turn's first half-second while the person spoke.
        # Tried before without ``TurnListener.hold`` it made the model's first word later (the passes' work met the
        # reply's); with the hold, same sitting, people's tail 22-24 -> 16-20 tokens, the early note kept in 14
        # of 17 turns instead of 9-11 (docs/BENCHMARKS.md, "The night sitting").
        return asr.sibling(fallback=False)
    return None


def _end_of_turn_model(config: Config) -> EndOfTurnModel | None:
    """smart-turn v3 when configured and installed; else None (silence alone ends a turn), logged."""
    if config.pipeline.end_of_turn_model == "none":
        return None
    from attune.backends.turn.smart_turn import SmartTurn

    try:
        return SmartTurn()
    except BackendError as exc:
        log.warning("end-of-turn model off (silence alone ends a turn): %s", exc)
        return None


def for_session(config: Config, backends: SessionBackends) -> SessionBackends:
    """The same engines (ASR, LLM, TTS: shared, loaded once) with fresh per-stream state: a new VAD and a new
    streaming emotion detector over its own ``emotion.backend`` (the backend keeps the speaker's statistics).
    A whole-turn backend (whisper, hybrid) reads each turn once, after ASR, from the ASR's encoder pass
    (``turn_emotion``), while the 1 s windows keep the cheap prosodic meter. One call per session; two sessions
    must never share these. A backend that cannot run here falls back to prosodic (logged once); if even that
    fails, emotion analysis is off for the session (logged)."""
    from attune.backends.emotion.detector import VoiceEmotionDetector
    from attune.backends.emotion.emotion_factory import create_emotion_backend

    detector: VoiceEmotionDetector | None = None
    turn: TurnEmotion | None = None
    try:
        backend = create_emotion_backend(config)
        if isinstance(backend, TurnEmotion):  # whisper / hybrid: read once per turn; the live meter stays prosodic
            turn, backend = backend, create_emotion_backend(config, "prosodic")
        detector = VoiceEmotionDetector(config.emotion, backend)
    except BackendError as exc:
        log.warning("emotion analysis off: %s", exc)
    return replace(backends, vad=create_vad(config), emotion=detector, turn_emotion=turn)


async def warm_up(backends: SessionBackends, config: Config, greetings: tuple[str, ...] = (), *,
                  admission: bool = False) -> dict[str, float]:
    """Load models and fill caches (the LLM's persona prefix; with ``speech_cache.prewarm`` the stock phrases:
    ``greetings`` and the acknowledgements) so the first real turn is representative. Returns seconds per engine,
    and the LLM's speed measured here (``llm_tokens_per_s``, ``llm_s_per_token``, ``llm_first_token_ms``; kept in
    ``backends.measured`` too, where the pacing of the first clause and the server's admission read it) and the CPU
    of one end-of-turn pass (``end_of_turn_cpu_s``); with ``admission`` (the server's: its derived capacity reckons
    with them) also a typical first clause made audible while the LLM writes (``first_clause_speech_s``,
    ``measure_first_clause``: a second of start-up the other transports do not need)."""
    from attune.agent.brain import PromptBuilder
    from attune.agent.persona import configured_persona

    out: dict[str, float] = {}
    t = time.perf_counter()
    rng = np.random.default_rng(0)
    noise = (0.01 * rng.standard_normal(16000)).astype(np.float32)
    await asyncio.to_thread(backends.asr.transcribe, AudioChunk(noise, 16000))
    loaded = time.perf_counter()
    # A pass once loaded is what a turn's final pass costs (the server's admission reads it). The listener's handle
    # shares the model, so its own warm-up pass is that pass; without a listener the reply's handle runs one more.
    await asyncio.to_thread((backends.listen_asr or backends.asr).transcribe, AudioChunk(noise, 16000))
    out["asr_pass_s"] = time.perf_counter() - loaded
    out["asr_s"] = (time.perf_counter() if backends.listen_asr is not None else loaded) - t
    t = time.perf_counter()
    plan = backends.planner(None, config.expression.strategy)
    builder = PromptBuilder(configured_persona(config.agent),
                            reply_tag=config.agent.reply_tag, note_first=config.agent.voice_note_first)
    prefix = builder.build(_empty_memory(), "hello", None, plan)[:-1]  # system text and worked turns
    async for _ in backends.llm.stream([*prefix, ChatMessage("user", "Hi.")], max_tokens=4, temperature=0.0):
        pass
    out["llm_s"] = time.perf_counter() - t
    speed = await measure_llm_speed(backends.llm, prefix)
    if speed is not None:
        backends.measured.llm_speed = speed
        out["llm_tokens_per_s"], out["llm_first_token_ms"] = speed.tokens_per_s, speed.first_token_ms
        out["llm_s_per_token"] = 1.0 / speed.tokens_per_s
    t = time.perf_counter()
    async for _ in backends.tts.synthesize("Hello.", None):
        pass
    out["tts_s"] = time.perf_counter() - t
    if speed is not None and admission:
        clause = await measure_first_clause(backends, config, prefix)
        if clause is not None:
            out["first_clause_speech_s"] = clause
    if backends.voice.phrases is not None and config.speech_cache.prewarm:
        t = time.perf_counter()
        report = await prewarm(backends.voice.phrases, stock_phrases(config, greetings))
        out["phrases_s"] = time.perf_counter() - t
        log.info("stock phrases: %d from the cache, %d rendered, %d failed", report.ready, report.rendered,
                 report.failed)
    if backends.end_of_turn is not None:
        t = time.perf_counter()
        await asyncio.to_thread(backends.end_of_turn.complete_probability, noise)
        out["end_of_turn_s"] = time.perf_counter() - t
        cpu = time.process_time()  # a second pass, warm: every thread's CPU, what one listener's pass costs the cores
        await asyncio.to_thread(backends.end_of_turn.complete_probability, noise)
        out["end_of_turn_cpu_s"] = time.process_time() - cpu
    return out


def lone_voice_to_voice_s(config: Config, speed: LLMSpeed | None, asr_pass_s: float,
                          clause_speech_s: float | None = None) -> float | None:
    """A lone session's voice-to-voice here (s), from the speeds ``warm_up`` measured (``pacing``): the budget the
    server's derived admission fits the waits of the last admitted reply into, until a reply is measured. The ASR
    pass runs inside the commit's wait (a lone session's speculative reply starts it ``speculate_silence_ms``
    into the silence); ``clause_speech_s``: ``warm_up``'s ``first_clause_speech_s``. None: the LLM's speed is
    unknown."""
    p = config.pipeline
    commit_ms = p.eot_likely_ms if p.end_of_turn_model != "none" else p.end_of_turn_silence_ms
    ms = lone_voice_to_voice_ms(speed, asr_pass_ms=1000.0 * asr_pass_s, commit_ms=commit_ms,
                                speculate_ms=p.speculate_silence_ms,
                                clause_speech_ms=None if clause_speech_s is None else 1000.0 * clause_speech_s)
    return None if ms is None else ms / 1000.0


CLAUSE_TOKENS = 24  # tokens the LLM writes while the typical first clause is timed (a reply's rest)


async def measure_first_clause(backends: SessionBackends, config: Config, prefix: list[ChatMessage]
                               ) -> float | None:
    """Seconds from a typical first clause's text (``pacing.TYPICAL_FIRST_CLAUSE``) to its first audio as a reply
    makes it: the TTS's first chunk, the prosody DSP (``expression.apply_prosody``) and the resampling to the
    output rate, while the LLM writes on (a shared LLM generates a reply's rest at once, ``SharedLLM``'s pump,
    so the synthesis shares the cores with it). None when the LLM fails (logged)."""
    from attune.core.audio import resample
    from attune.core.emotion import EmotionCategory
    from attune.core.prosody import profile_for
    from attune.pipeline.pacing import TYPICAL_FIRST_CLAUSE

    tts, out_rate = backends.tts, config.pipeline.output_sample_rate
    prosody = profile_for(EmotionCategory.NEUTRAL, 0.6)
    shaped = backends.dsp_factory is not None and config.expression.apply_prosody

    async def writing(started: asyncio.Event) -> None:
        async for _ in backends.llm.stream([*prefix, ChatMessage("user", "Tell me about your week.")],
                                           max_tokens=CLAUSE_TOKENS, temperature=0.0):
            started.set()

    def shape(samples: np.ndarray, rate: int) -> np.ndarray:
        if shaped:
            assert backends.dsp_factory is not None
            dsp = backends.dsp_factory(rate, prosody)
            samples = np.concatenate([np.asarray(dsp.push(samples), np.float32), np.asarray(dsp.flush(), np.float32)])
        return samples if rate == out_rate else resample(samples, rate, out_rate)

    started = asyncio.Event()
    llm = asyncio.create_task(writing(started))
    first = asyncio.create_task(started.wait())
    try:
        await asyncio.wait([llm, first], return_when=asyncio.FIRST_COMPLETED)
        t = time.perf_counter()
        async for chunk in tts.synthesize(TYPICAL_FIRST_CLAUSE, prosody):
            await asyncio.to_thread(shape, chunk.samples, chunk.sample_rate)
            break
        took = time.perf_counter() - t
        await llm
    except BackendError as exc:
        log.warning("first clause not timed: %s", exc)
        return None
    finally:
        for task in (llm, first):
            if not task.done():
                task.cancel()
        await asyncio.gather(llm, first, return_exceptions=True)
    return took


SPEED_TOKENS = 16  # tokens written to measure the LLM's speed at start-up (~0.5-1.5 s on 2 cores)


async def measure_llm_speed(llm: LLMBackend, prefix: list[ChatMessage]) -> LLMSpeed | None:
    """The LLM's speed here, bench-llm style: a short user turn after the (now cached) prefix, its first token's
    time and the tokens per second after it. None when it wrote fewer than 4 pieces or failed (logged)."""
    t0 = time.perf_counter()
    first, pieces = 0.0, 0
    try:
        async for _ in llm.stream([*prefix, ChatMessage("user", "Tell me about your day.")],
                                  max_tokens=SPEED_TOKENS, temperature=0.0):
            pieces += 1
            if pieces == 1:
                first = time.perf_counter() - t0
    except BackendError as exc:
        log.warning("LLM speed not measured: %s", exc)
        return None
    total = time.perf_counter() - t0
    if pieces < 4 or total <= first:
        return None
    return LLMSpeed(tokens_per_s=(pieces - 1) / (total - first), first_token_ms=1000.0 * first)


def _empty_memory() -> Any:
    from attune.agent.memory import ConversationMemory

    return ConversationMemory()
