"""Voice-sample validation on generated audio (one file per rule it breaks) and on real speech (LibriVox clips,
upsampled to 24 kHz), with the real Silero VAD deciding whether speech is present."""

from __future__ import annotations

import hashlib
import io
import struct

import numpy as np
import pytest
import soundfile as sf

from attune.agent.voice_sample import SampleRules, sniff, validate_sample
from attune.core.audio import resample
from attune.core.errors import PersonaError
from tests.engines_util import librivox_clips

LAYER = "real"


def _encode(x: np.ndarray, rate: int, fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


@pytest.fixture(scope="module")
def speech24k() -> np.ndarray:
    """About 15 s of a LibriVox reader at 24 kHz."""
    clips = [sf.read(str(path), dtype="float32")[0] for path, _ in librivox_clips()[:3]]
    return resample(np.concatenate(clips), 16000, 24000)


def _rule(data: bytes) -> tuple[str | None, str]:
    with pytest.raises(PersonaError) as err:
        validate_sample(data)
    return err.value.field, str(err.value)


def test_real_speech_is_accepted_and_stored_mono_16_bit(speech24k: np.ndarray) -> None:
    got = validate_sample(_encode(speech24k, 24000, subtype="PCM_24"))
    s = got.sample
    assert (s.sample_rate, s.channels, s.bits) == (24000, 1, 24) and 6 <= s.duration_s <= 30
    assert s.snr_db > 15 and got.notes == []
    assert s.sha256 == hashlib.sha256(got.wav).hexdigest()
    info = sf.info(io.BytesIO(got.wav))
    assert (info.channels, info.subtype, info.samplerate) == (1, "PCM_16", 24000)


def test_flac_and_stereo_are_accepted_with_a_note(speech24k: np.ndarray) -> None:
    stereo = np.stack([speech24k, 0.8 * speech24k], axis=1)
    got = validate_sample(_encode(stereo, 24000, fmt="FLAC"))
    assert got.notes == ["down-mixed 2 channels to mono"] and got.sample.channels == 1


def test_each_broken_rule_is_named_with_its_measure(speech24k: np.ndarray) -> None:
    x = speech24k
    assert _rule(_encode(resample(x, 24000, 16000), 16000))[0] == "sample_rate"
    assert _rule(_encode(x[: 24000 * 4], 24000))[0] == "duration"
    assert _rule(_encode(np.tile(x, 3)[: 24000 * 31], 24000))[0] == "duration"
    assert _rule(_encode(x, 24000, subtype="PCM_U8"))[0] == "bit_depth"
    assert _rule(_encode(np.stack([x, x, x], axis=1), 24000))[0] == "channels"
    loud = np.clip(x * 30.0, -1, 1)
    field, message = _rule(_encode(loud, 24000))
    assert field == "clipping" and "%" in message
    noisy = x + np.random.default_rng(1).normal(0, 0.08, len(x)).astype(np.float32)
    field, message = _rule(_encode(np.clip(noisy, -0.99, 0.99), 24000))
    assert field == "snr" and "dB" in message and "15" in message
    t = np.arange(24000 * 8) / 24000
    hum = (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)).astype(np.float32)
    assert _rule(_encode(hum, 24000))[0] == "speech"


def test_a_lying_wav_header_is_format(speech24k: np.ndarray) -> None:
    good = _encode(speech24k, 24000)
    truncated = good[: len(good) // 2]  # the header still declares the whole length
    assert _rule(truncated)[0] == "format"
    # The header says 48 kHz but its byte rate is the 24 kHz file's.
    lying = bytearray(good)
    fmt = good.index(b"fmt ") + 8
    struct.pack_into("<I", lying, fmt + 4, 48000)
    field, message = _rule(bytes(lying))
    assert field == "format" and "48000" in message
    junk = good + bytes(1000)  # data after the declared RIFF size
    assert _rule(junk)[0] == "format"


def test_not_audio_by_content_and_rules_from_config(speech24k: np.ndarray) -> None:
    assert sniff(b"OggS" + bytes(100)) is None
    with pytest.raises(PersonaError) as err:
        validate_sample(b"<html>not a wav</html>" * 100)
    assert err.value.code == "not_audio"
    with pytest.raises(PersonaError) as err:
        validate_sample(_encode(speech24k, 24000), SampleRules(min_snr_db=59.0))
    assert err.value.field == "snr"
