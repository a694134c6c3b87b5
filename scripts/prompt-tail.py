"""Tokens left to evaluate after the user's turn ends, in each order of the user turn (``agent.voice_note_first``
off: words, note, tone; on: note, words, tone), over the ``eval-replies`` scenarios, when the KV prefill kept up
with the settled words (all but the last word settled, as LocalAgreement leaves them; the prefill keeps the
closing ``<|im_end|>``, its newline and 2 more tokens back). Tokenisation only, so the figure does not depend on
the machine's load.

Usage: .venv/bin/python scripts/prompt-tail.py [qwen2.5-1.5b|qwen2.5-0.5b]
"""

from __future__ import annotations

import statistics
import sys

from llama_cpp import Llama

from attune.agent.brain import PromptBuilder, qwen_chat_text, turn_start, voice_note
from attune.agent.memory import ConversationMemory
from attune.agent.strategy import choose_response
from attune.backends.base import ChatMessage
from attune.config import load_config
from attune.models import model_path
from attune_lab.reply_eval import SCENARIOS


def main() -> int:
    config = load_config()
    name = sys.argv[1] if len(sys.argv) > 1 else config.llm.model
    tok = Llama(model_path=str(model_path(config.models_dir(), name)), vocab_only=True,
                verbose=False)

    def tokens(text: str) -> list[int]:
        return list(tok.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    for note_first in (False, True):
        builder = PromptBuilder(note_first=note_first)
        tails = []
        for sc in SCENARIOS:
            emotion = sc.emotion_result()
            plan = choose_response(emotion, "complement")
            full = tokens(qwen_chat_text(builder.build(ConversationMemory(), sc.text, emotion, plan)))
            settled = " ".join(sc.text.split()[:-1])
            start = ChatMessage("user", turn_start(voice_note(emotion), settled, note_first=note_first))
            head = qwen_chat_text([*builder.prefix(), start]).removesuffix("<|im_start|>assistant\n")
            prefilled = tokens(head)[:-4]
            common = next((i for i, (a, b) in enumerate(zip(full, prefilled, strict=False)) if a != b),
                          min(len(full), len(prefilled)))
            tails.append(len(full) - common)
        order = "note, words, tone" if note_first else "words, note, tone"
        print(f"{name} {order}: tail tokens {min(tails)}-{max(tails)}, median {statistics.median(tails)} {tails}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
