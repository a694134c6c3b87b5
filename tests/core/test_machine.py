"""The machine's description beside every figure (layer 1: pure parsing; the running machine read once)."""

from __future__ import annotations

from attune.core.machine import cpu_info, parse_cpuinfo

LAYER = "unit"  # STYLE.md layer 1

AVX512 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14
flags\t\t: fpu sse sse2 avx avx2 fma avx512f avx512dq avx512_vnni avx512_bf16
processor\t: 1
model name\t: other
flags\t\t: fpu
"""
AVX2 = "model name\t: AMD EPYC 7B13\nflags\t\t: fpu sse avx avx2 fma\n"
ALDER = "model name\t: 12th Gen Intel(R) Core(TM) i7-1260P\nflags\t\t: avx avx2 avx_vnni\n"


def test_parses_the_model_and_the_instruction_sets() -> None:
    a = parse_cpuinfo(AVX512, 2)
    assert (a.model, a.cores, a.avx2, a.avx512, a.vnni) == ("AMD EPYC 9R14", 2, True, True, True)
    assert a.short() == "AMD EPYC 9R14, 2 cores, AVX-512 + VNNI"
    b = parse_cpuinfo(AVX2, 2)
    assert (b.avx2, b.avx512, b.vnni) == (True, False, False) and b.short().endswith("AVX2")
    c = parse_cpuinfo(ALDER, 16)
    assert (c.avx512, c.vnni) == (False, True)


def test_unreadable_cpuinfo_still_names_something() -> None:
    info = parse_cpuinfo("", 1)
    assert info.model and not (info.avx2 or info.avx512 or info.vnni)


def test_the_running_machine() -> None:
    info = cpu_info()
    assert info.cores >= 1 and info.model and set(info.to_dict()) == {"model", "cores", "avx2", "avx512", "vnni"}
