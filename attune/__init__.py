"""Attune: an emotion-aware, real-time voice agent that hears how a person feels and answers in a fitting voice.

The library's surface (imported on first use, so ``import attune`` stays light): ``Attune`` (load the embedded
stack, open sessions), ``load_audio``, ``Session``, ``SessionEvent``, ``EmotionResult``, ``Config`` and
``load_config``, and the audio format: ``SAMPLE_RATE`` (16 kHz) and ``FRAME`` (samples in 20 ms). docs/API.md
shows them at work.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

# One BLAS thread for numpy (unless the caller chose): Attune's numpy work is small matrices (the log-mels, the
# prosody, the emotion heads), which a second OpenBLAS thread makes no faster but pays for in CPU, spinning on the
# core that CTranslate2 and llama.cpp need (the end-of-turn emotion reading: ~20 ms CPU with one thread, 33-48
# with two; docs/BENCHMARKS.md, issue 20 third round). Set before numpy loads, so it holds for the ``attune``
# command and for a program that imports attune before numpy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"

_EXPORTS = {
    "Attune": "attune.transports.library",
    "load_audio": "attune.transports.library",
    "Session": "attune.pipeline.session",
    "SessionEvent": "attune.core.events",
    "EmotionResult": "attune.core.emotion",
    "Config": "attune.config",
    "load_config": "attune.config",
    "SAMPLE_RATE": "attune.core.audio",
    "FRAME": "attune.core.audio",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'attune' has no attribute {name!r}")
    return vars(importlib.import_module(module))[name]
