"""A WebSocket session's live settings (``session.update``): the input format and rate at the edge, and the
strategy, persona, voice and turn-taking thresholds applied to its ``Session``. ``describe()`` is the ``session``
object of ``session.created`` / ``session.updated``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from attune.agent.brain import PromptBuilder
from attune.agent.persona import Persona
from attune.core.audio import SAMPLE_RATE
from attune.core.frames import AudioChunk
from attune.pipeline.session import Session
from attune.transports.protocol import SessionUpdate, StreamingResampler


class ProviderVoice:
    """One session's choice of TTS provider over the shared router (``VoiceModelRouter``): every request names it."""

    def __init__(self, router: Any, provider: str) -> None:
        self.router = router
        self.provider = provider
        self.name = f"{getattr(router, 'name', 'tts')}:{provider}"
        self.sample_rate = router.sample_rate

    def planned_provider(self) -> str:
        return str(self.router.planned_provider(provider=self.provider))

    def synthesize(self, text: str, prosody: Any = None) -> AsyncIterator[AudioChunk]:
        stream: AsyncIterator[AudioChunk] = self.router.synthesize(text, prosody, provider=self.provider)
        return stream


def voices_of(tts: Any) -> tuple[str, ...]:
    """The providers a client may choose: the router's built ones (none for a plain TTS backend)."""
    providers = getattr(tts, "providers", None)
    return tuple(sorted(providers)) if isinstance(providers, dict) else ()


@dataclass
class LiveSettings:
    """The edge's part (input rate and format) plus what was applied to the session."""

    input_sample_rate: int = SAMPLE_RATE
    input_audio_format: str = "pcm16"
    voice: str = ""
    resampler: StreamingResampler | None = None

    def apply(self, update: SessionUpdate, session: Session, shared_tts: Any) -> None:
        """Apply a validated update; the next input frame and the next reply use it."""
        if update.input_sample_rate is not None and update.input_sample_rate != self.input_sample_rate:
            self.input_sample_rate = update.input_sample_rate
            self.resampler = (None if self.input_sample_rate == SAMPLE_RATE
                              else StreamingResampler(self.input_sample_rate, SAMPLE_RATE))
        if update.input_audio_format is not None:
            self.input_audio_format = update.input_audio_format
        cfg = session.config
        if update.strategy is not None:
            session.config = replace(cfg, expression=replace(cfg.expression, strategy=update.strategy))
        if update.persona is not None:
            session.prompt = PromptBuilder(Persona(cfg.agent.name, update.persona), reply_tag=cfg.agent.reply_tag)
        if update.voice is not None:
            self.voice = update.voice
            session.backends.tts = ProviderVoice(shared_tts, update.voice)
        td = update.turn_detection
        if td is not None:
            s = session.detector.s
            end = td.silence_duration_ms if td.silence_duration_ms is not None else s.end_of_turn_ms
            session.detector.configure(replace(
                s, threshold=td.threshold if td.threshold is not None else s.threshold,
                preroll_ms=td.prefix_padding_ms if td.prefix_padding_ms is not None else s.preroll_ms,
                min_speech_ms=td.min_speech_ms if td.min_speech_ms is not None else s.min_speech_ms,
                end_of_turn_ms=end, speculate_ms=min(s.speculate_ms, max(32, end - 32))))

    def to_16k(self, samples: Any) -> Any:
        return samples if self.resampler is None else self.resampler.push(samples)

    def describe(self, session: Session) -> dict[str, Any]:
        s = session.detector.s
        return {
            "input_sample_rate": self.input_sample_rate,
            "input_audio_format": self.input_audio_format,
            "output_sample_rate": session.settings.output_sample_rate,
            "output_audio_format": "pcm16",
            "strategy": session.config.expression.strategy,
            "persona": session.prompt.persona.description,
            "voice": self.voice or None,
            "turn_detection": {"type": "server_vad", "threshold": s.threshold, "prefix_padding_ms": s.preroll_ms,
                               "silence_duration_ms": s.end_of_turn_ms, "min_speech_ms": s.min_speech_ms},
        }
