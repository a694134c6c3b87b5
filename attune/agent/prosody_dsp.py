"""The prosody applicator: implements every ``ProsodyParameters`` dimension on speech audio.

Sits after TTS in the reply path. ``apply_to_audio`` shapes one utterance; ``ProsodyApplicator`` does the same on
a stream, cutting it inside pauses (so joins fall in silence and make no clicks) and keeping the breath noise
and tremolo running across the joins. Order: pauses, then pitch/contour/rate (WSOLA + variable resampling),
dynamics, breathiness, tremolo, volume and a soft limiter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from attune.agent.speech_dsp import (
    F0_HOP_S,
    f0_track,
    frame_db,
    lowpass,
    raised_cosine_fade,
    silent_runs,
    speech_level_db,
    warp_resample,
    wsola,
)
from attune.core.audio import check_sample_rate, to_mono_float
from attune.core.dsp import butter, sosfilt, sosfilt_zi
from attune.core.errors import AudioInputError
from attune.core.prosody import ProsodyParameters

MIN_PAUSE_S = 0.08  # silent runs this long inside speech count as pauses
PAUSE_FADE_S = 0.004  # fade where a pause is cut or padded
MAX_CONTOUR_SHIFT_ST = 8.0  # the contour expansion moves no frame further than this
CONTOUR_SMOOTH_S = 0.03
OCTAVE_ERROR_ST = 9.0  # F0 this far from the median is taken for an octave error
VIBRATO_HZ = 5.5  # vocal tremor lies around 4-7 Hz
VIBRATO_MAX_ST = 0.5  # pitch depth at tremolo_amount 1
TREMOLO_MAX_DEPTH = 0.3  # amplitude depth at tremolo_amount 1
DYNAMICS_MAX_DB = 12.0
BREATH_CUTOFF_HZ = 1500.0  # breath noise is high-passed white noise ...
BREATH_LEVEL = 0.35  # ... at this fraction of the voice's envelope at breathiness 1
LIMIT_KNEE = 0.9
EDGE_FADE_S = 0.002
# Streaming: cut only in pauses at least this long, into segments at least this long.
CUT_PAUSE_S = 0.10
MIN_SEGMENT_S = 0.3
MAX_SEGMENT_S = 6.0


def scale_pauses(x: np.ndarray, sample_rate: int, multiplier: float, speech_db: float | None = None
                 ) -> np.ndarray:
    """Lengthen (multiplier > 1) or shorten every pause; the cut or padding sits mid-pause between short fades."""
    if abs(multiplier - 1.0) < 1e-3:
        return x
    runs = silent_runs(x, sample_rate, MIN_PAUSE_S, speech_db)
    if not runs:
        return x
    fade_n = max(1, int(PAUSE_FADE_S * sample_rate))
    out: list[np.ndarray] = []
    pos = 0
    for start, end in runs:
        length = end - start
        mid = (start + end) // 2
        out.append(x[pos:start])
        if multiplier > 1.0:
            left, right = x[start:mid].copy(), x[mid:end].copy()
            f = min(fade_n, len(left), len(right))
            if f:
                left[len(left) - f:] *= raised_cosine_fade(f)[::-1]
                right[:f] *= raised_cosine_fade(f)
            out += [left, np.zeros(int(round(length * (multiplier - 1.0))), np.float32), right]
        else:
            drop = int(round(length * (1.0 - multiplier)))
            left, right = x[start:mid - drop // 2].copy(), x[mid + (drop - drop // 2):end].copy()
            f = min(fade_n, len(left), len(right))
            if f:
                left[len(left) - f:] *= raised_cosine_fade(f)[::-1]
                right[:f] *= raised_cosine_fade(f)
            out += [left, right]
        pos = end
    out.append(x[pos:])
    return np.concatenate(out).astype(np.float32)


def pitch_ratio_contour(x: np.ndarray, sample_rate: int, params: ProsodyParameters, t0_s: float = 0.0
                        ) -> np.ndarray:
    """Per-sample pitch ratio: the global shift, the contour's deviation from its median scaled by
    (pitch_variance - 1), and vibrato for tremolo. ``t0_s`` keeps the vibrato phase running across segments."""
    n = len(x)
    semis = np.full(n, params.pitch_shift_semitones, np.float64)
    if abs(params.pitch_variance - 1.0) > 1e-3:
        f0, hop_s = f0_track(x, sample_rate)
        voiced = f0 > 0
        if voiced.sum() >= 3:
            dev = np.zeros_like(f0)
            dev[voiced] = 12.0 * np.log2(f0[voiced] / np.median(f0[voiced]))
            voiced &= np.abs(dev) < OCTAVE_ERROR_ST  # an octave jump is a tracking error, not intonation
        if voiced.sum() >= 3:
            # Carry the deviation across unvoiced frames so the warp does not jump at voicing edges.
            idx = np.flatnonzero(voiced)
            dev = np.interp(np.arange(len(f0)), idx, dev[idx])
            k = max(1, int(round(CONTOUR_SMOOTH_S / F0_HOP_S)))
            dev = np.convolve(dev, np.ones(k) / k, mode="same")
            extra = np.clip((params.pitch_variance - 1.0) * dev, -MAX_CONTOUR_SHIFT_ST, MAX_CONTOUR_SHIFT_ST)
            centres = (np.arange(len(f0)) * hop_s + 0.02) * sample_rate
            semis += np.interp(np.arange(n), centres, extra)
    if params.tremolo_amount > 0:
        t = t0_s + np.arange(n) / sample_rate
        semis += VIBRATO_MAX_ST * params.tremolo_amount * np.sin(2 * np.pi * VIBRATO_HZ * t)
    return np.power(2.0, semis / 12.0)


def warp(x: np.ndarray, sample_rate: int, params: ProsodyParameters, t0_s: float = 0.0) -> np.ndarray:
    """Pitch (shift, contour, vibrato) and rate together, keeping duration at len/rate: WSOLA stretches by
    pitch/rate, then variable-rate resampling reads it back at the pitch ratio."""
    if (abs(params.pitch_shift_semitones) < 1e-3 and abs(params.pitch_variance - 1.0) < 1e-3
            and abs(params.speech_rate - 1.0) < 1e-3 and params.tremolo_amount <= 0):
        return x
    n_frame = int(0.025 * sample_rate)
    if len(x) < 4 * n_frame:  # too short to overlap-add: resample to the right length (pitch kept)
        n_out = max(1, int(round(len(x) / params.speech_rate)))
        return np.interp(np.linspace(0, len(x) - 1, n_out), np.arange(len(x)), x).astype(np.float32)
    ratio = pitch_ratio_contour(x, sample_rate, params, t0_s)
    y, out_pos = wsola(x, sample_rate, ratio / params.speech_rate)
    ratio_y = np.interp(np.arange(len(y)), out_pos, ratio)
    if ratio_y.max() > 1.02:  # reading faster folds the top band down: low-pass it first
        y = lowpass(y, sample_rate, 0.45 * sample_rate / float(ratio_y.max()))
    return warp_resample(y, ratio_y)


def voice_warp(x: np.ndarray, sample_rate: int, semitones: float, tempo: float = 1.0) -> np.ndarray:
    """A constant pitch shift (semitones, any size) and tempo change (> 1 faster): a persona's voice on top of
    whatever prosody a reply has. The same WSOLA + variable-rate reading as ``warp``, without its clamped
    ``ProsodyParameters`` ranges or contour work."""
    if abs(semitones) < 1e-3 and abs(tempo - 1.0) < 1e-3:
        return x
    n_frame = int(0.025 * sample_rate)
    if len(x) < 4 * n_frame:
        n_out = max(1, int(round(len(x) / tempo)))
        return np.interp(np.linspace(0, len(x) - 1, n_out), np.arange(len(x)), x).astype(np.float32)
    pitch = 2.0 ** (semitones / 12.0)
    y, _ = wsola(x, sample_rate, np.full(len(x), pitch / tempo))
    if pitch > 1.02:  # reading faster folds the top band down: low-pass it first
        y = lowpass(y, sample_rate, 0.45 * sample_rate / pitch)
    return warp_resample(y, np.full(len(y), pitch))


def envelope(x: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(per-sample amplitude envelope, per-sample level in dB) from 20 ms frames."""
    db, hop = frame_db(x, sample_rate)
    centres = np.arange(len(db)) * hop + hop
    level_db = np.interp(np.arange(len(x)), centres, db)
    return np.power(10.0, level_db / 20.0), level_db


def shape_dynamics(x: np.ndarray, sample_rate: int, amount: float, speech_db: float) -> np.ndarray:
    """Expand (amount > 1) or compress (< 1) level differences around the speech level, then restore the
    speech level so only the spread changes. Silence (30 dB under speech) is left alone."""
    if abs(amount - 1.0) < 1e-3 or len(x) == 0:
        return x
    _, level_db = envelope(x, sample_rate)
    rel = level_db - speech_db
    gain_db = np.clip((amount - 1.0) * (rel + 6.0), -DYNAMICS_MAX_DB, DYNAMICS_MAX_DB)
    gain_db = np.where(rel < -30.0, 0.0, gain_db)
    k = max(1, int(0.01 * sample_rate))
    gain_db = np.convolve(gain_db, np.ones(k) / k, mode="same")
    y = x * np.power(10.0, gain_db / 20.0).astype(np.float32)
    speech = rel > -20.0
    if speech.any():
        before = math.sqrt(float(np.mean(np.square(x[speech], dtype=np.float64))))
        after = math.sqrt(float(np.mean(np.square(y[speech], dtype=np.float64))))
        if after > 0:
            y = y * (before / after)
    return y.astype(np.float32)


def soft_limit(x: np.ndarray) -> np.ndarray:
    """Identity below the knee, tanh above it: peaks never pass full scale."""
    mag = np.abs(x)
    over = mag > LIMIT_KNEE
    if not over.any():
        return x
    head = 1.0 - LIMIT_KNEE
    limited = LIMIT_KNEE + head * np.tanh((mag - LIMIT_KNEE) / head)
    return np.where(over, np.sign(x) * limited, x).astype(np.float32)


@dataclass
class _Voice:
    """What runs across segments: the speech level, noise generator and filter state, the tremolo clock."""

    speech_db: float | None
    rng: np.random.Generator
    breath_zi: np.ndarray
    t_in_s: float = 0.0
    t_out_s: float = 0.0


class ProsodyApplicator:
    """Streaming prosody: ``push(samples)`` returns the shaped audio of every complete stretch so far,
    ``flush()`` the rest. Input is cut only inside pauses (at least ``CUT_PAUSE_S`` long), so each piece is
    shaped whole and the joins fall in silence; breath noise and tremolo run on across the joins.

    Pushing one sentence at a time returns that sentence at once, except the tail of its final pause (a sentence
    with no pause of ``CUT_PAUSE_S`` waits for the next push). For the lowest latency, call ``flush()`` after
    each sentence: it is then shaped whole at once, and the noise and tremolo still carry on into the next.
    The applicator can be reused after ``flush()``.
    """

    def __init__(self, sample_rate: int, params: ProsodyParameters, seed: int = 0) -> None:
        self.sample_rate = check_sample_rate(sample_rate)
        self.params = params
        self._sos = butter(2, BREATH_CUTOFF_HZ, btype="high", fs=self.sample_rate)
        self._voice = _Voice(None, np.random.default_rng(seed), sosfilt_zi(self._sos) * 0.0)
        self._pending: list[np.ndarray] = []
        self._pending_n = 0

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Add audio (any dtype/shape ``to_mono_float`` accepts; empty is allowed) and return what is ready."""
        arr = np.asarray(samples)
        if arr.size:
            mono, _ = to_mono_float(arr)
            self._pending.append(mono)
            self._pending_n += len(mono)
        if self._pending_n < MIN_SEGMENT_S * self.sample_rate:
            return np.zeros(0, np.float32)
        buf = np.concatenate(self._pending)
        cut = self._cut_point(buf)
        if cut <= 0:
            self._pending, self._pending_n = [buf], len(buf)
            return np.zeros(0, np.float32)
        rest = buf[cut:]
        self._pending, self._pending_n = ([rest] if len(rest) else []), len(rest)
        return self.shape(buf[:cut])

    def flush(self) -> np.ndarray:
        """Shape and return everything still held."""
        if not self._pending_n:
            return np.zeros(0, np.float32)
        buf = np.concatenate(self._pending)
        self._pending, self._pending_n = [], 0
        return self.shape(buf)

    def _cut_point(self, buf: np.ndarray) -> int:
        sr = self.sample_rate
        min_seg = int(MIN_SEGMENT_S * sr)
        cut = 0
        for start, end in silent_runs(buf, sr, CUT_PAUSE_S, self._voice.speech_db):
            if end - start < CUT_PAUSE_S * sr:
                continue
            # A pause still open at the buffer's end may go on: cut early in it and keep the rest.
            point = (start + end) // 2 if end < len(buf) else start + int(CUT_PAUSE_S * sr / 2)
            if point >= min_seg:
                cut = point
        if cut == 0 and len(buf) > MAX_SEGMENT_S * sr:
            db, hop = frame_db(buf[min_seg:], sr)
            cut = min_seg + int(np.argmin(db)) * hop
        return cut

    def shape(self, x: np.ndarray) -> np.ndarray:
        """Shape one whole stretch of speech (no cutting), continuing this stream's noise and tremolo."""
        sr, p, v = self.sample_rate, self.params, self._voice
        db, _ = frame_db(x, sr)
        level = speech_level_db(db)
        if level > -50.0:
            v.speech_db = level
        speech_db = v.speech_db if v.speech_db is not None else level
        y = scale_pauses(x, sr, p.pause_multiplier, speech_db)
        y = warp(y, sr, p, v.t_in_s)
        y = shape_dynamics(y, sr, p.dynamic_range, speech_db)
        if p.breathiness > 0:
            noise, v.breath_zi = sosfilt(self._sos, v.rng.standard_normal(len(y)), zi=v.breath_zi)
            env, _ = envelope(y, sr)
            y = y + (p.breathiness * BREATH_LEVEL * env * noise).astype(np.float32)
        if p.tremolo_amount > 0:
            t = v.t_out_s + np.arange(len(y)) / sr
            y = y * (1.0 + TREMOLO_MAX_DEPTH * p.tremolo_amount * np.sin(2 * np.pi * VIBRATO_HZ * t))
        if p.volume_db:
            y = y * 10.0 ** (p.volume_db / 20.0)
        v.t_in_s += len(x) / sr
        v.t_out_s += len(y) / sr
        return soft_limit(np.asarray(y, dtype=np.float32))


def apply_to_audio(audio: np.ndarray, sample_rate: int, params: ProsodyParameters) -> np.ndarray:
    """``audio`` (one utterance, mono or multichannel, int or float) shaped by every dimension of ``params``.

    Returns mono float32 at ``sample_rate``; its duration is about len(audio) / speech_rate, with pauses scaled
    by the pause multiplier. Raises AudioInputError for empty or non-finite audio or a bad sample rate.
    """
    rate = check_sample_rate(sample_rate)
    mono, bad = to_mono_float(np.asarray(audio))
    if bad > 0.5:
        raise AudioInputError(f"audio is {bad:.0%} NaN/Inf")
    if not isinstance(params, ProsodyParameters):
        raise AudioInputError(f"params must be ProsodyParameters, got {type(params).__name__}")
    return ProsodyApplicator(rate, params).shape(mono)
