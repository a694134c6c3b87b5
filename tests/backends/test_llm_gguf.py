"""The GGUF tensor table and the input embedding's pages (issue 13, item 7): the table is read from the header
alone; llama.cpp's loader leaves the whole file resident, and the embedding, read row by row, is handed back."""

from __future__ import annotations

import mmap
import struct
import sys
from pathlib import Path

import pytest

from attune.backends.base import ChatMessage
from attune.backends.llm.gguf import GGUFError, row_lookup_ranges, tensor_table
from attune.core import process_memory
from attune_lab import rss
from tests.engines_util import installed_model

LAYER = "unit"  # STYLE.md layer 1, plus one real-model test at the end (marked)

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise and /proc are Linux's")


def _string(s: str) -> bytes:
    data = s.encode()
    return struct.pack("<Q", len(data)) + data


def write_gguf(path: Path, tensors: list[tuple[str, int]], *, alignment: int = 64) -> Path:
    """A GGUF v3 file: a few metadata kinds (string, uint32, string array, float array) and ``(name, nbytes)``
    tensors laid out one after another, each padded to ``alignment``."""
    kv = (_string("general.architecture") + struct.pack("<I", 8) + _string("qwen2")
          + _string("general.alignment") + struct.pack("<II", 4, alignment)
          + _string("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 3) + b"".join(map(_string, "abc"))
          + _string("tokenizer.ggml.scores") + struct.pack("<IIQ", 9, 6, 3) + struct.pack("<3f", 0, 1, 2))
    infos, offset, padded = b"", 0, []
    for name, nbytes in tensors:
        infos += _string(name) + struct.pack("<I", 2) + struct.pack("<QQ", nbytes // 4, 1) + struct.pack("<IQ", 0,
                                                                                                         offset)
        size = -(-nbytes // alignment) * alignment
        padded.append(size)
        offset += size
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), 4) + kv + infos
    head += b"\0" * (-len(head) % alignment)
    path.write_bytes(head + b"\1" * offset)
    return path


def test_the_table_gives_each_tensor_its_span_in_the_file(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "m.gguf", [("output.weight", 1000), ("token_embd.weight", 4096),
                                            ("blk.0.attn_q.weight", 256)])
    table = tensor_table(path)
    assert set(table) == {"output.weight", "token_embd.weight", "blk.0.attn_q.weight"}
    out, embd, q = table["output.weight"], table["token_embd.weight"], table["blk.0.attn_q.weight"]
    assert out.offset % 64 == 0 and embd.offset == out.offset + 1024 and q.offset == embd.offset + 4096
    assert out.nbytes == 1024 and embd.nbytes == 4096 and q.offset + q.nbytes == path.stat().st_size
    assert row_lookup_ranges(path) == [(embd.offset, 4096)]


def test_tied_embeddings_have_no_row_lookup_range(tmp_path: Path) -> None:
    """Without an output matrix the embedding *is* the output matrix, read whole for every token."""
    path = write_gguf(tmp_path / "tied.gguf", [("token_embd.weight", 4096), ("blk.0.attn_q.weight", 256)])
    assert "token_embd.weight" in tensor_table(path) and row_lookup_ranges(path) == []


def test_a_file_that_is_not_gguf_or_is_cut_short_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.gguf").write_bytes(b"PK\3\4 not a model")
    with pytest.raises(GGUFError, match="not a GGUF"):
        tensor_table(tmp_path / "x.gguf")
    whole = write_gguf(tmp_path / "w.gguf", [("output.weight", 64)]).read_bytes()
    (tmp_path / "cut.gguf").write_bytes(whole[:40])
    with pytest.raises(GGUFError, match="cut short"):
        tensor_table(tmp_path / "cut.gguf")
    (tmp_path / "v9.gguf").write_bytes(b"GGUF" + struct.pack("<I", 9) + whole[8:])
    with pytest.raises(GGUFError, match="version 9"):
        tensor_table(tmp_path / "v9.gguf")


@linux_only
def test_dropping_a_mapped_range_frees_its_pages_and_keeps_its_bytes(tmp_path: Path) -> None:
    page = mmap.PAGESIZE
    path = tmp_path / "weights.bin"
    path.write_bytes(bytes(range(256)) * (4096 * page // 256))  # 4096 pages (16 MiB with 4 KiB pages)
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, prot=mmap.PROT_READ) as m:
        assert sum(m[i] for i in range(0, len(m), page)) == 0  # touch every page: offset i*page holds byte 0
        whole = rss.mapped_rss_kb(path)
        assert whole >= 0.95 * len(m) / 1024
        advised = process_memory.drop_mapped_pages(path, [(1000 * page + 10, 2000 * page)])
        assert advised == 1999 * page  # whole pages inside the range only
        assert rss.mapped_rss_kb(path) <= whole - 1999 * page / 1024 + 64
        assert m[1500 * page + 3] == 3 and m[1000 * page: 1000 * page + 256] == bytes(range(256))
        assert process_memory.drop_mapped_pages(tmp_path / "unmapped.bin", [(0, page)]) == 0


def resident_pages(path: Path, offset: int, nbytes: int) -> int:
    """Pages of ``path``'s bytes ``[offset, offset + nbytes)`` present in this process's mapping of it
    (/proc/self/pagemap, bit 63: readable for one's own process without privileges)."""
    page = mmap.PAGESIZE
    (start, _end, file_offset), = process_memory._mappings_of(path)
    first = (start + offset - file_offset + page - 1) // page
    count = nbytes // page - 1
    try:
        with open("/proc/self/pagemap", "rb") as fh:
            fh.seek(8 * first)
            entries = struct.unpack(f"<{count}Q", fh.read(8 * count))
    except OSError as exc:  # a kernel or sandbox that hides it
        pytest.skip(f"/proc/self/pagemap not readable: {exc}")
    return sum(1 for e in entries if e >> 63)


@pytest.mark.real
@linux_only
async def test_the_real_models_embedding_pages_go_back_and_replies_stay_the_same(monkeypatch: pytest.MonkeyPatch
                                                                                ) -> None:
    from attune.backends.llm.llama_cpp_backend import LlamaCppLLM

    path = installed_model("qwen2.5-0.5b")
    (offset, nbytes), = row_lookup_ranges(path)
    assert nbytes > 50 * 2**20  # 89 MiB of the 0.5B's 469
    pages = nbytes // mmap.PAGESIZE
    llm = LlamaCppLLM(path, n_ctx=512, repack=False)  # the weights read in place: only the table goes back
    assert llm.released_bytes > 0.99 * nbytes - mmap.PAGESIZE
    assert resident_pages(path, offset, nbytes) < 0.01 * pages  # the load touched it all; the table went back
    resident = rss.mapped_rss_kb(path) * 1024
    assert resident < path.stat().st_size - 0.9 * nbytes

    messages = [ChatMessage("system", "Answer in one short sentence."), ChatMessage("user", "Name a red fruit.")]

    async def reply() -> str:
        llm._llm.reset()  # evaluate the whole prompt again: its rows are read after their pages went back
        return "".join([p async for p in llm.stream(messages, max_tokens=12, temperature=0.0)])

    first = await reply()
    assert resident_pages(path, offset, nbytes) < 0.01 * pages  # the reply handed back the rows it read
    monkeypatch.setattr(llm, "release_lookup_pages", lambda: 0)
    assert await reply() == first and first.strip()  # the same reply from rows read back from the page cache
    assert resident_pages(path, offset, nbytes) > 0  # without the release, the rows it read stay


@pytest.mark.real
@linux_only
async def test_repacked_weights_are_not_kept_twice() -> None:
    """Repacking (the default) copies the Q4_K weights into llama.cpp's own layout; the mapped file's pages are
    handed back after the load, and a reply faults back only the tensors read in place, so the repacked ones
    are not resident twice (on any AVX2 CPU: its kernels are what Q4_K is repacked for)."""
    from attune.backends.llm.llama_cpp_backend import LlamaCppLLM

    path = installed_model("qwen2.5-1.5b")  # Q4_K for the most part (the 0.5B's are mostly Q5_0 and Q8_0)
    size = path.stat().st_size
    repacked = sum(span.nbytes for span in tensor_table(path).values()
                   if span.kind == 12 and span.name != "token_embd.weight")  # Q4_K
    assert repacked > 0.5 * size
    rss.reset_peak_rss()
    before = rss.rss_mb()
    resettable = rss.peak_rss_mb() - before < 64  # VmHWM restarted from here (a kernel that allows it)
    llm = LlamaCppLLM(path, n_ctx=512)
    if resettable:  # the file's pages went back during the load too: never the file and its copy whole
        assert (rss.peak_rss_mb() - before) * 2**20 < size + 0.5 * repacked
    assert llm._llm.model_params.use_extra_bufts is True
    assert llm.released_bytes > 0.9 * size  # every tensor's pages went back after the load
    assert rss.mapped_rss_kb(path) * 1024 < 0.05 * size
    messages = [ChatMessage("system", "Answer in one short sentence."), ChatMessage("user", "Name a red fruit.")]
    first = "".join([p async for p in llm.stream(messages, max_tokens=12, temperature=0.0)])
    llm._llm.reset()
    assert "".join([p async for p in llm.stream(messages, max_tokens=12, temperature=0.0)]) == first
    assert first.strip()
    assert rss.mapped_rss_kb(path) * 1024 < size - 0.9 * repacked  # the repacked tensors were not read back


@linux_only
def test_a_writable_mapping_is_never_dropped(tmp_path: Path) -> None:
    path = tmp_path / "state.bin"
    path.write_bytes(b"\0" * (64 * mmap.PAGESIZE))
    with open(path, "r+b") as fh, mmap.mmap(fh.fileno(), 0, flags=mmap.MAP_PRIVATE) as m:
        m[: 5] = b"dirty"  # a private page written to: dropping it would lose this
        assert process_memory.drop_mapped_pages(path, [(0, len(m))]) == 0
        assert m[:5] == b"dirty"
