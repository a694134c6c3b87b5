"""Turn-taking: a voice activity detector (Silero through onnxruntime, or an energy gate) and the pure
``TurnDetector`` that turns per-chunk speech probabilities into turn events with pre-roll.

The detector is synchronous and loop-free: ``feed(samples)`` any number of 16 kHz mono float32 samples, then
``drain()`` the events. Speech must last ``min_speech_ms`` to start a turn (a click or a cough does not); a turn
ends after ``end_of_turn_silence_ms`` of silence. When silence begins (``speculate_silence_ms`` in),
``SilenceBegan`` carries the turn's audio so far so the session can transcribe and prompt speculatively;
``SpeechResumed`` says to discard that work; ``SpeechStopped`` followed by ``UserTurn`` commits it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np

from attune.backends.registry import build_or_fallback
from attune.backends.vad import VAD_CHUNK, EnergyVAD, SileroVAD, VoiceActivity, probabilities
from attune.config import Config, PipelineConfig
from attune.core.audio import SAMPLE_RATE
from attune.core.frames import AudioChunk, SpeechStarted, SpeechStopped

__all__ = ["EnergyVAD", "SileroVAD", "TurnDetector", "TurnSettings", "VoiceActivity", "create_vad", "join_turn_audio"]

CHUNK_S = VAD_CHUNK / SAMPLE_RATE
CANDIDATE_GAP_MS = 100  # silence that drops a speech candidate not yet long enough to be a turn


def create_vad(config: Config) -> VoiceActivity:
    """The detector named by ``pipeline.vad`` (Silero falls back to the level gate where it cannot load, logged)."""
    vad: VoiceActivity = build_or_fallback("vad", config.pipeline.vad, config)
    return vad


@dataclass(frozen=True)
class SilenceBegan:
    """Silence started after speech; ``audio`` is the turn so far (pre-roll included), for speculative work."""

    timestamp_s: float  # stream time the speech ended
    audio: AudioChunk


@dataclass(frozen=True)
class SpeechResumed:
    """The user spoke again before the end-of-turn silence: discard speculative work."""

    timestamp_s: float


@dataclass(frozen=True)
class UserTurn:
    """A committed turn: its audio (pre-roll to end of speech) on the stream clock. Follows ``SpeechStopped``."""

    audio: AudioChunk
    start_s: float
    end_s: float


TurnEvent = SpeechStarted | SpeechStopped | SilenceBegan | SpeechResumed | UserTurn


_DEFAULTS = PipelineConfig()  # one source for the turn-taking defaults: config.py's


@dataclass(frozen=True)
class TurnSettings:
    """The turn detector's knobs; the defaults are ``PipelineConfig``'s (see ``from_config``)."""

    vad_threshold: float = _DEFAULTS.vad_threshold  # speech probability that counts as speech
    preroll_ms: int = _DEFAULTS.preroll_ms  # audio kept before detected speech
    min_speech_ms: int = _DEFAULTS.min_speech_ms  # voiced time before a turn starts
    speculate_silence_ms: int = _DEFAULTS.speculate_silence_ms  # silence after which SilenceBegan is emitted
    end_of_turn_silence_ms: int = _DEFAULTS.end_of_turn_silence_ms  # silence that ends the turn
    max_turn_s: float = _DEFAULTS.max_turn_s  # a turn longer than this is cut

    @classmethod
    def from_config(cls, p: PipelineConfig) -> TurnSettings:
        return cls(vad_threshold=p.vad_threshold, preroll_ms=p.preroll_ms, min_speech_ms=p.min_speech_ms,
                   speculate_silence_ms=p.speculate_silence_ms, end_of_turn_silence_ms=p.end_of_turn_silence_ms,
                   max_turn_s=p.max_turn_s)

    def ending_after(self, end_ms: int, speculate_ms: int | None = None) -> TurnSettings:
        """These settings with the turn ending after ``end_ms`` of silence. The speculative start (``speculate_ms``,
        default this one's) stays at least 32 ms before the end, so a reply can begin before the commit."""
        spec = self.speculate_silence_ms if speculate_ms is None else speculate_ms
        return replace(self, end_of_turn_silence_ms=end_ms, speculate_silence_ms=min(spec, max(32, end_ms - 32)))


@dataclass
class _State:
    in_speech: bool = False  # a turn has started
    candidate: bool = False  # speech seen, not yet long enough
    voiced_s: float = 0.0
    silence_s: float = 0.0
    silence_reported: bool = False
    start_s: float = 0.0
    last_voiced_end_s: float = 0.0
    turn: list[np.ndarray] = field(default_factory=list)


class TurnDetector:
    """Speech probabilities -> turn events. ``feed()`` samples (16 kHz mono float32), then ``drain()``.

    ``speech_s`` is the voiced time of the current turn so far (0 outside a turn); the session uses it to decide
    barge-in while the agent speaks.
    """

    def __init__(self, vad: VoiceActivity, settings: TurnSettings | None = None) -> None:
        self.vad = vad
        self.s = settings or TurnSettings()
        self._pending = np.zeros(0, dtype=np.float32)
        self._preroll: deque[np.ndarray] = deque(maxlen=max(1, int(np.ceil(self.s.preroll_ms / 1000 / CHUNK_S))))
        self._events: list[TurnEvent] = []
        self._time_s = 0.0  # stream time of the next chunk
        self._st = _State()

    @property
    def in_speech(self) -> bool:
        return self._st.in_speech

    @property
    def speech_s(self) -> float:
        return self._st.voiced_s if self._st.in_speech else 0.0

    @property
    def time_s(self) -> float:
        return self._time_s

    @property
    def turn_s(self) -> float:
        """Audio of the current turn so far, pre-roll included (0 outside a turn)."""
        return len(self._st.turn) * CHUNK_S if (self._st.in_speech or self._st.candidate) else 0.0

    @property
    def silence_s(self) -> float:
        """Silence since the last voiced chunk of the current turn (0 while speaking or outside a turn)."""
        return self._st.silence_s if self._st.in_speech else 0.0

    def turn_audio_so_far(self) -> AudioChunk:
        """All audio of the current turn (pre-roll included), up to the last fed chunk."""
        st = self._st
        samples = np.concatenate(st.turn) if st.turn else np.zeros(0, dtype=np.float32)
        return AudioChunk(samples, SAMPLE_RATE, st.start_s)

    def feed(self, samples: np.ndarray) -> None:
        """Any number of samples; every whole ``VAD_CHUNK`` goes through the VAD, all of them in one call (a
        transport that hands over several frames at once pays the model's call overhead once)."""
        pending = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        whole = len(pending) // VAD_CHUNK * VAD_CHUNK
        self._pending = pending[whole:]
        if not whole:
            return
        chunks = pending[:whole].reshape(-1, VAD_CHUNK)
        for chunk, p in zip(chunks, probabilities(self.vad, chunks), strict=True):
            self._step(chunk, p >= self.s.vad_threshold)
            self._time_s += CHUNK_S

    def drain(self) -> list[TurnEvent]:
        out, self._events = self._events, []
        return out

    def configure(self, settings: TurnSettings) -> None:
        """New thresholds from the next chunk on (a client's ``session.update``); a turn in progress goes on."""
        self.s = settings
        self._preroll = deque(self._preroll, maxlen=max(1, int(np.ceil(settings.preroll_ms / 1000 / CHUNK_S))))

    def end_turn(self) -> bool:
        """Push-to-talk: end the turn in progress now, as if its end-of-turn silence had passed (events follow in
        ``drain()``). False when no speech has been heard since the last turn."""
        st = self._st
        if not (st.in_speech or st.candidate):
            return False
        if st.candidate:
            st.candidate, st.in_speech = False, True
            self._events.append(SpeechStarted(st.start_s))
        self._end_turn()
        return True

    def reset(self) -> None:
        """Forget any turn in progress (the clock keeps running)."""
        self._st = _State()
        self._preroll.clear()
        self.vad.reset()

    def _step(self, chunk: np.ndarray, voiced: bool) -> None:
        st = self._st
        t = self._time_s
        if not st.in_speech and not st.candidate:
            if voiced:
                pre = list(self._preroll)
                st.candidate, st.voiced_s, st.silence_s = True, CHUNK_S, 0.0
                st.start_s = t - len(pre) * CHUNK_S
                st.turn = [*pre, chunk]
                st.last_voiced_end_s = t + CHUNK_S
                self._maybe_start()
            else:
                self._preroll.append(chunk)
            return
        st.turn.append(chunk)
        if voiced:
            st.voiced_s += CHUNK_S
            st.last_voiced_end_s = t + CHUNK_S
            if st.silence_reported:
                self._events.append(SpeechResumed(t))
            st.silence_s, st.silence_reported = 0.0, False
            self._maybe_start()
        else:
            st.silence_s += CHUNK_S
            self._on_silence()
        if st.in_speech and t + CHUNK_S - st.start_s >= self.s.max_turn_s:
            self._end_turn()

    def _maybe_start(self) -> None:
        st = self._st
        if st.candidate and st.voiced_s * 1000 >= self.s.min_speech_ms:
            st.candidate, st.in_speech = False, True
            self._events.append(SpeechStarted(st.start_s))

    def _on_silence(self) -> None:
        st = self._st
        silence_ms = st.silence_s * 1000
        if st.candidate:
            if silence_ms >= CANDIDATE_GAP_MS:
                self._drop_candidate()
            return
        if not st.silence_reported and silence_ms >= self.s.speculate_silence_ms:
            st.silence_reported = True
            self._events.append(SilenceBegan(st.last_voiced_end_s, self._turn_audio()))
        if silence_ms >= self.s.end_of_turn_silence_ms:
            self._end_turn()

    def _turn_audio(self) -> AudioChunk:
        st = self._st
        n = int(round((st.last_voiced_end_s - st.start_s) * SAMPLE_RATE))
        samples = np.concatenate(st.turn)[:n] if st.turn else np.zeros(0, dtype=np.float32)
        return AudioChunk(samples, SAMPLE_RATE, st.start_s)

    def _end_turn(self) -> None:
        st = self._st
        audio = self._turn_audio()
        self._events.append(SpeechStopped(st.last_voiced_end_s))
        self._events.append(UserTurn(audio, st.start_s, st.last_voiced_end_s))
        self._restart_idle()

    def _drop_candidate(self) -> None:
        tail = self._st.turn[-self._preroll.maxlen:] if self._preroll.maxlen else []
        self._restart_idle()
        for c in tail:
            self._preroll.append(c)

    def _restart_idle(self) -> None:
        self._st = _State()
        self._preroll.clear()


JOIN_GAP_S = 0.3  # the most silence put between a prematurely committed turn's audio and the rest of it


def join_turn_audio(before: AudioChunk, after: AudioChunk) -> AudioChunk:
    """One turn's audio from a prematurely committed turn's and the speech that went on (both the detector's, 16
    kHz): the pause between them kept (at most ``JOIN_GAP_S``), so the ASR hears two phrases, not one run on."""
    gap = min(JOIN_GAP_S, max(0.0, after.timestamp_s - before.end_s))
    pause = np.zeros(int(round(gap * before.sample_rate)), dtype=np.float32)
    samples = np.concatenate([before.samples, pause, after.samples]).astype(np.float32, copy=False)
    return AudioChunk(samples, before.sample_rate, before.timestamp_s)
