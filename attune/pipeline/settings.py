"""A session's own settings: one frozen, replaceable value, taken from the configuration when the session opens.

Everything a running session reads (turn thresholds, barge-in, strategy, persona, the reply's output) comes from
``Session.settings``, never from the frozen ``Config``; ``Session.apply`` swaps in a new value, which the
next input frame and the next reply see.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from attune.agent.brain import PromptBuilder
from attune.agent.persona import Persona, configured_persona
from attune.config import Config
from attune.pipeline.endpoint import EndpointSettings
from attune.pipeline.listening import ListenSettings
from attune.pipeline.reply import ReplySettings
from attune.pipeline.turn import TurnSettings
from attune.pipeline.turn_policy import PolicySettings


@dataclass(frozen=True)
class SessionSettings:
    turn: TurnSettings = field(default_factory=TurnSettings)  # turn detection: VAD threshold, pre-roll, silences
    policy: PolicySettings = field(default_factory=PolicySettings)  # turn-taking: barge-in
    endpoint: EndpointSettings | None = None  # the predicted end of turn's silences; None = silence alone
    listen: ListenSettings = field(default_factory=ListenSettings)  # partial passes and KV prefill while speaking
    reply: ReplySettings = field(default_factory=ReplySettings)
    persona: Persona = field(default_factory=Persona)
    strategy: str = "complement"  # match | complement | amplify | neutral
    fuse_words: bool = True
    reply_tag: bool = False
    voice_note_first: bool = False  # the prompt's voice note before the words (``PromptBuilder.note_first``)
    output_lookahead_ms: int = 60  # reply audio sent ahead of the input clock
    queue_size: int = 64  # bound of the session's input and emotion queues
    event_queue_size: int = 2048

    @property
    def prompt_key(self) -> tuple[object, ...]:
        """What the prompt builder depends on (a change rebuilds it)."""
        return (self.persona, self.reply_tag, self.voice_note_first)

    def prompt_builder(self) -> PromptBuilder:
        return PromptBuilder(self.persona, reply_tag=self.reply_tag, note_first=self.voice_note_first)

    @classmethod
    def from_config(cls, config: Config, persona: Persona | None = None) -> SessionSettings:
        p, a = config.pipeline, config.agent
        return cls(
            turn=TurnSettings.from_config(p),
            policy=PolicySettings(barge_in_min_ms=p.barge_in_min_ms),
            endpoint=None if p.end_of_turn_model == "none" else EndpointSettings(
                complete_ms=p.eot_complete_ms, likely_ms=p.eot_likely_ms, unfinished_ms=p.eot_unfinished_ms,
                worded_ms=p.eot_worded_ms, sounded_ms=p.eot_sounded_ms),
            listen=ListenSettings(partial_asr=p.partial_asr, prefill=p.prefill_llm, step_s=p.partial_step_ms / 1000),
            reply=ReplySettings(output_sample_rate=p.output_sample_rate,
                                first_clause_min_words=p.first_clause_min_words,
                                hold_llm_for_first_audio=p.hold_llm_for_first_audio, queue_size=p.queue_size,
                                max_tokens=config.llm.max_tokens, temperature=config.llm.temperature,
                                apply_prosody=config.expression.apply_prosody,
                                acknowledgements=a.acknowledgements,
                                cache_sentences=config.speech_cache.reply_sentences),
            persona=persona or configured_persona(a),
            strategy=config.expression.strategy, fuse_words=a.fuse_words, reply_tag=a.reply_tag,
            voice_note_first=a.voice_note_first,
            output_lookahead_ms=p.output_lookahead_ms, queue_size=p.queue_size,
            event_queue_size=p.event_queue_size)
