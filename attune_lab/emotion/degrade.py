"""Degraded copies of the emotion dev corpora: the same acted files as a caller would send them from a phone, from a
laptop in a room, or from a café, for the robustness figures of ``eval-emotion --degraded`` and for training with
augmentation.

Conditions (``CONDITIONS``): ``phone`` (band-limited to 300-3400 Hz, 8 kHz, G.711 mu-law, written at 8 kHz),
``room`` (a shoebox room by pyroomacoustics' image sources, RT60 0.3-0.6 s, talker 1-2 m from a laptop
microphone with a 120 Hz high-pass, its level restored as an AGC would), ``babble20`` / ``babble10`` (four other
speakers of the same corpus talking at once, mixed 20 or 10 dB below the talker's active speech level). Every
file's randomness comes from its name and the condition, so a set is the same on every run and machine.

``babblemix`` / ``babblemix2`` are for training (two draws): four streams from two other speakers of the corpus,
at an SNR drawn from BABBLEMIX_SNR_DB. Which two is written to the folder's ``voices.json``, so a
leave-one-speaker-out fold can drop every copy its held-out speaker babbles in (``voices_heard``): the model
then never hears the held-out voice, not even as noise. (``babble20``/``babble10`` draw from every other
speaker and are the test sets.)
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import butter, oaconvolve, sosfilt

from attune.backends.emotion.labels import Utterance
from attune.core.audio import SAMPLE_RATE, resample
from attune.core.errors import AudioInputError

CONDITIONS = ("phone", "room", "babble20", "babble10", "babblemix", "babblemix2")
BABBLEMIX_SNR_DB = (5.0, 20.0)
BABBLEMIX_VOICES = 2  # speakers a babblemix file's babble comes from
VOICES_FILE = "voices.json"
PHONE_RATE = 8000  # Hz: narrowband telephony
PHONE_BAND_HZ = (300.0, 3400.0)
ROOM_RT60_S = (0.3, 0.6)
ROOM_DISTANCE_M = (1.0, 2.0)
LAPTOP_HIGHPASS_HZ = 120.0  # a laptop's small capsule and its housing pass little below this
N_ROOMS = 16  # impulse responses drawn once per set; each file takes one by its seed
BABBLE_TALKERS = 4
ACTIVE_RANGE_DB = 35.0  # 20 ms blocks within this of the loudest count as active speech (the SNR's reference)
_MU_BIAS = 0x21  # G.711 mu-law on 14-bit magnitudes: bias 33, clip 8159
_MU_CLIP = 8159
_MU_SEGMENT_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])


def file_seed(name: str, condition: str) -> int:
    """The seed of one file's degradation: stable across runs, machines and Python versions."""
    return zlib.crc32(f"{condition}:{name}".encode())


def mulaw_encode(pcm16: np.ndarray) -> np.ndarray:
    """G.711 mu-law bytes (uint8) of 16-bit PCM samples: the ITU-T segment encoder on the 14-bit magnitude."""
    x = np.asarray(pcm16, np.int32) >> 2
    sign = np.where(x < 0, 0x00, 0x80)
    mag = np.minimum(np.where(x < 0, -x, x), _MU_CLIP) + _MU_BIAS
    segment = np.searchsorted(_MU_SEGMENT_END, mag)  # first segment whose end is >= mag
    code = np.where(segment > 7, 0x7F, (np.minimum(segment, 7) << 4) | ((mag >> (segment + 1)) & 0x0F))
    return ((sign | code) ^ 0x7F).astype(np.uint8)


def mulaw_decode(codes: np.ndarray) -> np.ndarray:
    """16-bit PCM (int16) of G.711 mu-law bytes."""
    u = ~np.asarray(codes, np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    mag = ((((u & 0x0F) << 3) + 0x84) << exponent) - 0x84
    return np.where(u & 0x80, -mag, mag).astype(np.int16)


def phone(audio16k: np.ndarray) -> np.ndarray:
    """A narrowband phone line: 300-3400 Hz, 8 kHz, G.711 mu-law. Returns 8 kHz float32 audio."""
    x = resample(np.asarray(audio16k, np.float32), SAMPLE_RATE, PHONE_RATE)
    sos = butter(4, PHONE_BAND_HZ, btype="bandpass", fs=PHONE_RATE, output="sos")
    x = sosfilt(sos, x)
    pcm = np.clip(np.round(x * 32768.0), -32768, 32767)
    return (mulaw_decode(mulaw_encode(pcm)) / 32768.0).astype(np.float32)


def active_level(audio: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    """RMS over the active 20 ms blocks (within ACTIVE_RANGE_DB of the loudest): the talker's speech level."""
    x = np.asarray(audio, np.float64)
    block = rate // 50
    n = len(x) // block
    if n == 0:
        return float(np.sqrt(np.mean(x * x) + 1e-20))
    power = np.mean(x[: n * block].reshape(n, block) ** 2, axis=1)
    db = 10.0 * np.log10(power + 1e-20)
    return float(np.sqrt(np.mean(power[db >= db.max() - ACTIVE_RANGE_DB]) + 1e-20))


@dataclass(frozen=True)
class Room:
    """One simulated room's impulse response from the talker to a laptop microphone, and how it was drawn."""

    rir: np.ndarray
    rt60_s: float
    distance_m: float


def draw_room(seed: int) -> Room:
    """A shoebox room (3.5-6 x 3-5 x 2.4-3 m) with RT60 in ROOM_RT60_S, the talker ROOM_DISTANCE_M from the mic."""
    import pyroomacoustics as pra

    rng = np.random.default_rng(seed)
    dims = np.array([rng.uniform(3.5, 6.0), rng.uniform(3.0, 5.0), rng.uniform(2.4, 3.0)])
    rt60 = float(rng.uniform(*ROOM_RT60_S))
    distance = float(rng.uniform(*ROOM_DISTANCE_M))
    mic = np.array([rng.uniform(1.0, dims[0] - 1.0), rng.uniform(1.0, dims[1] - 1.0), rng.uniform(0.8, 1.0)])
    for _ in range(100):
        angle = rng.uniform(0.0, 2.0 * np.pi)
        src = mic + np.array([distance * np.cos(angle), distance * np.sin(angle), rng.uniform(0.3, 0.7)])
        if np.all(src[:2] > 0.4) and np.all(src[:2] < dims[:2] - 0.4):
            break
    else:
        src = np.array([dims[0] / 2, dims[1] / 2, 1.5])
    absorption, max_order = pra.inverse_sabine(rt60, list(dims))
    room = pra.ShoeBox(list(dims), fs=SAMPLE_RATE, materials=pra.Material(absorption), max_order=min(max_order, 24),
                       use_rand_ism=True, max_rand_disp=0.05)
    room.add_source(list(src))
    room.add_microphone(list(mic))
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], np.float64)
    return Room((rir / np.max(np.abs(rir))).astype(np.float32), rt60, float(np.linalg.norm(src - mic)))


def in_room(audio16k: np.ndarray, room: Room) -> np.ndarray:
    """The talker heard by a laptop microphone in ``room``, at the dry speech's active level (an AGC)."""
    x = np.asarray(audio16k, np.float32)
    wet = oaconvolve(x, room.rir)[: len(x)]
    sos = butter(2, LAPTOP_HIGHPASS_HZ, btype="highpass", fs=SAMPLE_RATE, output="sos")
    wet = sosfilt(sos, wet)
    gain = active_level(x) / max(active_level(wet), 1e-9)
    return np.clip(wet * gain, -1.0, 1.0).astype(np.float32)


def babble(n_samples: int, sources: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """BABBLE_TALKERS streams of other people's speech, each filled from random ``sources`` clips (silence
    trimmed), equal in level, summed: n_samples of continuous babble (unit-free; the caller scales it)."""
    if not sources:
        raise AudioInputError("babble needs recordings of other speakers")
    out = np.zeros(n_samples, np.float64)
    for _ in range(BABBLE_TALKERS):
        stream = np.zeros(0, np.float64)
        while len(stream) < n_samples:
            clip = np.asarray(sources[int(rng.integers(len(sources)))], np.float64)
            stream = np.concatenate([stream, trim_silence(clip)])
        start = int(rng.integers(max(1, len(stream) - n_samples + 1)))
        part = stream[start:start + n_samples]
        out += part / max(active_level(part), 1e-9)
    return out


def trim_silence(audio: np.ndarray, rate: int = SAMPLE_RATE) -> np.ndarray:
    """The clip from its first to its last active 20 ms block (see ``active_level``)."""
    x = np.asarray(audio)
    block = rate // 50
    n = len(x) // block
    if n == 0:
        return x
    db = 10.0 * np.log10(np.mean(np.asarray(x[: n * block], np.float64).reshape(n, block) ** 2, axis=1) + 1e-20)
    active = np.flatnonzero(db >= db.max() - ACTIVE_RANGE_DB)
    return x[active[0] * block:(active[-1] + 1) * block]


def with_noise(audio16k: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``audio16k`` plus ``noise`` scaled to ``snr_db`` below the talker's active speech level."""
    x = np.asarray(audio16k, np.float64)
    n = np.asarray(noise, np.float64)[: len(x)]
    n = n / max(float(np.sqrt(np.mean(n * n))), 1e-12) * active_level(x) * 10.0 ** (-snr_db / 20.0)
    mixed = x + n
    peak = float(np.max(np.abs(mixed)))
    return (mixed / peak * 0.99 if peak > 0.99 else mixed).astype(np.float32)


class Degrader:
    """Degrades the files of one labelled set; ``rooms`` and babble sources are drawn once per set.

    ``sources`` maps each speaker to their clips (16 kHz); a file's babble comes from the other speakers of its
    corpus only, so no one babbles over themselves.
    """

    def __init__(self, sources: dict[str, list[np.ndarray]], corpora: dict[str, str], seed: int = 0) -> None:
        self.sources = sources
        self.corpora = corpora
        self._rooms: list[Room] = []
        self.seed = seed

    @property
    def rooms(self) -> list[Room]:
        if not self._rooms:
            self._rooms = [draw_room(self.seed * 1000 + i) for i in range(N_ROOMS)]
        return self._rooms

    def mixed_babble(self, utterance: Utterance, n_samples: int, rng: np.random.Generator
                     ) -> tuple[np.ndarray, float, list[str]]:
        """(babble, SNR in dB, the speakers it came from) of one ``babblemix`` file: BABBLEMIX_VOICES other
        speakers of the talker's corpus, the SNR drawn from BABBLEMIX_SNR_DB."""
        others = sorted(s for s in self.sources if s != utterance.speaker and self.corpora[s] == utterance.corpus)
        if len(others) < BABBLEMIX_VOICES:
            raise AudioInputError(f"babblemix needs {BABBLEMIX_VOICES} other speakers of {utterance.corpus}")
        voices = [others[int(i)] for i in rng.choice(len(others), BABBLEMIX_VOICES, replace=False)]
        noise = babble(n_samples, [clip for v in voices for clip in self.sources[v]], rng)
        return noise, float(rng.uniform(*BABBLEMIX_SNR_DB)), voices

    def voices(self, utterance: Utterance, n_samples: int, condition: str) -> list[str]:
        """The other speakers heard in one degraded file (for ``voices.json``; only babblemix records them)."""
        if not condition.startswith("babblemix"):
            return []
        return self.mixed_babble(utterance, n_samples, np.random.default_rng(file_seed(utterance.path.name,
                                                                                       condition)))[2]

    def degrade(self, utterance: Utterance, audio16k: np.ndarray, condition: str) -> tuple[np.ndarray, int]:
        """(degraded audio, its sample rate) of one file under ``condition`` (one of CONDITIONS)."""
        rng = np.random.default_rng(file_seed(utterance.path.name, condition))
        if condition == "phone":
            return phone(audio16k), PHONE_RATE
        if condition == "room":
            return in_room(audio16k, self.rooms[int(rng.integers(len(self.rooms)))]), SAMPLE_RATE
        if condition.startswith("babblemix"):
            noise, snr, _ = self.mixed_babble(utterance, len(audio16k), rng)
            return with_noise(audio16k, noise, snr), SAMPLE_RATE
        if condition.startswith("babble"):
            others = [clip for spk, clips in self.sources.items()
                      if spk != utterance.speaker and self.corpora[spk] == utterance.corpus for clip in clips]
            noise = babble(len(audio16k), others, rng)
            return with_noise(audio16k, noise, float(condition.removeprefix("babble"))), SAMPLE_RATE
        raise AudioInputError(f"unknown degradation {condition!r} (known: {', '.join(CONDITIONS)})")


def write_degraded(utterances: Sequence[Utterance], out_dir: Path, conditions: Sequence[str] = CONDITIONS
                   ) -> dict[str, Path]:
    """Degraded copies of ``utterances`` under ``out_dir/<condition>/`` with the same file names (labels and
    speakers read from the names as before); files already written are kept. Returns condition -> folder."""
    from attune.core.audio import write_wav
    from attune_lab.emotion.dataset import load_16k

    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown:
        raise AudioInputError(f"unknown degradation {unknown[0]!r} (known: {', '.join(CONDITIONS)})")
    clips: dict[str, list[np.ndarray]] = {}
    corpora: dict[str, str] = {}
    audio = {}
    for u in utterances:
        audio[u.path] = load_16k(u.path)
        clips.setdefault(u.speaker, []).append(audio[u.path])
        corpora[u.speaker] = u.corpus
    degrader = Degrader(clips, corpora)
    folders = {}
    for condition in conditions:
        folder = out_dir / condition
        folder.mkdir(parents=True, exist_ok=True)
        heard = {}
        for u in utterances:
            target = folder / u.path.name
            if condition.startswith("babblemix"):
                heard[u.path.name] = degrader.voices(u, len(audio[u.path]), condition)
            if target.is_file():
                continue
            y, rate = degrader.degrade(u, audio[u.path], condition)
            write_wav(target, y, rate)
        if heard:
            path = folder / VOICES_FILE
            known = json.loads(path.read_text()) if path.is_file() else {}
            path.write_text(json.dumps({**known, **heard}, indent=0, sort_keys=True))
        folders[condition] = folder
    return folders


def voices_heard(utterances: Sequence[Utterance]) -> list[frozenset[str]]:
    """The other speakers heard in each (degraded) file, from its folder's ``voices.json`` (none recorded: an
    empty set): the speakers a leave-one-speaker-out fold must not train on this file for."""
    tables: dict[Path, dict[str, list[str]]] = {}
    out = []
    for u in utterances:
        folder = u.path.parent
        if folder not in tables:
            path = folder / VOICES_FILE
            tables[folder] = json.loads(path.read_text()) if path.is_file() else {}
        out.append(frozenset(tables[folder].get(u.path.name, ())))
    return out
