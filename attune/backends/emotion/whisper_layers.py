"""Whisper's encoder up to a middle block, over the CTranslate2 weights (``emotion.encoder: tiny.en_l2``).

CTranslate2's ``encode`` (the ASR's pass, which a last-layer head reuses) returns only the last layer, while
paralinguistic information peaks in the middle of speech encoders. Two encoders read the same ``model.bin``:

- ``BlockEncoder`` (what ``tiny.en_l2`` runs): CTranslate2 itself, in int8, over a copy of the model cut after
  the block (``cut_model``: CTranslate2 builds a Whisper encoder from whatever blocks the file holds, and applies
  the final LayerNorm after the last of them), over the clip's own mel frames (``clip_features``) rather than
  the ASR's padded window: ~12 ms of CPU for a 3.6 s turn.
- ``LayerEncoder``, the reference: the encoder in float32 numpy (``read_ct2``: CTranslate2's binary layout,
  float16/float32 variables; two convolutions with GELU, the sinusoidal positions, pre-norm transformer blocks)
  with the log-mel exactly as ``WhisperEncoder`` computes it, so its last block plus the final LayerNorm
  reproduces the ASR's pass (correlation >= 0.998 with CTranslate2's int8 output); ~60 ms over the ASR's window.

A middle block costs a pass of its own at the end of a turn (docs/BENCHMARKS.md, issue 20, third round).
"""

from __future__ import annotations

import math
import shutil
import struct
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import erf

from attune.backends.asr.asr_common import states_for, storage_to_states
from attune.backends.asr.faster_whisper_backend import FULL_WINDOW_S, encoder_frames
from attune.core.audio import SAMPLE_RATE
from attune.core.errors import BackendUnavailable, EmotionError

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
EPS = 1e-5
CUT_VOCABULARY = 4  # tokens the cut model's decoder keeps (it never decodes)
BLOCK_FEATURES_VERSION = 3  # BlockEncoder's features (2: numpy over the ASR's window); keys the lab's cache


@dataclass(frozen=True)
class Variable:
    """One variable of a CTranslate2 ``model.bin``: its name, shape, dtype, where its data lies in the file,
    and where its whole record (header and data) starts."""

    name: str
    dims: tuple[int, ...]
    dtype: np.dtype
    offset: int
    size: int
    record: int


def _ct2_layout(blob: bytes, path: str | Path) -> tuple[int, list[Variable], int]:
    """(end of the header, the variables, start of the aliases) of a CTranslate2 binary; EmotionError on a blob
    that is not one."""
    try:
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
        header = pos
        out: list[Variable] = []
        for _ in range(take("<I")):
            record = pos
            name = text()
            dims = tuple(take("<I") for _ in range(take("<B")))
            dtype = np.dtype(_DTYPES[take("<B")])
            size = take("<I")
            if pos + size > len(blob):
                raise ValueError(f"variable {name} runs past the end of the file")
            out.append(Variable(name, dims, dtype, pos, size, record))
            pos += size
    except (struct.error, KeyError, ValueError, UnicodeDecodeError) as exc:
        raise EmotionError(f"cannot read CTranslate2 weights from {path}: {exc}") from exc
    return header, out, pos


def _read_blob(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise EmotionError(f"cannot read CTranslate2 weights from {path}: {exc}") from exc


def read_ct2(path: str | Path, prefix: str = "encoder/") -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 ``model.bin`` whose names start with ``prefix`` (prefix removed), as
    float32 (integers as they are). Raises EmotionError on a file that is not that format."""
    blob = _read_blob(path)
    out: dict[str, np.ndarray] = {}
    for v in _ct2_layout(blob, path)[1]:
        if v.name.startswith(prefix):
            arr = np.frombuffer(blob, v.dtype, v.size // v.dtype.itemsize, v.offset).reshape(v.dims)
            out[v.name[len(prefix):]] = arr.astype(np.float32) if arr.dtype.kind == "f" else arr.copy()
    return out


def _block_index(name: str, stack: str) -> int | None:
    """k of a variable ``<stack>/layer_<k>/...``, else None."""
    parts = name.split("/")
    if len(parts) > 2 and parts[0] == stack and parts[1].startswith("layer_") and parts[1][6:].isdigit():
        return int(parts[1][6:])
    return None


def _record(v: Variable, rows: int, data: bytes | memoryview) -> bytes:
    """The record of variable ``v`` cut to its first ``rows`` rows (``data`` holds at least those)."""
    name = v.name.encode()
    dims = (rows, *v.dims[1:])
    size = rows * int(np.prod(v.dims[1:], dtype=np.int64)) * v.dtype.itemsize
    code = next(k for k, t in _DTYPES.items() if np.dtype(t) == v.dtype)
    head = struct.pack(f"<H{len(name) + 1}sB{len(dims)}IBI", len(name) + 1, name, len(dims), *dims, code, size)
    return head + bytes(data[:size])


def cut_model(model_dir: str | Path, blocks: int, out_dir: str | Path) -> int:
    """Write into ``out_dir`` a Whisper model whose encoder stops after ``blocks`` blocks (its final LayerNorm
    then applies there), whose decoder keeps one block and a vocabulary of ``CUT_VOCABULARY`` tokens
    (CTranslate2 loads no Whisper model without a decoder; nothing here decodes, and the full vocabulary's
    embeddings would hold ~18 MB), with the folder's config; return the mel bins its first convolution reads.
    EmotionError on a file that is not a Whisper model or ``blocks`` out of range."""
    folder, out = Path(model_dir), Path(out_dir)
    path = folder / "model.bin"
    blob = _read_blob(path)
    header, variables, aliases = _ct2_layout(blob, path)
    n_blocks = len({i for v in variables if (i := _block_index(v.name, "encoder")) is not None})
    conv = [v for v in variables if v.name == "encoder/conv1/weight"]
    if not n_blocks or not conv or not any(v.name == "decoder/embeddings/weight" for v in variables):
        raise EmotionError(f"{path} holds no Whisper model")
    if not 1 <= blocks <= n_blocks:
        raise EmotionError(f"encoder layer {blocks} out of range 1..{n_blocks}")
    vocab = folder / "vocabulary.txt"
    if not vocab.is_file():
        raise EmotionError(f"{folder} has no vocabulary.txt")
    ends = [v.record for v in variables[1:]] + [aliases]
    view = memoryview(blob)
    kept = [_record(v, CUT_VOCABULARY, view[v.offset:]) if v.name == "decoder/embeddings/weight" else view[v.record:end]
            for v, end in zip(variables, ends, strict=True)
            if (_block_index(v.name, "encoder") or 0) < blocks and (_block_index(v.name, "decoder") or 0) < 1]
    try:
        out.mkdir(parents=True, exist_ok=True)
        with (out / "model.bin").open("wb") as f:
            f.write(view[:header])
            f.write(struct.pack("<I", len(kept)))
            for record in kept:
                f.write(record)
            f.write(view[aliases:])
        shutil.copyfile(folder / "config.json", out / "config.json")
        tokens = vocab.read_text(encoding="utf-8").splitlines()[:CUT_VOCABULARY]
        (out / "vocabulary.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    except OSError as exc:
        raise EmotionError(f"cannot write the cut Whisper model to {out}: {exc}") from exc
    return int(conv[0].dims[1])


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


def clip_features(mel: Any, audio16k: np.ndarray) -> np.ndarray:
    """The log-mel frames of the clip itself, no padding to the ASR's window: two per encoder state
    (``states_for``), so the encoder's output is the clip's rows and nothing after them. ``mel`` is a
    faster-whisper ``FeatureExtractor``."""
    from faster_whisper.audio import pad_or_trim

    feats = mel(np.asarray(audio16k, np.float32))
    content = feats.shape[-1] - 1  # as faster-whisper's generate_segments: the padding frame is not content
    feats = pad_or_trim(feats[..., : min(content, int(FULL_WINDOW_S * 100))])
    return np.ascontiguousarray(feats[..., : 2 * states_for(len(audio16k))], np.float32)


class BlockEncoder:
    """Whisper's encoder up to block ``layer`` (then its final LayerNorm), by CTranslate2 in int8 over the
    installed ``model.bin`` cut there (``cut_model``, into a temporary folder read once at load), over the clip's
    own frames (``clip_features``).

    What ``emotion.encoder: tiny.en_l2`` runs at the end of a turn. The same blocks as ``LayerEncoder`` (numpy,
    float32; correlation >= 0.998 on the same frames plus the LayerNorm): int8 and two blocks instead of four,
    and 3.6 s of speech encoded as 3.6 s rather than the ASR's 6 s window, cost ~13 ms of CPU instead of ~56
    (docs/BENCHMARKS.md, issue 20, third round). One thread: the pass runs in a worker while the ASR's runs
    beside it, and a second thread would add CPU for the wait. Thread-safe (one encode at a time).
    """

    def __init__(self, model_dir: str | Path, layer: int, *, threads: int = 1, compute_type: str = "int8") -> None:
        folder = Path(model_dir)
        if not (folder / "model.bin").is_file():
            raise BackendUnavailable(f"no Whisper model in {folder}",
                                     install_hint=".venv/bin/python -m attune.models install")
        try:
            import ctranslate2
            from faster_whisper.feature_extractor import FeatureExtractor
        except ImportError as exc:
            raise BackendUnavailable(f"faster-whisper is not installed: {exc}",
                                     install_hint="pip install faster-whisper==1.2.1") from exc
        self.layer = layer
        self._lock = threading.Lock()
        try:
            with tempfile.TemporaryDirectory(prefix="attune-whisper-cut-") as tmp:  # CTranslate2 reads it at load
                n_mels = cut_model(folder, layer, tmp)
                self._model: Any = ctranslate2.models.Whisper(tmp, device="cpu", compute_type=compute_type,
                                                              intra_threads=threads)
        except (OSError, RuntimeError, ValueError) as exc:  # no temporary folder, or CTranslate2 refused the cut
            raise EmotionError(f"cannot load {folder} cut to {layer} blocks: {exc}") from exc
        self._mel = FeatureExtractor(feature_size=n_mels)

    def states(self, audio16k: np.ndarray) -> np.ndarray:
        """Block ``layer``'s states (after the final LayerNorm) over a 16 kHz mono clip (at most 30 s read):
        (states_for(n), d) float32."""
        x = np.asarray(audio16k, np.float32)
        if x.ndim != 1 or len(x) == 0:
            raise EmotionError(f"the Whisper encoder needs a non-empty mono clip, got shape {x.shape}")
        x = x[: int(FULL_WINDOW_S * SAMPLE_RATE)]
        from faster_whisper.transcribe import get_ctranslate2_storage

        with self._lock:
            feats = get_ctranslate2_storage(clip_features(self._mel, x)[None])
            out = self._model.encode(feats, to_cpu=True)
        return storage_to_states(out, len(x))
