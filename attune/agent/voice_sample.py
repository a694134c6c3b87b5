"""Voice-sample validation for a persona's reference voice: an uploaded WAV or FLAC in, a stored mono 16-bit WAV
and its ``Sample`` out, or a ``PersonaError`` (code ``rejected``) whose ``field`` names the rule it broke.

The rules, checked in this order, each message giving the measured value and the limit:
``format`` (not decodable, or a WAV whose header lies: RIFF or data sizes beyond or short of the bytes sent, a
byte rate or block alignment that disagrees with rate x channels x bits), ``bit_depth`` (16-bit or better),
``channels`` (mono; two are down-mixed with a note; more are refused), ``sample_rate`` (22,050 to 96,000 Hz),
``duration`` (6 to 30 s), ``clipping`` (at most 0.1 % of samples at or above 0.999 of full scale), ``snr``
(speech-to-noise estimate: the 90th minus the 10th percentile of 20 ms frame energies in dB, so the loud
frames stand for speech and the quiet ones, the pauses, for the noise floor), ``speech`` (the pipeline's Silero
VAD, at 16 kHz, hears speech in at least ``min_speech_fraction`` of the 32 ms chunks). A body that is neither
WAV nor FLAC by its first bytes is ``not_audio`` (whatever its Content-Type says). Blocking: run it in a thread.

The header's promise (bits, channels, rate, frames) is judged before any sample is decoded, and decoding then
stops at ``MAX_DURATION_S`` whatever the header said: a small upload can never cost more than one 30 s mono
buffer at the highest accepted rate (11.5 MB), however many samples it claims or holds.
"""

from __future__ import annotations

import hashlib
import io
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from attune.agent.persona_model import Sample
from attune.backends.vad import VAD_CHUNK, SileroVAD
from attune.core.audio import CLIP_LEVEL, SAMPLE_RATE, resample, wav_bytes
from attune.core.errors import PersonaError

MIN_DURATION_S = 6.0
MAX_DURATION_S = 30.0
MIN_RATE = 22050  # Hz
MAX_RATE = 96000  # Hz; with MAX_DURATION_S this bounds the decoded buffer (30 s x 96 kHz x 4 bytes = 11.5 MB)
DECODE_BLOCK_FRAMES = 16384  # frames decoded at a time (at most 2 channels: 128 KiB of float32)
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


@dataclass(frozen=True)
class _Header:
    """What the file's header promises, read before a single sample is decoded."""

    rate: int
    channels: int
    frames: int  # as declared; a FLAC stream may leave it 0 (unknown), so decoding is bounded anyway
    bits: int


@dataclass(frozen=True)
class _Decoded:
    mono: np.ndarray  # float32, the channels averaged
    clipped: int  # samples of any channel at or above CLIP_LEVEL
    samples: int  # samples of all channels


def _open(data: bytes, kind: str) -> tuple[Any, _Header]:
    """The open ``SoundFile`` and its header; ``format`` when it cannot be opened."""
    import soundfile as sf

    if kind == "wav":
        check_wav_header(data)
    try:
        f = sf.SoundFile(io.BytesIO(data))
    except (RuntimeError, sf.LibsndfileError, ValueError, struct.error) as exc:
        raise _reject("format", f"the {kind.upper()} file cannot be decoded: {str(exc)[:160]}") from None
    return f, _Header(int(f.samplerate), int(f.channels), max(0, int(f.frames)), SUBTYPE_BITS.get(str(f.subtype), 0))


def _check_header(h: _Header) -> None:
    """The rules a header alone decides, before anything is decoded: a few hundred bytes of FLAC may promise
    gigabytes of samples (8 channels of 48 kHz silence for minutes), which must be refused unread."""
    if h.bits < MIN_BITS:
        raise _reject("bit_depth", f"{h.bits or 'unknown'}-bit samples; at least {MIN_BITS}-bit needed")
    if h.channels > MAX_CHANNELS_DOWNMIXED:
        raise _reject("channels", f"{h.channels} channels; mono needed (stereo is down-mixed)")
    if not MIN_RATE <= h.rate <= MAX_RATE:
        raise _reject("sample_rate", f"{h.rate} Hz; {MIN_RATE} to {MAX_RATE} Hz needed")
    if h.frames > MAX_DURATION_S * h.rate:
        raise _reject("duration", f"{h.frames / h.rate:.2f} s; {MIN_DURATION_S:g} to {MAX_DURATION_S:g} s needed")


def _decode(f: Any, h: _Header, kind: str) -> _Decoded:
    """Decode block by block into one preallocated mono buffer of at most ``MAX_DURATION_S`` (plus one sample,
    to tell a longer stream), whatever the header said; peak memory is that buffer and one block."""
    import soundfile as sf

    limit = int(MAX_DURATION_S * h.rate) + 1
    mono = np.empty(limit, dtype=np.float32)
    n = clipped = 0
    try:
        while n < limit:
            block = f.read(min(DECODE_BLOCK_FRAMES, limit - n), dtype="float32", always_2d=True)
            if len(block) == 0:
                break
            if not np.isfinite(block).all():
                raise _reject("format", "the file holds NaN or infinite samples")
            clipped += int(np.count_nonzero(np.abs(block) >= CLIP_LEVEL))
            mono[n:n + len(block)] = block.mean(axis=1) if h.channels > 1 else block[:, 0]
            n += len(block)
    except (RuntimeError, sf.LibsndfileError, ValueError, struct.error) as exc:
        raise _reject("format", f"the {kind.upper()} file cannot be decoded: {str(exc)[:160]}") from None
    if n == 0:
        raise _reject("format", "the file holds no audio")
    if n >= limit:
        raise _reject("duration", f"more than {MAX_DURATION_S:g} s; {MIN_DURATION_S:g} to {MAX_DURATION_S:g} s "
                                  "needed")
    return _Decoded(mono[:n], clipped, n * h.channels)


def snr_db(mono: np.ndarray, rate: int) -> float:
    """The speech-to-noise estimate (see the module docstring), in dB, capped at ``SNR_CAP_DB``."""
    n = max(1, int(SNR_FRAME_S * rate))
    frames = mono[: len(mono) // n * n].reshape(-1, n)  # a view: no copy of the sample
    energy = np.einsum("ij,ij->i", frames, frames, dtype=np.float64) / n
    energy_db = 10.0 * np.log10(energy + 1e-12)
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
    f, header = _open(data, kind)
    with f:
        _check_header(header)
        decoded = _decode(f, header, kind)
    rate, mono = header.rate, decoded.mono
    notes = [f"down-mixed {header.channels} channels to mono"] if header.channels > 1 else []
    duration = len(mono) / rate
    if not MIN_DURATION_S <= duration <= MAX_DURATION_S:
        raise _reject("duration", f"{duration:.2f} s; {MIN_DURATION_S:g} to {MAX_DURATION_S:g} s needed")
    clipped = decoded.clipped / decoded.samples
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
    sample = Sample(hashlib.sha256(stored).hexdigest(), round(duration, 3), rate, 1, header.bits, round(snr, 1))
    return AcceptedSample(sample, stored, notes)
