"""``bench-cache`` end to end through run_agent.main on the real Piper voice: figures for synthesis, a memory hit
and a disk hit in a cold process, and a clear line for bad arguments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from run_agent import main
from tests.engines_util import installed_model

LAYER = "real"  # STYLE.md layer 4: real models on real audio


def test_bench_cache_prints_the_three_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    installed_model("piper-joe")
    assert main(["bench-cache", "--phrases", "2", "--repeats", "1", "--dir", str(tmp_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["tts"] == "piper" and result["phrases"] == 2
    assert result["synthesis"]["n"] == 2 and result["disk_hit_cold_process"]["n"] == 2
    assert result["memory_hit"]["n"] == 200 and 0.2 < result["audio_s_mean"] < 3.0
    for name in ("synthesis", "memory_hit", "disk_hit_cold_process"):
        assert result[name]["p50_ms"] > 0 and result[name]["p95_ms"] >= result[name]["p50_ms"]
    assert len(list(tmp_path.glob("*.npz"))) == 2 and result["entry_kib_mean"] > 10


def test_bench_cache_refuses_nonsense(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench-cache", "--phrases", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err
