"""A WebSocket session's live settings (``session.update``): the input format and rate at the edge, and the
strategy, persona (``persona_id``: a stored persona's traits, strategy and voice; ``null``: back to the configured
agent), voice and turn-taking thresholds applied to its ``Session``. ``describe()`` is the ``session`` object of
``session.created`` / ``session.updated``."""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any

from attune.agent.persona_model import PersonaRecord
from attune.core.audio import SAMPLE_RATE
from attune.pipeline.session import Session
from attune.transports.protocol import NO_PERSONA, SessionUpdate, StreamingResampler


def voice_of(router: Any, provider: str) -> Any:
    """One session's choice of TTS provider: a shallow copy of the shared router whose requests name it by
    default. The providers, their statistics and cool-downs stay shared (the same objects)."""
    view = copy.copy(router)
    view.default_provider = provider
    return view


def voices_of(tts: Any) -> tuple[str, ...]:
    """The providers a client may choose: the router's built ones (none for a plain TTS backend)."""
    providers = getattr(tts, "providers", None)
    return tuple(sorted(providers)) if isinstance(providers, dict) else ()


@dataclass(frozen=True)
class AgentState:
    """What a session ran as before its first update: the configured agent's persona and strategy, and the
    shared voice's openings and cached sentences (``{"persona_id": null}`` restores them)."""

    persona: Any
    strategy: str
    openings: Any
    phrases: Any

    @classmethod
    def of(cls, session: Session) -> AgentState:
        b = session.backends
        return cls(session.settings.persona, session.settings.strategy, getattr(b, "openings", None),
                   getattr(b, "phrases", None))


@dataclass
class LiveSettings:
    """The edge's part (input rate and format) plus what was applied to the session."""

    input_sample_rate: int = SAMPLE_RATE
    input_audio_format: str = "pcm16"
    voice: str = ""
    persona_id: str | None = None
    resampler: StreamingResampler | None = None
    agent: AgentState | None = None  # the configured agent, taken before the session's first change

    def apply(self, update: SessionUpdate, session: Session, shared_tts: Any, *,
              persona: tuple[PersonaRecord, Any] | None = None) -> None:
        """Apply a validated update: the edge's part here, the rest as one new ``SessionSettings`` (the next input
        frame and the next reply use it). ``persona``: the record and ``PersonaVoice`` of ``update.persona_id``,
        resolved by the connection; its traits, strategy and voice apply first, so a ``persona``, ``strategy`` or
        ``voice`` in the same update overrides them. ``update.persona_id == NO_PERSONA`` (the client's ``null``)
        puts the configured agent back: its persona text and strategy, the shared TTS, openings and phrases."""
        if self.agent is None:
            self.agent = AgentState.of(session)
        if update.input_sample_rate is not None and update.input_sample_rate != self.input_sample_rate:
            self.input_sample_rate = update.input_sample_rate
            self.resampler = (None if self.input_sample_rate == SAMPLE_RATE
                              else StreamingResampler(self.input_sample_rate, SAMPLE_RATE))
        if update.input_audio_format is not None:
            self.input_audio_format = update.input_audio_format
        st = session.settings
        changes: dict[str, Any] = {}
        if persona is not None:
            record, voice = persona
            self.persona_id, self.voice = record.id, ""
            session.backends.tts = voice
            openings = getattr(session.backends, "openings", None)
            if openings is not None:  # cached openings in the persona's voice, keyed by its identity
                session.backends.openings = openings.speaking_with(voice)
            phrases = getattr(session.backends, "phrases", None)
            if phrases is not None:  # reply sentences looked up and kept in the persona's voice
                session.backends.phrases = phrases.speaking_with(voice)
            changes["persona"] = record.persona(st.persona)
            changes["strategy"] = record.strategy
        elif update.persona_id == NO_PERSONA:
            agent = self.agent
            self.persona_id, self.voice = None, ""
            session.backends.tts = shared_tts
            if agent.openings is not None:
                session.backends.openings = agent.openings
            if agent.phrases is not None:
                session.backends.phrases = agent.phrases
            changes["persona"], changes["strategy"] = agent.persona, agent.strategy
        if update.voice is not None:
            self.voice = update.voice
            session.backends.tts = voice_of(shared_tts, update.voice)
        if update.strategy is not None:
            changes["strategy"] = update.strategy
        if update.persona is not None:
            changes["persona"] = replace(changes.get("persona", st.persona), description=update.persona)
        td = update.turn_detection
        if td is not None:
            t = st.turn
            end = td.silence_duration_ms if td.silence_duration_ms is not None else t.end_of_turn_ms
            changes["turn"] = replace(
                t, threshold=td.threshold if td.threshold is not None else t.threshold,
                preroll_ms=td.prefix_padding_ms if td.prefix_padding_ms is not None else t.preroll_ms,
                min_speech_ms=td.min_speech_ms if td.min_speech_ms is not None else t.min_speech_ms,
                end_of_turn_ms=end, speculate_ms=min(t.speculate_ms, max(32, end - 32)))
        if changes:
            session.update_settings(replace(st, **changes))

    def to_16k(self, samples: Any) -> Any:
        return samples if self.resampler is None else self.resampler.push(samples)

    def describe(self, session: Session) -> dict[str, Any]:
        st = session.settings
        s = st.turn
        return {
            "input_sample_rate": self.input_sample_rate,
            "input_audio_format": self.input_audio_format,
            "output_sample_rate": st.reply.output_sample_rate,
            "output_audio_format": "pcm16",
            "strategy": st.strategy,
            "persona": st.persona.description,
            "voice": self.voice or None,
            "persona_id": self.persona_id,
            "turn_detection": {"type": "server_vad", "threshold": s.threshold, "prefix_padding_ms": s.preroll_ms,
                               "silence_duration_ms": s.end_of_turn_ms, "min_speech_ms": s.min_speech_ms},
        }
