"""emotion2vec: conversion from the official checkpoint layout, the numpy reference against an independent
reading of the official layout, MLX against numpy, and the backend on a small checkpoint built here with the
official key names and shapes (no real weights exist on this machine)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from attune.backends.emotion import e2v_numpy
from attune.backends.emotion.e2v_weights import ENC, E2VConfig, convert, load_converted, main, save_converted
from attune.backends.emotion.emotion2vec import E2V_LABELS, Emotion2VecBackend
from attune.config import EmotionConfig
from attune.core.errors import BackendUnavailable, EmotionError
from tests.emotion_signals import RATE, syllables

LAYER = "unit"  # STYLE.md layer 1: a pure core, loop-free, no models

DIM, HEADS, CONV, EXTRA = 32, 4, 16, 3
KERNELS = (10, 3, 3, 3, 3, 2, 2)  # the official feature_encoder_spec's kernels (strides 5,2,2,2,2,2,2)
POS_K, POS_GROUPS = 19, 4  # official: 95 // 5 = 19, 16 groups at 768


def _official_block(rng: np.random.Generator, prefix: str, dim: int) -> dict[str, np.ndarray]:
    r = lambda *s: rng.normal(0, 0.2, s).astype(np.float32)  # noqa: E731
    return {f"{prefix}.norm1.weight": 1 + r(dim), f"{prefix}.norm1.bias": r(dim),
            f"{prefix}.attn.qkv.weight": r(3 * dim, dim), f"{prefix}.attn.qkv.bias": r(3 * dim),
            f"{prefix}.attn.proj.weight": r(dim, dim), f"{prefix}.attn.proj.bias": r(dim),
            f"{prefix}.norm2.weight": 1 + r(dim), f"{prefix}.norm2.bias": r(dim),
            f"{prefix}.mlp.fc1.weight": r(4 * dim, dim), f"{prefix}.mlp.fc1.bias": r(4 * dim),
            f"{prefix}.mlp.fc2.weight": r(dim, 4 * dim), f"{prefix}.mlp.fc2.bias": r(dim)}


def official_state_dict(seed: int = 0, prenet: int = 1, depth: int = 2) -> dict[str, np.ndarray]:
    """A small emotion2vec state dict with the official names and shape conventions (PyTorch layouts)."""
    rng = np.random.default_rng(seed)
    r = lambda *s: rng.normal(0, 0.2, s).astype(np.float32)  # noqa: E731
    sd: dict[str, np.ndarray] = {}
    cin = 1
    for i, k in enumerate(KERNELS):
        sd[f"{ENC}local_encoder.conv_layers.{i}.0.weight"] = r(CONV, cin, k) * (2.0 / math.sqrt(cin * k))
        sd[f"{ENC}local_encoder.conv_layers.{i}.2.1.weight"] = 1 + r(CONV)
        sd[f"{ENC}local_encoder.conv_layers.{i}.2.1.bias"] = r(CONV)
        cin = CONV
    sd[f"{ENC}project_features.1.weight"], sd[f"{ENC}project_features.1.bias"] = 1 + r(CONV), r(CONV)
    sd[f"{ENC}project_features.2.weight"], sd[f"{ENC}project_features.2.bias"] = r(DIM, CONV), r(DIM)
    for j in range(5):
        sd[f"{ENC}relative_positional_encoder.{j + 1}.0.weight"] = r(DIM, DIM // POS_GROUPS, POS_K)
        sd[f"{ENC}relative_positional_encoder.{j + 1}.0.bias"] = r(DIM)
    sd[f"{ENC}extra_tokens"] = r(1, EXTRA, DIM)
    sd[f"{ENC}alibi_scale"] = np.abs(r(1, 1, HEADS, 1, 1)) + 0.5
    sd[f"{ENC}context_encoder.norm.weight"], sd[f"{ENC}context_encoder.norm.bias"] = 1 + r(DIM), r(DIM)
    for b in range(prenet):
        sd.update(_official_block(rng, f"{ENC}context_encoder.blocks.{b}", DIM))
    for b in range(depth):
        sd.update(_official_block(rng, f"blocks.{b}", DIM))
    sd["proj.weight"], sd["proj.bias"] = r(len(E2V_LABELS), DIM), r(len(E2V_LABELS))
    sd[f"{ENC}decoder.proj.weight"] = r(DIM, 8)  # pre-training parts are dropped
    return sd


def test_conversion_splits_qkv_and_transposes_convolutions() -> None:
    sd = official_state_dict()
    w = convert(sd)
    qkv = sd["blocks.0.attn.qkv.weight"]
    np.testing.assert_array_equal(np.concatenate([w["main.0.q.weight"], w["main.0.k.weight"], w["main.0.v.weight"]]),
                                  qkv)
    np.testing.assert_array_equal(w["main.0.k.bias"], sd["blocks.0.attn.qkv.bias"][DIM:2 * DIM])
    conv = sd[f"{ENC}local_encoder.conv_layers.1.0.weight"]  # (out, in, k)
    assert w["conv.1.weight"].shape == (CONV, 3, CONV)  # (out, k, in)
    assert w["conv.1.weight"][2, 1, 5] == conv[2, 5, 1]
    assert not any(k.startswith("decoder") or "decoder" in k for k in w)
    cfg = E2VConfig.from_weights(w)
    assert cfg == E2VConfig(DIM, HEADS, 1, 2, EXTRA, KERNELS, POS_K, POS_GROUPS, len(E2V_LABELS))


def test_conversion_refuses_other_checkpoints() -> None:
    with pytest.raises(EmotionError):
        convert({"encoder.weight": np.zeros((2, 2))})
    sd = official_state_dict()
    sd["blocks.0.attn.qkv.weight"] = sd["blocks.0.attn.qkv.weight"][:DIM]
    with pytest.raises(EmotionError, match="qkv"):
        convert(sd)


def _official_attention_block(x: np.ndarray, sd: dict[str, np.ndarray], p: str, bias: np.ndarray) -> np.ndarray:
    """AltBlock (post-norm) read straight off the official fused layout: qkv reshaped (N, 3, H, D)."""
    n, c = x.shape
    d = c // HEADS
    qkv = (x @ sd[f"{p}.attn.qkv.weight"].T + sd[f"{p}.attn.qkv.bias"]).reshape(n, 3, HEADS, d).transpose(1, 2, 0, 3)
    att = (qkv[0] * d ** -0.5) @ qkv[1].transpose(0, 2, 1) + bias
    att = np.exp(att - att.max(-1, keepdims=True))
    att /= att.sum(-1, keepdims=True)
    a = (att @ qkv[2]).transpose(1, 0, 2).reshape(n, c) @ sd[f"{p}.attn.proj.weight"].T + sd[f"{p}.attn.proj.bias"]
    r = e2v_numpy.layer_norm(x + a, sd[f"{p}.norm1.weight"], sd[f"{p}.norm1.bias"])
    m = e2v_numpy.gelu(r @ sd[f"{p}.mlp.fc1.weight"].T + sd[f"{p}.mlp.fc1.bias"])
    m = m @ sd[f"{p}.mlp.fc2.weight"].T + sd[f"{p}.mlp.fc2.bias"]
    return e2v_numpy.layer_norm(r + m, sd[f"{p}.norm2.weight"], sd[f"{p}.norm2.bias"])


def test_reference_block_matches_the_official_fused_layout() -> None:
    sd = official_state_dict()
    w = convert(sd)
    cfg = E2VConfig.from_weights(w)
    x = np.random.default_rng(3).normal(size=(EXTRA + 7, DIM))
    bias = e2v_numpy.alibi_bias(cfg, w["alibi_scale"], 7)
    ours = e2v_numpy._block(x, w, "main.1", cfg, bias)
    np.testing.assert_allclose(ours, _official_attention_block(x, sd, "blocks.1", bias), rtol=1e-6, atol=1e-6)


def test_reference_conv_matches_a_plain_loop_in_torch_layout() -> None:
    sd = official_state_dict()
    w = convert(sd)
    x = np.random.default_rng(4).normal(size=(40, CONV))
    wt = sd[f"{ENC}local_encoder.conv_layers.1.0.weight"].astype(np.float64)  # (out, in, k)
    loop = np.array([[np.sum(wt[o] * x[t * 2:t * 2 + 3].T) for o in range(CONV)] for t in range(19)])
    np.testing.assert_allclose(e2v_numpy.conv1d(x, w["conv.1.weight"], stride=2), loop, rtol=1e-6, atol=1e-9)


def test_alibi_slopes_follow_the_official_formula() -> None:
    np.testing.assert_allclose(e2v_numpy.alibi_slopes(8), [2 ** -(i + 1) for i in range(8)])
    s12 = e2v_numpy.alibi_slopes(12)  # base's 12 heads: 8 powers of 2 plus every other slope of 16
    assert len(s12) == 12 and s12[8] == pytest.approx(2 ** -0.5)


def test_reference_forward_shapes_and_frame_rate() -> None:
    w = convert(official_state_dict())
    cfg = E2VConfig.from_weights(w)
    audio = syllables(seconds=1.0)
    feats = e2v_numpy.frame_features(w, cfg, audio)
    assert feats.shape == (49, DIM)  # 16000 samples -> 49 frames of 20 ms (wav2vec 2.0's conv stack)
    assert np.isfinite(e2v_numpy.logits(w, cfg, audio)).all()


def test_mlx_agrees_with_the_numpy_reference() -> None:
    mlx = pytest.importorskip("attune.backends.emotion.e2v_mlx", exc_type=ImportError)
    w = convert(official_state_dict(prenet=2, depth=2))
    cfg = E2VConfig.from_weights(w)
    audio = syllables(seconds=1.5)
    ref = e2v_numpy.frame_features(w, cfg, audio)
    model = mlx.E2VModel(w)
    got = np.array(model.frame_features(audio)[0])
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)  # float32 against float64: ~3e-6 seen
    np.testing.assert_allclose(model.logits(audio), e2v_numpy.logits(w, cfg, audio), rtol=1e-4, atol=1e-4)


def test_backend_runs_converted_and_official_files(tmp_path: Path) -> None:
    sd = official_state_dict()
    official = tmp_path / "official.npz"
    np.savez(official, **sd)  # the official state dict as arrays (a .pt needs torch to read)
    converted = tmp_path / "e2v.npz"
    assert main([str(official), str(converted)]) == 0
    np.testing.assert_array_equal(load_converted(converted)["main.0.q.weight"], convert(sd)["main.0.q.weight"])
    for path, mlx in ((converted, True), (official, False)):
        backend = Emotion2VecBackend(EmotionConfig(model_path=str(path)), prefer_mlx=mlx)
        result = backend.analyze(syllables(), RATE)
        assert result.backend == "emotion2vec" and len(result.predictions) == 3 and 0 <= result.confidence <= 1
    assert Emotion2VecBackend(EmotionConfig(model_path=str(converted)), prefer_mlx=False).engine == "numpy"


def test_backend_refuses_a_broken_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    save_converted({"proj.weight": np.zeros((2, 2), np.float32)}, bad)
    with pytest.raises(BackendUnavailable, match="lack"):
        Emotion2VecBackend(EmotionConfig(model_path=str(bad)))
