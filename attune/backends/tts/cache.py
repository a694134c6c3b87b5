"""A small cache of synthesised speech: finished audio (TTS, prosody DSP and output rate applied) keyed by what
decides how it sounds: the text, the voice, the provider, the expressed emotion and the prosody.

Openings are rendered into it at start-up and cost nothing at run time; a persona's stock phrases can share it.
In memory, bounded (least recently used first out); thread-safe, since rendering runs off the event loop.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from attune.core.prosody import ProsodyParameters

DEFAULT_MAX_ITEMS = 256


@dataclass(frozen=True)
class SpeechKey:
    """What makes two renderings the same sound. ``prosody`` is ``ProsodyParameters.to_dict()``'s items
    (rounded), so equal parameters give equal keys."""

    text: str
    voice: str
    provider: str
    emotion: str
    prosody: tuple[tuple[str, float], ...]

    @classmethod
    def of(cls, text: str, *, voice: str, provider: str, emotion: str,
           prosody: ProsodyParameters | None) -> SpeechKey:
        items = tuple(sorted((prosody or ProsodyParameters()).to_dict().items()))
        return cls(" ".join(text.split()), voice, provider, emotion, items)


@dataclass(frozen=True)
class CachedSpeech:
    """Mono float32 audio at ``sample_rate``, ready to send."""

    samples: np.ndarray
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


class SpeechCache:
    """``get(key)`` -> CachedSpeech or None; ``put(key, samples, rate)``. Holds at most ``max_items``."""

    def __init__(self, max_items: int = DEFAULT_MAX_ITEMS) -> None:
        if max_items < 1:
            raise ValueError("a speech cache holds at least one item")
        self.max_items = max_items
        self._items: OrderedDict[SpeechKey, CachedSpeech] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: SpeechKey) -> CachedSpeech | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item

    def put(self, key: SpeechKey, samples: np.ndarray, sample_rate: int) -> CachedSpeech:
        arr = np.asarray(samples, dtype=np.float32).ravel()
        if arr.size == 0 or sample_rate <= 0:
            raise ValueError("cached speech needs samples and a positive sample rate")
        item = CachedSpeech(arr.copy(), int(sample_rate))
        item.samples.setflags(write=False)
        with self._lock:
            self._items[key] = item
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        return item
