"""emotion2vec weights: the converter from the official checkpoint layout and the architecture read from it.

The official model (FunASR ``funasr/models/emotion2vec``, after ddlBoJack/emotion2vec; data2vec 2.0 audio)
stores a PyTorch state dict whose keys start ``modality_encoders.AUDIO.`` (the 7-layer conv feature extractor
``local_encoder.conv_layers.{i}.0`` with a channel LayerNorm at ``.2.1``; ``project_features.1`` LayerNorm
and ``.2`` Linear to 768; five grouped convolutions ``relative_positional_encoder.{1..5}.0``; ten learned
``extra_tokens``; the per-head ``alibi_scale``; ``context_encoder`` with its LayerNorm and four pre-net
``blocks``), then eight transformer ``blocks.{i}`` (fused ``attn.qkv``) and the 9-class ``proj`` head.
``convert`` maps it onto Attune's flat layout: qkv split into q, k and v; convolution weights transposed from
PyTorch's (out, in, kernel) to MLX's (out, kernel, in); unused pre-training parts (decoder, EMA) dropped.
``E2VConfig.from_weights`` reads the sizes back from the shapes, so small test checkpoints work the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attune.core.errors import EmotionError

ENC = "modality_encoders.AUDIO."
CONV_STRIDES = (5, 2, 2, 2, 2, 2, 2)  # feature_encoder_spec: [(512,10,5)] + [(512,3,2)]*4 + [(512,2,2)]*2
POS_LAYERS = 5  # conv_pos_depth
EPS = 1e-5  # norm_eps, and torch's LayerNorm default
FORMAT = "attune-emotion2vec-1"


@dataclass(frozen=True)
class E2VConfig:
    """The sizes of one emotion2vec model (base: 768 wide, 12 heads, 4 pre-net + 8 blocks, 10 extra tokens)."""

    embed_dim: int
    heads: int
    prenet_depth: int
    depth: int
    extra_tokens: int
    conv_kernels: tuple[int, ...]
    pos_kernel: int
    pos_groups: int
    n_classes: int

    @classmethod
    def from_weights(cls, w: dict[str, np.ndarray]) -> E2VConfig:
        """Sizes read from converted weights (raises EmotionError when a part is missing)."""
        try:
            n_conv = len([k for k in w if re.fullmatch(r"conv\.\d+\.weight", k)])
            dim = int(w["proj.weight"].shape[0])
            pos = w["pos.0.weight"]
            return cls(embed_dim=dim, heads=int(w["alibi_scale"].shape[0]),
                       prenet_depth=len({k.split(".")[1] for k in w if k.startswith("pre.")}),
                       depth=len({k.split(".")[1] for k in w if k.startswith("main.")}),
                       extra_tokens=int(w["extra_tokens"].shape[0]),
                       conv_kernels=tuple(int(w[f"conv.{i}.weight"].shape[1]) for i in range(n_conv)),
                       pos_kernel=int(pos.shape[1]), pos_groups=dim // int(pos.shape[2]),
                       n_classes=int(w["head.weight"].shape[0]))
        except KeyError as exc:
            raise EmotionError(f"emotion2vec weights lack {exc}; convert an official checkpoint with "
                               "`python -m attune.backends.emotion.e2v_weights IN.pt OUT.npz`") from exc


def _block(sd: dict[str, np.ndarray], src: str, dst: str, dim: int) -> dict[str, np.ndarray]:
    qkv_w, qkv_b = sd[f"{src}.attn.qkv.weight"], sd[f"{src}.attn.qkv.bias"]
    if qkv_w.shape != (3 * dim, dim):
        raise EmotionError(f"{src}.attn.qkv.weight has shape {qkv_w.shape}, expected {(3 * dim, dim)}")
    out = {}
    for i, name in enumerate("qkv"):  # rows: q then k then v (reshape (B, N, 3, H, D) in AltAttention)
        out[f"{dst}.{name}.weight"] = qkv_w[i * dim:(i + 1) * dim]
        out[f"{dst}.{name}.bias"] = qkv_b[i * dim:(i + 1) * dim]
    for a, b in (("attn.proj", "out"), ("norm1", "norm1"), ("norm2", "norm2"), ("mlp.fc1", "fc1"),
                 ("mlp.fc2", "fc2")):
        out[f"{dst}.{b}.weight"] = sd[f"{src}.{a}.weight"]
        out[f"{dst}.{b}.bias"] = sd[f"{src}.{a}.bias"]
    return out


def convert(state_dict: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Official emotion2vec state dict (numpy arrays; a ``model.`` prefix is accepted) -> Attune's layout."""
    sd = {k.removeprefix("model."): np.asarray(v, np.float32) for k, v in state_dict.items()}
    if f"{ENC}extra_tokens" not in sd or "proj.weight" not in sd:
        raise EmotionError("not an emotion2vec checkpoint with a classification head (no "
                           f"{ENC}extra_tokens or proj.weight)")
    out: dict[str, np.ndarray] = {}
    i = 0
    while f"{ENC}local_encoder.conv_layers.{i}.0.weight" in sd:
        conv = f"{ENC}local_encoder.conv_layers.{i}"
        out[f"conv.{i}.weight"] = np.ascontiguousarray(sd[f"{conv}.0.weight"].transpose(0, 2, 1))
        out[f"conv.{i}.ln.weight"] = sd[f"{conv}.2.1.weight"]
        out[f"conv.{i}.ln.bias"] = sd[f"{conv}.2.1.bias"]
        i += 1
    out["proj_ln.weight"] = sd[f"{ENC}project_features.1.weight"]
    out["proj_ln.bias"] = sd[f"{ENC}project_features.1.bias"]
    out["proj.weight"] = sd[f"{ENC}project_features.2.weight"]
    out["proj.bias"] = sd[f"{ENC}project_features.2.bias"]
    dim = int(out["proj.weight"].shape[0])
    for j in range(POS_LAYERS):  # index 0 of the Sequential is a TransposeLast
        conv = f"{ENC}relative_positional_encoder.{j + 1}.0"
        out[f"pos.{j}.weight"] = np.ascontiguousarray(sd[f"{conv}.weight"].transpose(0, 2, 1))
        out[f"pos.{j}.bias"] = sd[f"{conv}.bias"]
    out["extra_tokens"] = sd[f"{ENC}extra_tokens"].reshape(-1, dim)
    out["alibi_scale"] = sd[f"{ENC}alibi_scale"].reshape(-1)
    out["context_norm.weight"] = sd[f"{ENC}context_encoder.norm.weight"]
    out["context_norm.bias"] = sd[f"{ENC}context_encoder.norm.bias"]
    b = 0
    while f"{ENC}context_encoder.blocks.{b}.attn.qkv.weight" in sd:
        out.update(_block(sd, f"{ENC}context_encoder.blocks.{b}", f"pre.{b}", dim))
        b += 1
    b = 0
    while f"blocks.{b}.attn.qkv.weight" in sd:
        out.update(_block(sd, f"blocks.{b}", f"main.{b}", dim))
        b += 1
    out["head.weight"] = sd["proj.weight"]
    out["head.bias"] = sd["proj.bias"]
    E2VConfig.from_weights(out)  # every part present
    return out


def read_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """An official checkpoint's state dict: ``.pt`` (needs torch; the ``model`` entry) or ``.npz`` of it."""
    p = Path(path)
    if p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    try:
        import torch
    except ImportError as exc:
        raise EmotionError("reading a .pt checkpoint needs torch (pip install torch), or pass an .npz of its "
                           "state dict") from exc
    ckpt = torch.load(str(p), map_location="cpu", weights_only=True)
    sd = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else ckpt
    # probe: a checkpoint's tensors among its other entries
    return {k: v.float().numpy() for k, v in sd.items() if hasattr(v, "numpy")}


def save_converted(weights: dict[str, np.ndarray], path: str | Path) -> None:
    arrays: dict[str, np.ndarray] = {"__format__": np.array(FORMAT), **weights}
    np.savez(path, **arrays)  # type: ignore[arg-type]


def load_converted(path: str | Path) -> dict[str, np.ndarray]:
    """Converted weights (``save_converted``); an official checkpoint is converted on the fly."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "__format__" in npz.files:
                return {k: npz[k] for k in npz.files if k != "__format__"}
    except (OSError, ValueError) as exc:
        if Path(path).suffix == ".npz":
            raise EmotionError(f"cannot read emotion2vec weights {path}: {exc}") from exc
    return convert(read_checkpoint(path))


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="convert an official emotion2vec checkpoint to Attune's layout")
    ap.add_argument("checkpoint", help="model.pt (needs torch) or an .npz of its state dict")
    ap.add_argument("out", help="converted .npz (set emotion.model_path to it)")
    args = ap.parse_args(argv)
    weights = convert(read_checkpoint(args.checkpoint))
    save_converted(weights, args.out)
    cfg = E2VConfig.from_weights(weights)
    print(f"converted {len(weights)} arrays -> {args.out}: {cfg}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
