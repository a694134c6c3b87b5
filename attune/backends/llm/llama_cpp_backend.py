"""Qwen2.5 GGUF in process through llama-cpp-python: streamed, cancellable, with prompt-prefix KV reuse.

``llama_cpp.Llama.generate`` keeps the KV state of the last evaluated tokens and, on the next call, evaluates
only the tokens after the longest common prefix. The persona/system text leads every prompt, so with
``prefix_cache`` on each turn only evaluates what is new; ``prime()`` evaluates that prefix ahead of the first
turn. With it off, the state is reset before each turn (the baseline ``bench-llm`` compares against).

Memory and speed: the GGUF is memory-mapped. llama.cpp's CPU backend repacks the Q4_K weights into an
anonymous copy laid out for its AVX2 kernels (``repack``, on by default): on an AVX2-only build that made the
first token of a 13-17 token tail ~20 % sooner and generation ~20 % faster, and generation ~15 % faster on an
AVX-512 one (docs/BENCHMARKS.md, "Weight repacking"). Repacking alone keeps both copies resident (+595 MiB for
the 1.5B), so the file's pages of every tensor are handed back as the load goes (``_LoadRelease``) and once it
has ended: those repacked are never read from the file again, and the first evaluation faults back from the page
cache the ones read in place (the Q6_K rows and the output matrix), so the RSS is what it was without repacking
and so is the load's peak (``scripts/memory-breakdown.py``: 1292 against 1310 MiB in the LLM's step; 1907 with
both copies whole).
The KV cache is 8-bit (q8_0, which needs flash attention; half the f16 cache) and prompts are evaluated in
batches of ``N_BATCH`` tokens, which bounds llama.cpp's compute buffer. llama.cpp's loader touches every page of
the file, the input embedding table too, although a reply reads only its prompt's rows of it (Qwen2.5 keeps a
separate output matrix): its pages are handed back after the load and after every reply (125 MiB for the 1.5B;
``gguf.row_lookup_ranges``), and the rows a turn reads come back from the page cache.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from attune.backends.base import ChatMessage, Completion, Gate, LLMCapabilities, TokenStream
from attune.backends.llm.gguf import GGUFError, row_lookup_ranges, weight_ranges
from attune.backends.llm.llm_common import check_messages, stream_from_thread
from attune.config import Config
from attune.core.errors import BackendUnavailable, LLMError
from attune.core.process_memory import drop_pages, mapped_pages
from attune.models import model_path as embedded_model_path

CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
EVAL_CHUNK = 64  # prompt tokens evaluated between two looks at the stop flag (one pass over the weights each)
_IM_END_TAIL = 2  # tokens a rendered message ends with: "<|im_end|>" and the newline after it
INSTALL_HINT = "bash scripts/setup.sh  (builds and caches the llama-cpp-python==0.3.36 wheel)"
N_BATCH = 128  # prompt tokens per llama.cpp batch: its compute buffer grows with it (64: cold prompts 19% slower)
GGML_TYPE_Q8_0 = 8  # ggml's type id of q8_0, for the KV cache
_PARAMS_LOCK = threading.Lock()  # model loads that swap llama-cpp-python's default-parameter function


LOAD_RELEASE_STEP = 0.1  # fraction of the load between two hand-backs of the mapped file's pages


@contextlib.contextmanager
def _model_params(*, repack: bool, on_progress: Callable[[float], None] | None = None) -> Iterator[None]:
    """While a ``Llama`` is built, its model parameters get ``use_extra_bufts = repack`` and, with
    ``on_progress``, a progress callback (the fraction of the weights loaded).

    llama-cpp-python 0.3.36 takes no keyword for llama.cpp's ``use_extra_bufts`` (weight repacking) nor its
    progress callback, but ``Llama.__init__`` starts from ``llama_cpp.llama_model_default_params()``; that function
    is wrapped for the duration of the load (under a lock, so two loads never see each other's wrapper)."""
    import llama_cpp.llama_cpp as lib

    callback = None
    if on_progress is not None:
        def progress(fraction: float, _user_data: Any) -> bool:
            on_progress(fraction)
            return True  # go on loading

        callback = lib.llama_progress_callback(progress)  # referenced here until the load has ended

    with _PARAMS_LOCK:
        original = lib.llama_model_default_params

        def params() -> Any:
            p = original()
            if hasattr(p, "use_extra_bufts"):  # probe: a field of newer llama.cpp builds only
                p.use_extra_bufts = repack
            if callback is not None:
                p.progress_callback = callback
            return p

        lib.llama_model_default_params = params
        try:
            yield
        finally:
            lib.llama_model_default_params = original


def _weights(path: Path) -> list[tuple[int, int]]:
    try:
        return weight_ranges(path)
    except (GGUFError, OSError):
        return []


class _LoadRelease:
    """Hands the mapped file's pages back every ``LOAD_RELEASE_STEP`` of a repacking load, so the file's pages
    and the repacked copy are never both resident whole (the load's peak was ~600 MiB above the RSS after it for
    the 1.5B). Pages still to be read fault back in from the page cache: dropping one early costs a re-read,
    never a wrong weight."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.weights = _weights(path)
        self.next = LOAD_RELEASE_STEP
        self.released = 0

    def __call__(self, fraction: float) -> None:
        if fraction >= self.next:
            self.next = fraction + LOAD_RELEASE_STEP
            self.released = drop_pages(mapped_pages(self.path, self.weights))


class LlamaCppLLM:
    name = "llama-cpp"
    capabilities = LLMCapabilities(prefill=True, replay=True)

    def __init__(self, model_path: Path, *, n_ctx: int = 2048, threads: int = 2, prefix_cache: bool = True,
                 seed: int = 0, repack: bool = True) -> None:
        """``repack=True`` lets llama.cpp copy the weights into its repacked CPU layout, then hands the mapped
        file's pages back (the RSS stays that of the weights in use); False reads every weight in place."""
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise BackendUnavailable(f"llama-cpp-python is not installed: {exc}", install_hint=INSTALL_HINT,
                                     backend=self.name) from exc
        if not Path(model_path).is_file():
            raise BackendUnavailable(f"GGUF model not found: {model_path}",
                                     install_hint=".venv/bin/python -m attune.models install", backend=self.name)
        release = _LoadRelease(Path(model_path)) if repack else None
        try:
            with _model_params(repack=repack, on_progress=release):
                self._llm: Any = Llama(model_path=str(model_path), n_ctx=n_ctx, n_threads=threads,
                                       n_threads_batch=threads, n_batch=N_BATCH, n_ubatch=N_BATCH,
                                       flash_attn=True, type_k=GGML_TYPE_Q8_0, type_v=GGML_TYPE_Q8_0,
                                       seed=seed, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise LLMError(f"cannot load {model_path}: {exc}", backend=self.name) from exc
        self.model_path = Path(model_path)
        self.n_ctx = n_ctx
        self.prefix_cache = prefix_cache
        self._lock = threading.Lock()  # one generation at a time: the context is not thread-safe
        self._formatters: dict[bool, Any] = {}
        try:
            ranges = row_lookup_ranges(self.model_path)
        except (GGUFError, OSError):
            ranges = []
        self._lookup_pages = mapped_pages(self.model_path, ranges)  # the table's pages in llama.cpp's mapping
        self.repack = repack
        # What the load left resident and was handed back: with repacking every tensor's pages, once (those
        # repacked are read from their copy from now on; see the module's docstring), else the lookup table's.
        self.released_bytes = drop_pages(mapped_pages(self.model_path, release.weights)) if release is not None \
            else self.release_lookup_pages()

    def release_lookup_pages(self) -> int:
        """Hand back the resident pages of the input embedding table (read row by row, so a turn re-reads only
        its prompt's rows, from the page cache). Returns the bytes advised; 0 with tied embeddings."""
        return drop_pages(self._lookup_pages)

    @classmethod
    def from_config(cls, config: Config) -> LlamaCppLLM:
        """The GGUF ``llm.model_path`` if set, else the embedded model ``llm.model``."""
        c = config.llm
        path = (config.resolve_path(c.model_path) if c.model_path
                else embedded_model_path(config.models_dir(), c.model))
        return cls(path, n_ctx=c.n_ctx, threads=c.threads, prefix_cache=c.prefix_cache, seed=c.seed, repack=c.repack)

    def prompt_tokens(self, messages: Sequence[ChatMessage], *, add_generation_prompt: bool = True) -> list[int]:
        """The prompt as the model's own chat template (from the GGUF) renders and tokenises it.

        Control-token look-alikes in message text (``<|im_start|>``) are defused first, so a user cannot open
        a system turn by typing one.
        """
        dicts = check_messages(messages, self.name) if add_generation_prompt else [
            {"role": m.role, "content": m.content} for m in messages]
        for d in dicts:
            d["content"] = d["content"].replace("<|", "< |")
        text = self._formatter(add_generation_prompt)(messages=dicts).prompt
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def _formatter(self, add_generation_prompt: bool) -> Any:
        if add_generation_prompt not in self._formatters:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            template = self._llm.metadata.get("tokenizer.chat_template", CHATML_TEMPLATE)
            self._formatters[add_generation_prompt] = Jinja2ChatFormatter(
                template=template, eos_token="<|im_end|>", bos_token="", add_generation_prompt=add_generation_prompt)
        return self._formatters[add_generation_prompt]

    def prime(self, messages: Sequence[ChatMessage]) -> int:
        """Evaluate the fixed prefix (e.g. the system message) now, so the first turn reuses it. Blocking."""
        tokens = self.prompt_tokens(messages, add_generation_prompt=False)
        with self._lock:
            self._llm.reset()
            self._llm.eval(tokens)
        return len(tokens)

    def prefill(self, messages: Sequence[ChatMessage], *, keep_back: int = 0, max_new: int = 16) -> int:
        """Evaluate the start of a prompt ahead of time: ``messages`` end with the user's words so far (the
        settled part of a turn still being spoken). Their tokens, less the closing ``<|im_end|>`` and
        ``keep_back`` more (none by default: Qwen's pre-tokeniser cuts before every space, so the settled words
        tokenise alike whatever follows; where they do not, the reply re-evaluates from the first token that
        differs, which keeping tokens back would have cost anyway: docs/BENCHMARKS.md, issue 23), are evaluated
        after the longest prefix the KV cache already holds, at most ``max_new`` per call (so a call is short
        and the reply never waits long for the context). Returns how many tokens were evaluated.

        Blocking; never waits: returns 0 at once when a generation (or another prefill) holds the context.
        """
        if not self.prefix_cache:
            return 0
        tokens = self.prompt_tokens(messages, add_generation_prompt=False)
        end = _IM_END_TAIL + keep_back
        tokens = tokens[:-end] if len(tokens) > end else []
        if not self._lock.acquire(blocking=False):
            return 0
        try:
            return self._extend_cache(tokens, max_new)
        except (RuntimeError, ValueError) as exc:
            raise LLMError(f"llama.cpp prefill failed: {exc}", retryable=True, backend=self.name) from exc
        finally:
            self._lock.release()

    def _extend_cache(self, tokens: list[int], max_new: int) -> int:
        """Make the KV state hold ``tokens``' longest cached prefix plus up to ``max_new`` more of them (evaluated
        now). Returns how many were evaluated. The caller holds the lock."""
        common = self._common_prefix(tokens)
        todo = tokens[common:common + max_new]
        if not todo or common + len(todo) > self.n_ctx:
            return 0
        if common < self._llm.n_tokens:
            self._llm._ctx.kv_cache_seq_rm(-1, common, -1)
            self._llm.n_tokens = common
        self._llm.eval(todo)
        return len(todo)

    def _evaluate_prompt(self, prompt: list[int], stop: threading.Event) -> bool:
        """Evaluate the whole prompt in ``EVAL_CHUNK`` steps, checking ``stop`` between them, so a cancelled reply
        lets go of the model within one step instead of after the whole prompt. False if stopped.

        Each step reads every weight once (~100 ms on 2 cores for the 1.5B, plus ~8 ms a token), so the step is
        long enough for a turn's whole tail (24-32 tokens) to go in one: with 16-token steps the same tail took
        two, 460-580 ms against 365-375 to the first token alone (docs/BENCHMARKS.md). A cancelled reply holds
        the model for at most one step: about 0.6 s for 64 tokens. The last token goes in the same step: the
        completion call then finds the exact prompt cached and samples from the logits of that step, where
        evaluating all but the last token left it a one-token pass of its own: 13-55 ms more on the 24-32-token
        tails a turn leaves, though 13-47 ms less on an 8-token one (``scripts/eval-steps.py``)."""
        while not stop.is_set():
            if self._extend_cache(prompt, EVAL_CHUNK) == 0:
                return True
        return False

    def _cached_prefix(self, prompt: list[int]) -> int:
        """How many leading prompt tokens the KV state already holds (llama-cpp re-uses them)."""
        return min(self._common_prefix(prompt), len(prompt) - 1)  # the last token is re-evaluated for fresh logits

    def _common_prefix(self, tokens: list[int]) -> int:
        """How many leading ``tokens`` the KV state holds now."""
        cached = self._llm._input_ids[: self._llm.n_tokens]
        n = 0
        for a, b in zip(cached, tokens, strict=False):
            if a != b:
                break
            n += 1
        return n

    def _generate(self, prompt: list[int], max_tokens: int, temperature: float, stop: threading.Event,
                  report: Callable[[Completion], None]) -> Iterator[str]:
        """The pieces of one completion of ``prompt``; ``report`` gets the call's figures before its first piece
        (the prompt's size, the tokens the KV cache served, the time to that piece)."""
        with self._lock:
            if not self.prefix_cache:
                self._llm.reset()
            figures = Completion(prompt_tokens=len(prompt), reused_tokens=self._cached_prefix(prompt),
                                 prompt=tuple(prompt))
            report(figures)
            if len(prompt) + max_tokens > self.n_ctx:
                raise LLMError(f"prompt of {len(prompt)} tokens + {max_tokens} does not fit n_ctx={self.n_ctx}",
                               backend=self.name)
            t0 = time.perf_counter()
            first = True
            try:
                if self.prefix_cache and not self._evaluate_prompt(prompt, stop):
                    return
                stream = self._llm.create_completion(prompt, max_tokens=max_tokens, temperature=temperature,
                                                     stream=True, stop=["<|im_end|>", "<|endoftext|>"])
                for chunk in stream:
                    if stop.is_set():
                        break
                    text = chunk["choices"][0]["text"]
                    if text:
                        if first:
                            report(replace(figures, ttft_s=time.perf_counter() - t0))
                            first = False
                        yield text
            except (RuntimeError, ValueError) as exc:
                raise LLMError(f"llama.cpp generation failed: {exc}", retryable=True, backend=self.name) from exc
            finally:
                self.release_lookup_pages()

    def first_token_alone(self, prompt: Sequence[int], cached: int, *, temperature: float = 0.7) -> float:
        """Seconds to the first token of ``prompt`` when ``cached`` of its leading tokens are in the KV cache and
        nothing else runs: the work of a reply's ``Completion.ttft_s`` done again in isolation (the cache is cut back
        to ``cached`` first, so the same tail is evaluated the same way). ``bench-latency`` sets this beside the
        time the same work took inside the session, where the other engines run at once. Blocking."""
        prompt = list(prompt)
        with self._lock:
            if not 0 <= cached < len(prompt) or self._common_prefix(prompt) < cached:
                raise LLMError("the KV cache no longer holds that prompt's prefix", backend=self.name)
            self._llm._ctx.kv_cache_seq_rm(-1, cached, -1)
            self._llm.n_tokens = cached
            t0 = time.perf_counter()
            self._evaluate_prompt(prompt, threading.Event())
            for _ in self._llm.create_completion(prompt, max_tokens=1, temperature=temperature, stream=True):
                break
            return time.perf_counter() - t0

    def stream(self, messages: Sequence[ChatMessage], *, max_tokens: int = 128, temperature: float = 0.7
               ) -> TokenStream:
        """The reply's pieces, generated after the prompt's open assistant turn."""
        prompt = self.prompt_tokens(messages)

        gate = Gate()

        async def pieces(report: Callable[[Completion], None]) -> AsyncGenerator[str, None]:
            async for piece in stream_from_thread(
                    lambda stop: self._generate(prompt, max_tokens, temperature, stop, report), gate=gate):
                yield piece

        return TokenStream(pieces, gate)
