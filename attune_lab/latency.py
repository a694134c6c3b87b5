"""Voice-to-voice latency from the audio itself: the end of the user's speech (the last 20 ms input frame above
-40 dBFS) to the first 20 ms reply frame above -50 dBFS, with input and reply audio on one timeline. Pure numpy.
"""

from __future__ import annotations

import numpy as np

from attune.core.audio import FRAME_S, block_levels_dbfs
from attune.core.stats import percentile

__all__ = ["frame_levels", "percentile", "voice_to_voice"]  # percentile: the one in core.stats, for reports

SPEECH_DBFS = -40.0  # an input frame louder than this is the user speaking
REPLY_DBFS = -50.0  # a reply frame louder than this is the agent audible


def frame_levels(samples: np.ndarray, rate: int) -> np.ndarray:
    """dBFS of each consecutive 20 ms frame."""
    return block_levels_dbfs(samples, rate, FRAME_S)


def voice_to_voice(user: np.ndarray, user_rate: int, reply: np.ndarray, reply_rate: int,
                   after_s: float = 0.0) -> tuple[float, float, float] | None:
    """(speech end s, reply start s, latency ms) for the first reply after ``after_s``, both arrays starting at
    stream time 0; None when there is no reply or no speech before it."""
    out_levels = frame_levels(reply, reply_rate)
    loud = np.nonzero(out_levels > REPLY_DBFS)[0]
    loud = loud[loud * FRAME_S >= after_s]
    if loud.size == 0:
        return None
    reply_start = float(loud[0] * FRAME_S)
    in_levels = frame_levels(user, user_rate)
    speech = np.nonzero(in_levels[: int(reply_start / FRAME_S)] > SPEECH_DBFS)[0]
    if speech.size == 0:
        return None
    speech_end = float((speech[-1] + 1) * FRAME_S)
    return speech_end, reply_start, (reply_start - speech_end) * 1000.0

