"""Voice features by pure numpy DSP: frame tracks (pitch, energy, spectrum) and their utterance summaries.

``compute_track`` turns 16 kHz audio into one row per 10 ms frame; tracks of consecutive chunks concatenate,
which is how the streaming detector reuses the previous half window. ``summarize`` turns a track into the
fixed-order feature vector the classifier reads (``FEATURE_NAMES``) and ``markers_from_track`` into the
human-readable ``ProsodicMarkers``. ``extract_markers`` / ``extract_features`` do both from raw audio.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from attune.core.audio import SAMPLE_RATE, prepare
from attune.core.dsp import dct_ortho, find_peaks
from attune.core.emotion import ProsodicMarkers
from attune.core.stats import quantiles

HOP = 160  # samples in 10 ms at 16 kHz: one frame row per hop
FRAME = 400  # samples in 25 ms at 16 kHz: energy and spectrum frames
PITCH_RATE = 8000  # Hz; pitch is tracked on a 2x decimated signal (cheaper, harmonics above 4 kHz not needed)
PITCH_FRAME = 320  # samples in 40 ms at 8 kHz: two periods of a 50 Hz voice
CONTEXT = 320  # samples (20 ms at 16 kHz) of left context a chunk needs so its first frames are whole
NFFT = 512
PITCH_NFFT = 512
F0_MIN_HZ = 60.0
F0_MAX_HZ = 500.0
YIN_THRESHOLD = 0.15  # CMNDF dip that counts as a period (de Cheveigne & Kawahara use 0.1-0.15)
YIN_WEAK = 0.35  # best dip accepted as voiced when no dip crosses YIN_THRESHOLD
SILENCE_FLOOR_DB = -75.0  # dBFS; frames quieter than this are never speech (a soft talker's syllables reach -70)
FEATURES_VERSION = 2  # bump when the features change (it keys the lab's feature cache)
PAUSE_MIN_FRAMES = 10  # 100 ms: shorter gaps are stop closures, not pauses
HESITATION_MAX_FRAMES = 40  # 400 ms: gaps 100-400 ms inside speech count as hesitations
N_MELS = 26
N_MFCC = 12
BAND_EDGES_HZ = (0, 500, 1000, 2000, 4000, 8000)

# Columns of a frame track.
C_DB, C_F0, C_APER, C_CENTROID, C_FLAT, C_ALPHA, C_HAMMAR, C_FLUX = range(8)
C_BANDS = 8  # len(BAND_EDGES_HZ) - 1 band-energy fractions (log10)
C_MFCC = C_BANDS + len(BAND_EDGES_HZ) - 1
N_COLS = C_MFCC + N_MFCC

FEATURE_NAMES: tuple[str, ...] = (
    "f0_mean_st", "f0_std_st", "f0_range_st", "f0_delta_st", "f0_slope_st_s", "voiced_frac",
    "energy_mean_db", "energy_std_db", "energy_range_db", "energy_delta_db",
    "speech_rate_sps", "articulation_rate_sps", "pause_ratio", "hesitation_rate",
    "jitter", "shimmer_db", "hnr_db",
    "centroid_khz", "flatness", "alpha_ratio_db", "hammarberg_db", "flux",
    *(f"band{i}_log" for i in range(len(BAND_EDGES_HZ) - 1)),
    *(f"mfcc{i + 1}_mean" for i in range(N_MFCC)),
    *(f"mfcc{i + 1}_std" for i in range(4)),
)
N_FEATURES = len(FEATURE_NAMES)


@dataclass(frozen=True)
class SpeakerBaseline:
    """A speaker's neutral pitch (Hz) and speech rate (syllables/s); markers are judged against it."""

    pitch_hz: float = 0.0  # 0 = unknown: then only an absolutely high pitch counts as elevated
    rate_sps: float = 4.0

    def pitch_elevated(self, pitch_hz: float) -> bool:
        if pitch_hz <= 0:
            return False
        if self.pitch_hz > 0:
            return pitch_hz > self.pitch_hz * 1.15  # ~2.4 semitones above the speaker's neutral
        return pitch_hz > 255.0  # above the usual speaking range of adult voices

    def rate_category(self, rate_sps: float) -> str:
        if rate_sps <= 0:
            return "normal"
        if rate_sps > self.rate_sps * 1.25:
            return "fast"
        if rate_sps < self.rate_sps * 0.75:
            return "slow"
        return "normal"


def _mel_matrix() -> np.ndarray:
    def mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    edges_mel = np.linspace(0.0, float(mel(np.array(SAMPLE_RATE / 2.0))), N_MELS + 2)
    edges_hz = 700.0 * (10 ** (edges_mel / 2595.0) - 1.0)
    freqs = np.fft.rfftfreq(NFFT, 1.0 / SAMPLE_RATE)
    lo, mid, hi = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    up = (freqs[None, :] - lo) / (mid - lo)
    down = (hi - freqs[None, :]) / (hi - mid)
    return np.maximum(0.0, np.minimum(up, down)).T.astype(np.float32)  # (bins, mels)


_FREQS = np.fft.rfftfreq(NFFT, 1.0 / SAMPLE_RATE).astype(np.float32)
_MEL = _mel_matrix()
_WINDOW = np.hanning(FRAME).astype(np.float32)
_BAND_MASKS = np.stack([(_FREQS >= lo) & (_FREQS < hi) for lo, hi in zip(BAND_EDGES_HZ[:-1], BAND_EDGES_HZ[1:],
                                                                         strict=True)]).T.astype(np.float32)
_LOW = _FREQS < 1000
_MID = (_FREQS >= 1000) & (_FREQS < 5000)
_H_LOW = _FREQS < 2000
_H_HIGH = (_FREQS >= 2000) & (_FREQS < 5000)
_TAU_MIN = int(PITCH_RATE / F0_MAX_HZ)
_TAU_MAX = int(PITCH_RATE / F0_MIN_HZ)


_BINOMIAL = np.array([1.0, 3.0, 3.0, 1.0], np.float32) / 8.0


def decimate2(x: np.ndarray) -> np.ndarray:
    """16 kHz -> 8 kHz for pitch tracking: a binomial low-pass (-9 dB at 4 kHz, zero at 8 kHz), every 2nd sample.

    Ten times cheaper than a polyphase resampler; the little aliasing it lets through sits above the voice
    harmonics YIN locks onto.
    """
    return np.convolve(x, _BINOMIAL, mode="same")[::2].astype(np.float32, copy=False)


def yin(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised YIN on (n, PITCH_FRAME) frames at PITCH_RATE: returns (f0 Hz or 0, aperiodicity 0..1).

    The difference function comes from an FFT autocorrelation and cumulative energies, so it costs one
    real FFT pair per frame; aperiodicity is the CMNDF value at the chosen period (0 = perfectly periodic).
    """
    n, w = frames.shape
    if n == 0:
        return np.zeros(0, np.float32), np.ones(0, np.float32)
    frames = frames.astype(np.float32, copy=False)
    spec = np.fft.rfft(frames, PITCH_NFFT, axis=1)
    r = np.fft.irfft(spec.real ** 2 + spec.imag ** 2, PITCH_NFFT, axis=1)[:, : _TAU_MAX + 2]
    cs = np.zeros((n, w + 1), np.float32)
    np.cumsum(frames ** 2, axis=1, out=cs[:, 1:])
    taus = np.arange(_TAU_MAX + 2)
    d = cs[:, w - taus] + (cs[:, w:w + 1] - cs[:, taus]) - 2.0 * r
    d = np.maximum(d, 0.0)
    d[:, 0] = 0.0
    running = np.cumsum(d[:, 1:], axis=1) / taus[1:]
    cmndf = np.ones_like(d)
    cmndf[:, 1:] = d[:, 1:] / np.maximum(running, 1e-12)
    seg = cmndf[:, _TAU_MIN - 1:_TAU_MAX + 2]  # one extra on each side for the local-minimum test
    inner = seg[:, 1:-1]
    local_min = (inner <= seg[:, :-2]) & (inner <= seg[:, 2:])
    strong = local_min & (inner < YIN_THRESHOLD)
    has_strong = strong.any(axis=1)
    idx = np.where(has_strong, np.argmax(strong, axis=1), np.argmin(inner, axis=1))
    rows = np.arange(n)
    best = inner[rows, idx]
    tau = idx + _TAU_MIN
    # Parabolic interpolation of the dip for sub-sample period accuracy.
    a, b, c = cmndf[rows, tau - 1], cmndf[rows, tau], cmndf[rows, np.minimum(tau + 1, cmndf.shape[1] - 1)]
    denom = a - 2.0 * b + c
    shift = np.where(np.abs(denom) > 1e-12, 0.5 * (a - c) / np.where(denom == 0, 1.0, denom), 0.0)
    period = tau + np.clip(shift, -0.5, 0.5)
    voiced = has_strong | (best < YIN_WEAK)
    f0 = np.where(voiced, PITCH_RATE / period, 0.0)
    f0 = np.where((f0 >= F0_MIN_HZ) & (f0 <= F0_MAX_HZ), f0, 0.0)
    return f0.astype(np.float32), np.clip(best, 0.0, 1.0).astype(np.float32)


def autocorrelation_pitch(frames: np.ndarray, min_peak: float = 0.5) -> np.ndarray:
    """Fallback pitch from the normalised autocorrelation peak (used when YIN finds no voiced frame)."""
    n = frames.shape[0]
    if n == 0:
        return np.zeros(0, np.float32)
    spec = np.fft.rfft(frames, PITCH_NFFT, axis=1)
    r = np.fft.irfft(spec.real ** 2 + spec.imag ** 2, PITCH_NFFT, axis=1)
    r0 = np.maximum(r[:, :1], 1e-12)
    seg = r[:, _TAU_MIN:_TAU_MAX + 1] / r0
    idx = np.argmax(seg, axis=1)
    peak = seg[np.arange(n), idx]
    f0 = np.where(peak >= min_peak, PITCH_RATE / (idx + _TAU_MIN), 0.0)
    return f0.astype(np.float32)


def compute_track(audio: np.ndarray, left_context: np.ndarray | None = None) -> np.ndarray:
    """Frame track of mono float32 16 kHz audio: shape (len(audio) // HOP, N_COLS), one row per 10 ms.

    Row i describes the frame centred at sample ``i * HOP + HOP // 2``. ``left_context`` (the CONTEXT samples
    before ``audio``) makes the first frames of a streamed chunk whole; tracks of consecutive chunks concatenate.
    """
    x = np.asarray(audio, dtype=np.float32)
    n = len(x) // HOP
    if n == 0:
        return np.zeros((0, N_COLS), np.float32)
    left = np.zeros(CONTEXT, np.float32)
    if left_context is not None and len(left_context):
        ctx = np.asarray(left_context, np.float32)[-CONTEXT:]
        left[CONTEXT - len(ctx):] = ctx
    xp = np.concatenate([left, x, np.zeros(CONTEXT, np.float32)])
    out = np.zeros((n, N_COLS), np.float32)
    start = CONTEXT + HOP // 2 - FRAME // 2
    frames = sliding_window_view(xp[start:start + (n - 1) * HOP + FRAME], FRAME)[::HOP]
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    out[:, C_DB] = 20.0 * np.log10(rms + 1e-10)
    _spectral_columns(frames, out)
    x8 = decimate2(xp)
    centre8 = (CONTEXT + HOP // 2) // 2
    p_start = centre8 - PITCH_FRAME // 2
    p_frames = sliding_window_view(x8[p_start:p_start + (n - 1) * (HOP // 2) + PITCH_FRAME], PITCH_FRAME)
    p_frames = p_frames[:: HOP // 2]
    f0, aper = yin(p_frames - p_frames.mean(axis=1, keepdims=True))
    out[:, C_F0] = f0
    out[:, C_APER] = aper
    return out


def _spectral_columns(frames: np.ndarray, out: np.ndarray) -> None:
    spec = np.fft.rfft(frames * _WINDOW, NFFT, axis=1)
    power = (spec.real ** 2 + spec.imag ** 2).astype(np.float32) + 1e-12
    total = power.sum(axis=1)
    out[:, C_CENTROID] = (power @ _FREQS) / total
    logp = np.log(power)
    out[:, C_FLAT] = np.exp(logp.mean(axis=1)) / (total / power.shape[1])
    out[:, C_ALPHA] = 10.0 * np.log10(power[:, _MID].sum(axis=1) / power[:, _LOW].sum(axis=1))
    out[:, C_HAMMAR] = 10.0 * np.log10(power[:, _H_LOW].max(axis=1) / power[:, _H_HIGH].max(axis=1))
    norm = power / total[:, None]
    flux = np.zeros(len(power), np.float32)
    flux[1:] = np.sqrt(np.sum((np.sqrt(norm[1:]) - np.sqrt(norm[:-1])) ** 2, axis=1))
    out[:, C_FLUX] = flux
    bands = (power @ _BAND_MASKS) / total[:, None]
    out[:, C_BANDS:C_MFCC] = np.log10(bands + 1e-8)
    mel = np.log(power @ _MEL + 1e-10)
    out[:, C_MFCC:] = dct_ortho(mel, axis=1)[:, 1:N_MFCC + 1]


@dataclass(frozen=True)
class Segmentation:
    """Speech/pause structure of a track: which frames are speech, the speech span and its pauses."""

    speech: np.ndarray  # bool per frame
    voiced: np.ndarray  # bool per frame: speech with a pitch
    span: int  # frames from the first to the last speech frame (0 = no speech)
    pause_frames: int  # frames in gaps of >= PAUSE_MIN_FRAMES inside the span
    hesitations: int  # gaps of 100-400 ms inside the span
    nuclei: int  # syllable nuclei: energy peaks in voiced speech
    f0: np.ndarray  # Hz of the voiced frames, octave jumps against their median removed


def speech_threshold(db: np.ndarray) -> float:
    """Adaptive speech/silence threshold (dBFS) from the level distribution of one stretch of audio."""
    if db.size == 0:
        return SILENCE_FLOOR_DB
    floor, peak = quantiles(db, (0.10, 0.95), empty=0.0)
    thr = max(peak - 35.0, min(floor + 0.3 * (peak - floor), peak - 8.0))
    return float(max(thr, SILENCE_FLOOR_DB))


def segment(track: np.ndarray) -> Segmentation:
    db, f0 = track[:, C_DB], track[:, C_F0]
    speech = db > speech_threshold(db)
    voiced = speech & (f0 > 0)
    idx = np.flatnonzero(speech)
    if idx.size == 0:
        return Segmentation(speech, voiced, 0, 0, 0, 0, np.zeros(0))
    first, last = int(idx[0]), int(idx[-1])
    inside = speech[first:last + 1]
    pause_frames = hesitations = 0
    # Run lengths of the silent gaps inside the span.
    edges = np.diff(np.concatenate([[1], inside.astype(np.int8), [1]]))
    starts, ends = np.flatnonzero(edges == -1), np.flatnonzero(edges == 1)
    for length in ends - starts:
        if length >= PAUSE_MIN_FRAMES:
            pause_frames += int(length)
            if length <= HESITATION_MAX_FRAMES:
                hesitations += 1
    nuclei = _syllable_nuclei(db, voiced)
    return Segmentation(speech, voiced, last - first + 1, pause_frames, hesitations, nuclei,
                        _pitch_voiced(f0[voiced]))


def _syllable_nuclei(db: np.ndarray, voiced: np.ndarray) -> int:
    """Count energy peaks (>= 2 dB prominence, >= 100 ms apart) that fall on voiced frames (de Jong & Wempe)."""
    if voiced.sum() < 3:
        return 0
    smooth = np.convolve(db, np.ones(5) / 5.0, mode="same")
    peaks, _ = find_peaks(smooth, prominence=2.0, distance=10), None
    near_voiced = np.convolve(voiced.astype(np.float32), np.ones(5), mode="same") > 0
    return int(np.count_nonzero(near_voiced[peaks]))


def _pitch_voiced(f0: np.ndarray) -> np.ndarray:
    f0 = f0.astype(np.float64)
    if f0.size >= 3:
        # Octave jumps against the utterance median are YIN errors, not intonation.
        med = np.median(f0)
        f0 = f0[(f0 > med / 1.8) & (f0 < med * 1.8)]
    return f0


def summarize(track: np.ndarray, seg: Segmentation | None = None) -> np.ndarray:
    """The FEATURE_NAMES vector (float64) of a frame track; an all-silent track gives zeros."""
    seg = seg or segment(track)
    feats = np.zeros(N_FEATURES)
    if seg.span == 0:
        return feats
    sp = track[seg.speech]
    duration_s = seg.span * HOP / SAMPLE_RATE
    speech_s = max(int(seg.speech.sum()) * HOP / SAMPLE_RATE, 1e-3)
    f0 = seg.f0
    st = 12.0 * np.log2(f0 / 100.0) if f0.size else np.zeros(1)
    db = sp[:, C_DB].astype(np.float64)
    vd = track[seg.voiced]
    feats[0:6] = [st.mean(), st.std(), _spread(st),
                  np.abs(np.diff(st)).mean() if st.size > 1 else 0.0, _slope(st),
                  seg.voiced.sum() / max(seg.speech.sum(), 1)]
    feats[6:10] = [db.mean(), db.std(), _spread(db),
                   np.abs(np.diff(db)).mean() if db.size > 1 else 0.0]
    feats[10:14] = [seg.nuclei / duration_s, seg.nuclei / speech_s, seg.pause_frames / seg.span,
                    seg.hesitations / duration_s]
    feats[14:17] = [_jitter(f0), _shimmer(vd[:, C_DB]), _hnr(vd[:, C_APER])]
    means = sp.mean(axis=0, dtype=np.float64)
    feats[17:22] = [means[C_CENTROID] / 1000.0, means[C_FLAT], means[C_ALPHA], means[C_HAMMAR], means[C_FLUX]]
    nb = C_MFCC - C_BANDS
    feats[22:22 + nb] = means[C_BANDS:C_MFCC]
    feats[22 + nb:22 + nb + N_MFCC] = means[C_MFCC:]
    feats[22 + nb + N_MFCC:] = sp[:, C_MFCC:C_MFCC + 4].std(axis=0)
    return np.nan_to_num(feats, nan=0.0, posinf=0.0, neginf=0.0)


def _spread(x: np.ndarray) -> float:
    """The 10th-to-90th percentile range (0 for no values)."""
    hi, lo = quantiles(x, (0.9, 0.1), empty=0.0)
    return hi - lo


def _slope(y: np.ndarray) -> float:
    """Least-squares slope of ``y`` against time in seconds (frames HOP apart)."""
    if y.size < 3:
        return 0.0
    t = np.arange(y.size) * (HOP / SAMPLE_RATE)
    t -= t.mean()
    return float(np.dot(t, y - y.mean()) / np.dot(t, t))


def _jitter(f0: np.ndarray) -> float:
    if f0.size < 3:
        return 0.0
    # Second difference: the smooth intonation contour cancels, the cycle-to-cycle wobble remains.
    period = 1.0 / f0
    return float(np.mean(np.abs(period[1:-1] - 0.5 * (period[:-2] + period[2:]))) / np.mean(period))


def _shimmer(db: np.ndarray) -> float:
    return float(np.mean(np.abs(np.diff(db)))) if db.size > 2 else 0.0


def _hnr(aper: np.ndarray) -> float:
    if aper.size == 0:
        return 0.0
    a = np.clip(aper.astype(np.float64), 1e-3, 0.999)
    return float(np.mean(10.0 * np.log10((1.0 - a) / a)))


def markers_from_track(track: np.ndarray, baseline: SpeakerBaseline | None = None,
                       seg: Segmentation | None = None) -> ProsodicMarkers:
    """Human-readable markers of a track, judged against ``baseline`` (defaults: unknown pitch, 4 syll/s)."""
    base = baseline or SpeakerBaseline()
    seg = seg or segment(track)
    if seg.span == 0:
        return ProsodicMarkers(level_dbfs=float(track[:, C_DB].mean()) if len(track) else -200.0)
    f0 = seg.f0
    pitch = float(f0.mean()) if f0.size else 0.0
    rate = seg.nuclei / (seg.span * HOP / SAMPLE_RATE)
    amp = 10 ** (track[seg.speech, C_DB].astype(np.float64) / 20.0)
    aper = track[seg.voiced, C_APER]
    return ProsodicMarkers(
        pitch_mean_hz=pitch,
        pitch_std_hz=float(f0.std()) if f0.size else 0.0,
        pitch_elevated=base.pitch_elevated(pitch),
        speech_rate_sps=float(rate),
        speech_rate_category=base.rate_category(rate),
        pause_ratio=float(seg.pause_frames / seg.span),
        voice_tremor=float(np.clip(_jitter(f0) / 0.08, 0.0, 1.0)),  # EmoDB speech: median 0.3, p95 0.67
        breathiness=float(np.clip((float(aper.mean()) - 0.05) / 0.25, 0.0, 1.0)) if aper.size else 0.0,
        hesitation_count=seg.hesitations,
        energy_variance=float(np.var(amp / amp.mean())) if amp.size else 0.0,
        level_dbfs=float(20.0 * np.log10(np.sqrt(np.mean(amp ** 2)) + 1e-10)) if amp.size else -200.0,
    )


def analyze_track(track: np.ndarray, baseline: SpeakerBaseline | None = None) -> tuple[np.ndarray, ProsodicMarkers]:
    """Feature vector and markers of one track, segmenting it once."""
    seg = segment(track)
    return summarize(track, seg), markers_from_track(track, baseline, seg)


def silent_track(audio: np.ndarray) -> np.ndarray:
    """A cheap track for audio known to be silent: levels only, no pitch or spectrum (all zeros)."""
    n = len(audio) // HOP
    out = np.zeros((n, N_COLS), np.float32)
    if n:
        frames = np.asarray(audio[: n * HOP], np.float64).reshape(n, HOP)
        out[:, C_DB] = 20.0 * np.log10(np.sqrt(np.mean(frames ** 2, axis=1)) + 1e-10)
    return out


BLOCK = 3000 * HOP  # samples (30 s): long recordings are tracked in blocks to bound memory


def track_with_fallback(audio16k: np.ndarray) -> np.ndarray:
    """compute_track (in 30 s blocks) plus the autocorrelation fallback when YIN finds no voiced frame."""
    if len(audio16k) <= BLOCK:
        track = compute_track(audio16k)
    else:
        track = np.concatenate([compute_track(audio16k[i:i + BLOCK], audio16k[max(0, i - CONTEXT):i])
                                for i in range(0, len(audio16k), BLOCK)])
    if len(track) and not (track[:, C_F0] > 0).any() and track[:, C_DB].max() > SILENCE_FLOOR_DB:
        xp = np.concatenate([np.zeros(CONTEXT, np.float32), audio16k, np.zeros(CONTEXT, np.float32)])
        x8 = decimate2(xp)
        start = (CONTEXT + HOP // 2) // 2 - PITCH_FRAME // 2
        n = len(track)
        frames = sliding_window_view(x8[start:start + (n - 1) * (HOP // 2) + PITCH_FRAME], PITCH_FRAME)[:: HOP // 2]
        track[:, C_F0] = autocorrelation_pitch(frames - frames.mean(axis=1, keepdims=True))
    return track


def extract_markers(audio: np.ndarray, sample_rate: int, baseline: SpeakerBaseline | None = None) -> ProsodicMarkers:
    """Prosodic markers of any audio array (validated and resampled to 16 kHz; bad input -> AudioInputError)."""
    x, _ = prepare(audio, sample_rate)
    return markers_from_track(track_with_fallback(x), baseline)


def extract_features(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """The FEATURE_NAMES vector of any audio array (validated and resampled to 16 kHz)."""
    x, _ = prepare(audio, sample_rate)
    return summarize(track_with_fallback(x))
