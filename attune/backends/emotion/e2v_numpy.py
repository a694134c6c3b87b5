"""emotion2vec's forward pass in plain numpy: the reference the MLX port is checked against (and its CPU
fallback where MLX is not installed).

Follows the official inference path (FunASR ``Emotion2vec.inference`` with ``features_only``, eval mode): the
waveform layer-normalised as a whole; 7 convolutions, each with a channel LayerNorm and GELU; LayerNorm and a
linear projection; plus a relative position term from five grouped convolutions (LayerNorm without affine,
GELU); ten extra tokens prepended; ALiBi attention bias (per-head slopes times the learned, non-negative
scale, zero for the extra tokens); the context encoder's LayerNorm, 4 pre-net and 8 post-norm transformer
blocks; the extra tokens dropped, mean over time, and the linear head: logits over the nine labels.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import erf

from attune.backends.emotion.e2v_weights import CONV_STRIDES, EPS, E2VConfig


def alibi_slopes(heads: int) -> np.ndarray:
    """ALiBi slopes (Press et al.), with the official workaround for head counts that are not powers of 2."""
    def power_of_2(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start ** i for i in range(n)]

    if math.log2(heads).is_integer():
        return np.array(power_of_2(heads))
    closest = 2 ** math.floor(math.log2(heads))
    return np.array(power_of_2(closest) + list(alibi_slopes(2 * closest)[0::2][: heads - closest]))


def alibi_bias(cfg: E2VConfig, scale: np.ndarray, t: int) -> np.ndarray:
    """(heads, extra + t, extra + t) bias: -|i - j| * slope * max(scale, 0) over frames, 0 at extra tokens."""
    pos = -np.abs(np.arange(t)[None, :] - np.arange(t)[:, None]).astype(np.float64)
    b = (alibi_slopes(cfg.heads) * np.maximum(scale, 0.0))[:, None, None] * pos[None]
    n = cfg.extra_tokens
    return np.pad(b, ((0, 0), (n, 0), (n, 0)))


def layer_norm(x: np.ndarray, w: np.ndarray | None = None, b: np.ndarray | None = None) -> np.ndarray:
    mu = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    y = (x - mu) / np.sqrt(var + EPS)
    return y if w is None or b is None else y * w + b


def gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def conv1d(x: np.ndarray, w: np.ndarray, stride: int = 1, padding: int = 0, groups: int = 1) -> np.ndarray:
    """x (T, Cin), w (Cout, K, Cin / groups) in MLX layout -> (T_out, Cout)."""
    if padding:
        x = np.pad(x, ((padding, padding), (0, 0)))
    k = w.shape[1]
    frames = sliding_window_view(x, k, axis=0)[::stride]  # (T_out, Cin, K)
    cin_g, cout_g = x.shape[1] // groups, w.shape[0] // groups
    outs = [np.einsum("tck,okc->to", frames[:, g * cin_g:(g + 1) * cin_g], w[g * cout_g:(g + 1) * cout_g])
            for g in range(groups)]
    return np.concatenate(outs, axis=1)


def _block(x: np.ndarray, w: dict[str, np.ndarray], p: str, cfg: E2VConfig, bias: np.ndarray) -> np.ndarray:
    n, c = x.shape
    h, d = cfg.heads, c // cfg.heads
    q = (x @ w[f"{p}.q.weight"].T + w[f"{p}.q.bias"]).reshape(n, h, d).transpose(1, 0, 2) * d ** -0.5
    k = (x @ w[f"{p}.k.weight"].T + w[f"{p}.k.bias"]).reshape(n, h, d).transpose(1, 0, 2)
    v = (x @ w[f"{p}.v.weight"].T + w[f"{p}.v.bias"]).reshape(n, h, d).transpose(1, 0, 2)
    att = q @ k.transpose(0, 2, 1) + bias
    att = np.exp(att - att.max(axis=-1, keepdims=True))
    att /= att.sum(axis=-1, keepdims=True)
    a = (att @ v).transpose(1, 0, 2).reshape(n, c) @ w[f"{p}.out.weight"].T + w[f"{p}.out.bias"]
    x = layer_norm(x + a, w[f"{p}.norm1.weight"], w[f"{p}.norm1.bias"])  # post-norm (layer_norm_first false)
    m = gelu(x @ w[f"{p}.fc1.weight"].T + w[f"{p}.fc1.bias"]) @ w[f"{p}.fc2.weight"].T + w[f"{p}.fc2.bias"]
    return layer_norm(x + m, w[f"{p}.norm2.weight"], w[f"{p}.norm2.bias"])


def frame_features(w: dict[str, np.ndarray], cfg: E2VConfig, audio16k: np.ndarray) -> np.ndarray:
    """The encoder output over the audio frames (extra tokens removed): (T, embed_dim), one row per 20 ms."""
    x = np.asarray(audio16k, np.float64)
    x = ((x - x.mean()) / np.sqrt(x.var() + EPS))[:, None]  # F.layer_norm(source, source.shape)
    for i, stride in enumerate(CONV_STRIDES[: len(cfg.conv_kernels)]):
        x = conv1d(x, w[f"conv.{i}.weight"], stride)
        x = gelu(layer_norm(x, w[f"conv.{i}.ln.weight"], w[f"conv.{i}.ln.bias"]))
    x = layer_norm(x, w["proj_ln.weight"], w["proj_ln.bias"]) @ w["proj.weight"].T + w["proj.bias"]
    pos = x
    for j in range(5):
        pos = conv1d(pos, w[f"pos.{j}.weight"], padding=cfg.pos_kernel // 2, groups=cfg.pos_groups) + w[f"pos.{j}.bias"]
        if cfg.pos_kernel % 2 == 0:  # SamePad drops the last frame of an even kernel
            pos = pos[:-1]
        pos = gelu(layer_norm(pos))
    x = x + pos
    bias = alibi_bias(cfg, w["alibi_scale"], len(x))
    x = np.concatenate([w["extra_tokens"].astype(np.float64), x], axis=0)
    x = layer_norm(x, w["context_norm.weight"], w["context_norm.bias"])
    for b in range(cfg.prenet_depth):
        x = _block(x, w, f"pre.{b}", cfg, bias)
    for b in range(cfg.depth):
        x = _block(x, w, f"main.{b}", cfg, bias)
    return x[cfg.extra_tokens:]


def logits(w: dict[str, np.ndarray], cfg: E2VConfig, audio16k: np.ndarray) -> np.ndarray:
    """Logits over the head's labels for one 16 kHz mono clip (the utterance granularity of the official code)."""
    feats = frame_features(w, cfg, audio16k)
    return feats.mean(axis=0) @ w["head.weight"].T + w["head.bias"]
