"""Configuration: ``config.yaml`` loaded once into frozen dataclasses, with environment overrides.

Every setting is a dataclass field whose metadata gives its allowed range or choices. Loading rejects unknown
keys (a removed one with what replaced it: ``REMOVED_KEYS``), wrong types and out-of-range values with a
``ConfigError`` naming the key. An environment variable ``ATTUNE_<SECTION>__<KEY>`` (for example
``ATTUNE_EMOTION__BACKEND=prosodic``) overrides a key; its value is parsed as YAML, so ``ATTUNE_LLM__MAX_TOKENS=60``
is an int.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from attune.core import catalog
from attune.core.errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent  # the checkout's root (in a pip install: site-packages, which has no config.yaml)
DEFAULT_CONFIG_PATH = REPO_ROOT / "config.yaml"
ENV_PREFIX = "ATTUNE_"
CONFIG_ENV = "ATTUNE_CONFIG"  # a config file to use when no --config is given
# Keys a config file may still set from an earlier version: an error like any unknown key (a setting that is
# silently ignored would leave its user believing it works), but one that says what to do instead.
REMOVED_KEYS = {
    "agent.openings": "the openings were replaced by agent.acknowledgements (on by default), which never change "
                      "the reply's words; delete the key",
}


def _xdg(variable: str, fallback: str) -> Path:
    return Path(os.environ.get(variable) or os.path.expanduser(fallback)) / "attune"


def data_home() -> Path:
    """``$XDG_DATA_HOME/attune`` (``~/.local/share/attune``): models and personas, shared by every clone."""
    return _xdg("XDG_DATA_HOME", "~/.local/share")


def cache_home() -> Path:
    """``$XDG_CACHE_HOME/attune`` (``~/.cache/attune``): regenerable data (speech cache, downloads, wheels)."""
    return _xdg("XDG_CACHE_HOME", "~/.cache")


def config_home() -> Path:
    """``$XDG_CONFIG_HOME/attune`` (``~/.config/attune``): where a pip user's ``config.yaml`` is looked for."""
    return _xdg("XDG_CONFIG_HOME", "~/.config")


def default_config_path() -> Path | None:
    """The config file used without ``--config``: ``$ATTUNE_CONFIG``, the checkout's ``config.yaml``, then
    ``$XDG_CONFIG_HOME/attune/config.yaml``; None when there is none (all defaults)."""
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        return Path(explicit)
    for candidate in (DEFAULT_CONFIG_PATH, config_home() / "config.yaml"):
        if candidate.is_file():
            return candidate
    return None


def setting(default: Any, *, lo: float | None = None, hi: float | None = None,
            choices: tuple[str, ...] | None = None) -> Any:
    """A config field with an optional inclusive range or a fixed set of choices."""
    meta = {"lo": lo, "hi": hi, "choices": choices}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class LoggingConfig:
    level: str = setting("INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    trace_path: str = setting("")  # JSON-lines file for per-turn latency traces; empty = off


@dataclass(frozen=True)
class EmotionConfig:
    backend: str = setting("hybrid", choices=catalog.names("emotion"))  # one that cannot load here -> prosodic
    window_s: float = setting(1.0, lo=0.25, hi=10.0)  # analysis window of the streaming detector
    hop_s: float = setting(0.5, lo=0.05, hi=5.0)  # how often a streaming estimate is produced
    history_size: int = setting(100, lo=1, hi=10000)  # results kept for get_history()
    trajectory_window_s: float = setting(300.0, lo=10.0, hi=3600.0)  # span of get_trajectory()
    min_duration_s: float = setting(0.1, lo=0.02, hi=2.0)  # shorter audio is flagged too short
    model_path: str = setting("")  # weights for learned backends (emotion2vec); empty = not configured
    # Whisper encoder of the whisper/hybrid heads: tiny.en_l2 reads tiny.en's second block (a pass of its own per
    # turn, int8 over the clip: ~13 ms of CPU, and better heard); tiny.en and base reuse the ASR's last-layer pass
    # (docs/BENCHMARKS.md, issue 20, third round)
    encoder: str = setting("tiny.en_l2", choices=("tiny.en", "base", "tiny.en_l2"))
    # hybrid: the neural head's share of the fusion; 0.75 chosen by leave-one-speaker-out with tiny.en_l2 on the
    # talker's rows: German 7-class and sad recall both above their targets (0.65 left German at 0.760), the phone,
    # room and babble sets and arousal gain (docs/BENCHMARKS.md, issue 20, fifth round, "The weight, decided")
    hybrid_neural_weight: float = setting(0.75, lo=0.0, hi=1.0)


@dataclass(frozen=True)
class ModelsConfig:
    cache_dir: str = setting("")  # assembled model files; empty = Config.models_dir() (XDG data, or ./models)


@dataclass(frozen=True)
class PipelineConfig:
    vad: str = setting("silero", choices=catalog.names("vad"))  # voice activity detector; silero unusable -> energy
    vad_threshold: float = setting(0.5, lo=0.05, hi=0.95)  # speech probability that counts as speech
    preroll_ms: int = setting(300, lo=0, hi=2000)  # audio kept before detected speech
    min_speech_ms: int = setting(160, lo=32, hi=2000)  # voiced time before a turn starts
    speculate_silence_ms: int = setting(96, lo=32, hi=2000)  # silence that starts speculative ASR + prompting
    end_of_turn_silence_ms: int = setting(400, lo=100, hi=5000)  # silence that ends (commits) a turn
    max_turn_s: float = setting(30.0, lo=1.0, hi=300.0)  # a longer turn is cut here
    barge_in_min_ms: int = setting(300, lo=50, hi=3000)  # user speech over the agent that interrupts it
    output_sample_rate: int = setting(24000, lo=8000, hi=48000)  # Hz of reply audio events
    output_lookahead_ms: int = setting(60, lo=0, hi=1000)  # reply audio sent ahead of real time
    first_clause_min_words: int = setting(1, lo=1, hi=50)  # words before the first clause may be spoken
    hold_llm_for_first_audio: bool = setting(True)  # pause LLM generation while the first clause is synthesised
    end_of_turn_model: str = setting("smart-turn", choices=("smart-turn", "none"))  # none: silence alone decides
    eot_complete_ms: int = setting(200, lo=32, hi=5000)  # silence when the model (P >= 0.9) and words agree: done
    eot_likely_ms: int = setting(800, lo=32, hi=5000)  # silence when the model is less sure (0.5 <= P < 0.9)
    eot_unfinished_ms: int = setting(1200, lo=100, hi=10000)  # silence when the words say "going on"
    eot_worded_ms: int = setting(800, lo=32, hi=10000)  # silence when the model doubts (P < 0.5) finished words
    eot_sounded_ms: int = setting(450, lo=32, hi=10000)  # at most this for finished words the model is unsure of,
    # when the reply's first sound is ready (the person's voice stops it and the turn goes on as one)
    partial_asr: bool = setting(True)  # transcribe while the user speaks (partial transcripts, settled words)
    partial_step_ms: int = setting(300, lo=100, hi=5000)  # new speech between two partial passes
    prefill_llm: bool = setting(True)  # evaluate the settled words into the LLM's KV cache while the user speaks
    queue_size: int = setting(64, lo=4, hi=4096)  # bound of every inter-stage queue
    event_queue_size: int = setting(2048, lo=16, hi=65536)  # bound of the session's event queue


@dataclass(frozen=True)
class AgentConfig:
    name: str = setting("Attune")  # the agent's name
    persona: str = setting("")  # persona text for the system prompt; empty = the built-in persona
    history_max_tokens: int = setting(1024, lo=0, hi=32768)  # conversation memory bound (estimated tokens)
    reply_tag: bool = setting(False)  # ask the LLM to open with an [emotion] tag (parsed and stripped)
    fuse_words: bool = setting(True)  # take the turn's valence mostly from the transcript when it carries sentiment
    acknowledgements: bool = setting(True)  # a short vocal response ("Oh no.", "Mm.") before a slow reply
    voice_note_first: bool = setting(True)  # the voice note and tone before the words: prefilled as the user speaks


@dataclass(frozen=True)
class ASRConfig:
    backend: str = setting("auto", choices=("auto", *catalog.names("asr")))  # auto: mlx-whisper on Apple Silicon
    model: str = setting("tiny.en", choices=("tiny.en", "base"))  # Whisper size (embedded models)
    compute_type: str = setting("int8", choices=("int8", "int8_float32", "float32"))  # CTranslate2 precision
    beam_size: int = setting(1, lo=1, hi=10)  # 1 = greedy decoding, fastest
    threads: int = setting(2, lo=1, hi=64)  # CPU threads for inference
    language: str = setting("en")  # language code passed to Whisper
    encoder_window_s: float = setting(6.0, lo=2.0, hi=30.0)  # shortest encoder window (faster-whisper); 30 = stock


@dataclass(frozen=True)
class LLMConfig:
    backend: str = setting("llama-cpp", choices=catalog.names("llm"))
    model: str = setting("qwen2.5-1.5b", choices=("qwen2.5-1.5b", "qwen2.5-0.5b"))  # embedded GGUF (llama-cpp)
    model_path: str = setting("")  # a GGUF of your own for llama-cpp; empty = the embedded model above
    n_ctx: int = setting(2048, lo=256, hi=32768)  # context window in tokens (llama-cpp)
    threads: int = setting(2, lo=1, hi=64)  # CPU threads (llama-cpp)
    prefix_cache: bool = setting(True)  # keep the KV state of the unchanging prompt prefix between turns
    repack: bool = setting(True)  # llama-cpp: weights repacked for llama.cpp's CPU kernels (faster; same RSS)
    max_tokens: int = setting(96, lo=1, hi=4096)  # longest reply, in tokens
    temperature: float = setting(0.7, lo=0.0, hi=2.0)
    seed: int = setting(0, lo=0, hi=2**31 - 1)  # sampling seed (llama-cpp): the same seed repeats a reply
    timeout_s: float = setting(30.0, lo=0.5, hi=600.0)  # network backends: connect and between-chunk timeout
    ollama_host: str = setting("http://127.0.0.1:11434")
    ollama_model: str = setting("qwen2.5:1.5b-instruct")
    openai_base_url: str = setting("http://127.0.0.1:8000/v1")  # vLLM, llama.cpp server, LM Studio
    openai_model: str = setting("qwen2.5-1.5b-instruct")
    openai_api_key_env: str = setting("OPENAI_API_KEY")  # environment variable holding the key (may be unset)


@dataclass(frozen=True)
class TTSConfig:
    tier: str = setting("high", choices=("highest", "high", "medium", "fast"))  # quality tier of the router
    provider: str = setting("", choices=("", *catalog.names("tts")))  # force one provider; empty = the tier's chain
    piper_model: str = setting("")  # a Piper .onnx voice of your own; empty = the embedded joe voice
    espeak_voice: str = setting("en-us")
    csm_url: str = setting("http://127.0.0.1:8001")  # the CSM service on a GPU host
    csm_speaker: int = setting(0, lo=0, hi=64)
    timeout_s: float = setting(30.0, lo=0.5, hi=600.0)  # CSM request timeout
    failure_threshold: int = setting(3, lo=1, hi=100)  # consecutive failures before a provider cools down
    cooldown_s: float = setting(30.0, lo=0.0, hi=3600.0)  # how long a failing provider is skipped


@dataclass(frozen=True)
class SpeechCacheConfig:
    enabled: bool = setting(True)  # keep finished stock speech on disk (off: in memory only, per process)
    dir: str = setting("")  # entry directory; empty = ${XDG_CACHE_HOME:-~/.cache}/attune/speech
    max_mb: float = setting(100.0, lo=1.0, hi=100000.0)  # size cap of the directory; least recently used go first
    ttl_s: float = setting(86400.0, lo=1.0, hi=31536000.0)  # an entry's life from its rendering
    memory_items: int = setting(256, lo=1, hi=100000)  # entries of the in-memory front
    memory_mb: float = setting(4.0, lo=0.1, hi=100000.0)  # audio held by the in-memory front at most
    prewarm: bool = setting(True)  # render the acknowledgements (and the kiosk's greeting) at start-up
    acknowledgements: list[str] = setting(["Mm-hm.", "I see.", "Okay.", "Go on.", "Right."])
    acknowledgement_emotions: list[str] = setting(["neutral", "calm", "affectionate"])  # each phrase in each
    reply_sentences: bool = setting(True)  # look every reply sentence up; store the short ones (<= 4 words)


@dataclass(frozen=True)
class ExpressionConfig:
    strategy: str = setting("complement", choices=("match", "complement", "amplify", "neutral"))
    apply_prosody: bool = setting(True)  # run the prosody DSP on synthesised speech
    references_dir: str = setting("")  # the emotion reference bank; empty = the one in the package
    # TTS provider of `speak`, `build-references`, `bench-prosody`; "" = the tts tier's chain
    tts: str = setting("piper", choices=("", *catalog.names("tts")))


@dataclass(frozen=True)
class ServerConfig:
    host: str = setting("127.0.0.1")  # address `serve` binds; a non-loopback one needs a token (token_env)
    port: int = setting(8765, lo=0, hi=65535)  # one port: /ws, the web client at /, /health, /metrics
    token_env: str = setting("ATTUNE_TOKENS")  # environment variable with the accepted tokens, comma-separated
    origins: list[str] = setting([])  # browser origins allowed besides the server's own; ["*"] = any
    # Host names served besides the bound address, localhost, 127.0.0.1 and [::1] (and the hosts of `origins`);
    # ".example.com" = it and its subdomains; ["*"] = any (behind a proxy that checks Host itself)
    allowed_hosts: list[str] = setting([])
    max_sessions: int = setting(64, lo=1, hi=10000)  # concurrent WebSocket sessions; one more gets HTTP 503
    max_message_bytes: int = setting(131072, lo=1024, hi=16777216)  # larger messages close the socket (1009)
    realtime_max_message_bytes: int = setting(4194304, lo=65536, hi=16777216)  # /v1/realtime's (base64 audio)
    idle_timeout_s: float = setting(120.0, lo=1.0, hi=86400.0)  # no message from the client for this long: close
    max_session_s: float = setting(3600.0, lo=1.0, hi=604800.0)  # a session's longest life
    outbox_max_s: float = setting(10.0, lo=0.5, hi=600.0)  # s of reply audio buffered for a slow client, then 1008
    outbox_max_events: int = setting(4096, lo=16, hi=1000000)  # events buffered for a slow client, then 1008
    shutdown_grace_s: float = setting(10.0, lo=0.0, hi=600.0)  # on SIGTERM: time for replies to finish
    llm_slots: int = setting(1, lo=1, hi=64)  # concurrent LLM generations shared by all sessions (queued fairly)
    # Turns waiting for or answered by the LLM at once, all sessions together; one more is refused at once
    # (error server_busy, spoken) and new sessions get HTTP 503 + Retry-After while it is so. 0 = derived: as
    # many as the LLM's measured speed serves within max_queue_wait_s
    max_replying: int = setting(0, lo=0, hi=10000)
    # with max_replying 0: the longest estimated wait; 0 = a lone session's voice-to-voice (estimated at start-up,
    # then measured on replies served alone), so the last admitted hears its reply within twice a lone session's
    max_queue_wait_s: float = setting(0.0, lo=0.0, hi=600.0)
    # Workers of one host sharing one LLM server: a file (SQLite) where they count their replies together, so
    # max_replying (or the derived capacity) is for all of them (docs/DEPLOY.md); "" = this process alone
    admission_ledger: str = setting("")
    # s a reply's generation may go without a new piece before its slot is given up (llm_failed); 0 = derived:
    # 3 mean holds (at least 2 s), times the replies a shared server serves first for the first piece
    llm_stall_s: float = setting(0.0, lo=0.0, hi=600.0)


@dataclass(frozen=True)
class PersonasConfig:
    data_dir: str = setting("")  # personas.sqlite3, samples/, voices/; empty = Config.personas_dir()
    default_id: str = setting("")  # the stored persona of sessions (serve, kiosk) that choose none; "" = this config
    seed: list[dict[str, Any]] = setting([])  # more personas (persona API bodies) stored when the database is new
    max_sample_bytes: int = setting(10485760, lo=65536, hi=268435456)  # largest voice-sample upload (413 above)
    min_snr_db: float = setting(15.0, lo=0.0, hi=60.0)  # a voice sample's speech-to-noise estimate must reach this
    min_speech_fraction: float = setting(0.2, lo=0.0, hi=1.0)  # share of a sample the VAD must hear as speech


@dataclass(frozen=True)
class LocalAudioConfig:
    input_device: str = setting("")  # microphone: device index or part of its name; empty = the system default
    output_device: str = setting("")  # speaker: device index or part of its name; empty = the system default
    echo_cancellation: str = setting("webrtc", choices=("webrtc", "off"))  # remove the agent's voice from the mic
    echo_delay_ms: int = setting(0, lo=0, hi=500)  # speaker-to-mic delay hint for the canceller; 0 = estimate it
    echo_tail_ms: int = setting(300, lo=0, hi=3000)  # after the agent's audio ends, kept out of the emotion window
    device_timeout_s: float = setting(2.0, lo=0.2, hi=60.0)  # no microphone frame for this long = device lost


@dataclass(frozen=True)
class KioskConfig:
    greeting: str = setting("Hello, I'm here if you'd like to talk.")  # spoken at start and after a reset; "" = none
    idle_reset_s: float = setting(60.0, lo=1.0, hi=86400.0)  # quiet time after a conversation before it is reset
    backoff_initial_s: float = setting(1.0, lo=0.01, hi=60.0)  # first wait before reopening a device or engine
    backoff_max_s: float = setting(30.0, lo=0.01, hi=3600.0)  # longest wait between retries (doubling up to it)
    failed_turns_before_rebuild: int = setting(3, lo=1, hi=100)  # consecutive failed replies that reload engines
    health_host: str = setting("127.0.0.1")  # address of the kiosk's GET /health
    health_port: int = setting(8766, lo=0, hi=65535)  # port of GET /health; 0 = no health endpoint


@dataclass(frozen=True)
class Config:
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    emotion: EmotionConfig = field(default_factory=EmotionConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    asr: ASRConfig = field(default_factory=ASRConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    tts: TTSConfig = field(default_factory=TTSConfig)
    speech_cache: SpeechCacheConfig = field(default_factory=SpeechCacheConfig)
    expression: ExpressionConfig = field(default_factory=ExpressionConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    personas: PersonasConfig = field(default_factory=PersonasConfig)
    local_audio: LocalAudioConfig = field(default_factory=LocalAudioConfig)
    kiosk: KioskConfig = field(default_factory=KioskConfig)

    # The directory of the config file this was loaded from ("" for Config() and a run without a file): relative
    # paths in the settings are taken from it. Not a setting: no YAML key, no environment override.
    base_dir: str = field(default="", compare=False, repr=False, metadata={"internal": True})

    def base(self) -> Path:
        """Where relative paths start: the config file's directory; without one, the checkout this package runs
        from (it has a config.yaml), else the working directory."""
        if self.base_dir:
            return Path(self.base_dir)
        return REPO_ROOT if DEFAULT_CONFIG_PATH.is_file() else Path.cwd()

    def resolve_path(self, value: str) -> Path:
        """A path setting made absolute: ``~`` expanded, relative values taken from ``base()``."""
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else self.base() / p

    def models_dir(self) -> Path:
        """``models.cache_dir``; empty: ``models/`` beside the config file where an earlier install put it, else
        ``$XDG_DATA_HOME/attune/models`` (one copy for every clone and for a pip install)."""
        if self.models.cache_dir:
            return self.resolve_path(self.models.cache_dir)
        legacy = self.base() / "models"
        return legacy if legacy.is_dir() else data_home() / "models"

    def personas_dir(self) -> Path:
        """``personas.data_dir``; empty: ``data/`` beside the config file where it holds a persona database (an
        earlier install's: found, never lost), else ``$XDG_DATA_HOME/attune``."""
        if self.personas.data_dir:
            return self.resolve_path(self.personas.data_dir)
        legacy = self.base() / "data"
        return legacy if (legacy / "personas.sqlite3").is_file() else data_home()

    def references_dir(self) -> Path:
        """``expression.references_dir``; empty: the reference bank shipped in the package."""
        c = self.expression.references_dir
        return self.resolve_path(c) if c else PACKAGE_DIR / "references"


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))  # probe: typing constructs (unions, generics) have no __name__


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"config key '{key}': expected {tp}, got {value!r}")
    if origin is list or origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        items = [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{key}': expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}': expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"config key '{key}': expected a string, got {value!r}")
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    raise ConfigError(f"config key '{key}': unsupported type {_type_name(tp)}")


def _check_limits(value: Any, meta: Mapping[str, Any], key: str) -> None:
    lo, hi, choices = meta.get("lo"), meta.get("hi"), meta.get("choices")
    if choices is not None and value not in choices:
        shown = ", ".join('"" (empty)' if c == "" else str(c) for c in choices)
        raise ConfigError(f"config key '{key}': {value!r} is not one of {shown}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ConfigError(f"config key '{key}': {value} is outside the allowed range {lo}..{hi}")


def _build(cls: Any, data: Any, prefix: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"config key '{prefix or '<root>'}': expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        for name in unknown:
            if f"{where}{name}" in REMOVED_KEYS:
                raise ConfigError(f"config key '{where}{name}' was removed: {REMOVED_KEYS[where + name]}")
        raise ConfigError(f"unknown config key '{where}{unknown[0]}' (known: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name in data:
            value = _coerce(data[name], hints[name], key)
        elif f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:  # pragma: no cover - every field has a default
            raise ConfigError(f"config key '{key}' is required")
        if not dataclasses.is_dataclass(value):
            _check_limits(value, f.metadata, key)
        kwargs[name] = value
    return cls(**kwargs)


# ATTUNE_<NAME> variables that are not overrides although NAME is a section: setup's list of models to install.
NOT_OVERRIDES = frozenset({"ATTUNE_MODELS"})


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """The nested overrides given by ``ATTUNE_<SECTION>__<KEY>`` variables. ``ATTUNE_<SECTION>`` alone (say
    ``ATTUNE_LLM=5``) is a ConfigError naming the form to use, not silently ignored; other ``ATTUNE_*`` names
    without ``__`` are left alone (they belong to scripts and tests)."""
    sections = {f.name for f in dataclasses.fields(Config) if not f.metadata.get("internal")}
    out: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        if "__" not in name:
            section = name[len(ENV_PREFIX):].lower()
            if section in sections and name not in NOT_OVERRIDES:
                raise ConfigError(f"environment variable {name}={raw!r} cannot replace the whole '{section}' "
                                  f"section; set one key with {name}__<KEY>, e.g. {name}__{_first_key(section)}")
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        if any(not p for p in path):
            raise ConfigError(f"environment variable {name}: empty key segment")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"environment variable {name}: cannot parse {raw!r}: {exc}") from exc
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment variable {name} conflicts with another override")
        node[path[-1]] = value
    return out


def _first_key(section: str) -> str:
    cls = typing.get_type_hints(Config)[section]
    return dataclasses.fields(cls)[0].name.upper()


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for k, v in extra.items():
        if isinstance(v, Mapping) and isinstance(merged.get(k), Mapping):
            merged[k] = _merge(dict(merged[k]), v)
        else:
            merged[k] = v
    return merged


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None,
                overrides: Mapping[str, Any] | None = None) -> Config:
    """Load ``path`` (default: ``default_config_path()``), apply environment and explicit overrides, validate.
    Relative paths in it are taken from its directory (``Config.base_dir``).

    No default file means all defaults; a missing explicit path (or ``$ATTUNE_CONFIG``) is an error.
    """
    explicit = path is not None or bool((environ if environ is not None else os.environ).get(CONFIG_ENV))
    found = Path(path) if path is not None else default_config_path()
    cfg_path = found if found is not None else DEFAULT_CONFIG_PATH
    data: Any = {}
    if cfg_path.is_file():
        try:
            data = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{cfg_path}: not valid YAML: {exc}") from exc
    elif explicit:
        raise ConfigError(f"config file not found: {cfg_path}")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{cfg_path}: the top level must be a mapping of sections")
    data = _merge(dict(data), _env_overrides(os.environ if environ is None else environ))
    if overrides:
        data = _merge(data, overrides)
    config: Config = _build(Config, data, "")
    if cfg_path.is_file():
        config = dataclasses.replace(config, base_dir=str(cfg_path.resolve().parent))
    return config
