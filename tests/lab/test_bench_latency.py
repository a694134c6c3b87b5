"""bench-latency's figures beside the audio measure: the LLM's first token inside the session and alone."""

from __future__ import annotations

from attune.backends.base import Completion, LLMCapabilities
from attune.core.errors import LLMError
from attune_lab.bench_latency import _bench_summary, _first_token_alone

LAYER = "unit"  # STYLE.md layer 1


class Replayer:
    capabilities = LLMCapabilities(replay=True)

    def __init__(self, seconds: float = 0.25, fail: bool = False) -> None:
        self.seconds, self.fail = seconds, fail
        self.calls: list[tuple[list[int], int]] = []

    def first_token_alone(self, prompt: list[int], cached: int) -> float:
        self.calls.append((prompt, cached))
        if self.fail:
            raise LLMError("the KV cache no longer holds that prompt's prefix")
        return self.seconds


CALL = Completion(prompt_tokens=40, reused_tokens=31, prompt=tuple(range(40)))


def test_the_last_reply_is_replayed_from_the_prefix_it_reused() -> None:
    llm = Replayer()
    assert _first_token_alone(llm, CALL) == 250.0  # type: ignore[arg-type]
    assert llm.calls == [(tuple(range(40)), 31)]


def test_no_replay_without_a_replaying_engine_a_prompt_or_a_cache() -> None:
    class Server(Replayer):
        capabilities = LLMCapabilities()  # declares no replay: never asked

    assert _first_token_alone(Server(), CALL) is None  # type: ignore[arg-type]
    assert _first_token_alone(Replayer(), None) is None  # type: ignore[arg-type]  # no call was made
    assert _first_token_alone(Replayer(), Completion(prompt_tokens=40)) is None  # type: ignore[arg-type]
    assert _first_token_alone(Replayer(fail=True), CALL) is None  # type: ignore[arg-type]


def test_the_summary_has_both_first_token_figures() -> None:
    base = {"voice_to_voice_ms": 900.0, "first_model_word_ms": 900.0, "tail_tokens": 20, "input_lag_max_ms": 0.0,
            "premature_cutoff": False, "stages_ms": {}}
    per_file = [{**base, "llm_ttft_ms": 600.0 + 10 * i, "llm_ttft_alone_ms": 400.0 + 10 * i} for i in range(5)]
    per_file.append({**base, "llm_ttft_ms": None, "llm_ttft_alone_ms": None})
    summary = _bench_summary(per_file, {})
    assert summary["llm_ttft_ms"]["p50"] == 620.0 and summary["llm_ttft_alone_ms"]["p50"] == 420.0


def test_the_summary_names_the_machine_and_the_llm_speed_beside_the_figures() -> None:
    base = {"voice_to_voice_ms": 900.0, "first_model_word_ms": 900.0, "tail_tokens": 20, "input_lag_max_ms": 0.0,
            "premature_cutoff": False, "stages_ms": {}, "llm_ttft_ms": 600.0, "llm_ttft_alone_ms": 400.0}
    warm = {"asr_s": 0.5, "llm_s": 1.2, "llm_tokens_per_s": 21.37, "llm_first_token_ms": 180.04}
    summary = _bench_summary([base], warm)
    machine = summary["machine"]
    assert machine["model"] and machine["cores"] >= 1 and isinstance(machine["avx512"], bool)
    assert isinstance(machine["vnni"], bool) and machine["short"].startswith(machine["model"])
    assert summary["llm_speed"] == {"tokens_per_s": 21.4, "first_token_ms": 180.0}
    assert summary["warm_up_s"] == {"asr_s": 0.5, "llm_s": 1.2}
    assert _bench_summary([base], {})["llm_speed"] == {"tokens_per_s": None, "first_token_ms": None}


def test_the_first_sound_is_counted_from_the_end_of_the_whole_turn_not_from_a_pause_it_was_heard_in() -> None:
    """A first sound played in a pause the person then went on from (a commit resumed as one turn) is not the
    wait after they finished: voice-to-voice counts from the end of the last words to the first sound after it."""
    from types import SimpleNamespace

    import numpy as np

    from attune_lab.bench_latency import file_figures

    rate = 16000
    user = np.zeros(int(3.5 * rate), np.float32)
    user[: rate] = 0.3  # speech 0-1.0 s, a pause, speech 1.7-2.5 s
    user[int(1.7 * rate): int(2.5 * rate)] = 0.3
    out = np.zeros(int(3.5 * rate), np.float32)
    out[int(1.3 * rate): int(1.5 * rate)] = 0.3  # "Mm." in the pause
    out[int(3.0 * rate):] = 0.3  # the reply, 500 ms after the end
    run = SimpleNamespace(output=out, output_rate=rate, input_lag_s=[0.0])
    figures = file_figures(user, run, [{"resumed": True, "speech_end_s": 2.5}])
    assert figures["speech_end_s"] == 2.5
    assert figures["voice_to_voice_ms"] == 500.0  # not the pause's 300
    assert figures["premature_cutoff"] is False


def test_a_quiet_speakers_words_end_where_their_voice_fades_not_at_their_last_loud_syllable() -> None:
    """A speaker whose loudest frame is below -40 dBFS (RAVDESS's quiet actors) still has an end of speech (the
    file is not dropped from the figures), and a quiet last word counts: the end is 25 dB below the loudest frame,
    above the noise floor. A loud recording (a TTS voice) keeps the -40 dBFS line."""
    import numpy as np

    from attune_lab.bench_latency import file_figures
    from attune_lab.latency import speech_end_s

    rate = 16000
    db = lambda level: 10 ** (level / 20) * np.sqrt(2)  # noqa: E731  a sine's amplitude for a frame's dBFS
    t = np.arange(rate) / rate
    tone = np.sin(2 * np.pi * 200 * t).astype(np.float32)
    quiet = np.full(4 * rate, 1e-5, np.float32)  # a studio's floor, -100 dBFS
    quiet[rate: 2 * rate] += db(-44) * tone  # the sentence, never above -40 dBFS
    quiet[2 * rate: int(2.4 * rate)] += db(-60) * tone[: int(0.4 * rate)]  # its quiet last word
    end = speech_end_s(quiet, rate)
    assert end is not None and abs(end - 2.4) < 0.03
    loud = np.zeros(4 * rate, np.float32)
    loud[rate: 2 * rate] = db(-12) * tone
    loud[2 * rate: int(2.4 * rate)] = db(-50) * tone[: int(0.4 * rate)]  # below -40: a breath, not words
    assert abs(speech_end_s(loud, rate) - 2.0) < 0.03  # type: ignore[operator]
    from types import SimpleNamespace

    out = np.zeros(4 * rate, np.float32)
    out[int(2.9 * rate):] = 0.3
    figures = file_figures(quiet, SimpleNamespace(output=out, output_rate=rate, input_lag_s=[0.0]), [])
    assert figures["voice_to_voice_ms"] is not None and abs(figures["voice_to_voice_ms"] - 500.0) < 30
