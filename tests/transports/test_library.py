"""Attune as a library: the public names, a session over shared engines, and the documented example, on fakes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import attune
from attune.config import load_config
from attune.core import events as ev
from attune.pipeline.session_backends import SessionBackends, Voice
from attune.transports.file import stream_file
from attune.transports.library import Attune
from tests.fakes import FixedASR, ScriptedLLM, ToneTTS, speech_frame

LAYER = "fakes"  # STYLE.md layer 3: the pipeline on fake backends

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "talk_to_attune.py"


def _agent() -> Attune:
    config = load_config(environ={}, overrides={
        "pipeline": {"vad": "energy", "output_sample_rate": 16000, "partial_asr": False, "end_of_turn_model": "none"},
        "emotion": {"backend": "prosodic"}})
    backends = SessionBackends(asr=FixedASR(), llm=ScriptedLLM(["I am here for you."]), voice=Voice(ToneTTS()),
                               vad=None)  # type: ignore[arg-type]
    return Attune(config, backends)


def test_the_public_names_resolve_and_unknown_ones_do_not() -> None:
    assert attune.FRAME == 320 and attune.SAMPLE_RATE == 16000 and attune.Attune is Attune
    assert attune.Session.__name__ == "Session" and callable(attune.load_config)
    with pytest.raises(AttributeError):
        attune.nonsense  # noqa: B018


async def test_two_sessions_share_the_engines_and_answer_a_turn_each() -> None:
    agent = _agent()
    for _ in range(2):
        async with agent.session() as session:
            assert session.backends.asr is agent.backends.asr and session.backends.vad is not None
            run = await stream_file(session, np.concatenate([speech_frame(i) for i in range(50)]), speed=0.0)
            seen = [e.type for e in run.events]
            assert ev.TRANSCRIPT in seen and ev.RESPONSE_DONE in seen


async def test_the_documented_example_runs(monkeypatch, capsys, tmp_path) -> None:
    spec = importlib.util.spec_from_file_location("talk_to_attune", EXAMPLE)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    agent = _agent()

    async def load(*_args: object, **_kw: object) -> Attune:
        return agent

    monkeypatch.setattr(example.Attune, "load", load)
    monkeypatch.setattr(example, "load_audio", lambda _p: np.concatenate([speech_frame(i) for i in range(50)]))
    await example.main(str(tmp_path / "you.wav"))
    out = capsys.readouterr().out
    assert "heard:" in out and "said:" in out and "I am here for you." in out
