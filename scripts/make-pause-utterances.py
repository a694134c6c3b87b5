"""Utterances for ``run_agent.py bench-latency`` spoken by the embedded Piper voice: twenty sentences with a
500-900 ms pause inside (two phrases; the first ends mid-sentence, with a comma, so it is spoken with a rising,
unfinished intonation) and ten plain ones. One 16 kHz WAV each: ``pNN.wav`` (paused) and ``sNN.wav`` (plain),
plus ``manifest.json`` (text, pause position and length).

Usage: .venv/bin/python scripts/make-pause-utterances.py OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from attune.agent.speech_source import render_speech
from attune.config import load_config
from attune.core.audio import SAMPLE_RATE, prepare, write_wav

PAUSED = (
    ("I was thinking,", "maybe we could go for a walk later."),
    ("My sister called me this morning and,", "she said she is getting married."),
    ("I really want to,", "learn how to play the guitar this year."),
    ("The thing about my job is,", "nobody ever tells me what they need."),
    ("Yesterday I went to the doctor,", "and he said everything looks fine."),
    ("I don't know if I should,", "tell my friend what happened."),
    ("When I got home tonight,", "the whole kitchen was flooded."),
    ("Could you help me,", "plan a small birthday party?"),
    ("I have been feeling,", "a little tired all week."),
    ("So the reason I am calling is,", "my package never arrived."),
    ("What I would really like is,", "a quiet weekend at the lake."),
    ("My dog has been,", "sick for three days now."),
    ("If it does not rain tomorrow,", "we are going to the beach."),
    ("I finally told my boss,", "that I need more time off."),
    ("The best part of the trip was,", "watching the sun come up over the hills."),
    ("I am not sure,", "whether I locked the front door."),
    ("Last night I dreamed,", "that I could fly over the city."),
    ("Our neighbours are,", "having another loud party tonight."),
    ("I think I might,", "start running in the mornings."),
    ("After the meeting today,", "I felt really proud of my team."),
)
PLAIN = (
    "Thanks, that really helps.",
    "I passed my driving test today!",
    "My cat ran away last night.",
    "What is a good book to read on holiday?",
    "I am so tired of this rain.",
    "Can you tell me a joke?",
    "My grandfather is in hospital.",
    "We won the match this afternoon!",
    "I can never find my keys.",
    "Good night, talk to you tomorrow.",
)
PAUSES_MS = (500, 600, 700, 800, 900)
LEVEL_DBFS = -22.0


def speak(text: str, config: object) -> np.ndarray:
    speech = render_speech(text, None, config=config, level_dbfs=LEVEL_DBFS)  # type: ignore[arg-type]
    return prepare(speech.audio, speech.sample_rate, SAMPLE_RATE)[0]


def trim(samples: np.ndarray, threshold: float = 1e-3) -> np.ndarray:
    """Cut the engine's leading and trailing near-silence, so a pause is exactly the silence inserted."""
    loud = np.nonzero(np.abs(samples) > threshold)[0]
    return samples[loud[0]: loud[-1] + 1] if loud.size else samples


def main(out_dir: str) -> int:
    config = load_config()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lead = np.zeros(int(0.3 * SAMPLE_RATE), np.float32)
    manifest = {}
    for i, (first, second) in enumerate(PAUSED, 1):
        a, b = trim(speak(first, config)), trim(speak(second, config))
        pause_ms = PAUSES_MS[i % len(PAUSES_MS)]
        gap = np.zeros(int(pause_ms * SAMPLE_RATE / 1000), np.float32)
        name = f"p{i:02d}.wav"
        write_wav(out / name, np.concatenate([lead, a, gap, b, lead]), SAMPLE_RATE)
        manifest[name] = {"text": f"{first} {second}", "pause_ms": pause_ms,
                          "pause_at_s": round((len(lead) + len(a)) / SAMPLE_RATE, 3)}
    for i, text in enumerate(PLAIN, 1):
        name = f"s{i:02d}.wav"
        write_wav(out / name, np.concatenate([lead, trim(speak(text, config)), lead]), SAMPLE_RATE)
        manifest[name] = {"text": text, "pause_ms": 0}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(f"wrote {len(PAUSED)} paused and {len(PLAIN)} plain utterances to {out}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
