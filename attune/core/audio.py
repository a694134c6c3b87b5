"""Audio utilities shared by every stage: loading and validating input, format conversion, resampling, levels.

Everything inside Attune works on mono float32 in [-1, 1] at a known sample rate; this module is where audio from
outside (files, arrays, PCM16 bytes) is checked and brought to that form, with a clear ``AudioInputError`` when it
cannot be.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attune.core.dsp import resample_poly
from attune.core.errors import AudioInputError

SAMPLE_RATE = 16000  # Hz, the rate of every internal analysis stage
FRAME_MS = 20  # ms per streamed frame, in (transports -> session) and out (reply audio events)
FRAME_S = FRAME_MS / 1000  # s per streamed frame
FRAME = SAMPLE_RATE * FRAME_MS // 1000  # samples in one 16 kHz frame (320)
MIN_SAMPLE_RATE = 4000  # Hz; below this, speech carries too little to analyse
MAX_SAMPLE_RATE = 192000  # Hz
CLIP_LEVEL = 0.999  # |sample| at or above this counts as clipped
SPEECH_BLOCK_S = 0.02  # s: the blocks whose loudest one tells silence from quiet speech


@dataclass(frozen=True)
class AudioQuality:
    """How usable a stretch of audio is. Levels in dBFS; ``clipped_fraction`` and ``usable`` describe the samples."""

    rms_dbfs: float
    peak_dbfs: float
    crest_factor_db: float
    clipped_fraction: float
    is_silent: bool
    is_clipped: bool
    too_short: bool
    non_finite_fraction: float = 0.0
    no_speech: bool = False  # sound, but no voiced speech in it (noise, hum, clicks): set by the emotion analysis

    @property
    def usable(self) -> bool:
        return not (self.is_silent or self.too_short or self.no_speech)

    @property
    def issues(self) -> list[str]:
        out = []
        if self.is_silent:
            out.append("silent")
        if self.is_clipped:
            out.append("clipped")
        if self.too_short:
            out.append("too short")
        if self.no_speech and not self.is_silent:
            out.append("no speech found")
        if self.non_finite_fraction > 0:
            out.append("non-finite samples replaced")
        if not self.is_silent and self.rms_dbfs < -45.0:
            out.append("very quiet")
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "rms_dbfs": round(self.rms_dbfs, 2),
            "peak_dbfs": round(self.peak_dbfs, 2),
            "crest_factor_db": round(self.crest_factor_db, 2),
            "clipped_fraction": round(self.clipped_fraction, 5),
            "is_silent": self.is_silent,
            "is_clipped": self.is_clipped,
            "too_short": self.too_short,
            "non_finite_fraction": round(self.non_finite_fraction, 5),
            "no_speech": self.no_speech,
            "issues": self.issues,
        }


def dbfs(value: float) -> float:
    """Amplitude (1.0 = full scale) to dBFS, floored at -120."""
    return 20.0 * math.log10(max(value, 1e-6))


def rms(samples: np.ndarray) -> float:
    if samples.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))


def check_sample_rate(sample_rate: object) -> int:
    """Return ``sample_rate`` as an int, or raise AudioInputError if it is missing or implausible."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer, float)):
        raise AudioInputError(f"sample rate must be a number of Hz, got {sample_rate!r}")
    if not math.isfinite(float(sample_rate)) or int(sample_rate) != sample_rate:
        raise AudioInputError(f"sample rate must be a whole number of Hz, got {sample_rate!r}")
    rate = int(sample_rate)
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioInputError(f"sample rate {rate} Hz is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz")
    return rate


def to_mono_float(samples: np.ndarray) -> tuple[np.ndarray, float]:
    """Convert int or float audio of shape (n,), (n, channels) or (channels, n) to mono float32 in [-1, 1].

    Returns the audio and the fraction of samples that were NaN or Inf (replaced by 0). Raises AudioInputError
    for empty input, unsupported dtypes or audio that is entirely non-finite.
    """
    arr = np.asarray(samples)
    if arr.size == 0:
        raise AudioInputError("audio is empty (0 samples)")
    if arr.ndim > 2:
        raise AudioInputError(f"audio must be 1-D or 2-D (samples x channels), got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)
        if info.min == 0:  # unsigned PCM (8-bit WAV) is centred on the midpoint
            mid = (int(info.max) + 1) / 2.0
            arr = (arr.astype(np.float32) - mid) / mid
        else:
            arr = arr.astype(np.float32) / float(-info.min)
    elif np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32, copy=False)
    else:
        raise AudioInputError(f"unsupported audio dtype {arr.dtype}; use int16, int32 or float")
    if arr.ndim == 2:
        # Channels are the short axis: (n, 2) from soundfile, (2, n) from some libraries.
        channel_axis = 1 if arr.shape[1] <= arr.shape[0] else 0
        arr = arr.mean(axis=channel_axis, dtype=np.float32)
    finite = np.isfinite(arr)
    bad_fraction = 0.0
    if not finite.all():
        bad_fraction = float(1.0 - finite.mean())
        if bad_fraction >= 1.0:
            raise AudioInputError("audio contains only NaN/Inf samples")
        arr = np.where(finite, arr, 0.0).astype(np.float32)
    peak = float(np.max(np.abs(arr)))
    if peak > 1.0 + 1e-3:
        # Float audio beyond full scale: treat as already-clipped data scaled wrongly and bring it into range.
        arr = np.clip(arr, -1.0, 1.0)
    return np.ascontiguousarray(arr, dtype=np.float32), bad_fraction


def block_levels_dbfs(samples: np.ndarray, sample_rate: int, frame_s: float) -> np.ndarray:
    """RMS level in dBFS (floored at -120) of each consecutive, non-overlapping ``frame_s`` block."""
    frame = max(1, int(frame_s * sample_rate))
    n = len(samples) // frame
    if n == 0:
        return np.zeros(0)
    levels = np.sqrt(np.mean(np.square(samples[: n * frame].reshape(n, frame), dtype=np.float64), axis=1))
    return np.asarray(20.0 * np.log10(np.maximum(levels, 1e-6)))


def trim_leading_silence(samples: np.ndarray, sample_rate: int, *, threshold_dbfs: float = -60.0,
                         keep_s: float = 0.03, frame_s: float = 0.01) -> np.ndarray:
    """``samples`` from ``keep_s`` before the first ``frame_s`` frame above ``threshold_dbfs`` RMS; unchanged when
    no frame is that loud (nothing to find an onset in)."""
    return trim_silence(samples, sample_rate, threshold_dbfs=threshold_dbfs, keep_before_s=keep_s, frame_s=frame_s)


def trim_silence(samples: np.ndarray, sample_rate: int, *, threshold_dbfs: float = -60.0, keep_before_s: float = 0.03,
                 keep_after_s: float | None = None, frame_s: float = 0.01) -> np.ndarray:
    """``samples`` from ``keep_before_s`` before the first ``frame_s`` frame above ``threshold_dbfs`` RMS and, with
    ``keep_after_s``, up to that long after the last one (None: to the end); unchanged when no frame is that loud.
    One pass over the levels for both ends."""
    frame = max(1, int(frame_s * sample_rate))
    loud = np.flatnonzero(block_levels_dbfs(samples, sample_rate, frame_s) >= threshold_dbfs)
    if loud.size == 0:
        return samples
    start = max(0, int(loud[0]) * frame - int(keep_before_s * sample_rate))
    end = len(samples) if keep_after_s is None else min(
        len(samples), (int(loud[-1]) + 1) * frame + int(keep_after_s * sample_rate))
    return samples[start:end]


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Polyphase resampling of mono float audio; returns float32."""
    if from_rate == to_rate:
        return samples.astype(np.float32, copy=False)
    g = math.gcd(int(from_rate), int(to_rate))
    out = resample_poly(samples.astype(np.float32, copy=False), int(to_rate) // g, int(from_rate) // g)
    return np.asarray(out, dtype=np.float32)


def prepare(samples: np.ndarray, sample_rate: object, target_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, float]:
    """Validate any array of audio and return (mono float32 at ``target_rate``, non-finite fraction)."""
    rate = check_sample_rate(sample_rate)
    mono, bad = to_mono_float(samples)
    return resample(mono, rate, target_rate), bad


def read_audio_file(path: str | Path) -> tuple[np.ndarray, int]:
    """The samples of an audio file as stored (float32, (n,) or (n, channels), NaN/Inf left in) and its rate.

    Raises AudioInputError for a missing path, a directory or a file libsndfile cannot read."""
    import soundfile as sf

    p = Path(path)
    if p.is_dir():
        raise AudioInputError(f"{p} is a directory, not an audio file")
    if not p.is_file():
        raise AudioInputError(f"audio file not found: {p}")
    try:
        data, rate = sf.read(str(p), dtype="float32", always_2d=False)
    except (RuntimeError, sf.LibsndfileError) as exc:  # libsndfile's own message is terse; keep it and the path
        raise AudioInputError(f"cannot read audio file {p}: {exc}") from exc
    return np.asarray(data), check_sample_rate(rate)


def load_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read an audio file into (mono float32, sample rate), NaN/Inf replaced by 0 (``read_audio_file`` keeps
    them, for a caller that reports how many arrived). Raises AudioInputError for a missing or bad file."""
    data, rate = read_audio_file(path)
    mono, _ = to_mono_float(data)
    return mono, rate


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> None:
    """Write mono float audio as 16-bit PCM WAV."""
    import soundfile as sf

    sf.write(str(path), np.clip(samples, -1.0, 1.0), int(sample_rate), subtype="PCM_16")


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(samples, -1.0, 1.0), int(sample_rate), format="WAV", subtype="PCM_16")
    return buf.getvalue()


def pcm16_to_float(data: bytes) -> np.ndarray:
    """Decode little-endian PCM16 bytes; raises AudioInputError for empty or odd-length data."""
    if len(data) == 0:
        raise AudioInputError("empty PCM frame")
    if len(data) % 2:
        raise AudioInputError(f"PCM16 frame has an odd number of bytes ({len(data)})")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def float_to_pcm16(samples: np.ndarray) -> bytes:
    """Encode float samples (clipped to -1..1) as little-endian PCM16: the one encoder of every way out."""
    clipped = np.clip(samples, -1.0, 1.0)
    return bytes((clipped * 32767.0).round().astype("<i2").tobytes())


def measure_quality(
    samples: np.ndarray,
    sample_rate: int,
    *,
    non_finite_fraction: float = 0.0,
    min_duration_s: float = 0.1,
    silence_dbfs: float = -60.0,
) -> AudioQuality:
    """Level, peak, crest factor and clipping of mono float audio.

    Silent means no 20 ms block reaches ``silence_dbfs``: a quiet talker (RAVDESS's soft sadness speaks at
    -55 dBFS) with a second of silence around the words is quiet, not silent, though the clip's RMS is below it.
    """
    level = rms(samples)
    blocks = block_levels_dbfs(samples, sample_rate, SPEECH_BLOCK_S)
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    clipped = float(np.mean(np.abs(samples) >= CLIP_LEVEL)) if samples.size else 0.0
    rms_db = dbfs(level)
    peak_db = dbfs(peak)
    return AudioQuality(
        rms_dbfs=rms_db,
        peak_dbfs=peak_db,
        crest_factor_db=peak_db - rms_db if level > 0 else 0.0,
        clipped_fraction=clipped,
        is_silent=(float(blocks.max()) if blocks.size else rms_db) < silence_dbfs,
        is_clipped=clipped > 0.001,
        too_short=samples.size < min_duration_s * sample_rate,
        non_finite_fraction=non_finite_fraction,
    )


def load_wav_bytes(data: bytes) -> tuple[np.ndarray, int]:
    """Decode an in-memory audio file into (mono float32, sample rate); AudioInputError if it is not one."""
    import soundfile as sf

    if not data:
        raise AudioInputError("empty audio file")
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise AudioInputError(f"cannot decode audio: {exc}") from exc
    mono, _ = to_mono_float(np.asarray(samples))
    return mono, check_sample_rate(rate)
