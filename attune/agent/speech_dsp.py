"""Signal primitives for the prosody applicator: frame levels, silent runs, an F0 tracker, WSOLA time-scaling
with a time-varying factor, and variable-rate resampling. numpy only (filters from ``attune.core.dsp``); every
function is pure.

Arrays are mono float32 at the caller's sample rate; times in samples unless a name says otherwise.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from attune.core.dsp import butter, resample_poly, sosfilt
from attune.core.stats import percentile

LEVEL_HOP_S = 0.010  # s between level frames
LEVEL_WIN_S = 0.020  # s per level frame
SILENCE_FLOOR_DBFS = -55.0  # frames quieter than this are silent whatever the speech level
SILENCE_BELOW_SPEECH_DB = 30.0  # ... and so are frames this far below the speech level
F0_RATE = 8000  # Hz, the F0 tracker's working rate
F0_MIN_HZ, F0_MAX_HZ = 60.0, 450.0
F0_WIN_S = 0.040
F0_HOP_S = 0.010
MIN_VOICED_FRAMES = 3  # voiced runs shorter than this (30 ms) are dropped
VOICING_THRESHOLD = 0.5  # normalised autocorrelation peak above which a frame is voiced


def frame_db(x: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int]:
    """Per-frame RMS level in dBFS (floored at -120) and the hop in samples; frame i centres on i*hop + win/2."""
    hop = max(1, int(round(LEVEL_HOP_S * sample_rate)))
    win = max(hop, int(round(LEVEL_WIN_S * sample_rate)))
    if len(x) < win:
        x = np.pad(x, (0, win - len(x)))
    frames = sliding_window_view(x, win)[::hop]
    power = np.mean(np.square(frames, dtype=np.float64), axis=1)
    return 10.0 * np.log10(np.maximum(power, 1e-12)), hop


def speech_level_db(db: np.ndarray) -> float:
    """A robust speech level: the 95th percentile of frame levels."""
    return percentile(db, 95, empty=-120.0)


def silent_runs(x: np.ndarray, sample_rate: int, min_s: float, speech_db: float | None = None
                ) -> list[tuple[int, int]]:
    """Sample ranges [start, end) of silence at least ``min_s`` long (shorter runs at either edge included).

    ``speech_db`` is the speech level to judge silence against (default: this audio's own level).
    """
    db, hop = frame_db(x, sample_rate)
    ref = speech_level_db(db) if speech_db is None else speech_db
    silent = db < max(SILENCE_FLOOR_DBFS, ref - SILENCE_BELOW_SPEECH_DB)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], silent.astype(np.int8), [0]))))
    runs = []
    win_pad = int(round((LEVEL_WIN_S - LEVEL_HOP_S) * sample_rate / 2))
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        start = 0 if a == 0 else a * hop + win_pad
        end = len(x) if b >= len(db) else b * hop + win_pad
        end = min(end, len(x))
        at_edge = start == 0 or end == len(x)
        if end > start and (end - start >= min_s * sample_rate or (at_edge and end - start > 0)):
            runs.append((int(start), int(end)))
    return runs


def f0_track(x: np.ndarray, sample_rate: int) -> tuple[np.ndarray, float]:
    """F0 in Hz per frame (0 where unvoiced) by normalised autocorrelation at 8 kHz; returns (f0, hop seconds)."""
    g = math.gcd(int(sample_rate), F0_RATE)
    y = resample_poly(x.astype(np.float32), F0_RATE // g, int(sample_rate) // g) if sample_rate != F0_RATE else x
    win, hop = int(F0_WIN_S * F0_RATE), int(F0_HOP_S * F0_RATE)
    if len(y) < win:
        return np.zeros(0), F0_HOP_S
    frames = sliding_window_view(y, win)[::hop].astype(np.float64)
    frames = frames - frames.mean(axis=1, keepdims=True)
    energy = np.sum(frames * frames, axis=1)
    nfft = 1 << (2 * win - 1).bit_length()
    spec = np.fft.rfft(frames * np.hanning(win), nfft, axis=1)
    acf = np.fft.irfft(np.abs(spec) ** 2, nfft, axis=1)[:, :win]
    lag_lo, lag_hi = int(F0_RATE / F0_MAX_HZ), int(F0_RATE / F0_MIN_HZ)
    # Normalise by the window's own autocorrelation so a periodic frame peaks near 1 at its period.
    wac = np.correlate(np.hanning(win), np.hanning(win), "full")[win - 1:win - 1 + lag_hi + 2]
    norm = acf[:, lag_lo:lag_hi + 1] / np.maximum(acf[:, :1], 1e-12) / (wac[lag_lo:lag_hi + 1] / wac[0])
    best = np.argmax(norm, axis=1)
    peak = norm[np.arange(len(norm)), best]
    loud = energy > 1e-3 * np.max(energy) if energy.size else energy
    inner = (best > 0) & (best < norm.shape[1] - 1)  # a peak at the search edge is noise, not a period
    voiced = _drop_short_runs((peak > VOICING_THRESHOLD) & loud & inner, MIN_VOICED_FRAMES)
    lag = (best + lag_lo).astype(np.float64)
    idx = np.clip(best, 1, norm.shape[1] - 2)
    a, b, c = (norm[np.arange(len(norm)), idx + d] for d in (-1, 0, 1))
    denom = a - 2 * b + c
    shift = np.where(np.abs(denom) > 1e-9, 0.5 * (a - c) / np.where(denom == 0, 1, denom), 0.0)
    lag = lag + np.clip(shift, -0.5, 0.5) * ((best > 0) & (best < norm.shape[1] - 1))
    return np.where(voiced, F0_RATE / lag, 0.0), F0_HOP_S


def _drop_short_runs(mask: np.ndarray, min_len: int) -> np.ndarray:
    """``mask`` with True runs shorter than ``min_len`` cleared (isolated 'voiced' frames are fricative noise)."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    out = mask.copy()
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        if b - a < min_len:
            out[a:b] = False
    return out


def lowpass(x: np.ndarray, sample_rate: int, cutoff_hz: float) -> np.ndarray:
    sos = butter(6, min(cutoff_hz, 0.49 * sample_rate), btype="low", fs=sample_rate)
    return np.asarray(sosfilt(sos, x), dtype=np.float32)


def wsola(x: np.ndarray, sample_rate: int, stretch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Waveform-similarity overlap-add time scaling (Verhelst & Roelands 1993) with a per-sample factor.

    ``stretch[i]`` is the local output/input duration ratio at input sample i. Returns (output, out_pos) where
    out_pos[i] is the output position of input sample i (monotonic), so callers can carry per-sample data over.
    """
    n = int(round(0.025 * sample_rate)) & ~1  # frame length (25 ms), even
    hs = n // 2  # synthesis hop; a periodic Hann at 50 % overlap sums to one
    tol = int(round(0.006 * sample_rate))  # search +-6 ms for the best-matching frame
    win = np.hanning(n + 1)[:n].astype(np.float32)
    pad = n + tol
    xp = np.concatenate((np.zeros(pad, np.float32), x.astype(np.float32), np.zeros(2 * pad + n, np.float32)))
    total = len(x)
    ana: list[float] = []
    a = 0.0
    while a < total + hs:
        ana.append(a)
        a += hs / float(stretch[min(int(a), total - 1)])
    k_frames = len(ana)
    out = np.zeros(k_frames * hs + n, np.float32)
    prev = pad  # start of the previously used input frame (in xp)
    step = 2  # compare every 2nd sample: half the work, same choice in practice
    for k, a_k in enumerate(ana):
        centre = pad + int(round(a_k))
        if k == 0:
            start = centre
        else:
            natural = xp[prev + hs:prev + hs + n:step]
            region = xp[centre - tol:centre + tol + n]
            corr = np.correlate(region[::step], natural, "valid") if tol else np.zeros(1)
            start = centre - tol + step * int(np.argmax(corr))
        out[k * hs:k * hs + n] += xp[start:start + n] * win
        prev = start
    ana_arr = np.asarray(ana)
    out_pos = np.interp(np.arange(total + 1), ana_arr, np.arange(k_frames) * float(hs))
    out_len = int(round(out_pos[-1]))
    return out[:out_len], out_pos[:total]


def warp_resample(y: np.ndarray, ratio: np.ndarray) -> np.ndarray:
    """Read ``y`` at a local speed ``ratio[i]`` (input samples per output sample) by linear interpolation:
    ratio > 1 raises pitch and shortens, < 1 lowers and lengthens. ``ratio`` has one value per sample of y."""
    if len(y) < 2:
        return y.astype(np.float32)
    inv = 1.0 / np.maximum(ratio[:-1].astype(np.float64), 1e-3)
    j_of_tau = np.concatenate(([0.0], np.cumsum(inv)))
    n_out = int(math.floor(j_of_tau[-1])) + 1
    tau = np.interp(np.arange(n_out, dtype=np.float64), j_of_tau, np.arange(len(y), dtype=np.float64))
    return np.interp(tau, np.arange(len(y), dtype=np.float64), y).astype(np.float32)


def raised_cosine_fade(n: int) -> np.ndarray:
    return (0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / max(n, 1))).astype(np.float32)
