"""The one place ProsodyParameters become TTS engines' native controls (Piper's scales, espeak-ng's flags).

Only what an engine does natively is mapped here; the prosody applicator (DSP) does the rest on the audio.
"""

from __future__ import annotations

from dataclasses import dataclass

from attune.core import catalog
from attune.core.prosody import ProsodyParameters

PIPER_NOISE_SCALE = 0.667  # Piper's defaults for the en_US medium voices
PIPER_NOISE_W = 0.8
ESPEAK_WPM = 175  # espeak-ng's default speed, words per minute
ESPEAK_PITCH = 50  # espeak-ng's default pitch, 0..99
ESPEAK_SEMITONE_STEP = 4.0  # espeak pitch units per semitone, roughly, near the default


# The ProsodyParameters dimensions each provider realises natively. The router stamps them on every chunk that
# provider speaks (``SpeechAudio.native``) and the DSP applies the rest (``SpeechAudio.remaining``). Piper's
# pitch_variance mapping only shapes its noise terms, so the DSP still applies pitch variance.
NATIVE_DIMENSIONS: dict[str, tuple[str, ...]] = {
    name: spec.capabilities.native_dimensions for name, spec in catalog.TTS.items()  # data: each TTS spec
}


def native_dimensions(provider: str | None) -> tuple[str, ...]:
    """What ``provider`` already applied (nothing for an unknown or absent provider)."""
    return NATIVE_DIMENSIONS.get(provider or "", ())


@dataclass(frozen=True)
class PiperControls:
    length_scale: float  # > 1 is slower
    noise_scale: float  # phoneme-level variation
    noise_w: float  # duration (rhythm) variation


def piper_controls(prosody: ProsodyParameters | None, base_length_scale: float = 1.0) -> PiperControls:
    """speech_rate -> length_scale = base / rate; pitch_variance scales both noise terms (livelier = more)."""
    p = prosody or ProsodyParameters()
    variance = p.pitch_variance
    return PiperControls(
        length_scale=round(base_length_scale / p.speech_rate, 4),
        noise_scale=round(min(max(PIPER_NOISE_SCALE * variance ** 0.5, 0.3), 1.0), 4),
        noise_w=round(min(max(PIPER_NOISE_W * variance, 0.2), 1.6), 4),
    )


def espeak_flags(prosody: ProsodyParameters | None) -> list[str]:
    """``-s`` words per minute from speech_rate, ``-p`` pitch from the shift, ``-a`` amplitude from volume_db."""
    p = prosody or ProsodyParameters()
    wpm = round(ESPEAK_WPM * p.speech_rate)
    pitch = round(min(max(ESPEAK_PITCH + ESPEAK_SEMITONE_STEP * p.pitch_shift_semitones, 0), 99))
    amplitude = round(min(max(100 * 10 ** (p.volume_db / 20.0), 0), 200))
    return ["-s", str(wpm), "-p", str(pitch), "-a", str(amplitude)]
