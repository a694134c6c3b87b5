"""A simulated loudspeaker-to-microphone path and the figures of an echo canceller on it: what ``bench-echo`` and
the fake duplex device of the tests put between the agent's output and its input.

The path is the played signal convolved with a room impulse response (pyroomacoustics' image-source model of a
shoebox room when it is installed, else exponentially decaying noise behind a direct path), delayed and
attenuated. ``EchoPath.feed()`` runs it block by block, as a device would; ``measure()`` runs a canceller over
a whole scenario and returns its echo return loss enhancement (ERLE).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy.signal import oaconvolve

from attune.core.audio import FRAME, SAMPLE_RATE
from attune.transports.echo import EchoCanceller

ROOM_M = (4.0, 3.5, 2.7)  # a small room, m
SPEAKER_M = (2.0, 1.0, 1.2)  # a kiosk's loudspeaker ...
MIC_M = (2.3, 1.1, 1.25)  # ... and its microphone, 32 cm apart


def synthetic_rir(rt60_s: float = 0.4, *, length_s: float = 0.5, seed: int = 0) -> np.ndarray:
    """A direct path followed by exponentially decaying noise that falls 60 dB in ``rt60_s``; unit energy."""
    n = int(length_s * SAMPLE_RATE)
    rng = np.random.default_rng(seed)
    decay = np.exp(-6.9078 * np.arange(n) / (rt60_s * SAMPLE_RATE))  # ln(1000): -60 dB at rt60
    rir = 0.25 * rng.standard_normal(n) * decay
    rir[0] = 1.0
    return unit_energy(rir)


def unit_energy(rir: np.ndarray) -> np.ndarray:
    """``rir`` scaled to an L2 norm of 1, so that a path's ``gain`` is the echo's level relative to the played
    signal's (exactly so for white noise, roughly for speech)."""
    return (rir / np.sqrt(np.sum(np.square(rir, dtype=np.float64)))).astype(np.float32)


def room_rir(rt60_s: float = 0.4) -> tuple[np.ndarray, str]:
    """The impulse response from ``SPEAKER_M`` to ``MIC_M`` in ``ROOM_M`` (unit energy) and what made it:
    ``pyroomacoustics`` (image sources, Sabine absorption for ``rt60_s``) or ``synthetic``."""
    try:
        import pyroomacoustics as pra
    except ImportError:
        return synthetic_rir(rt60_s), "synthetic"
    absorption, max_order = pra.inverse_sabine(rt60_s, list(ROOM_M))
    room = pra.ShoeBox(list(ROOM_M), fs=SAMPLE_RATE, materials=pra.Material(absorption), max_order=max_order)
    room.add_source(list(SPEAKER_M))
    room.add_microphone(list(MIC_M))
    room.compute_rir()
    return unit_energy(np.asarray(room.rir[0][0], dtype=np.float32)), "pyroomacoustics"


class EchoPath:
    """Played 16 kHz audio -> what the microphone hears of it: ``gain`` x (signal * ``rir``), ``delay_s`` late.

    ``feed(block)`` returns the echo for the same span of time as ``block`` (the reverberant tail of earlier
    blocks included); blocks may have any length. Pure and deterministic.
    """

    def __init__(self, rir: np.ndarray, *, delay_s: float = 0.03, gain: float = 0.5) -> None:
        self.rir = np.asarray(rir, dtype=np.float32) * np.float32(gain)
        self._tail = np.zeros(int(round(delay_s * SAMPLE_RATE)) + len(rir), dtype=np.float32)
        self._delay = int(round(delay_s * SAMPLE_RATE))

    def feed(self, block: np.ndarray) -> np.ndarray:
        n = len(block)
        wet = oaconvolve(np.asarray(block, dtype=np.float32), self.rir)
        acc = np.zeros(max(len(self._tail), self._delay + len(wet)), dtype=np.float32)
        acc[: len(self._tail)] += self._tail
        acc[self._delay: self._delay + len(wet)] += wet
        out, self._tail = acc[:n].copy(), acc[n:]
        return out

    def run(self, signal: np.ndarray) -> np.ndarray:
        """The whole echo of ``signal`` (as long as ``signal``)."""
        return self.feed(signal)


def speech_similarity(output: np.ndarray, speech: np.ndarray, max_lag_s: float = 0.02) -> tuple[float, int]:
    """How much of ``speech`` is in ``output``: the normalised correlation of the two in the telephone band
    (300-3400 Hz, so the canceller's high-pass filter does not count), at the best lag in 0..``max_lag_s``
    (AEC3 delays its output by 8 ms); returns (correlation -1..1, lag in samples)."""
    from scipy.signal import butter, sosfilt

    n = min(len(output), len(speech))
    sos = butter(4, [300, 3400], btype="band", fs=SAMPLE_RATE, output="sos")
    out, ref = sosfilt(sos, output[:n]), sosfilt(sos, speech[:n])
    best = (-1.0, 0)
    for lag in range(int(max_lag_s * SAMPLE_RATE) + 1):
        x, y = out[lag:], ref[: n - lag]
        corr = float(np.dot(x, y) / (np.sqrt(np.dot(x, x) * np.dot(y, y)) + 1e-12))
        best = max(best, (corr, lag))
    return best


def power_db(x: np.ndarray) -> float:
    return float(10.0 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-12))


@dataclass(frozen=True)
class EchoFigures:
    """One canceller on one scenario. ``erle_db``: echo power in over residual power out, on the echo-only
    span after ``settle_s``; ``erle_first_s_db``: the same over the first second (while the filter adapts);
    ``cpu_ms_p50`` / ``cpu_ms_p95``: CPU time per 20 ms frame."""

    canceller: str
    erle_db: float
    erle_first_s_db: float
    cpu_ms_p50: float
    cpu_ms_p95: float
    output: np.ndarray  # the canceller's output over the whole scenario (16 kHz)


def run_canceller(canceller: EchoCanceller, near: np.ndarray, far: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Feed ``near`` and ``far`` through ``canceller`` in 20 ms frames; the output and CPU ms per frame."""
    n = len(near) // FRAME * FRAME
    out = np.zeros(len(near), dtype=np.float32)
    cpu: list[float] = []
    for i in range(0, n, FRAME):
        t = time.process_time()
        out[i:i + FRAME] = canceller.process(near[i:i + FRAME], far[i:i + FRAME])
        cpu.append((time.process_time() - t) * 1000.0)
    return out, cpu


def measure(canceller: EchoCanceller, far: np.ndarray, echo: np.ndarray, user: np.ndarray, user_at_s: float, *,
            settle_s: float = 1.0) -> EchoFigures:
    """Run ``canceller`` on microphone = ``echo`` + ``user`` (starting at ``user_at_s``) with ``far`` as the
    reference; ERLE is taken on the echo alone before the user speaks."""
    near = echo.copy()
    at = int(user_at_s * SAMPLE_RATE)
    near[at: at + len(user)] += user[: max(0, len(near) - at)]
    out, cpu = run_canceller(canceller, near, far)
    s = int(settle_s * SAMPLE_RATE)
    first = slice(0, SAMPLE_RATE)
    erle = power_db(echo[s:at]) - power_db(out[s:at])
    erle_first = power_db(echo[first]) - power_db(out[first])
    return EchoFigures(canceller.name, round(erle, 1), round(erle_first, 1),
                       round(float(np.percentile(cpu, 50)), 3), round(float(np.percentile(cpu, 95)), 3), out)
