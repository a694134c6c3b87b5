"""The tensor table of a GGUF file (name, file offset, size), read from its header without loading weights.

llama.cpp memory-maps a GGUF and reads its weights in place, so every page it touches stays resident (file-backed
RSS). One tensor is read row by row: the input embedding ``token_embd.weight`` is a lookup table (one row per
token id) whenever the model has an ``output.weight`` of its own. Qwen2.5 1.5B and 0.5B ship both (125 and 89 MiB
of embedding), but llama.cpp's loader touches the whole file, so the table stays resident although a
conversation reads a few hundred of its 151,936 rows. ``row_lookup_ranges`` names those bytes, so the backend can
hand their pages back (``core.process_memory.drop_mapped_pages``); rows a turn reads are faulted in again from the
page cache. Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md (version 2 and 3).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

MAGIC = b"GGUF"
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
INPUT_EMBEDDING = "token_embd.weight"
OUTPUT_MATRIX = "output.weight"


class GGUFError(ValueError):
    """The file is not a GGUF this reader understands (bad magic, version, or a header cut short)."""


@dataclass(frozen=True)
class TensorSpan:
    name: str
    offset: int  # from the start of the file
    nbytes: int  # up to the next tensor's data (alignment padding included)
    kind: int = -1  # ggml type id (12: Q4_K, 14: Q6_K)


def _read(fh: BinaryIO, fmt: str) -> tuple:
    size = struct.calcsize("<" + fmt)
    data = fh.read(size)
    if len(data) != size:
        raise GGUFError("GGUF header cut short")
    return struct.unpack("<" + fmt, data)


def _skip_string(fh: BinaryIO) -> None:
    (n,) = _read(fh, "Q")
    fh.seek(n, 1)


def _read_string(fh: BinaryIO) -> str:
    (n,) = _read(fh, "Q")
    data = fh.read(n)
    if len(data) != n:
        raise GGUFError("GGUF header cut short")
    return data.decode("utf-8", "replace")


def _read_value(fh: BinaryIO, kind: int) -> object:
    """A metadata value; arrays are skipped (None): the tokenizer's vocabulary is most of the header."""
    if kind == _STRING:
        return _read_string(fh)
    if kind == _ARRAY:
        item, count = _read(fh, "IQ")
        if item == _STRING:
            for _ in range(count):
                _skip_string(fh)
        elif item in _SCALARS:
            fh.seek(count * struct.calcsize("<" + _SCALARS[item]), 1)
        else:  # arrays of arrays: read them one by one
            for _ in range(count):
                _read_value(fh, item)
        return None
    if kind not in _SCALARS:
        raise GGUFError(f"unknown GGUF metadata type {kind}")
    return _read(fh, _SCALARS[kind])[0]


def tensor_table(path: Path) -> dict[str, TensorSpan]:
    """Each tensor's byte span in the file, by name."""
    size = Path(path).stat().st_size
    with open(path, "rb") as fh:
        if fh.read(4) != MAGIC:
            raise GGUFError(f"{path} is not a GGUF file")
        (version,) = _read(fh, "I")
        if version not in (2, 3):
            raise GGUFError(f"GGUF version {version} is not supported")
        n_tensors, n_kv = _read(fh, "QQ")
        alignment = 32
        for _ in range(n_kv):
            key = _read_string(fh)
            (kind,) = _read(fh, "I")
            value = _read_value(fh, kind)
            if key == "general.alignment" and isinstance(value, int) and value > 0:
                alignment = value
        infos = []
        for _ in range(n_tensors):
            name = _read_string(fh)
            (n_dims,) = _read(fh, "I")
            fh.seek(8 * n_dims, 1)
            kind, offset = _read(fh, "IQ")
            infos.append((offset, name, kind))
        data_start = -(-fh.tell() // alignment) * alignment
    infos.sort()
    spans = {}
    for i, (offset, name, kind) in enumerate(infos):
        end = infos[i + 1][0] if i + 1 < len(infos) else size - data_start
        spans[name] = TensorSpan(name, data_start + offset, end - offset, kind)
    return spans


def weight_ranges(path: Path) -> list[tuple[int, int]]:
    """``(offset, nbytes)`` of every tensor's data: what the loader read. With llama.cpp's weight repacking the
    tensors it repacked are read from their anonymous copy from then on, never from the file, and which ones
    those are depends on the CPU (Q4_K on AVX2; more types elsewhere), so a caller hands back the pages of all of
    them once and lets the first evaluation fault back those read in place."""
    return [(span.offset, span.nbytes) for span in tensor_table(path).values()]


def row_lookup_ranges(path: Path) -> list[tuple[int, int]]:
    """``(offset, nbytes)`` of the tensors llama.cpp only reads row by row: the input embedding, when the model
    has a separate output matrix (with tied embeddings it is the output matrix, read whole for every token)."""
    table = tensor_table(path)
    if INPUT_EMBEDDING in table and OUTPUT_MATRIX in table:
        span = table[INPUT_EMBEDDING]
        return [(span.offset, span.nbytes)]
    return []
