"""Unit and real-engine tests (layers 1 and 4) of the one backend shape: the catalogue (``attune.core.catalog``),
``from_config`` on every backend class, unknown names as configuration errors, fallbacks logged once, and the
live session's emotion backend chosen by ``emotion.backend``."""

from __future__ import annotations

import inspect
import logging
from dataclasses import replace

import numpy as np
import pytest

from attune.backends import registry
from attune.backends.emotion.prosodic import ProsodicBackend
from attune.backends.tts.prosody_map import native_dimensions
from attune.backends.tts.router import TIERS
from attune.backends.tts.tts_factory import create_tts, wanted_providers
from attune.backends.vad import EnergyVAD, SileroVAD
from attune.config import Config, EmotionConfig, PipelineConfig
from attune.core import catalog
from attune.core.catalog import BackendSpec, EmotionCapabilities
from attune.core.emotion import EmotionResult
from attune.core.errors import BackendUnavailable, ConfigError
from attune.core.prosody import ProsodyParameters
from attune.pipeline.stack import for_session
from attune.pipeline.turn import TurnSettings, create_vad
from tests.emotion_signals import RATE, syllables
from tests.fakes import FixedASR, ScriptedLLM, ToneTTS

LAYER = "unit"  # STYLE.md layer 1: a pure core, loop-free, no models

PROSODY_FIELDS = set(ProsodyParameters.__dataclass_fields__)


@pytest.mark.parametrize("kind, name", [(k, n) for k, table in catalog.CATALOG.items() for n in table])
def test_every_spec_names_a_class_with_from_config(kind: str, name: str) -> None:
    spec = catalog.spec(kind, name)
    assert spec.name == name and spec.description
    try:
        cls = spec.load()
    except BackendUnavailable as exc:  # only a platform-specific backend may be missing here
        assert spec.install_hint and exc.install_hint == spec.install_hint
        return
    assert inspect.isclass(cls) and callable(getattr(cls, "from_config", None)), f"{spec.target} has no from_config"
    assert not spec.fallback or spec.fallback in catalog.CATALOG[kind]


def test_tts_capabilities_are_the_one_source_of_tiers_and_native_dimensions() -> None:
    assert TIERS == {"highest": ("csm", "piper", "espeak"), "high": ("piper", "espeak"),
                     "medium": ("piper", "espeak"), "fast": ("espeak",)}
    assert native_dimensions("espeak") == ("speech_rate", "pitch_shift_semitones", "volume_db")
    assert native_dimensions("piper") == ("speech_rate",)
    assert native_dimensions("csm") == () and native_dimensions("nobody") == () and native_dimensions(None) == ()
    for spec in catalog.TTS.values():
        assert set(spec.capabilities.native_dimensions) <= PROSODY_FIELDS
    assert wanted_providers("fast") == ("espeak", "piper")
    assert wanted_providers("high", "csm") == ("piper", "espeak", "csm")


@pytest.mark.real
async def test_built_tts_providers_match_their_catalogued_rate() -> None:
    router = create_tts(Config(), only=("piper", "espeak"))
    if not router.providers:
        pytest.skip(f"no TTS provider here: {router.unavailable}")
    for name, backend in router.providers.items():
        assert backend.sample_rate == catalog.TTS[name].capabilities.sample_rate


@pytest.mark.real
def test_an_unknown_tts_provider_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="'tts.provider'.*'festival'"):
        create_tts(Config(), only=("festival",))


def test_build_passes_the_config_to_from_config() -> None:
    backend = registry.build("emotion", "prosodic", Config(emotion=EmotionConfig(min_duration_s=0.3)))
    assert isinstance(backend, ProsodicBackend) and backend.config.min_duration_s == 0.3
    assert isinstance(registry.build("vad", "energy", Config()), EnergyVAD)


@pytest.mark.real
def test_vad_by_name_and_its_fallback_logged_once(monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    config = Config(pipeline=replace(PipelineConfig(), vad="energy"))
    assert isinstance(create_vad(config), EnergyVAD)
    assert isinstance(create_vad(Config()), SileroVAD)
    broken = replace(catalog.VAD["silero"], target="attune.no_such_module:SileroVAD")
    monkeypatch.setitem(catalog.VAD, "silero", broken)
    with caplog.at_level(logging.WARNING):
        first, second = create_vad(Config()), create_vad(Config())
    assert isinstance(first, EnergyVAD) and isinstance(second, EnergyVAD)
    assert caplog.text.count("vad backend 'silero' cannot run here, using 'energy'") == 1
    with pytest.raises(ConfigError, match="'pipeline.vad'.*'webrtc'"):
        create_vad(Config(pipeline=replace(PipelineConfig(), vad="webrtc")))


def test_a_fallback_chain_ends_in_the_error_when_the_last_backend_cannot_load(monkeypatch: pytest.MonkeyPatch
                                                                               ) -> None:
    monkeypatch.setitem(catalog.VAD, "silero", replace(catalog.VAD["silero"], target="attune.nope:X"))
    monkeypatch.setitem(catalog.VAD, "energy", replace(catalog.VAD["energy"], target="attune.nope:Y"))
    with pytest.raises(BackendUnavailable, match="attune.nope"):
        create_vad(Config())


def test_turn_defaults_are_the_configs() -> None:
    assert TurnSettings() == TurnSettings.from_config(PipelineConfig())


class WindowBackend:
    """A stand-in for a neural backend: whole windows in, no frame tracks (so not a FrameTrackBackend)."""

    name = "window"

    def __init__(self) -> None:
        self.windows = 0
        self.real = ProsodicBackend()

    @classmethod
    def from_config(cls, config: Config) -> WindowBackend:
        return cls()

    def analyze(self, audio: np.ndarray, sample_rate: int) -> EmotionResult:
        self.windows += 1
        return replace(self.real.analyze(audio, sample_rate), backend=self.name)


def _session_engines() -> object:
    from attune.pipeline.session import SessionBackends
    from attune.pipeline.session_backends import Voice

    return SessionBackends(asr=FixedASR(), llm=ScriptedLLM(), voice=Voice(ToneTTS()), vad=EnergyVAD())


def test_the_live_session_runs_the_configured_emotion_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = BackendSpec("window", f"{__name__}:WindowBackend", EmotionCapabilities(),
                       description="test stand-in for a neural backend")
    monkeypatch.setitem(catalog.EMOTION, "window", spec)
    config = Config(emotion=EmotionConfig(backend="window"))
    session = for_session(config, _session_engines())  # type: ignore[arg-type]
    other = for_session(config, _session_engines())  # type: ignore[arg-type]
    assert session.emotion is not None and other.emotion is not None
    detector, backend = session.emotion, session.emotion.backend  # type: ignore[attr-defined]
    assert type(backend).__name__ == "WindowBackend"  # built from the catalogue entry by its module path
    assert other.emotion.backend is not backend  # type: ignore[attr-defined]  # one backend per session
    results = detector.analyze_streaming(syllables(seconds=2.0), RATE)
    assert [r.backend for r in results] == ["window"] * 3 and backend.windows == 3


def test_the_live_session_falls_back_to_prosodic_when_the_backend_cannot_load(tmp_path, caplog  # type: ignore[no-untyped-def]
                                                                               ) -> None:
    config = Config(emotion=EmotionConfig(backend="emotion2vec", model_path=str(tmp_path / "absent.pt")))
    with caplog.at_level(logging.WARNING):
        session = for_session(config, _session_engines())  # type: ignore[arg-type]
    assert session.emotion is not None
    assert isinstance(session.emotion.backend, ProsodicBackend)  # type: ignore[attr-defined]
    assert "emotion2vec" in caplog.text and "prosodic" in caplog.text


def test_the_command_line_refuses_an_unknown_emotion_backend(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    import run_agent

    monkeypatch.setenv("ATTUNE_EMOTION__BACKEND", "bogus")
    assert run_agent.main(["analyze", "--demo"]) == 2
    err = capsys.readouterr().err
    assert "configuration error" in err and "emotion.backend" in err and "bogus" in err
    monkeypatch.delenv("ATTUNE_EMOTION__BACKEND")
    with pytest.raises(SystemExit) as stop:  # argparse: one usage line, exit status 2
        run_agent.main(["analyze", "--demo", "--backend", "nonsense"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "--backend" in err and "nonsense" in err and "prosodic" in err
