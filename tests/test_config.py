"""Config loading: defaults, the shipped config.yaml, validation errors that name the key, env overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from attune.config import DEFAULT_CONFIG_PATH, Config, load_config
from attune.core.errors import ConfigError

LAYER = "unit"  # STYLE.md layer 1: a pure core, loop-free, no models


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_shipped_config_loads_and_matches_defaults() -> None:
    cfg = load_config(DEFAULT_CONFIG_PATH, environ={})
    assert cfg == Config()  # config.yaml documents the defaults; they must not drift apart


def test_config_is_frozen() -> None:
    cfg = load_config(environ={})
    with pytest.raises(AttributeError):
        cfg.emotion.backend = "x"  # type: ignore[misc]


def test_unknown_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="emotion.bakend"):
        load_config(write(tmp_path, "emotion:\n  bakend: prosodic\n"), environ={})


def test_unknown_section_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'emoshun'"):
        load_config(write(tmp_path, "emoshun: {}\n"), environ={})


def test_wrong_type_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="emotion.hop_s"):
        load_config(write(tmp_path, "emotion:\n  hop_s: fast\n"), environ={})


def test_out_of_range_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"emotion.window_s.*range"):
        load_config(write(tmp_path, "emotion:\n  window_s: 0.0\n"), environ={})


def test_bad_choice_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="logging.level"):
        load_config(write(tmp_path, "logging:\n  level: LOUD\n"), environ={})


def test_env_override_wins_and_is_typed(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "emotion:\n  hop_s: 0.5\n"),
                      environ={"ATTUNE_EMOTION__HOP_S": "0.25", "ATTUNE_EMOTION__BACKEND": "emotion2vec"})
    assert cfg.emotion.hop_s == 0.25
    assert cfg.emotion.backend == "emotion2vec"


@pytest.mark.parametrize("variable, key", [
    ("ATTUNE_EMOTION__BACKEND", "emotion.backend"), ("ATTUNE_ASR__BACKEND", "asr.backend"),
    ("ATTUNE_LLM__BACKEND", "llm.backend"), ("ATTUNE_TTS__PROVIDER", "tts.provider"),
    ("ATTUNE_EXPRESSION__TTS", "expression.tts"), ("ATTUNE_PIPELINE__VAD", "pipeline.vad"),
])
def test_a_backend_name_not_in_the_catalogue_stops_loading_with_the_key_named(variable: str, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"'{key}': 'bogus' is not one of"):
        load_config(environ={variable: "bogus"})


def test_every_catalogued_backend_name_is_accepted() -> None:
    from attune.core import catalog

    for kind, key in catalog.CONFIG_KEYS.items():
        section, field = key.split(".")
        for name in catalog.names(kind):
            assert getattr(getattr(load_config(environ={f"ATTUNE_{section.upper()}__{field.upper()}": name}),
                                   section), field) == name


def test_env_override_is_validated() -> None:
    with pytest.raises(ConfigError, match="emotion.hop_s"):
        load_config(environ={"ATTUNE_EMOTION__HOP_S": "99"})


def test_env_override_unknown_key_is_named() -> None:
    with pytest.raises(ConfigError, match="emotion.nope"):
        load_config(environ={"ATTUNE_EMOTION__NOPE": "1"})


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml", environ={})


def test_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "emotion: [unclosed\n"), environ={})


def test_int_where_float_expected_is_accepted(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "emotion:\n  window_s: 2\n"), environ={})
    assert cfg.emotion.window_s == 2.0 and isinstance(cfg.emotion.window_s, float)


def test_bool_is_not_an_int(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="emotion.history_size"):
        load_config(write(tmp_path, "emotion:\n  history_size: true\n"), environ={})


# -- where files live: the config file's folder for relative paths, XDG data by default, old places still found --

def test_relative_paths_start_at_the_config_files_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir("/")
    conf = tmp_path / "site"
    conf.mkdir()
    cfg = load_config(write(conf, "models:\n  cache_dir: m\nlogging:\n  trace_path: t.jsonl\n"), environ={})
    assert cfg.models_dir() == conf / "m" and cfg.resolve_path("t.jsonl") == conf / "t.jsonl"
    assert cfg.resolve_path("/abs/x") == Path("/abs/x") and cfg == Config(models=cfg.models, logging=cfg.logging)


def test_models_and_personas_go_to_xdg_data_unless_an_earlier_install_is_beside_the_config(
        tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    conf = tmp_path / "clone"
    conf.mkdir()
    cfg = load_config(write(conf, "logging:\n  level: INFO\n"), environ={})
    assert cfg.models_dir() == tmp_path / "xdg" / "attune" / "models"
    assert cfg.personas_dir() == tmp_path / "xdg" / "attune"
    (conf / "models").mkdir()
    (conf / "data").mkdir()
    assert cfg.personas_dir() == tmp_path / "xdg" / "attune"  # an empty data/ is not a persona database
    (conf / "data" / "personas.sqlite3").write_bytes(b"")
    assert cfg.models_dir() == conf / "models" and cfg.personas_dir() == conf / "data"  # found, never lost
    assert (cfg.references_dir() / "manifest.json").is_file()  # the bank ships inside the package


def test_attune_config_names_the_default_file_and_a_missing_one_is_an_error(tmp_path: Path, monkeypatch) -> None:
    path = write(tmp_path, "emotion:\n  backend: prosodic\n")
    monkeypatch.setenv("ATTUNE_CONFIG", str(path))
    cfg = load_config()
    assert cfg.emotion.backend == "prosodic" and cfg.base_dir == str(tmp_path)
    monkeypatch.setenv("ATTUNE_CONFIG", str(tmp_path / "none.yaml"))
    with pytest.raises(ConfigError, match="not found"):
        load_config()
    with pytest.raises(ConfigError, match="unknown config key 'base_dir'"):
        load_config(write(tmp_path, "base_dir: /x\n"), environ={})


def test_a_removed_key_is_an_error_that_says_what_replaced_it(tmp_path: Path) -> None:
    """An old config file that still turns the openings on is refused, not silently run without them."""
    with pytest.raises(ConfigError, match=r"'agent\.openings' was removed: .*agent\.acknowledgements"):
        load_config(write(tmp_path, "agent:\n  openings: true\n"), environ={})
    with pytest.raises(ConfigError, match=r"'agent\.openings' was removed"):
        load_config(write(tmp_path, "agent: {}\n"), environ={"ATTUNE_AGENT__OPENINGS": "false"})
