"""Voice-sample validation for a persona's reference voice: an uploaded WAV or FLAC in, a stored mono 16-bit WAV
and its ``Sample`` out, or a ``PersonaError`` (code ``rejected``) whose ``field`` names the rule it broke.

The rules, checked in this order, each message giving the measured value and the limit:
``format`` (not decodable, or a WAV whose header lies: RIFF or data sizes beyond or short of the bytes sent, a
byte rate or block alignment that disagrees with rate x channels x bits), ``bit_depth`` (16-bit or better),
``channels`` (mono; two are down-mixed with a note; more are refused), ``sample_rate`` (>= 22,050 Hz),
``duration`` (6 to 30 s), ``clipping`` (at most 0.1 % of samples at or above 0.999 of full scale), ``snr``
(speech-to-noise estimate: the 90th minus the 10th percentile of 20 ms frame energies in dB, so the loud
frames stand for speech and the quiet ones, the pauses, for the noise floor), ``speech`` (the pipeline's Silero
VAD, at 16 kHz, hears speech in at least ``min_speech_fraction`` of the 32 ms chunks). A body that is neither
WAV nor FLAC by its first bytes is ``not_audio`` (whatever its Content-Type says). Blocking: run it in a thread.
"""

from __future__ import annotations

import hashlib
import io
import struct
from dataclasses import dataclass, field

import numpy as np

from attune.agent.persona_model import Sample
from attune.backends.vad import VAD_CHUNK, SileroVAD
from attune.core.audio import CLIP_LEVEL, SAMPLE_RATE, resample, wav_bytes
from attune.core.errors import PersonaError

MIN_DURATION_S = 6.0
MAX_DURATION_S = 30.0
MIN_RATE = 22050  # Hz
MIN_BITS = 16
MAX_CHANNELS_DOWNMIXED = 2
MAX_CLIPPED_FRACTION = 0.001  # of all samples, at or above CLIP_LEVEL
SNR_FRAME_S = 0.02
SNR_HIGH_PERCENTILE = 90.0
SNR_LOW_PERCENTILE = 10.0
SNR_CAP_DB = 99.0  # digital silence between words would make it infinite
VAD_SPEECH_PROBABILITY = 0.5
# soundfile's subtypes -> bits per sample (8-bit and compressed-lossy ones are below the bar or unknown).
SUBTYPE_BITS = {"PCM_S8": 8, "PCM_U8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32, "FLOAT": 32, "DOUBLE": 64}


@dataclass(frozen=True)
class SampleRules:
    min_snr_db: float = 15.0
    min_speech_fraction: float = 0.2


@dataclass(frozen=True)
class AcceptedSample:
    sample: Sample
    wav: bytes  # what is stored: mono, 16-bit PCM, the upload's rate
    notes: list[str] = field(default_factory=list)


def _reject(rule: str, message: str) -> PersonaError:
    return PersonaError(f"{rule}: {message}", "rejected", rule)


def sniff(data: bytes) -> str | None:
    """``"wav"``, ``"flac"`` or None, from the content's first bytes."""
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data[:4] == b"fLaC":
        return "flac"
    return None


def check_wav_header(data: bytes) -> None:
    """Raises ``format`` when the RIFF structure disagrees with the bytes or with itself."""
    riff_size = struct.unpack_from("<I", data, 4)[0]
    if abs((riff_size + 8) - len(data)) > 1:  # a pad byte may sit at the end
        raise _reject("format", f"the WAV header declares {riff_size + 8} bytes, the file has {len(data)}")
    pos, fmt, data_seen = 12, None, False
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if body + size > len(data):
            raise _reject("format", f"the WAV chunk {cid.decode('latin-1')!r} declares {size} bytes, "
                                    f"only {len(data) - body} follow")
        if cid == b"fmt ":
            if size < 16:
                raise _reject("format", f"the WAV fmt chunk is {size} bytes, at least 16 expected")
            fmt = struct.unpack_from("<HHIIHH", data, body)
        elif cid == b"data":
            if fmt is None:
                raise _reject("format", "the WAV data chunk comes before its fmt chunk")
            _, channels, rate, byte_rate, align, bits = fmt
            if channels < 1 or rate < 1 or bits < 1:
                raise _reject("format", f"the WAV fmt chunk says {channels} channels, {rate} Hz, {bits} bits")
            if align != channels * ((bits + 7) // 8) or byte_rate != rate * align:
                raise _reject("format", f"the WAV header's byte rate {byte_rate} and block size {align} disagree "
                                        f"with {rate} Hz x {channels} channels x {bits} bits")
            if size % align:
                raise _reject("format", f"the WAV data ({size} bytes) is not a whole number of {align}-byte frames")
            data_seen = True
        pos = body + size + (size & 1)
    if not data_seen:
        raise _reject("format", "the WAV file has no data chunk" if fmt else "the WAV file has no fmt chunk")


def _decode(data: bytes, kind: str) -> tuple[np.ndarray, int, int]:
    """(float32 [n, channels], rate, bits)."""
    import soundfile as sf

    if kind == "wav":
        check_wav_header(data)
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            rate, subtype = int(f.samplerate), str(f.subtype)
            audio = f.read(dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError, ValueError, struct.error) as exc:
        raise _reject("format", f"the {kind.upper()} file cannot be decoded: {str(exc)[:160]}") from None
    if audio.size == 0:
        raise _reject("format", "the file holds no audio")
    if not np.isfinite(audio).all():
        raise _reject("format", "the file holds NaN or infinite samples")
    return audio, rate, SUBTYPE_BITS.get(subtype, 0)


def snr_db(mono: np.ndarray, rate: int) -> float:
    """The speech-to-noise estimate (see the module docstring), in dB, capped at ``SNR_CAP_DB``."""
    n = max(1, int(SNR_FRAME_S * rate))
    frames = mono[: len(mono) // n * n].reshape(-1, n).astype(np.float64)
    energy_db = 10.0 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)
    high, low = np.percentile(energy_db, [SNR_HIGH_PERCENTILE, SNR_LOW_PERCENTILE])
    return float(min(high - low, SNR_CAP_DB))


def speech_fraction(mono: np.ndarray, rate: int) -> float:
    """Share of 32 ms chunks (at 16 kHz) that Silero VAD hears as speech."""
    x = resample(mono, rate, SAMPLE_RATE)
    k = len(x) // VAD_CHUNK
    if k == 0:
        return 0.0
    vad = SileroVAD()
    probs = vad.probabilities(x[: k * VAD_CHUNK].reshape(k, VAD_CHUNK).astype(np.float32))
    return float(np.mean(probs >= VAD_SPEECH_PROBABILITY))


def validate_sample(data: bytes, rules: SampleRules | None = None) -> AcceptedSample:
    """Check ``data`` against every rule; raises ``PersonaError`` (``not_audio`` or ``rejected``)."""
    rules = rules or SampleRules()
    kind = sniff(data)
    if kind is None:
        raise PersonaError("the body is not a WAV or FLAC file (by its content)", "not_audio", None)
    audio, rate, bits = _decode(data, kind)
    notes: list[str] = []
    if bits < MIN_BITS:
        raise _reject("bit_depth", f"{bits or 'unknown'}-bit samples; at least {MIN_BITS}-bit needed")
    channels = audio.shape[1]
    if channels > MAX_CHANNELS_DOWNMIXED:
        raise _reject("channels", f"{channels} channels; mono needed (stereo is down-mixed)")
    mono = audio.mean(axis=1).astype(np.float32) if channels > 1 else audio[:, 0]
    if channels > 1:
        notes.append(f"down-mixed {channels} channels to mono")
    if rate < MIN_RATE:
        raise _reject("sample_rate", f"{rate} Hz; at least {MIN_RATE} Hz needed")
    duration = len(mono) / rate
    if not MIN_DURATION_S <= duration <= MAX_DURATION_S:
        raise _reject("duration", f"{duration:.2f} s; {MIN_DURATION_S:g} to {MAX_DURATION_S:g} s needed")
    clipped = float(np.mean(np.abs(audio) >= CLIP_LEVEL))
    if clipped > MAX_CLIPPED_FRACTION:
        raise _reject("clipping", f"{clipped:.2%} of samples at full scale; at most {MAX_CLIPPED_FRACTION:.1%}")
    snr = snr_db(mono, rate)
    if snr < rules.min_snr_db:
        raise _reject("snr", f"speech-to-noise estimate {snr:.1f} dB; at least {rules.min_snr_db:g} dB needed")
    speech = speech_fraction(mono, rate)
    if speech < rules.min_speech_fraction:
        raise _reject("speech", f"speech heard in {speech:.0%} of the sample; at least "
                                f"{rules.min_speech_fraction:.0%} needed")
    stored = wav_bytes(mono, rate)
    sample = Sample(hashlib.sha256(stored).hexdigest(), round(duration, 3), rate, 1, bits, round(snr, 1))
    return AcceptedSample(sample, stored, notes)
