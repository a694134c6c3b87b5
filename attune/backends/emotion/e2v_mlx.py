"""emotion2vec's forward pass in MLX (Apple Silicon, and Linux's CPU with ``pip install "mlx[cpu]"``).

The same computation as ``e2v_numpy`` (the reference it is tested against), on MLX arrays in float32:
``mx.conv1d`` takes the converted (out, kernel, in) weights directly, grouped for the positional convolutions;
attention uses ``mx.fast.scaled_dot_product_attention`` with the ALiBi bias as an additive mask. Import this
module only where ``mlx`` is installed; ``Emotion2VecBackend`` falls back to the numpy reference otherwise.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from attune.backends.emotion.e2v_numpy import alibi_bias
from attune.backends.emotion.e2v_weights import CONV_STRIDES, EPS, E2VConfig


class E2VModel:
    """emotion2vec weights on MLX; ``logits(audio16k)`` as ``e2v_numpy.logits``."""

    def __init__(self, weights: dict[str, np.ndarray], cfg: E2VConfig | None = None) -> None:
        self.cfg = cfg or E2VConfig.from_weights(weights)
        self.alibi_scale = np.asarray(weights["alibi_scale"], np.float64)
        self.w = {k: mx.array(np.asarray(v, np.float32)) for k, v in weights.items()}

    def _ln(self, x: mx.array, name: str | None = None) -> mx.array:
        if name is None:
            return mx.fast.layer_norm(x, None, None, EPS)
        return mx.fast.layer_norm(x, self.w[f"{name}.weight"], self.w[f"{name}.bias"], EPS)

    def _linear(self, x: mx.array, name: str) -> mx.array:
        return mx.addmm(self.w[f"{name}.bias"], x, self.w[f"{name}.weight"].T)

    def _block(self, x: mx.array, p: str, mask: mx.array) -> mx.array:
        n, c = x.shape[1], x.shape[2]
        h = self.cfg.heads
        d = c // h

        def heads(t: mx.array) -> mx.array:
            return t.reshape(1, n, h, d).transpose(0, 2, 1, 3)

        q, k, v = (heads(self._linear(x, f"{p}.{s}")) for s in "qkv")
        a = mx.fast.scaled_dot_product_attention(q, k, v, scale=d ** -0.5, mask=mask)
        a = self._linear(a.transpose(0, 2, 1, 3).reshape(1, n, c), f"{p}.out")
        x = self._ln(x + a, f"{p}.norm1")
        m = self._linear(nn.gelu(self._linear(x, f"{p}.fc1")), f"{p}.fc2")
        return self._ln(x + m, f"{p}.norm2")

    def frame_features(self, audio16k: np.ndarray) -> mx.array:
        """(1, T, embed_dim): the encoder output over the audio frames, extra tokens removed."""
        cfg = self.cfg
        x = mx.array(np.asarray(audio16k, np.float32))
        x = ((x - x.mean()) * mx.rsqrt(x.var() + EPS)).reshape(1, -1, 1)
        for i, stride in enumerate(CONV_STRIDES[: len(cfg.conv_kernels)]):
            x = mx.conv1d(x, self.w[f"conv.{i}.weight"], stride=stride)
            x = nn.gelu(self._ln(x, f"conv.{i}.ln"))
        x = self._linear(self._ln(x, "proj_ln"), "proj")
        pos = x
        for j in range(5):
            pos = mx.conv1d(pos, self.w[f"pos.{j}.weight"], padding=cfg.pos_kernel // 2, groups=cfg.pos_groups)
            pos = pos + self.w[f"pos.{j}.bias"]
            if cfg.pos_kernel % 2 == 0:
                pos = pos[:, :-1]
            pos = nn.gelu(self._ln(pos))
        x = x + pos
        mask = mx.array(alibi_bias(cfg, self.alibi_scale, x.shape[1]).astype(np.float32))[None]
        x = mx.concatenate([self.w["extra_tokens"][None], x], axis=1)
        x = self._ln(x, "context_norm")
        for b in range(cfg.prenet_depth):
            x = self._block(x, f"pre.{b}", mask)
        for b in range(cfg.depth):
            x = self._block(x, f"main.{b}", mask)
        return x[:, cfg.extra_tokens:]

    def logits(self, audio16k: np.ndarray) -> np.ndarray:
        feats = self.frame_features(audio16k)
        out = self._linear(feats.mean(axis=1), "head")
        mx.eval(out)
        return np.array(out[0], np.float64)
