"""``create_llm(config)``: the one place an LLM backend is chosen, through a lazy name -> factory table."""

from __future__ import annotations

from typing import Any

from attune.backends.base import BackendSpec, LLMBackend
from attune.config import Config
from attune.core.errors import BackendUnavailable
from attune.models import model_path

LLM_BACKENDS: dict[str, BackendSpec] = {
    "llama-cpp": BackendSpec("attune.backends.llm.llama_cpp_backend:LlamaCppLLM",
                             install_hint="bash scripts/setup.sh", description="in-process GGUF (offline)"),
    "ollama": BackendSpec("attune.backends.llm.ollama_backend:OllamaLLM", install_hint="pip install ollama==0.6.3",
                          description="an Ollama server"),
    "openai": BackendSpec("attune.backends.llm.openai_backend:OpenAICompatLLM",
                          install_hint="pip install httpx==0.28.1", description="vLLM / llama.cpp server / LM Studio"),
}


def create_llm(config: Config, **overrides: Any) -> LLMBackend:
    """Build the configured LLM backend; ``overrides`` replace ``config.llm`` keys (e.g. ``model=...``)."""
    s = {**config.llm.__dict__, **overrides}
    name = s["backend"]
    if name not in LLM_BACKENDS:
        raise BackendUnavailable(f"unknown LLM backend '{name}' (known: {', '.join(LLM_BACKENDS)})")
    factory = LLM_BACKENDS[name].load()
    backend: LLMBackend
    if name == "llama-cpp":
        path = (config.resolve_path(s["model_path"]) if s["model_path"]
                else model_path(config.resolve_path(config.models.cache_dir), s["model"]))
        backend = factory(path, n_ctx=s["n_ctx"], threads=s["threads"], prefix_cache=s["prefix_cache"])
    elif name == "ollama":
        backend = factory(s["ollama_host"], s["ollama_model"], timeout_s=s["timeout_s"])
    else:
        backend = factory(s["openai_base_url"], s["openai_model"], api_key_env=s["openai_api_key_env"],
                          timeout_s=s["timeout_s"])
    return backend
