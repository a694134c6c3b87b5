"""Synthetic voice-like signals for the emotion tests: harmonic 'syllables' with known pitch, rate and pauses."""

from __future__ import annotations

import numpy as np

RATE = 16000


def harmonic(f0_hz: float, seconds: float, rate: int = RATE, amp: float = 0.3, jitter: float = 0.0,
             seed: int = 0) -> np.ndarray:
    """A glottal-like tone: five harmonics of ``f0_hz`` (1/k amplitudes); ``jitter`` adds random pitch wobble."""
    n = int(seconds * rate)
    rng = np.random.default_rng(seed)
    f = np.full(n, f0_hz)
    if jitter > 0:
        steps = rng.normal(0.0, jitter * f0_hz, size=n // 400 + 2)
        f = f + np.repeat(steps, 400)[:n]  # a new period every 25 ms
    phase = 2 * np.pi * np.cumsum(f) / rate
    return (amp * sum(np.sin(k * phase) / k for k in range(1, 6))).astype(np.float32)


def syllables(f0_hz: float = 220.0, per_s: float = 4.0, seconds: float = 3.0, rate: int = RATE,
              amp: float = 0.3, pause_at_s: float | None = None, pause_s: float = 0.0, seed: int = 0) -> np.ndarray:
    """Speech-like bursts: ``per_s`` raised-sine syllables a second on a harmonic carrier, optional inserted pause."""
    t = np.arange(int(seconds * rate)) / rate
    env = np.sin(np.pi * per_s * t) ** 2  # one peak per 1/per_s seconds
    env = np.where(env > 0.05, env, 0.0)
    x = harmonic(f0_hz, seconds, rate, amp) * env
    if pause_at_s is not None and pause_s > 0:
        cut = int(pause_at_s * rate)
        x = np.concatenate([x[:cut], np.zeros(int(pause_s * rate), np.float32), x[cut:]])
    rng = np.random.default_rng(seed)
    return (x + 1e-3 * rng.standard_normal(len(x))).astype(np.float32)
