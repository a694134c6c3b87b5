"""The instruction sets an engine runs with, read from llama.cpp's own report: an AVX2-emulated figure says so."""

from __future__ import annotations

import pytest

from attune_lab.engine_isa import emulates_avx2, engine_isa, parse_llama_isa

LAYER = "unit"

AVX512 = ("CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | AVX512 = 1 | "
          "AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | ")
AVX2 = "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | LLAMAFILE = 1 | "


def test_the_best_instruction_set_llama_cpp_was_built_with() -> None:
    assert parse_llama_isa(AVX512) == "AVX512_VNNI"
    assert parse_llama_isa(AVX2) == "AVX2"
    assert parse_llama_isa("CPU : SSE3 = 1 | AVX512 = 0 | ") == "none of AVX"


def test_an_avx2_emulation_needs_both_engines_held_back_on_an_avx512_cpu() -> None:
    held = {"llama_cpp": "AVX2", "ctranslate2": "AVX2", "onnxruntime": "cpu"}
    assert emulates_avx2(held, cpu_avx512=True)
    assert not emulates_avx2(held, cpu_avx512=False)  # a real AVX2 machine emulates nothing
    assert not emulates_avx2({**held, "ctranslate2": "cpu"}, cpu_avx512=True)
    assert not emulates_avx2({**held, "llama_cpp": "AVX512_VNNI"}, cpu_avx512=True)


def test_the_installed_llama_cpp_reports_an_instruction_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CT2_FORCE_CPU_ISA", "AVX2")
    isa = engine_isa()
    assert isa["llama_cpp"] in ("AVX512_VNNI", "AVX512", "AVX_VNNI", "AVX2", "AVX")  # any x86-64 with AVX
    assert isa["ctranslate2"] == "AVX2"
