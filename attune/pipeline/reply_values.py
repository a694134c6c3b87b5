"""What a reply is given and what it gives back, as values: ``ReplySettings`` (what it reads of the session's
settings), ``ReplyDeps`` (everything it uses: engines, the understanding step, the output clock, the emit callable)
and the frozen ``ReplyOutcome`` the session records; the prosody DSP's shape (``ProsodyShaper``, ``DSPFactory``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from attune.agent.brain import ResponsePlanLike
from attune.backends.base import ASRBackend, Completion, LLMBackend, TTSBackend, TurnEmotion
from attune.core.emotion import EmotionResult
from attune.core.events import SessionEvent
from attune.core.prosody import ProsodyParameters
from attune.core.trace import TurnTrace
from attune.pipeline.phrases import PhraseVoice
from attune.pipeline.understanding import TurnContext, Understander

if TYPE_CHECKING:
    from attune.pipeline.acknowledgement import Acknowledgement
    from attune.pipeline.shedding import Place


class ProsodyShaper(Protocol):
    """A streaming prosody DSP (``attune.agent.prosody_dsp.ProsodyApplicator``): push samples, flush at the end."""

    def push(self, samples: np.ndarray) -> np.ndarray: ...

    def flush(self) -> np.ndarray: ...


DSPFactory = Callable[[int, ProsodyParameters], ProsodyShaper]  # (sample_rate, what to apply) -> DSP


@dataclass(frozen=True)
class ReplySettings:
    """What a reply reads of the session's settings (``SessionSettings.reply``)."""

    output_sample_rate: int = 24000  # Hz of reply audio events
    first_clause_min_words: int = 1
    hold_llm_for_first_audio: bool = True
    queue_size: int = 64  # bound of the reply's inter-stage queues
    max_tokens: int = 96
    temperature: float = 0.7
    apply_prosody: bool = True  # shape the speech with the DSP (what the TTS engine did not apply natively)
    acknowledgements: bool = False  # a short vocal response from the cache before a slow reply (not its text)
    cache_sentences: bool = True  # look each sentence up in the speech cache (``ReplyDeps.phrases``)


@dataclass(frozen=True)
class ReplyDeps:
    """Everything a reply uses. ``context()`` is read once, after ASR; ``schedule_output(duration_s)`` reserves
    output time and returns its stream start once it is due; ``emit`` delivers an event to the transport."""

    asr: ASRBackend
    llm: LLMBackend
    tts: TTSBackend
    understander: Understander
    settings: ReplySettings
    context: Callable[[], TurnContext]
    schedule_output: Callable[[float], Awaitable[float]]
    emit: Callable[[SessionEvent], None]
    dsp_factory: DSPFactory | None = None
    turn_emotion: TurnEmotion | None = None  # read after ASR; its result is the turn's emotion (windows: meter)
    phrases: PhraseVoice | None = None  # the speech cache's voice; None = every sentence synthesised
    # (words, plan) -> (Acknowledgement, output-rate samples) or None; ``pipeline.acknowledgement``
    acknowledge: Callable[[str, ResponsePlanLike], tuple[Acknowledgement, np.ndarray] | None] | None = None
    # The reply's place at the shared LLM, asked for before its ASR pass (``pipeline.shedding``): a ``Place`` to
    # hold, None (nothing to hold), or ``ServerBusy``: the turn is refused at once. None here: always admitted.
    admit: Callable[[], Place | None] | None = None


@dataclass(frozen=True)
class ReplyOutcome:
    """How a reply ended. ``status``: completed | failed | empty (nothing to answer) | cancelled (cut off at
    ``heard_at``). ``heard_text`` is what the user heard of ``reply_text``; ``user_message`` the turn as the LLM
    saw it. ``recorded``: the session keeps it (a committed reply that answered or was cut off)."""

    turn: int
    status: str
    committed: bool
    transcript: str
    user_message: str
    reply_text: str
    heard_text: str
    user_emotion: EmotionResult | None
    plan: ResponsePlanLike | None
    trace: TurnTrace
    completion: Completion | None = None  # the LLM call's own figures (None: no call was made)

    @property
    def interrupted(self) -> bool:
        return self.status == "cancelled"

    @property
    def recorded(self) -> bool:
        return self.committed and self.status != "empty"
