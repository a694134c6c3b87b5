"""The few signal-processing routines the runtime uses, in numpy alone, with scipy.signal's contracts.

Importing ``scipy.signal`` costs about 78 MiB of resident memory for the life of the process (it pulls
optimize, sparse, stats, linalg and their compiled libraries), more than all of this module's callers need:
Butterworth design as second-order sections, their filtering with state, polyphase resampling and peak picking.
Each function here follows the scipy.signal function of the same name for the arguments the house uses, to float
rounding (``tests/test_dsp.py`` compares them); offline tools may still use scipy itself. All functions are pure.
"""

from __future__ import annotations

import math

import numpy as np

_RESAMPLE_CHUNK = 8192  # output samples gathered at a time by resample_poly (bounds its scratch memory)
_SOS_BLOCK = 64  # samples per block of sosfilt's block-recursive evaluation


def butter(order: int, cutoff: float | tuple[float, float] | list[float], btype: str = "low",
           fs: float = 2.0) -> np.ndarray:
    """Digital Butterworth filter as second-order sections, shape (ceil(order * bands / 2), 6), like
    ``scipy.signal.butter(order, cutoff, btype, fs=fs, output="sos")``; ``btype`` is low, high or band (band
    takes two edges); edges are in the units of ``fs`` and must lie strictly between 0 and fs / 2."""
    if order < 1:
        raise ValueError("filter order must be at least 1")
    edges = np.atleast_1d(np.asarray(cutoff, dtype=np.float64)) / (fs / 2.0)
    if np.any(edges <= 0.0) or np.any(edges >= 1.0):
        raise ValueError("filter edges must lie between 0 and the Nyquist frequency")
    warped = 4.0 * np.tan(np.pi * edges / 2.0)  # pre-warped for the bilinear transform at fs = 2
    poles = -np.exp(1j * np.pi * np.arange(-order + 1, order, 2) / (2 * order))
    zeros = np.zeros(0, dtype=complex)
    gain = 1.0
    if btype in ("low", "lowpass") and len(edges) == 1:
        zeros, poles, gain = zeros, poles * warped[0], warped[0] ** order
    elif btype in ("high", "highpass") and len(edges) == 1:
        gain = float(np.real(1.0 / np.prod(-poles)))
        zeros, poles = np.zeros(order, dtype=complex), warped[0] / poles
    elif btype in ("band", "bandpass") and len(edges) == 2:
        wo, bw = math.sqrt(warped[0] * warped[1]), warped[1] - warped[0]
        half = poles * bw / 2.0
        root = np.sqrt(half ** 2 - wo ** 2)
        poles = np.concatenate([half + root, half - root])
        zeros, gain = np.zeros(order, dtype=complex), bw ** order
    else:
        raise ValueError(f"unsupported filter type {btype!r} with {len(edges)} edge(s)")
    degree = len(poles) - len(zeros)
    gain *= float(np.real(np.prod(4.0 - zeros) / np.prod(4.0 - poles)))
    zeros_z = np.concatenate([(4.0 + zeros) / (4.0 - zeros), -np.ones(degree)])
    poles_z = (4.0 + poles) / (4.0 - poles)
    return _zpk_to_sos(zeros_z, poles_z, gain)


def _pairs(roots: np.ndarray) -> list[np.ndarray]:
    """Roots grouped into conjugate (or real) pairs, a lone real root last, the pairs farthest from the unit
    circle first (scipy's section order)."""
    roots = np.asarray(roots, dtype=complex)
    upper = roots[roots.imag > 1e-12]
    real = np.sort(roots[np.abs(roots.imag) <= 1e-12].real)
    pairs = [np.array([r, np.conj(r)]) for r in upper]
    pairs += [real[i:i + 2].astype(complex) for i in range(0, len(real), 2)]
    return sorted(pairs, key=lambda p: -float(np.min(np.abs(1.0 - np.abs(p)))))


def _zpk_to_sos(zeros: np.ndarray, poles: np.ndarray, gain: float) -> np.ndarray:
    pole_pairs = _pairs(poles)
    zero_pairs = _pairs(zeros)
    sos = np.zeros((len(pole_pairs), 6))
    for i, pp in enumerate(pole_pairs):
        zp = zero_pairs[i] if i < len(zero_pairs) else np.zeros(0, dtype=complex)
        b = np.real(np.poly(zp)) if len(zp) else np.ones(1)
        a = np.real(np.poly(pp))
        sos[i, :3] = np.pad(b, (0, 3 - len(b)))
        sos[i, 3:] = np.pad(a, (0, 3 - len(a)))
    sos[0, :3] *= gain
    return sos


def sosfilt_zi(sos: np.ndarray) -> np.ndarray:
    """Initial state, shape (sections, 2), for the step response's steady state, like ``scipy.signal.sosfilt_zi``."""
    sos = np.asarray(sos, dtype=np.float64)
    zi = np.zeros((len(sos), 2))
    scale = 1.0
    for s, (b0, b1, b2, a0, a1, a2) in enumerate(sos):
        b0, b1, b2, a1, a2 = b0 / a0, b1 / a0, b2 / a0, a1 / a0, a2 / a0
        a_mat = np.array([[-a1, 1.0], [-a2, 0.0]])
        zi[s] = scale * np.linalg.solve(np.eye(2) - a_mat, [b1 - a1 * b0, b2 - a2 * b0])
        scale *= (b0 + b1 + b2) / (1.0 + a1 + a2)
    return zi


def sosfilt(sos: np.ndarray, x: np.ndarray, zi: np.ndarray | None = None
            ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Filter 1-D ``x`` through the cascade ``sos`` (direct form II transposed), like ``scipy.signal.sosfilt``:
    returns float64 ``y``, or ``(y, zf)`` when an initial state ``zi`` (sections, 2) is given."""
    sos = np.asarray(sos, dtype=np.float64)
    y = np.asarray(x, dtype=np.float64).ravel()
    if sos.ndim != 2 or sos.shape[1] != 6:
        raise ValueError("sos must have shape (sections, 6)")
    state = np.zeros((len(sos), 2)) if zi is None else np.array(zi, dtype=np.float64).reshape(len(sos), 2)
    for s in range(len(sos)):
        y, state[s] = _section(sos[s] / sos[s, 3], y, state[s])
    return y if zi is None else (y, state)


def _section(c: np.ndarray, x: np.ndarray, z0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One biquad over ``x`` from state ``z0``, evaluated in blocks: within a block the output is the block's
    convolution with the (exact) impulse response plus the state's free response; the state carries over."""
    b0, b1, b2, _, a1, a2 = c
    a_mat = np.array([[-a1, 1.0], [-a2, 0.0]])
    b_vec = np.array([b1 - a1 * b0, b2 - a2 * b0])
    n = len(x)
    blk = _SOS_BLOCK
    powers = np.empty((blk + 1, 2, 2))  # A^k
    powers[0] = np.eye(2)
    for k in range(1, blk + 1):
        powers[k] = a_mat @ powers[k - 1]
    h = np.concatenate([[b0], powers[:blk - 1, 0, :] @ b_vec])  # impulse response h[0..blk-1]
    idx = np.arange(blk)
    lag = idx[:, None] - idx[None, :]
    toeplitz = np.where(lag >= 0, h[np.clip(lag, 0, blk - 1)], 0.0)  # T[n, k] = h[n - k]
    free = powers[:blk, 0, :]  # output row n's response to the state: C A^n
    carry = np.einsum("kij,j->ki", powers[blk - 1::-1], b_vec)  # A^(blk-1-k) b, shape (blk, 2)
    nblocks = -(-n // blk)
    flat = np.zeros(nblocks * blk)
    flat[:n] = x
    xb = flat.reshape(nblocks, blk)
    forced = xb @ toeplitz.T
    drive = xb @ carry  # each block's input contribution to the next state, (nblocks, 2)
    states = np.empty((nblocks, 2))
    z = np.asarray(z0, dtype=np.float64)
    a_blk = powers[blk]
    for i in range(nblocks):
        states[i] = z
        z = a_blk @ z + drive[i]
    y = (forced + states @ free.T).ravel()[:n]
    if nblocks == 0:
        return y, np.asarray(z0, dtype=np.float64)
    tail = n - (nblocks - 1) * blk  # the last block's real length; the state after it is the filter's final state
    tail_carry = np.einsum("kij,j->ki", powers[tail - 1::-1], b_vec)
    return y, powers[tail] @ states[-1] + xb[-1, :tail] @ tail_carry


def firwin_kaiser(numtaps: int, cutoff: float, beta: float = 5.0) -> np.ndarray:
    """Low-pass FIR by the window method (Kaiser window), cutoff relative to Nyquist, unit gain at DC: scipy's
    ``firwin(numtaps, cutoff, window=("kaiser", beta))``."""
    m = np.arange(numtaps) - 0.5 * (numtaps - 1)
    h = np.asarray(cutoff * np.sinc(cutoff * m) * np.kaiser(numtaps, beta), np.float64)
    return np.asarray(h / h.sum(), np.float64)


def resample_poly(x: np.ndarray, up: int, down: int) -> np.ndarray:
    """Polyphase resampling of 1-D ``x`` by ``up / down``, like ``scipy.signal.resample_poly(x, up, down)`` (its
    default Kaiser-5 filter and zero padding, the same output length and alignment); float32 in, float32 out,
    float64 otherwise."""
    x = np.asarray(x)
    out_dtype = np.float32 if x.dtype == np.float32 else np.float64
    g = math.gcd(int(up), int(down))
    up, down = int(up) // g, int(down) // g
    if up < 1 or down < 1:
        raise ValueError("up and down must be positive")
    if up == down == 1:
        return x.astype(out_dtype, copy=True)
    n_in = len(x)
    n_out = -(-n_in * up // down)
    half_len = 10 * max(up, down)
    h = firwin_kaiser(2 * half_len + 1, 1.0 / max(up, down)) * up
    n_pre_pad = down - half_len % down
    n_pre_remove = (half_len + n_pre_pad) // down
    h = np.concatenate([np.zeros(n_pre_pad), h])
    taps = -(-len(h) // up)
    h = np.concatenate([h, np.zeros(taps * up - len(h))]).reshape(taps, up).T  # phase p: h[p + j*up], (up, taps)
    if out_dtype == np.float32:
        h = h.astype(np.float32)
    xs = np.asarray(x, dtype=out_dtype)
    xpad = np.concatenate([np.zeros(taps - 1, dtype=out_dtype), xs, np.zeros(1, dtype=out_dtype)])
    y = np.empty(n_out, dtype=out_dtype)
    j = np.arange(taps)
    for start in range(0, n_out, _RESAMPLE_CHUNK):
        t = (np.arange(start, min(start + _RESAMPLE_CHUNK, n_out)) + n_pre_remove) * down
        m = (t // up)[:, None] - j[None, :]  # input index per tap; outside [0, n_in) reads zero
        m = np.where((m >= 0) & (m < n_in), m + taps - 1, len(xpad) - 1)
        y[start:start + len(t)] = np.einsum("ij,ij->i", h[t % up], xpad[m])
    return y


def find_peaks(x: np.ndarray, prominence: float, distance: float = 1.0) -> np.ndarray:
    """Indices of local maxima of 1-D ``x`` (a flat top counts once, at its middle) at least ``distance`` samples
    apart (the higher peak wins) with at least ``prominence``, like ``scipy.signal.find_peaks(x,
    prominence=..., distance=...)[0]``."""
    x = np.asarray(x, dtype=np.float64)
    peaks = _local_maxima(x)
    if distance > 1 and len(peaks) > 1:
        peaks = peaks[_by_distance(peaks, x[peaks], math.ceil(distance))]
    keep = np.array([_prominence(x, int(p)) >= prominence for p in peaks], dtype=bool)
    return peaks[keep] if len(peaks) else peaks


def _local_maxima(x: np.ndarray) -> np.ndarray:
    out: list[int] = []
    i, i_max = 1, len(x) - 1
    while i < i_max:
        if x[i - 1] < x[i]:
            ahead = i + 1
            while ahead < i_max and x[ahead] == x[i]:
                ahead += 1
            if x[ahead] < x[i]:
                out.append((i + ahead - 1) // 2)
                i = ahead
        i += 1
    return np.asarray(out, dtype=np.intp)


def _by_distance(peaks: np.ndarray, heights: np.ndarray, distance: int) -> np.ndarray:
    keep = np.ones(len(peaks), dtype=bool)
    for j in np.argsort(heights)[::-1]:  # scipy's order, ties included
        if not keep[j]:
            continue
        k = j - 1
        while k >= 0 and peaks[j] - peaks[k] < distance:
            keep[k] = False
            k -= 1
        k = j + 1
        while k < len(peaks) and peaks[k] - peaks[j] < distance:
            keep[k] = False
            k += 1
    return keep


def _prominence(x: np.ndarray, peak: int) -> float:
    left_min = right_min = x[peak]
    i = peak
    while i >= 0 and x[i] <= x[peak]:
        left_min = min(left_min, x[i])
        i -= 1
    i = peak
    while i < len(x) and x[i] <= x[peak]:
        right_min = min(right_min, x[i])
        i += 1
    return float(x[peak] - max(left_min, right_min))


def dct_ortho(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Orthonormal DCT-II along ``axis``, like ``scipy.fft.dct(x, type=2, norm="ortho", axis=axis)``."""
    x = np.asarray(x)
    n = x.shape[axis]
    k = np.arange(n)
    basis = np.cos(np.pi * k[:, None] * (2 * k[None, :] + 1) / (2 * n)) * math.sqrt(2.0 / n)
    basis[0] /= math.sqrt(2.0)
    out = np.moveaxis(x, axis, -1) @ basis.T.astype(np.result_type(x.dtype, np.float32))
    return np.moveaxis(out, -1, axis)
