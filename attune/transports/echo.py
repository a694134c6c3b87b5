"""Echo cancellation for a loudspeaker transport: the microphone hears the agent's own voice, and this removes it
before the session's turn detector, ASR and emotion window see the input.

Two pure, loop-free parts sit between the device callbacks and ``Session.push_audio``:

- ``PlaybackReference``: what the speaker actually played, resampled to 16 kHz, queued in the order it was
  played; each captured frame takes the same number of reference samples (the far end of the canceller).
- an ``EchoCanceller``: ``process(near, far) -> near`` with the echo removed. ``webrtc`` is WebRTC's AEC3
  (``pywebrtc-audio``), which finds the delay between reference and echo itself (up to about 400 ms here) and
  adapts to the room; ``off`` passes the microphone through (headphones).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from attune.core.audio import SAMPLE_RATE, resample
from attune.core.errors import BackendUnavailable

WEBRTC_HINT = ".venv/bin/python -m pip install pywebrtc-audio==0.2.0"
MAX_LEAD_S = 0.25  # s the reference may run ahead of the microphone; AEC3 finds delays up to ~400 ms here


class EchoCanceller(Protocol):
    """Removes the echo of ``far`` (what was played) from ``near`` (what the microphone heard).

    Both are 16 kHz mono float32 frames of the same length, fed in stream order without gaps; the result has the
    length of ``near``. Not thread-safe: one instance per stream, called from one thread.
    """

    name: str

    def process(self, near: np.ndarray, far: np.ndarray) -> np.ndarray: ...

    def reset(self) -> None: ...


class PassThrough:
    """No echo cancellation (headphones, or a transport whose output the microphone cannot hear)."""

    name = "off"

    def process(self, near: np.ndarray, far: np.ndarray) -> np.ndarray:
        return near

    def reset(self) -> None:
        pass


class WebRTCEchoCanceller:
    """WebRTC's AEC3 through ``pywebrtc-audio``: adaptive linear filter, delay estimator and residual echo
    suppressor, with the high-pass filter AEC3 always applies to the capture. ``delay_ms`` is a hint (0 = let
    the delay estimator find it)."""

    name = "webrtc"

    def __init__(self, delay_ms: int = 0) -> None:
        try:
            from pywebrtc_audio import EchoCanceller as AEC3
        except ImportError as exc:
            raise BackendUnavailable(f"echo cancellation needs pywebrtc-audio: {exc}", install_hint=WEBRTC_HINT,
                                     backend="webrtc") from exc
        self._aec: Any = AEC3(sample_rate=SAMPLE_RATE, num_channels=1, stream_delay_ms=int(delay_ms))

    def process(self, near: np.ndarray, far: np.ndarray) -> np.ndarray:
        if len(near) != len(far):
            raise ValueError(f"near and far frames differ in length: {len(near)} != {len(far)}")
        out = self._aec.process(np.ascontiguousarray(near, np.float32), np.ascontiguousarray(far, np.float32))
        return np.asarray(out, dtype=np.float32)

    def reset(self) -> None:
        self._aec.reset()


CANCELLERS: dict[str, Callable[[int], EchoCanceller]] = {
    "webrtc": WebRTCEchoCanceller,
    "off": lambda delay_ms: PassThrough(),
}


def create_echo_canceller(name: str, delay_ms: int = 0) -> EchoCanceller:
    """The canceller called ``name`` (``webrtc`` | ``off``); a missing library raises ``BackendUnavailable``."""
    try:
        factory = CANCELLERS[name]
    except KeyError:
        raise ValueError(f"unknown echo canceller {name!r} (known: {', '.join(CANCELLERS)})") from None
    return factory(delay_ms)


class PlaybackReference:
    """The far end: the speaker's played blocks, in play order, as 16 kHz samples.

    ``push()`` each block the output callback played (already at 16 kHz, zeros for silence); ``take(n)`` once
    per captured frame of ``n`` samples. Pairing the two streams sample for sample keeps the reference ahead
    of its echo (a block is played after it is pushed, and heard after it is played). A shortfall is filled
    with zeros (nothing was played yet); a backlog beyond ``max_lead_s`` (the output started first, or clock
    drift) drops the oldest samples, so the lead stays inside what the canceller can find.
    """

    def __init__(self, max_lead_s: float = MAX_LEAD_S) -> None:
        self.max_lead = int(max_lead_s * SAMPLE_RATE)
        self._blocks: deque[np.ndarray] = deque()
        self._size = 0
        self.underruns = 0  # samples filled with zeros
        self.dropped = 0  # samples dropped to keep the lead bounded

    def push(self, block: np.ndarray) -> None:
        if len(block):
            self._blocks.append(np.asarray(block, dtype=np.float32))
            self._size += len(block)

    @property
    def level(self) -> int:
        """Samples pushed and not yet taken."""
        return self._size

    def take(self, n: int) -> np.ndarray:
        excess = self._size - n - self.max_lead
        if excess > 0:
            self._pop(excess)
            self.dropped += excess
        got = self._pop(min(n, self._size))
        if len(got) < n:
            self.underruns += n - len(got)
            got = np.concatenate([got, np.zeros(n - len(got), np.float32)])
        return got

    def clear(self) -> None:
        self._blocks.clear()
        self._size = 0

    def _pop(self, n: int) -> np.ndarray:
        parts: list[np.ndarray] = []
        need = n
        while need > 0 and self._blocks:
            head = self._blocks[0]
            if len(head) <= need:
                parts.append(self._blocks.popleft())
                need -= len(head)
            else:
                parts.append(head[:need])
                self._blocks[0] = head[need:]
                need = 0
        self._size -= n - need
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)


class ReferenceTrack:
    """Turns reply audio at the output rate into its 16 kHz reference, chunk by chunk, so that ``OutputBuffer``
    can hand the output callback's played share of each chunk to ``PlaybackReference``.

    ``reference(samples)`` returns the chunk resampled to 16 kHz (whole-chunk polyphase resampling: reply chunks
    are tens of milliseconds, the edge effect is ~1 ms); ``played(n_out)`` says how many 16 kHz samples
    ``n_out`` output samples correspond to, carrying the fraction so the long-run count is exact.
    """

    def __init__(self, output_rate: int) -> None:
        self.rate = output_rate
        self._carry = 0  # output samples * SAMPLE_RATE not yet turned into whole reference samples

    def reference(self, samples: np.ndarray) -> np.ndarray:
        return resample(np.asarray(samples, dtype=np.float32), self.rate, SAMPLE_RATE)

    def played(self, n_out: int) -> int:
        total = self._carry + n_out * SAMPLE_RATE
        n_ref, self._carry = divmod(total, self.rate)
        return int(n_ref)
