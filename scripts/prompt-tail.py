"""Tokens left to evaluate after the user's turn ends, in each order of the user turn (``agent.voice_note_first``
off: words, then the note and the tone; on: the note and the tone, then the words), over the ``eval-replies``
scenarios, when the KV prefill kept up with the settled words (all but the last word settled, as LocalAgreement
leaves them; the prefill keeps the closing ``<|im_end|>`` and its newline back, and ``--keep-back`` more tokens)
and, with the note first, the early reading agreed with the whole turn's (``EarlyVoice.agrees_with``; where it
does not, the whole user turn is the tail, as in the words-first order). Tokenisation only, so the figure does
not depend on the machine's load. Each tail is printed as the text it is, so its composition can be read.

Usage: .venv/bin/python scripts/prompt-tail.py [qwen2.5-1.5b|qwen2.5-0.5b] [--keep-back N] [--show]
"""

from __future__ import annotations

import argparse
import statistics

from llama_cpp import Llama

from attune.agent.brain import PromptBuilder, qwen_chat_text
from attune.agent.memory import ConversationMemory
from attune.agent.strategy import choose_response
from attune.config import load_config
from attune.models import model_path
from attune_lab.reply_eval import SCENARIOS

IM_END_TAIL = 2  # "<|im_end|>" and its newline: never prefilled (the turn is not over)


def main() -> int:
    config = load_config()
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("model", nargs="?", default=config.llm.model)
    parser.add_argument("--keep-back", type=int, default=0, help="tokens the prefill keeps back (the default: 0)")
    parser.add_argument("--show", action="store_true", help="print each scenario's tail")
    args = parser.parse_args()
    tok = Llama(model_path=str(model_path(config.models_dir(), args.model)), vocab_only=True, verbose=False)

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
            start = builder.turn_start(emotion, plan, settled)
            head = qwen_chat_text([*builder.prefix(), start]).removesuffix("<|im_start|>assistant\n")
            prefilled = tokens(head)[:-(IM_END_TAIL + args.keep_back)]
            common = next((i for i, (a, b) in enumerate(zip(full, prefilled, strict=False)) if a != b),
                          min(len(full), len(prefilled)))
            tails.append(len(full) - common)
            if args.show:
                print(f"  {sc.name}: {len(full) - common} {tok.detokenize(full[common:]).decode()!r}")
        order = "note and tone, then words" if note_first else "words, then note and tone"
        print(f"{args.model} {order}, keep back {args.keep_back}: tail tokens {min(tails)}-{max(tails)}, "
              f"median {statistics.median(tails)} {tails}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
