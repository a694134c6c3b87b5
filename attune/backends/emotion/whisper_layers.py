"""Whisper's encoder in numpy over the CTranslate2 weights, for its middle layers (``emotion.encoder: tiny.en_l2``).

CTranslate2's ``encode`` (the ASR's pass, which the emotion head reuses) returns only the last layer, while
paralinguistic information peaks in the middle of speech encoders. ``LayerEncoder`` reads the encoder's
weights from the same ``model.bin`` (``read_ct2``: CTranslate2's binary layout, float16/float32 variables) and
runs Whisper's encoder up to block ``layer`` in float32 numpy: two convolutions with GELU, the sinusoidal
positions, then pre-norm transformer blocks (self-attention, GELU MLP). It computes the log-mel exactly as
``WhisperEncoder`` does, so its last block plus the final LayerNorm reproduces the ASR's pass (correlation >=
0.998 with CTranslate2's int8 output); a middle layer costs a pass of its own (docs/BENCHMARKS.md, issue 20).
"""

from __future__ import annotations

import math
import struct
import threading
from pathlib import Path

import numpy as np
from scipy.special import erf

from attune.backends.asr.asr_common import storage_to_states
from attune.backends.asr.faster_whisper_backend import FULL_WINDOW_S, encoder_frames
from attune.core.audio import SAMPLE_RATE
from attune.core.errors import BackendUnavailable, EmotionError

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
EPS = 1e-5


def read_ct2(path: str | Path, prefix: str = "encoder/") -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 ``model.bin`` whose names start with ``prefix`` (prefix removed), as
    float32 (integers as they are). Raises EmotionError on a file that is not that format."""
    try:
        blob = Path(path).read_bytes()
        pos = 0

        def take(fmt: str) -> int:
            nonlocal pos
            (value,) = struct.unpack_from(fmt, blob, pos)
            pos += struct.calcsize(fmt)
            return int(value)

        def text() -> str:
            nonlocal pos
            n = take("<H")
            name = blob[pos: pos + n - 1].decode()
            pos += n
            return name

        version = take("<I")
        if version < 4:
            raise EmotionError(f"{path}: CTranslate2 binary version {version} is not supported (>= 4)")
        text()  # the spec's name
        take("<I")  # its revision
        out: dict[str, np.ndarray] = {}
        for _ in range(take("<I")):
            name = text()
            dims = [take("<I") for _ in range(take("<B"))]
            dtype = np.dtype(_DTYPES[take("<B")])
            size = take("<I")
            if name.startswith(prefix):
                arr = np.frombuffer(blob, dtype, size // dtype.itemsize, pos).reshape(dims)
                out[name[len(prefix):]] = arr.astype(np.float32) if arr.dtype.kind == "f" else arr.copy()
            pos += size
    except (OSError, struct.error, KeyError, ValueError, UnicodeDecodeError) as exc:
        raise EmotionError(f"cannot read CTranslate2 weights from {path}: {exc}") from exc
    return out


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> np.ndarray:
    mu = x.mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(x.var(axis=-1, keepdims=True) + EPS) * gamma + beta


def _gelu(x: np.ndarray) -> np.ndarray:
    return np.asarray(0.5 * x * (1.0 + erf(x / math.sqrt(2.0))), np.float32)


def _conv3(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int) -> np.ndarray:
    """Kernel-3, padding-1 convolution over time: x (T, Cin), w (Cout, Cin, 3) -> (T_out, Cout)."""
    x = np.pad(x, ((1, 1), (0, 0)))
    t = (len(x) - 3) // stride + 1
    cols = np.stack([x[k: k + stride * (t - 1) + 1: stride] for k in range(3)], axis=2)
    return np.asarray(cols.reshape(t, -1) @ w.reshape(len(w), -1).T + b, np.float32)


class LayerEncoder:
    """Whisper's encoder (tiny.en, base: any CTranslate2 Whisper) up to block ``layer`` (1-based). Thread-safe."""

    def __init__(self, model_dir: str | Path, layer: int, *, window_s: float = 6.0) -> None:
        path = Path(model_dir) / "model.bin"
        if not path.is_file():
            raise BackendUnavailable(f"no Whisper model in {model_dir}",
                                     install_hint=".venv/bin/python -m attune.models install")
        self.w = read_ct2(path)
        blocks = {k.split("/")[0] for k in self.w if k.startswith("layer_") and k.split("/")[0][6:].isdigit()}
        if "num_heads" not in self.w or not blocks:
            raise EmotionError(f"{path} holds no Whisper encoder")
        self.n_layers = len(blocks)
        if not 1 <= layer <= self.n_layers:
            raise EmotionError(f"encoder layer {layer} out of range 1..{self.n_layers}")
        self.layer = layer
        self.heads = int(self.w["num_heads"])
        self.window_s = window_s
        self._lock = threading.Lock()
        from faster_whisper.feature_extractor import FeatureExtractor

        self._mel = FeatureExtractor(feature_size=int(self.w["conv1/weight"].shape[1]))

    def features(self, audio16k: np.ndarray) -> np.ndarray:
        """The log-mel frames the ASR's encoder would see for this clip (as ``WhisperEncoder._features``)."""
        from faster_whisper.audio import pad_or_trim

        with self._lock:
            feats = self._mel(np.asarray(audio16k, np.float32))
        content = feats.shape[-1] - 1
        feats = pad_or_trim(feats[..., : min(content, int(FULL_WINDOW_S * 100))])
        return np.asarray(feats[..., : encoder_frames(len(audio16k) / SAMPLE_RATE, self.window_s)], np.float32)

    def _block(self, x: np.ndarray, i: int) -> np.ndarray:
        w, p = self.w, f"layer_{i}/"
        n, c = x.shape
        h, d = self.heads, c // self.heads
        y = _layer_norm(x, w[p + "self_attention/layer_norm/gamma"], w[p + "self_attention/layer_norm/beta"])
        qkv = y @ w[p + "self_attention/linear_0/weight"].T + w[p + "self_attention/linear_0/bias"]
        q, k, v = (m.reshape(n, h, d).transpose(1, 0, 2) for m in np.split(qkv, 3, axis=1))
        att = (q * d ** -0.5) @ k.transpose(0, 2, 1)
        att = np.exp(att - att.max(axis=-1, keepdims=True))
        att /= att.sum(axis=-1, keepdims=True)
        o = (att @ v).transpose(1, 0, 2).reshape(n, c)
        x = x + o @ w[p + "self_attention/linear_1/weight"].T + w[p + "self_attention/linear_1/bias"]
        y = _layer_norm(x, w[p + "ffn/layer_norm/gamma"], w[p + "ffn/layer_norm/beta"])
        y = _gelu(y @ w[p + "ffn/linear_0/weight"].T + w[p + "ffn/linear_0/bias"])
        return np.asarray(x + y @ w[p + "ffn/linear_1/weight"].T + w[p + "ffn/linear_1/bias"], np.float32)

    def forward(self, mel: np.ndarray, layer: int | None = None) -> np.ndarray:
        """(n_mel, frames) log-mel -> the states after block ``layer`` (default ``self.layer``), (frames / 2, d);
        after the last block the final LayerNorm is applied, as the ASR's output has it."""
        upto = self.layer if layer is None else layer
        w = self.w
        x = _gelu(_conv3(np.asarray(mel, np.float32).T, w["conv1/weight"], w["conv1/bias"], 1))
        x = _gelu(_conv3(x, w["conv2/weight"], w["conv2/bias"], 2))
        x = x + w["position_encodings/encodings"][: len(x)]
        for i in range(upto):
            x = self._block(x, i)
        return _layer_norm(x, w["layer_norm/gamma"], w["layer_norm/beta"]) if upto == self.n_layers else x

    def states(self, audio16k: np.ndarray) -> np.ndarray:
        """Block ``layer``'s states over a 16 kHz mono clip (at most 30 s read): (ceil(n / 320), d) float32."""
        x = np.asarray(audio16k, np.float32)
        if x.ndim != 1 or len(x) == 0:
            raise EmotionError(f"the Whisper encoder needs a non-empty mono clip, got shape {x.shape}")
        x = x[: int(FULL_WINDOW_S * SAMPLE_RATE)]
        return storage_to_states(self.forward(self.features(x)), len(x))
