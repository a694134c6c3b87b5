"""What instruction sets the engines actually run with, beside the CPU's own (``attune.core.machine``): a figure
taken with CTranslate2 held to AVX2 (``CT2_FORCE_CPU_ISA=AVX2``) or with a llama.cpp built without AVX-512
(``GGML_NATIVE=OFF -DGGML_AVX512=OFF``, put first on ``PYTHONPATH``) emulates an AVX2-only machine on an
AVX-512 one, and must say so. onnxruntime (Silero VAD, smart-turn, Piper) picks its kernels from the CPU and
cannot be held back, so it always runs with what the CPU has.

``parse_llama_isa`` is pure; ``engine_isa()`` asks the installed llama-cpp-python.
"""

from __future__ import annotations

import os
from typing import Any

LLAMA_ISA_ORDER = ("AVX512_VNNI", "AVX512", "AVX_VNNI", "AVX2", "AVX")  # the best first


def parse_llama_isa(system_info: str) -> str:
    """The best x86 instruction set in llama.cpp's ``llama_print_system_info()`` ("AVX2 = 1 | AVX512 = 1 | ...")."""
    on = {part.split("=")[0].strip() for part in system_info.replace("CPU :", "|").split("|")
          if part.strip().endswith("= 1")}
    return next((isa for isa in LLAMA_ISA_ORDER if isa in on), "none of AVX")


def engine_isa() -> dict[str, Any]:
    """{"llama_cpp": best ISA built in or None, "ctranslate2": the forced ISA or "cpu", "onnxruntime": "cpu"}."""
    try:
        import llama_cpp

        llama: str | None = parse_llama_isa(llama_cpp.llama_print_system_info().decode(errors="replace"))
    except (ImportError, AttributeError, OSError):
        llama = None
    return {"llama_cpp": llama, "ctranslate2": os.environ.get("CT2_FORCE_CPU_ISA") or "cpu", "onnxruntime": "cpu"}


def emulates_avx2(isa: dict[str, Any], cpu_avx512: bool) -> bool:
    """True where this AVX-512 machine runs its LLM and ASR held to AVX2 (an AVX2-only machine, emulated)."""
    return cpu_avx512 and isa.get("llama_cpp") == "AVX2" and str(isa.get("ctranslate2")).upper() == "AVX2"
