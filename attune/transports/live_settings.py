"""A WebSocket session's live settings (``session.update``): the input format and rate at the edge, and the
strategy, persona (``persona_id``: a stored persona's traits, strategy and voice; ``null``: back to the configured
agent), voice and turn-taking thresholds applied to its ``Session``. ``describe()`` is the ``session`` object of
``session.created`` / ``session.updated``."""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any

from attune.backends.base import TTSBackend
from attune.backends.tts.router import VoiceModelRouter
from attune.core.audio import SAMPLE_RATE
from attune.pipeline.session import Session
from attune.pipeline.session_backends import AgentState, ChosenPersona, SessionChange, agent_change, persona_change
from attune.pipeline.turn import TurnSettings
from attune.transports.protocol import NO_PERSONA, SessionUpdate, StreamingResampler, TurnDetection


def voice_of(router: TTSBackend, provider: str) -> TTSBackend:
    """One session's choice of TTS provider: a shallow copy of the shared router whose requests name it by
    default. The providers, their statistics and cool-downs stay shared (the same objects). A plain TTS backend
    has no providers to choose (``voices_of`` offers none): it is returned as it is."""
    if not isinstance(router, VoiceModelRouter):
        return router
    view = copy.copy(router)
    view.default_provider = provider
    return view


def voices_of(tts: TTSBackend) -> tuple[str, ...]:
    """The providers a client may choose: the router's built ones (none for a plain TTS backend)."""
    return tuple(sorted(tts.providers)) if isinstance(tts, VoiceModelRouter) else ()


@dataclass
class LiveSettings:
    """The edge's part (input rate and format) plus what was applied to the session."""

    input_sample_rate: int = SAMPLE_RATE
    input_audio_format: str = "pcm16"
    voice: str = ""
    persona_id: str | None = None
    resampler: StreamingResampler | None = None
    agent: AgentState | None = None  # the configured agent, taken before the session's first change

    def apply(self, update: SessionUpdate, session: Session, shared_tts: TTSBackend, *,
              persona: ChosenPersona | None = None) -> None:
        """Apply a validated update: the edge's part here, the rest as one ``SessionChange`` (the next input frame
        and the next reply use it). ``persona``: ``update.persona_id``'s record and voice, resolved by the
        connection; its traits, strategy and voice apply first, so a ``persona``, ``strategy`` or ``voice`` in the
        same update overrides them. ``update.persona_id == NO_PERSONA`` (the client's ``null``) puts the
        configured agent back: its persona text and strategy, the shared voice and its caches."""
        if self.agent is None:
            st = session.settings
            self.agent = AgentState(st.persona, st.strategy, session.backends.voice)
        if update.input_sample_rate is not None and update.input_sample_rate != self.input_sample_rate:
            self.input_sample_rate = update.input_sample_rate
            self.resampler = (None if self.input_sample_rate == SAMPLE_RATE
                              else StreamingResampler(self.input_sample_rate, SAMPLE_RATE))
        if update.input_audio_format is not None:
            self.input_audio_format = update.input_audio_format
        change = SessionChange()
        if persona is not None:
            self.persona_id, self.voice = persona.record.id, ""
            change = persona_change(session.settings, self.agent.voice, persona)
        elif update.persona_id == NO_PERSONA:
            self.persona_id, self.voice = None, ""
            change = agent_change(session.settings, self.agent)
        st = change.settings or session.settings
        voice = change.voice
        if update.voice is not None:
            self.voice = update.voice
            voice = (voice or session.backends.voice).with_provider(voice_of(shared_tts, update.voice))
        changes: dict[str, Any] = {}
        if update.strategy is not None:
            changes["strategy"] = update.strategy
        if update.persona is not None:
            changes["persona"] = replace(st.persona, description=update.persona)
        if update.turn_detection is not None:
            changes["turn"] = _turn(st.turn, update.turn_detection)
        if changes or change.settings is not None or voice is not None:
            session.apply(SessionChange(replace(st, **changes) if changes or change.settings else None, voice))

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
            "turn_detection": {"type": "server_vad", "threshold": s.vad_threshold, "prefix_padding_ms": s.preroll_ms,
                               "silence_duration_ms": s.end_of_turn_silence_ms, "min_speech_ms": s.min_speech_ms},
        }


def _turn(t: TurnSettings, td: TurnDetection) -> TurnSettings:
    """The session's turn-taking with a client's ``turn_detection`` over it (OpenAI's names on the wire:
    docs/PROTOCOL.md's table maps them)."""
    end = td.silence_duration_ms if td.silence_duration_ms is not None else t.end_of_turn_silence_ms
    return replace(t, vad_threshold=td.threshold if td.threshold is not None else t.vad_threshold,
                   preroll_ms=td.prefix_padding_ms if td.prefix_padding_ms is not None else t.preroll_ms,
                   min_speech_ms=td.min_speech_ms if td.min_speech_ms is not None else t.min_speech_ms
                   ).ending_after(end)
