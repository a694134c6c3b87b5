"""What a session runs with, as frozen values: its engines and its voice (``SessionBackends``: built once per process
by ``pipeline.stack.build_backends``, given fresh stream state per session by ``stack.for_session``), and a change
to them while it runs (``SessionChange``, which ``Session.apply`` takes: the one way a running session's settings
or voice change, used alike by the WebSocket edge, the kiosk and the Realtime adapter).

A stored persona becomes a change in one place, ``persona_change``; ``AgentState`` is what a session ran as before
its first change (``{"persona_id": null}`` goes back to it).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from attune.agent.brain import Planner, default_planner
from attune.agent.persona import Persona
from attune.agent.persona_model import PersonaRecord
from attune.backends.base import ASRBackend, LLMBackend, TTSBackend, TurnEmotion
from attune.core.machine import LLMSpeed
from attune.pipeline.emotion_stage import StreamingEmotion
from attune.pipeline.listening import BackgroundWorker, EndOfTurnModel
from attune.pipeline.phrases import PhraseVoice
from attune.pipeline.reply import DSPFactory
from attune.pipeline.settings import SessionSettings
from attune.pipeline.shedding import Admission
from attune.pipeline.turn import VoiceActivity
from attune.pipeline.understanding import Aggregator


@dataclass(frozen=True)
class Voice:
    """How the agent sounds: the TTS a reply speaks with (the shared router, a view of it naming one provider, or
    a persona's voice) and the speech cache's phrases in that voice (``None`` = no cache)."""

    tts: TTSBackend
    phrases: PhraseVoice | None = None

    def speaking_with(self, tts: TTSBackend) -> Voice:
        """The same cache over another TTS (a persona's voice): its keys name that voice, so nothing rendered in
        one voice is played in another."""
        return Voice(tts, None if self.phrases is None else self.phrases.speaking_with(tts))

    def with_provider(self, tts: TTSBackend) -> Voice:
        """A view of the shared router that names one provider (``session.update`` ``voice``). The cache stays the
        agent's: a reply looks a sentence up only in a cache whose TTS is its own (``Reply._sentence_cache``)."""
        return replace(self, tts=tts)


@dataclass
class StartupFigures:
    """What ``stack.warm_up`` measured of this process's engines (shared by every session's value): the LLM's
    speed here, which paces the first clause and the first sound (``pipeline.pacing``). Not per call: a call's
    own figures come back with it (``TokenStream.completion``)."""

    llm_speed: LLMSpeed | None = None


@dataclass(frozen=True)
class SessionBackends:
    """The engines one session uses; ``emotion`` None runs without emotion analysis. Frozen: a running session
    changes its voice only through ``Session.apply``; ``stack.for_session`` makes the next session's value."""

    asr: ASRBackend
    llm: LLMBackend
    voice: Voice
    vad: VoiceActivity
    emotion: StreamingEmotion | None = None
    aggregate: Aggregator | None = None
    planner: Planner = field(default_factory=default_planner)
    dsp_factory: DSPFactory | None = None  # (sample_rate, ProsodyParameters) -> push/flush DSP
    turn_emotion: TurnEmotion | None = None  # a whole-turn reader (whisper, hybrid) over the ASR's encoder pass
    end_of_turn: EndOfTurnModel | None = None  # smart-turn: P(the turn is complete); None = silence alone
    listen_asr: ASRBackend | None = None  # the partial passes' ASR (``asr.sibling()``, one model); None = ``asr``
    background: BackgroundWorker | None = None  # the worker of partial passes and prefill; None = neither
    measured: StartupFigures = field(default_factory=StartupFigures)  # warm_up's, shared by for_session's values
    admission: Admission | None = None  # the shared LLM's door (the server's ``SessionLLM``); None = never shed

    @property
    def tts(self) -> TTSBackend:
        return self.voice.tts


@dataclass(frozen=True)
class SessionChange:
    """A change to a running session: new settings (the next frame's turn-taking, the next reply's rest), a new
    voice (the next reply's), or both. ``None`` leaves that part as it is."""

    settings: SessionSettings | None = None
    voice: Voice | None = None


@dataclass(frozen=True)
class ChosenPersona:
    """A stored persona a session turns into: its record (traits, strategy, greeting) and its voice (a
    ``PersonaVoice`` over the shared router)."""

    record: PersonaRecord
    voice: TTSBackend


@dataclass(frozen=True)
class AgentState:
    """What a session ran as before its first change: the configured agent's persona and strategy, and the
    shared voice with its speech cache."""

    persona: Persona
    strategy: str
    voice: Voice


def persona_change(settings: SessionSettings, agent_voice: Voice, chosen: ChosenPersona) -> SessionChange:
    """The change that turns a session into ``chosen``: its traits over the current persona, its strategy, and
    the agent's speech cache speaking in its voice. The one place a stored persona meets a session."""
    persona = chosen.record.persona(settings.persona)
    return SessionChange(replace(settings, persona=persona, strategy=chosen.record.strategy),
                         agent_voice.speaking_with(chosen.voice))


def agent_change(settings: SessionSettings, agent: AgentState) -> SessionChange:
    """The change back to the configured agent (``{"persona_id": null}``)."""
    return SessionChange(replace(settings, persona=agent.persona, strategy=agent.strategy), agent.voice)
