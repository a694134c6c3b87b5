"""The local audio transport: microphone in, speaker out, through python-sounddevice (PortAudio).

The device callbacks only copy and hand off (``loop.call_soon_threadsafe``); everything else happens in the session.
Reply audio waits in a small buffer that the output callback drains and that a barge-in clears at once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from attune.core import events as ev
from attune.core.audio import SAMPLE_RATE
from attune.core.errors import BackendUnavailable
from attune.core.events import SessionEvent
from attune.pipeline.session import Session

log = logging.getLogger(__name__)
FRAME = SAMPLE_RATE // 50  # 20 ms input blocks
INPUT_QUEUE = 50  # 1 s of input frames; older ones are dropped if the loop falls behind
PORTAUDIO_HINT = "sudo apt-get install libportaudio2 (Debian/Ubuntu) or brew install portaudio (macOS)"


def import_sounddevice() -> Any:
    """python-sounddevice, or a clear error when it or the PortAudio library is missing."""
    try:
        import sounddevice as sd
    except (ImportError, OSError) as exc:
        raise BackendUnavailable(f"the microphone needs sounddevice and PortAudio: {exc}",
                                 install_hint=PORTAUDIO_HINT, backend="sounddevice") from exc
    return sd


NO_DEVICE_ADVICE = ("connect a microphone and a speaker (a headless machine or a container has none), or talk "
                    "to the agent through a recording: run_agent.py file --input IN.wav --output OUT.wav")


def check_devices(input_device: int | str | None = None, output_device: int | str | None = None) -> None:
    """Raise ``BackendUnavailable`` unless PortAudio sees an input and an output device.

    Without sounddevice or the PortAudio library the message gives the install command; with PortAudio
    installed but no (matching) device it says so and what to do instead, since installing it again won't help."""
    sd = import_sounddevice()
    try:
        found = len(sd.query_devices())
    except Exception:  # noqa: BLE001 - PortAudioError when the host API itself cannot list devices
        found = 0
    if found == 0:
        raise BackendUnavailable(f"PortAudio is installed but finds no audio device at all; {NO_DEVICE_ADVICE}",
                                 backend="sounddevice")
    for device, kind in ((input_device, "input"), (output_device, "output")):
        try:
            sd.query_devices(device, kind=kind)
        except Exception as exc:  # noqa: BLE001 - PortAudioError or ValueError, depending on the failure
            which = f"{kind} device {device!r}" if device is not None else f"default {kind} device"
            raise BackendUnavailable(f"PortAudio finds {found} audio device(s) but no usable {which} ({exc}); "
                                     f"{NO_DEVICE_ADVICE}", backend="sounddevice") from exc


class OutputBuffer:
    """Reply audio for the output callback (a PortAudio thread): ``write`` from the loop, ``clear`` on barge-in."""

    def __init__(self) -> None:
        self._chunks: deque[np.ndarray] = deque()
        self._lock = threading.Lock()

    def write(self, samples: np.ndarray) -> None:
        with self._lock:
            self._chunks.append(samples.astype(np.float32, copy=False))

    def clear(self) -> None:
        with self._lock:
            self._chunks.clear()

    def read_into(self, out: np.ndarray) -> None:
        """Fill ``out`` (1-D) with buffered audio, zeros where the buffer runs dry."""
        filled = 0
        with self._lock:
            while filled < len(out) and self._chunks:
                head = self._chunks[0]
                take = min(len(head), len(out) - filled)
                out[filled:filled + take] = head[:take]
                filled += take
                if take == len(head):
                    self._chunks.popleft()
                else:
                    self._chunks[0] = head[take:]
        out[filled:] = 0.0


async def run_microphone(session: Session, *, on_event: Callable[[SessionEvent], None] | None = None,
                         input_device: int | str | None = None, output_device: int | str | None = None,
                         stop: asyncio.Event | None = None) -> None:
    """A live conversation until ``stop`` is set (or the task is cancelled). Use headphones: without echo
    cancellation the microphone hears the agent, and its own voice may interrupt it."""
    sd = import_sounddevice()
    loop = asyncio.get_running_loop()
    frames: asyncio.Queue[np.ndarray] = asyncio.Queue(INPUT_QUEUE)
    speaker = OutputBuffer()

    def put(frame: np.ndarray) -> None:
        if frames.full():
            frames.get_nowait()  # drop the oldest: the loop is behind, keep the stream current
        frames.put_nowait(frame)

    def on_input(indata: np.ndarray, n: int, t: Any, status: Any) -> None:
        loop.call_soon_threadsafe(put, indata[:, 0].copy())

    def on_output(outdata: np.ndarray, n: int, t: Any, status: Any) -> None:
        speaker.read_into(outdata[:, 0])

    try:
        mic = sd.InputStream(samplerate=SAMPLE_RATE, channels=1, dtype="float32", blocksize=FRAME,
                             callback=on_input, device=input_device)
        out = sd.OutputStream(samplerate=session.settings.output_sample_rate, channels=1, dtype="float32",
                              callback=on_output, device=output_device)
    except Exception as exc:  # noqa: BLE001 - PortAudio reports a missing device in several ways
        raise BackendUnavailable(f"no usable audio device: {exc}", install_hint=PORTAUDIO_HINT,
                                 backend="sounddevice") from exc

    async def relay() -> None:
        while True:
            event = await session.events.get()
            if event.type == ev.AUDIO_DELTA and event.audio is not None:
                speaker.write(event.audio.samples)
            elif event.type == ev.RESPONSE_CANCELLED:
                speaker.clear()
            if on_event is not None:
                on_event(event)

    stop = stop or asyncio.Event()
    with mic, out:
        relay_task = asyncio.create_task(relay())
        try:
            while not stop.is_set():
                await session.push_audio(await frames.get())
        finally:
            relay_task.cancel()
            await asyncio.gather(relay_task, return_exceptions=True)
