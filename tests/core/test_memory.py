"""Memory (issue 13, item 7): the allocator settings, RSS readings, Piper's clause pieces, llama.cpp's load
parameters and the soak benchmark's loop. Figures themselves are benchmarks (docs/BENCHMARKS.md, "Memory")."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest

from attune.backends.base import ChatMessage
from attune.backends.tts.piper_backend import MAX_PIECE_CHARS, MIN_PHRASE_CHARS, clause_pieces
from attune.core import process_memory
from attune_lab import rss
from tests.engines_util import installed_model
from tests.fakes import Harness, ScriptedLLM

LAYER = "unit"  # STYLE.md layer 1: a pure core, loop-free, no models


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc are Linux's")
def test_allocator_tuning_applies_and_rss_is_read() -> None:
    assert process_memory.tune_allocator() is True
    process_memory.release_free_memory()
    assert 10 < rss.rss_mb() <= rss.peak_rss_mb()


def test_big_buffers_go_back_to_the_system_when_freed() -> None:
    if not process_memory.tune_allocator():
        pytest.skip("not glibc")
    before = rss.rss_mb()
    block = np.ones(64 * 2**20 // 8)  # 64 MB, touched
    assert rss.rss_mb() > before + 50
    del block
    assert rss.rss_mb() < before + 20


def test_clause_pieces_cut_long_sentences_at_clause_marks_only() -> None:
    short = "Take a slow breath with me."
    assert clause_pieces(short) == [short]
    long = ("He might have been a bit older than you thought, and that is completely understandable, "
            "because we all grow older every single day of the year.")
    pieces = clause_pieces(long)
    assert len(pieces) == 3 and " ".join(pieces) == long
    assert all(p.endswith((",", ".")) for p in pieces)
    unbroken = "x" * (MAX_PIECE_CHARS + 20)
    assert clause_pieces(unbroken) == [unbroken]  # no clause mark: left whole, never cut inside a word
    plain = "I think this one might be the most ordinary sentence you will hear today."
    assert clause_pieces(plain) == [plain]  # no clause mark, no conjunction: never cut between two other words


def test_a_long_clause_without_commas_is_cut_before_a_conjunction() -> None:
    sentence = "I want to help you and I will stay right here with you so that you feel safe."
    pieces = clause_pieces(sentence)
    assert pieces == ["I want to help you", "and I will stay right here with you", "so that you feel safe."]
    assert " ".join(pieces) == sentence and all(len(p) <= MAX_PIECE_CHARS for p in pieces)
    # never a piece shorter than MIN_PHRASE_CHARS: "I think" stays with what it thinks
    assert clause_pieces("I think that sounds like a really hard day at work for you.") == [
        "I think that sounds like a really hard day at work for you."]
    assert all(len(p) >= MIN_PHRASE_CHARS for p in clause_pieces("Oh and that was a day we went out and swam"))


@pytest.mark.real
def test_llama_loads_with_or_without_repacking_and_restores_the_defaults() -> None:
    import llama_cpp.llama_cpp as lib

    from attune.backends.llm.llama_cpp_backend import LlamaCppLLM, _model_params

    original = lib.llama_model_default_params
    with _model_params(repack=False):
        assert lib.llama_model_default_params().use_extra_bufts is False
    assert lib.llama_model_default_params is original and original().use_extra_bufts is True
    llm = LlamaCppLLM(installed_model("qwen2.5-0.5b"), n_ctx=512, repack=False)
    assert llm._llm.model_params.use_extra_bufts is False  # the weights stay in the mapped file
    assert len(llm.prompt_tokens([ChatMessage("user", "Hello")])) > 2


async def test_soak_loop_samples_rss_every_n_turns(monkeypatch: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from attune.commands import conversation
    from attune.pipeline import stack
    from attune_lab import bench_soak as soak

    h = Harness(llm=ScriptedLLM(["I am here with you."]))
    template = h.session()

    async def no_warm_up(*_: Any) -> dict[str, float]:
        return {}

    t = np.arange(16000) / 16000
    speech = (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    monkeypatch.setattr(stack, "build_backends", lambda config: template.backends)
    monkeypatch.setattr(stack, "warm_up", no_warm_up)
    monkeypatch.setattr(conversation, "demo_utterances", lambda config, router=None: [speech, speech])
    result = await soak._soak(template.config, 4, 2, quiet=False)
    assert [s["turn"] for s in result["samples"]] == [0, 2, 4]
    assert result["turns_completed"] == 4
    assert all(s["rss_mb"] > 0 for s in result["samples"])
    assert all(s["s_per_turn"] >= 0 and "load1" in s for s in result["samples"][1:])
    expected = rss.slope_per_100([(s["turn"], s["rss_mb"]) for s in result["samples"][1:]])
    assert result["rss_slope_mb_per_100_turns"] == round(expected, 1)
    out = capsys.readouterr().out
    assert "RSS every 2" in out and "turn    4: RSS" in out and "MiB per 100 turns" in out


def test_slope_per_100_turns_is_the_least_squares_trend() -> None:
    assert rss.slope_per_100([]) == 0.0 and rss.slope_per_100([(20, 1500.0)]) == 0.0
    assert rss.slope_per_100([(20, 1500.0), (40, 1500.0), (60, 1500.0)]) == 0.0
    assert rss.slope_per_100([(20, 1500.0), (120, 1510.0)]) == pytest.approx(10.0)
    # one turn's transient in the middle moves the trend far less than it moves last-minus-first
    noisy = [(20, 1500.0), (40, 1540.0), (60, 1500.0), (80, 1500.0), (100, 1500.0)]
    assert rss.slope_per_100(noisy) == pytest.approx(-20.0)
    assert rss.slope_per_100([(t, 1400.0 + 0.5 * t) for t in range(20, 201, 20)]) == pytest.approx(50.0)


def test_soak_rejects_a_negative_reply_bound_and_applies_a_positive_one(monkeypatch: Any) -> None:
    import argparse

    from attune.config import Config
    from attune.core.errors import AttuneError
    from attune_lab import bench_soak as soak

    seen: list[int] = []

    async def fake_soak(config: Any, turns: int, every: int, *, quiet: bool) -> dict[str, Any]:
        seen.append(config.llm.max_tokens)
        return {"turns_completed": turns}

    monkeypatch.setattr(soak, "_soak", fake_soak)
    with pytest.raises(AttuneError, match="--max-tokens"):
        soak.cmd_bench_soak(argparse.Namespace(turns=2, every=1, max_tokens=-1, json=True), Config())
    assert soak.cmd_bench_soak(argparse.Namespace(turns=2, every=1, max_tokens=24, json=False), Config()) == 0
    assert soak.cmd_bench_soak(argparse.Namespace(turns=2, every=1, max_tokens=0, json=False), Config()) == 0
    assert seen == [24, Config().llm.max_tokens]


async def test_a_second_recording_in_one_session_keeps_only_its_own_timeline() -> None:
    """Audio buffers per turn: each stream_file run holds its own recording's span, not the session's so far."""
    from attune.transports.file import stream_file
    from attune_lab.latency import voice_to_voice

    t = np.arange(16000) / 16000
    speech = np.concatenate([(0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), np.zeros(8000, np.float32)])
    async with Harness(llm=ScriptedLLM(["I am here with you."])).session() as s:
        first = await stream_file(s, speech, speed=0.0)
        second = await stream_file(s, speech, speed=0.0)
    assert first.origin_s == 0.0 and second.origin_s == pytest.approx(first.streamed_s, abs=0.05)
    assert len(second.output) <= int((second.streamed_s + 0.5) * second.output_rate) + 1
    measured = voice_to_voice(speech, 16000, second.output, second.output_rate)
    assert measured is not None and measured[0] == pytest.approx(1.0, abs=0.05)  # its reply, on its own timeline
