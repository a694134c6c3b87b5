"""CPU (process time) the emotion reading costs at the end of a turn, per Whisper encoder, side by side.

Over the dev files ``eval-emotion --cpu-files N`` picks (every k-th of EmoDB then RAVDESS), each file read three
times and its median kept: the encoder passes alone (CTranslate2's whole int8 tiny.en pass over the ASR's window,
which the ASR runs anyway; block 2 in float32 numpy over that window, the second round's ``tiny.en_l2``; block 2
by CTranslate2 int8 over the weights cut there and the clip's own frames, ``BlockEncoder``, what ``tiny.en_l2``
runs now) and the hybrid's whole end-of-turn reading (``analyze_turn``: prosody, the encoder where it does not
reuse the ASR's pass, the head). Process time counts every thread of the process, so a pass that spreads over
two threads pays for both. Run it under ``flock /work/cpu.lock`` on a shared machine and give ``uptime``'s load;
``CT2_FORCE_CPU_ISA=AVX2`` emulates an AVX2-only machine for CTranslate2 (numpy/OpenBLAS keep their own choice).

Usage: .venv/bin/python scripts/emotion-turn-cpu.py [--data DIR ...] [--files 20]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from attune.backends.emotion.hybrid import HybridBackend
from attune.backends.emotion.whisper_encoder import WhisperEncoder
from attune.backends.emotion.whisper_head import WhisperEmotionBackend
from attune.backends.emotion.whisper_layers import BlockEncoder, LayerEncoder
from attune.config import REPO_ROOT, Config, EmotionConfig
from attune_lab.emotion.dataset import list_utterances, load_16k

DATA = [REPO_ROOT.parent / "shared" / "data" / "emodb-dev", REPO_ROOT.parent / "shared" / "data" / "ravdess-dev"]


def cpu_ms(read: Callable[[np.ndarray], object], clips: list[np.ndarray], reps: int = 3) -> tuple[float, float]:
    """(p50, p95) over the clips of each clip's median process time in ms (after one warm-up read)."""
    read(clips[0])
    per_clip = []
    for x in clips:
        times = []
        for _ in range(reps):
            t0 = time.process_time()
            read(x)
            times.append((time.process_time() - t0) * 1000.0)
        per_clip.append(float(np.median(times)))
    return float(np.median(per_clip)), float(np.percentile(per_clip, 95))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", action="append", default=None, help="EmoDB / RAVDESS folder; repeat (default: both dev)")
    p.add_argument("--files", type=int, default=20, help="files read (default 20, as eval-emotion --cpu-files)")
    args = p.parse_args()
    utterances = list_utterances([Path(d) for d in (args.data or DATA)])
    picks = utterances[:: max(1, len(utterances) // args.files)][: args.files]
    clips = [load_16k(u.path) for u in picks]
    seconds = [len(x) / 16000 for x in clips]
    print(f"{len(clips)} files, median {np.median(seconds):.2f} s ({min(seconds):.2f}-{max(seconds):.2f}); "
          f"CT2_FORCE_CPU_ISA={os.environ.get('CT2_FORCE_CPU_ISA', 'unset')}, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}")
    models = Config().models_dir()
    folder = models / "whisper-tiny.en"
    last, numpy2, cut2 = WhisperEncoder(folder), LayerEncoder(folder, 2), BlockEncoder(folder, 2)

    def hybrid(encoder: str, enc: WhisperEncoder | LayerEncoder | BlockEncoder) -> HybridBackend:
        config = EmotionConfig(encoder=encoder)
        return HybridBackend(config, neural=WhisperEmotionBackend(config, encoder=enc,  # type: ignore[arg-type]
                                                                  models_dir=models))

    reused = {id(x): last.states(x) for x in clips}
    h_last, h_numpy, h_cut = hybrid("tiny.en", last), hybrid("tiny.en_l2", numpy2), hybrid("tiny.en_l2", cut2)
    rows: list[tuple[str, Callable[[np.ndarray], object]]] = [
        ("pass: tiny.en whole, CTranslate2 int8, the ASR's window (the ASR's own pass)", last.states),
        ("pass: block 2, numpy float32, the ASR's window (tiny.en_l2, second round)", numpy2.states),
        ("pass: block 2, CTranslate2 int8 cut, the clip's frames (tiny.en_l2 now)", cut2.states),
        ("turn: hybrid tiny.en, the ASR's pass reused", lambda x: h_last.analyze_turn(x, reused[id(x)])),
        ("turn: hybrid tiny.en_l2, numpy block 2 (second round)", lambda x: h_numpy.analyze_turn(x, None)),
        ("turn: hybrid tiny.en_l2, CTranslate2 int8 block 2 (now)", lambda x: h_cut.analyze_turn(x, None)),
    ]
    for name, read in rows:
        p50, p95 = cpu_ms(read, clips)
        print(f"{name}: p50 {p50:.1f} ms, p95 {p95:.1f} ms", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
