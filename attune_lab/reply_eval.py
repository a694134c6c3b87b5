"""The reply-quality check: fixed scenarios (the user's words and a synthetic voice reading) run through the real
strategy, prompt builder and LLM backend, each reply scored by ``attune_lab.reply_checks``.

``run_eval(llm, ...)`` is what ``run_agent.py eval-replies`` and the real-model test call. The prompt is built
exactly as a session builds it (fresh memory), so a score measures what a user would hear.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from attune.agent.brain import PromptBuilder, ResponsePlanLike, default_planner
from attune.agent.memory import ConversationMemory
from attune.agent.reply_tag import ReplyTagParser
from attune.backends.base import LLMBackend
from attune.core.audio import AudioQuality
from attune.core.emotion import (
    CATEGORY_VAD,
    EmotionCategory,
    EmotionPrediction,
    EmotionResult,
    Intensity,
    PrimaryDimensions,
    ProsodicMarkers,
)
from attune.pipeline.acknowledgement import choose_acknowledgement, split_echo
from attune_lab.reply_checks import (
    BAD,
    GOOD,
    NEUTRAL,
    CheckResult,
    check_no_echo,
    check_not_template,
    check_reply,
    check_sound_fits,
    check_sound_not_cheerful,
)

SOUND_CHECKS = frozenset({"no_echo", "sound_fits", "sound_not_cheerful"})  # the first sound's own checks

E = EmotionCategory
_GOOD_AUDIO = AudioQuality(rms_dbfs=-22.0, peak_dbfs=-3.0, crest_factor_db=19.0, clipped_fraction=0.0,
                           is_silent=False, is_clipped=False, too_short=False)


@dataclass(frozen=True)
class Scenario:
    """One user turn: words, how the voice sounded (top emotion, strength 0..1, an optional second emotion,
    prosodic cues) and what a good reply must respect (the situation's valence, expected answer words)."""

    name: str
    text: str
    emotion: EmotionCategory
    strength: float = 0.6
    also: EmotionCategory | None = None
    markers: ProsodicMarkers = field(default_factory=ProsodicMarkers)
    situation: str = NEUTRAL
    answer_keywords: tuple[str, ...] = ()
    topic: tuple[str, ...] = ()  # word stems a reply about the user's subject would use

    def emotion_result(self) -> EmotionResult:
        conf = 0.35 + 0.5 * self.strength
        preds = [EmotionPrediction(self.emotion, conf, Intensity.from_score(self.strength))]
        if self.also is not None:
            preds.append(EmotionPrediction(self.also, 0.7 * conf, Intensity.from_score(0.8 * self.strength)))
        return EmotionResult(PrimaryDimensions(*CATEGORY_VAD[self.emotion]), tuple(preds), self.markers,
                             _GOOD_AUDIO, 2.0, "scenario", conf)


def _cues(*, pitch: bool = False, rate: str = "normal", tremor: float = 0.0, pauses: float = 0.0,
          breathy: float = 0.0) -> ProsodicMarkers:
    return ProsodicMarkers(pitch_elevated=pitch, speech_rate_category=rate, voice_tremor=tremor,
                           pause_ratio=pauses, breathiness=breathy)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("grief", "My grandmother passed away this morning.", E.SAD, 0.8, None,
             _cues(rate="slow", pauses=0.5), BAD,
             topic=("grandm", "grandmother", "loss", "lost", "passed", "her", "she", "death", "died", "grie", "mourn")),
    Scenario("exam", "I have my final exam tomorrow and I don't feel ready at all.", E.ANXIOUS, 0.5, E.STRESSED,
             _cues(pitch=True, rate="fast"), BAD,
             topic=("exam", "test", "study", "studi", "prepar", "ready", "tomorrow", "revis")),
    Scenario("late_delivery", "My package was supposed to arrive three days ago and it's still not here.",
             E.ANGRY, 0.75, E.FRUSTRATED, _cues(pitch=True), BAD,
             topic=("package", "parcel", "deliver", "order", "arriv", "courier", "shipping", "wait", "track")),
    Scenario("promotion", "I just got promoted to team lead!", E.EXCITED, 0.8, E.HAPPY,
             _cues(pitch=True, rate="fast"), GOOD,
             topic=("promot", "team", "lead", "role", "job", "position", "congrat", "new")),
    Scenario("capital", "What's the capital of France?", E.NEUTRAL, 0.4, None, _cues(), NEUTRAL, ("paris",),
             topic=("paris", "france", "capital")),
    Scenario("bored", "There's nothing to do this afternoon.", E.BORED, 0.5, E.TIRED, _cues(rate="slow"), BAD,
             topic=("afternoon", "bored", "something", "activit", "walk", "read", "try", "time")),
    Scenario("lonely", "Everyone went home for the holidays and I'm here by myself.", E.LONELY, 0.6, E.SAD,
             _cues(rate="slow", pauses=0.45), BAD,
             topic=("holiday", "alone", "yourself", "lonely", "company", "family", "friend", "call")),
    Scenario("tech", "My laptop keeps freezing every time I open the browser.", E.FRUSTRATED, 0.6, E.ANGRY,
             _cues(), BAD,
             topic=("laptop", "browser", "freez", "computer", "restart", "update", "cache", "extension", "memory")),
    Scenario("mismatch", "I got the job offer I wanted.", E.SAD, 0.6, E.TIRED, _cues(rate="slow"), GOOD,
             topic=("job", "offer", "congrat", "new", "role", "position", "wanted")),
    Scenario("panicked", "I think I left the stove on and I'm already at the airport!", E.PANICKED, 0.9,
             E.ANXIOUS, _cues(pitch=True, rate="fast", tremor=0.6), BAD,
             topic=("stove", "oven", "home", "neighbo", "call", "gas", "breath", "airport", "check", "safe")),
    Scenario("egg", "How many minutes should I boil an egg for a soft yolk?", E.STRESSED, 0.4, None,
             _cues(rate="fast"), NEUTRAL, ("minute",),
             topic=("egg", "yolk", "minute", "boil")),
    Scenario("baby", "My sister just had a baby girl!", E.HAPPY, 0.7, E.EXCITED, _cues(pitch=True), GOOD,
             topic=("baby", "sister", "girl", "niece", "aunt", "congrat", "born", "birth")),
)


@dataclass(frozen=True)
class ScenarioReport:
    scenario: Scenario
    context: str  # the voice's context string as the prompt carried it
    expressed: str  # the emotion the strategy asked the reply to carry
    reply: str  # the model's words as spoken (with a first sound: a repeat of it taken off, as a session does)
    checks: tuple[CheckResult, ...]
    elapsed_ms: float
    prompt_tokens: int
    first_sound: str = ""  # the acknowledgement played before the reply ("" for none)

    @property
    def passed(self) -> int:
        return sum(c.passed for c in self.checks if c.applicable)

    @property
    def applicable(self) -> int:
        return sum(c.applicable for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.scenario.name, "user": self.scenario.text, "context": self.context,
                "expressed": self.expressed, "first_sound": self.first_sound, "reply": self.reply,
                "heard": f"{self.first_sound} {self.reply}".strip(), "passed": self.passed,
                "applicable": self.applicable, "elapsed_ms": round(self.elapsed_ms, 1),
                "prompt_tokens": self.prompt_tokens, "checks": [c.to_dict() for c in self.checks]}


async def reply_to(llm: LLMBackend, builder: PromptBuilder, scenario: Scenario, plan: ResponsePlanLike, *,
                   max_tokens: int, temperature: float) -> tuple[str, int]:
    """The reply as the session would speak it: streamed, the leading tag (if any) stripped; with the prompt's
    size in tokens (0 where the engine does not say)."""
    messages = builder.build(ConversationMemory(), scenario.text, scenario.emotion_result(), plan)
    tags = ReplyTagParser()
    stream = llm.stream(messages, max_tokens=max_tokens, temperature=temperature)
    parts = [tags.push(piece) async for piece in stream]
    text = ("".join(parts) + tags.flush()).strip()
    prompt = stream.completion.prompt_tokens if stream.completion is not None else 0
    return text, prompt


@dataclass(frozen=True)
class _Written:
    """One scenario's reply as the model wrote it, before any checks."""

    scenario: Scenario
    plan: ResponsePlanLike
    context: str
    reply: str
    elapsed_ms: float
    prompt_tokens: int


async def run_eval(llm: LLMBackend, builder: PromptBuilder, *, strategy: str = "complement", max_tokens: int = 96,
                   temperature: float = 0.0, scenarios: tuple[Scenario, ...] = SCENARIOS,
                   acknowledgements: bool = False) -> list[ScenarioReport]:
    """Each scenario's reply, checked. With ``acknowledgements``, what a person hears on a slow machine: the first
    sound a session would play (``pipeline.acknowledgement``, chosen as on a turn after the previous scenario's)
    and then the model's reply, which is made exactly as without it (the sound is never in the prompt) and spoken
    as a session speaks it (a repeat of the sound at its start taken off). The reply gets the same checks either
    way; the sound gets its own (``SOUND_CHECKS``: not said again, fits the situation, never cheerful to bad
    news), so the reply's totals compare like for like and the sound's are counted beside them."""
    written = await write_replies(llm, builder, strategy=strategy, max_tokens=max_tokens, temperature=temperature,
                                  scenarios=scenarios)
    return score(written, builder, acknowledgements=acknowledgements)


async def write_replies(llm: LLMBackend, builder: PromptBuilder, *, strategy: str = "complement",
                        max_tokens: int = 96, temperature: float = 0.0, scenarios: tuple[Scenario, ...] = SCENARIOS
                        ) -> list[_Written]:
    """Each scenario's reply from the model (nothing of a first sound is in the prompt: scoring one set of replies
    with and without it is the same as writing them twice, and half the time)."""
    planner = default_planner()
    out = []
    for sc in scenarios:
        result = sc.emotion_result()
        plan = planner(result, strategy)
        t0 = time.perf_counter()
        reply, prompt_tokens = await reply_to(llm, builder, sc, plan, max_tokens=max_tokens,
                                              temperature=temperature)
        out.append(_Written(sc, plan, result.to_context_string(), reply, (time.perf_counter() - t0) * 1000,
                            prompt_tokens))
    return out


def score(written: list[_Written], builder: PromptBuilder, *, acknowledgements: bool) -> list[ScenarioReport]:
    """The checks of ``run_eval`` over replies already written."""
    out = []
    previous: list[str | None] = []
    for w in written:
        sc = w.scenario
        first = choose_acknowledgement(sc.text, w.plan, previous, None) if acknowledgements else None
        previous.append(first.text if first is not None else None)
        spoken = split_echo(first.text, w.reply)[1] if first is not None else w.reply
        checks = check_reply(spoken, user_text=sc.text, situation=sc.situation,
                             answer_keywords=sc.answer_keywords, topic=sc.topic)
        if first is not None:
            checks += [check_no_echo(first.text, spoken), check_sound_fits(first.text, sc.situation),
                       check_sound_not_cheerful(first.text, sc.situation)]
        out.append(ScenarioReport(sc, w.context, w.plan.expressed_emotion.value, spoken, tuple(checks),
                                  w.elapsed_ms, w.prompt_tokens, first.text if first is not None else ""))
    examples = [ex[-1] for ex in builder.persona.examples]
    return [replace(r, checks=(*r.checks, check_not_template(r.reply, [o.reply for o in out if o is not r]
                                                             + examples))) for r in out]


def summarize(reports: list[ScenarioReport]) -> dict[str, Any]:
    """Totals: checks passed of applicable, the reply's checks and the first sound's apart (the reply's compare
    like for like with and without a first sound), replies with every check passed, and per-check pass counts."""
    per_check: dict[str, list[int]] = {}
    for r in reports:
        for c in r.checks:
            if c.applicable:
                counts = per_check.setdefault(c.name, [0, 0])
                counts[0] += c.passed
                counts[1] += 1
    passed, total = sum(r.passed for r in reports), sum(r.applicable for r in reports)
    sound = [v for k, v in per_check.items() if k in SOUND_CHECKS]
    sound_passed, sound_total = sum(v[0] for v in sound), sum(v[1] for v in sound)
    return {"checks_passed": passed, "checks_total": total, "score": round(passed / max(total, 1), 3),
            "reply_checks_passed": passed - sound_passed, "reply_checks_total": total - sound_total,
            "sound_checks_passed": sound_passed, "sound_checks_total": sound_total,
            "first_sounds": sum(bool(r.first_sound) for r in reports),
            "clean_replies": sum(r.passed == r.applicable for r in reports), "replies": len(reports),
            "per_check": {k: f"{v[0]}/{v[1]}" for k, v in per_check.items()},
            "mean_reply_ms": round(sum(r.elapsed_ms for r in reports) / max(len(reports), 1), 1),
            "mean_prompt_tokens": round(sum(r.prompt_tokens for r in reports) / max(len(reports), 1), 1)}
