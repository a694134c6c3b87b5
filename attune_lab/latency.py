"""Voice-to-voice latency from the audio itself: the end of the user's speech (the last 20 ms input frame above
``speech_threshold_dbfs``: -40 dBFS, or 25 dB below the recording's loudest frame for a quiet speaker) to the
first 20 ms reply frame above -50 dBFS, with input and reply audio on one timeline. Pure numpy.
"""

from __future__ import annotations

import numpy as np

from attune.core.audio import FRAME_S, block_levels_dbfs
from attune.core.stats import percentile

# percentile: the one in core.stats, for reports
__all__ = ["frame_levels", "percentile", "speech_end_s", "speech_threshold_dbfs", "voice_to_voice"]

SPEECH_DBFS = -40.0  # an input frame louder than this is the user speaking...
SPEECH_BELOW_PEAK_DB = 25.0  # ...and so is one within this of the recording's loudest frame (a quiet speaker)
FLOOR_MARGIN_DB = 4.0  # but never one within this of its noise floor (its 10th-percentile frame)
REPLY_DBFS = -50.0  # a reply frame louder than this is the agent audible


def frame_levels(samples: np.ndarray, rate: int) -> np.ndarray:
    """dBFS of each consecutive 20 ms frame."""
    return block_levels_dbfs(samples, rate, FRAME_S)


def speech_threshold_dbfs(levels: np.ndarray) -> float:
    """The level above which an input frame is speech. A fixed -40 dBFS put the end of a quiet speaker's words at
    their last loud syllable (RAVDESS's actors peak at -23..-44 dBFS: up to 0.7 s early, so the wait after them
    read that much longer) and found no speech at all in a file that never reaches it (the file was dropped from
    the figures). Loud recordings (peak above -15 dBFS: TTS voices, LibriVox) keep -40."""
    if levels.size == 0:
        return SPEECH_DBFS
    peak, floor = float(levels.max()), float(np.percentile(levels, 10))
    return max(floor + FLOOR_MARGIN_DB, min(SPEECH_DBFS, peak - SPEECH_BELOW_PEAK_DB))


def speech_end_s(samples: np.ndarray, rate: int, before_s: float | None = None) -> float | None:
    """Where the last speech frame of ``samples`` (before ``before_s``) ends; None when there is none."""
    levels = frame_levels(samples, rate)
    limit = levels if before_s is None else levels[: int(before_s / FRAME_S)]
    speech = np.nonzero(limit > speech_threshold_dbfs(levels))[0]
    return float((speech[-1] + 1) * FRAME_S) if speech.size else None


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
    speech_end = speech_end_s(user, user_rate, before_s=reply_start)
    if speech_end is None:
        return None
    return speech_end, reply_start, (reply_start - speech_end) * 1000.0

