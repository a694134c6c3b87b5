"""The local audio transport: microphone in, speaker out, through python-sounddevice (PortAudio), with the agent's
own voice cancelled from the microphone so that it never answers itself and a person can interrupt it over
loudspeakers.

The device callbacks (PortAudio threads) only copy and hand off with ``loop.call_soon_threadsafe``: the input
callback a copy of each captured block, the output callback the 16 kHz reference of exactly what it just played.
On the loop, ``LocalAudio.read()`` pairs each captured frame with as much reference and runs the echo canceller
(``attune.transports.echo``); ``run_microphone`` feeds the result to the session and plays its reply audio.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from attune.config import Config
from attune.core import events as ev
from attune.core.audio import FRAME, SAMPLE_RATE
from attune.core.errors import AudioDeviceError, BackendUnavailable
from attune.core.events import SessionEvent
from attune.pipeline.session import Session
from attune.transports.echo import EchoCanceller, PlaybackReference, ReferenceTrack, create_echo_canceller

log = logging.getLogger(__name__)
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


@dataclass(frozen=True)
class AudioDevice:
    """One PortAudio device as ``--list-devices`` shows it."""

    index: int
    name: str
    host_api: str
    inputs: int
    outputs: int
    default_rate: float
    default_input: bool = False
    default_output: bool = False

    def describe(self) -> str:
        marks = ("<" if self.default_input else " ") + (">" if self.default_output else " ")
        return (f"{marks} {self.index:3d}  {self.name} ({self.host_api}; {self.inputs} in, {self.outputs} out, "
                f"{self.default_rate:.0f} Hz)")


def list_devices(sd: Any = None) -> list[AudioDevice]:
    """Every device PortAudio sees now (after ``rescan()``, newly plugged ones too)."""
    sd = sd or import_sounddevice()
    apis = [a.get("name", "") for a in sd.query_hostapis()]
    default_in, default_out = _defaults(sd)
    out = []
    for d in sd.query_devices():
        i = int(d["index"])
        api = int(d.get("hostapi", 0))
        out.append(AudioDevice(i, str(d["name"]), apis[api] if api < len(apis) else "", int(d["max_input_channels"]),
                               int(d["max_output_channels"]), float(d["default_samplerate"]),
                               i == default_in, i == default_out))
    return out


def _defaults(sd: Any) -> tuple[int, int]:
    try:
        pair = sd.default.device
        return int(pair[0]), int(pair[1])
    except (TypeError, ValueError, IndexError, AttributeError):
        return -1, -1


def resolve_device(spec: str | int | None, kind: str, sd: Any = None) -> int | None:
    """A device by index or by part of its name (case-insensitive) that has ``kind`` ("input" | "output")
    channels; None or "" is the system default. Raises ``AudioDeviceError`` when none matches."""
    if spec is None or spec == "":
        return None
    if isinstance(spec, int) or spec.strip().isdigit():
        return int(spec)
    devices = [d for d in list_devices(sd) if (d.inputs if kind == "input" else d.outputs) > 0]
    for d in devices:
        if spec.lower() in d.name.lower():
            return d.index
    names = ", ".join(d.name for d in devices) or "none"
    raise AudioDeviceError(f"no {kind} device matches {spec!r} (there are: {names})")


def rescan(sd: Any) -> None:
    """Make PortAudio look for devices again (it lists them once, at initialisation). Only with no stream open."""
    # python-sounddevice's private re-initialisation, absent in some versions: probed, not assumed
    terminate, initialize = getattr(sd, "_terminate", None), getattr(sd, "_initialize", None)
    if callable(terminate) and callable(initialize):
        try:
            terminate()
        finally:
            initialize()
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
    """Reply audio for the output callback (a PortAudio thread): ``write`` from the loop, ``clear`` on barge-in.

    Each chunk is kept with its 16 kHz reference; ``read_into`` fills the device's block and returns the
    reference of exactly what it played (zeros where the buffer ran dry), for the echo canceller.
    """

    def __init__(self, output_rate: int = SAMPLE_RATE) -> None:
        self._track = ReferenceTrack(output_rate)
        self.rate = output_rate
        self._chunks: deque[tuple[np.ndarray, np.ndarray]] = deque()
        self._queued = 0  # output samples buffered
        self._lock = threading.Lock()

    def write(self, samples: np.ndarray) -> None:
        audio = samples.astype(np.float32, copy=False)
        ref = self._track.reference(audio)
        with self._lock:
            self._chunks.append((audio, ref))
            self._queued += len(audio)

    def clear(self) -> None:
        with self._lock:
            self._chunks.clear()
            self._queued = 0

    @property
    def buffered_s(self) -> float:
        """Seconds of audio still to be played."""
        return self._queued / self.rate

    def read_into(self, out: np.ndarray) -> np.ndarray:
        """Fill ``out`` (1-D) with buffered audio, zeros where the buffer runs dry; the 16 kHz reference of it."""
        filled = 0
        refs: list[np.ndarray] = []
        with self._lock:
            while filled < len(out) and self._chunks:
                head, ref = self._chunks[0]
                take = min(len(head), len(out) - filled)
                out[filled:filled + take] = head[:take]
                filled += take
                self._queued -= take
                cut = int(round(take * len(ref) / len(head)))
                refs.append(ref[:cut])
                if take == len(head):
                    self._chunks.popleft()
                else:
                    self._chunks[0] = (head[take:], ref[cut:])
        out[filled:] = 0.0
        n_ref = self._track.played(len(out))
        played = np.concatenate(refs) if refs else np.zeros(0, np.float32)
        if len(played) >= n_ref:
            return played[:n_ref]
        return np.concatenate([played, np.zeros(n_ref - len(played), np.float32)])


class LocalAudio:
    """An open microphone and speaker. Use as ``with LocalAudio(...) as audio:`` inside the event loop, then
    ``await audio.read()`` for each echo-cancelled 20 ms frame, ``play()`` reply audio, ``flush()`` on barge-in.

    ``read()`` raises ``AudioDeviceError`` when a stream fails or no frame has come for ``device_timeout_s``
    (an unplugged device stops calling back); close it, ``rescan()`` and open a new one.
    """

    def __init__(self, sd: Any, *, output_rate: int, canceller: EchoCanceller, input_device: int | None = None,
                 output_device: int | None = None, device_timeout_s: float = 2.0, echo_tail_s: float = 0.0) -> None:
        self.sd = sd
        self.canceller = canceller
        self.input_device, self.output_device = input_device, output_device
        self.device_timeout_s = device_timeout_s
        self.echo_tail_s = echo_tail_s if canceller.name != "off" else 0.0
        self.speaker = OutputBuffer(output_rate)
        self.reference = PlaybackReference()
        self.frames_read = 0
        self.frames_dropped = 0
        self._frames: asyncio.Queue[np.ndarray] = asyncio.Queue(INPUT_QUEUE)
        self._failure: str | None = None
        self._streams: list[Any] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- PortAudio threads: copy and hand off, nothing else ----
    def _hand_off(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closing; the stream is about to stop
            pass

    def _on_input(self, indata: np.ndarray, n: int, t: Any, status: Any) -> None:
        self._hand_off(self._put, indata[:, 0].copy())

    def _on_output(self, outdata: np.ndarray, n: int, t: Any, status: Any) -> None:
        self._hand_off(self.reference.push, self.speaker.read_into(outdata[:, 0]))

    def _on_finished(self) -> None:
        self._hand_off(self._fail, "an audio stream stopped")

    # ---- the loop's side ----
    def _put(self, frame: np.ndarray) -> None:
        if self._frames.full():
            self._frames.get_nowait()  # drop the oldest: the loop is behind, keep the stream current
            self.frames_dropped += 1
        self._frames.put_nowait(frame)

    def _fail(self, why: str) -> None:
        if self._streams and self._failure is None:
            self._failure = why

    def __enter__(self) -> LocalAudio:
        self._loop = asyncio.get_running_loop()
        try:
            mic = self.sd.InputStream(samplerate=SAMPLE_RATE, channels=1, dtype="float32", blocksize=FRAME,
                                      callback=self._on_input, device=self.input_device,
                                      finished_callback=self._on_finished)
            self._streams.append(mic)
            rate = self.speaker.rate
            out = self.sd.OutputStream(samplerate=rate, channels=1, dtype="float32", blocksize=rate // 50,
                                       callback=self._on_output, device=self.output_device,
                                       finished_callback=self._on_finished)
            self._streams.append(out)
            for stream in self._streams:
                stream.start()
        except Exception as exc:  # noqa: BLE001 - PortAudio reports a missing device in several ways
            self.close()
            raise AudioDeviceError(f"cannot open the audio device: {exc}") from exc
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        streams, self._streams = self._streams, []
        for stream in streams:
            try:
                stream.stop()
                stream.close()
            except Exception as exc:  # noqa: BLE001 - a lost device may fail to stop; it is gone either way
                log.debug("closing an audio stream: %s", exc)
        self._loop = None

    async def read(self) -> np.ndarray:
        """The next captured frame with the agent's echo removed (16 kHz mono float32, 20 ms)."""
        if self._failure is not None:
            raise AudioDeviceError(f"audio device lost: {self._failure}")
        try:
            near = await asyncio.wait_for(self._frames.get(), self.device_timeout_s)
        except TimeoutError:
            raise AudioDeviceError(f"audio device lost: no microphone audio for {self.device_timeout_s:g} s "
                                   "(unplugged?)") from None
        self.frames_read += 1
        return self.canceller.process(near, self.reference.take(len(near)))

    def play(self, samples: np.ndarray) -> None:
        self.speaker.write(samples)

    def flush(self) -> None:
        self.speaker.clear()


def open_local_audio(config: Config, *, sd: Any = None, input_device: str | None = None,
                     output_device: str | None = None, echo: str | None = None) -> LocalAudio:
    """A ``LocalAudio`` from ``config.local_audio`` (arguments override it); enter it to open the streams."""
    sd = sd or import_sounddevice()
    la = config.local_audio
    canceller = create_echo_canceller(echo or la.echo_cancellation, la.echo_delay_ms)
    return LocalAudio(sd, output_rate=config.pipeline.output_sample_rate, canceller=canceller,
                      input_device=resolve_device(la.input_device if input_device is None else input_device,
                                                  "input", sd),
                      output_device=resolve_device(la.output_device if output_device is None else output_device,
                                                   "output", sd),
                      device_timeout_s=la.device_timeout_s, echo_tail_s=la.echo_tail_ms / 1000.0)


async def run_microphone(session: Session, audio: LocalAudio, *,
                         on_event: Callable[[SessionEvent], None] | None = None,
                         stop: asyncio.Event | None = None) -> None:
    """A live conversation over an entered ``audio`` until ``stop`` is set (or the task is cancelled). Raises
    ``AudioDeviceError`` when the device is lost; the session is left as it was (its owner closes it)."""
    session.echo_tail_s = audio.echo_tail_s

    async def relay() -> None:
        while True:
            event = await session.events.get()
            if event.type == ev.AUDIO_DELTA and event.audio is not None:
                audio.play(event.audio.samples)
            elif event.type == ev.RESPONSE_CANCELLED:
                audio.flush()
            if on_event is not None:
                on_event(event)

    stop = stop or asyncio.Event()
    relay_task = asyncio.create_task(relay(), name="mic-relay")
    try:
        while not stop.is_set():
            await session.push_audio(await audio.read())
    finally:
        relay_task.cancel()
        await asyncio.gather(relay_task, return_exceptions=True)
