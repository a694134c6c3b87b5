"""A fake duplex sound card for the microphone and kiosk tests: one clock thread calls the output callback, sends
what it played through a simulated room (delay, attenuation, reverberation) back into the microphone, adds a
scripted user utterance on top, and calls the input callback, as PortAudio would. It can be unplugged and
plugged back in. Its real counterpart (python-sounddevice over PortAudio) is exercised by the `mic` command tests
where a machine has devices; the room is ``attune_lab.echo_path``'s, which the echo benchmark uses too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np

from attune_lab.echo_path import EchoPath, synthetic_rir

RATE = 16000
BLOCK = 320  # 20 ms


class PortAudioError(Exception):
    """What sounddevice raises when a device cannot be opened."""


class FakeStream:
    """sounddevice.InputStream / OutputStream: callbacks come from the device's clock thread."""

    def __init__(self, device: FakeDuplexDevice, kind: str, *, samplerate: int, channels: int, dtype: str,
                 callback: Callable[..., None], blocksize: int | None = None, device_index: Any = None,
                 finished_callback: Callable[[], None] | None = None) -> None:
        if not device.plugged:
            raise PortAudioError(f"Error opening {kind}Stream: Device unavailable [PaErrorCode -9985]")
        if kind == "Output" and samplerate != RATE:
            raise PortAudioError(f"the fake device plays at {RATE} Hz only, not {samplerate}")
        self.device, self.kind, self.callback, self.finished = device, kind, callback, finished_callback
        self.block = blocksize or BLOCK
        self.active = False

    def start(self) -> None:
        self.active = True
        self.device.attach(self)

    def stop(self) -> None:
        self.active = False
        self.device.detach(self)

    def close(self) -> None:
        self.active = False


class FakeDuplexDevice:
    """The sound card and the room around it. ``module`` stands in for ``sounddevice``.

    ``echo``: the agent's played audio reaches the microphone through ``EchoPath`` (None: headphones).
    ``say(samples, at_s)``: the user speaks, starting at device time ``at_s``. ``pace``: returns the consumer's
    stream time; the clock waits for it so the test runs as fast as the loop keeps up, never ahead by more
    than ``ahead_s``. ``unplug()`` stops the callbacks and makes opening fail until ``plug()``.
    """

    def __init__(self, *, echo: EchoPath | None = None, pace: Callable[[], float] | None = None,
                 ahead_s: float = 0.04, noise: float = 1e-4) -> None:
        self.echo = echo
        self.pace = pace
        self.ahead_s = ahead_s
        self.plugged = True
        self.time_s = 0.0  # device time: samples clocked / RATE
        self.played: list[np.ndarray] = []
        self.heard: list[np.ndarray] = []  # what the microphone captured (echo + user + noise)
        self.rescans = 0
        self._utterances: list[tuple[int, np.ndarray]] = []
        self._rng = np.random.default_rng(1)
        self._noise = noise
        self._streams: list[FakeStream] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="fake-sound-card")
        self.module = SimpleNamespace(
            InputStream=lambda **kw: self._open("Input", **kw), OutputStream=lambda **kw: self._open("Output", **kw),
            query_devices=self.query_devices, query_hostapis=lambda: [{"name": "Fake"}],
            default=SimpleNamespace(device=(0, 0)), _terminate=self._rescan, _initialize=lambda: None,
            PortAudioError=PortAudioError)
        self._thread.start()

    def _open(self, kind: str, **kw: Any) -> FakeStream:
        kw["device_index"] = kw.pop("device", None)
        return FakeStream(self, kind, **kw)

    def _rescan(self) -> None:
        self.rescans += 1

    def query_devices(self, device: Any = None, kind: str | None = None) -> Any:
        devices = [{"index": 0, "name": "Fake Duplex USB", "hostapi": 0, "max_input_channels": 1,
                    "max_output_channels": 1, "default_samplerate": float(RATE)}] if self.plugged else []
        if device is None and kind is None:
            return devices
        if not devices:
            raise PortAudioError("no such device")
        return devices[0]

    def say(self, samples: np.ndarray, at_s: float) -> None:
        self._utterances.append((int(at_s * RATE), np.asarray(samples, np.float32)))

    def unplug(self) -> None:
        self.plugged = False

    def plug(self) -> None:
        self.plugged = True

    def attach(self, stream: FakeStream) -> None:
        with self._lock:
            self._streams.append(stream)

    def detach(self, stream: FakeStream) -> None:
        with self._lock:
            if stream in self._streams:
                self._streams.remove(stream)

    def shutdown(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _wait_for_consumer(self) -> None:
        """Lockstep with the consumer; a consumer that has stopped reading is given up on after 5 s (a loaded
        test machine can stall the loop for a good fraction of a second, and running ahead then would drop
        frames and shift the echo against its reference)."""
        deadline = time.monotonic() + 5.0
        while (self.pace is not None and self.pace() < self.time_s - self.ahead_s and time.monotonic() < deadline
               and not self._stop.is_set()):
            time.sleep(0.0005)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                streams = [s for s in self._streams if s.active]
            if not self.plugged or not any(s.kind == "Input" for s in streams):
                time.sleep(0.002)
                continue
            self._wait_for_consumer()
            self._tick(streams)

    def _tick(self, streams: list[FakeStream]) -> None:
        played = np.zeros(BLOCK, np.float32)
        for s in streams:
            if s.kind == "Output":
                out = np.zeros((BLOCK, 1), np.float32)
                s.callback(out, BLOCK, None, None)
                played = out[:, 0].copy()
        self.played.append(played)
        mic = self._rng.normal(0.0, self._noise, BLOCK).astype(np.float32)
        if self.echo is not None:
            mic += self.echo.feed(played)
        start = int(round(self.time_s * RATE))
        for at, samples in self._utterances:
            lo, hi = max(start, at), min(start + BLOCK, at + len(samples))
            if lo < hi:
                mic[lo - start:hi - start] += samples[lo - at:hi - at]
        self.heard.append(mic)
        for s in streams:
            if s.kind == "Input":
                s.callback(mic[:, None].copy(), BLOCK, None, None)
        self.time_s += BLOCK / RATE


def kiosk_room(delay_s: float = 0.03, gain: float = 0.6) -> EchoPath:
    """A reverberant loudspeaker path (RT60 0.4 s) that keeps the echo about as loud as a nearby talker."""
    return EchoPath(synthetic_rir(0.4), delay_s=delay_s, gain=gain)
