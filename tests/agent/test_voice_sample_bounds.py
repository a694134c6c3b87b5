"""What a voice-sample upload may cost: the header's promise is judged before anything is decoded, and decoding
stops at 30 s whatever the header says. The prober's file (237 KB of FLAC: 8 channels of 48 kHz silence for ten
minutes, 921 MB once decoded) and a long stream whose header leaves its length unknown are refused at once, and
no upload, the worst accepted one included, raises the process's peak memory by more than 50 MB. Peak memory is
read from the kernel (``VmHWM`` after resetting it through ``/proc/self/clear_refs``) in a fresh subprocess."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from attune.agent.voice_sample import validate_sample
from attune.core.audio import resample
from attune.core.errors import PersonaError
from tests.engines_util import librivox_clips

LAYER = "unit"
REPO = Path(__file__).resolve().parents[2]
MAX_GROWTH_MB = 50.0


def silent_flac(channels: int, rate: int, seconds: int) -> bytes:
    """``seconds`` of digital silence as 16-bit FLAC, written a block at a time (never the whole array)."""
    buf = io.BytesIO()
    block = np.zeros((rate * 10, channels), dtype=np.int16)
    with sf.SoundFile(buf, "w", rate, channels, format="FLAC", subtype="PCM_16") as f:
        for _ in range(seconds // 10):
            f.write(block)
    return buf.getvalue()


def unknown_length(flac: bytes) -> bytes:
    """The same stream with STREAMINFO's total-samples field zeroed ("unknown", which FLAC allows): the header
    then promises nothing about the length."""
    out = bytearray(flac)
    assert out[:4] == b"fLaC" and out[4] & 0x7F == 0  # the first metadata block is STREAMINFO
    streaminfo = 8
    out[streaminfo + 13] &= 0xF0  # the 36-bit count: the low 4 bits of byte 13 and bytes 14-17
    out[streaminfo + 14:streaminfo + 18] = b"\0\0\0\0"
    return bytes(out)


def _rejected(data: bytes) -> tuple[str | None, str]:
    with pytest.raises(PersonaError) as err:
        validate_sample(data)
    return err.value.field, str(err.value)


@pytest.fixture(scope="module")
def probe_flac() -> bytes:
    return silent_flac(8, 48000, 600)


def test_the_probers_flac_is_refused_by_its_header(probe_flac: bytes) -> None:
    assert len(probe_flac) < 300_000 and sf.info(io.BytesIO(probe_flac)).frames == 48000 * 600
    assert _rejected(probe_flac)[0] == "channels"


def test_a_long_header_is_refused_before_decoding() -> None:
    field, message = _rejected(silent_flac(1, 48000, 600))
    assert field == "duration" and "600.00 s" in message


def test_a_stream_of_unknown_length_is_cut_at_thirty_seconds() -> None:
    data = unknown_length(silent_flac(2, 48000, 120))
    field, message = _rejected(data)
    assert field == "duration" and "30" in message


def test_rates_beyond_the_bound_are_refused() -> None:
    x = np.zeros((192000, 1), dtype=np.float32)
    buf = io.BytesIO()
    sf.write(buf, x, 192000, format="WAV", subtype="PCM_16")
    field, message = _rejected(buf.getvalue())
    assert field == "sample_rate" and "96000" in message


PEAK_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from attune.agent.voice_sample import validate_sample
    from attune.core.errors import PersonaError

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0  # MB
        raise KeyError(key)

    out = {}
    warm = sys.argv[1] if len(sys.argv) > 1 else ""
    if warm:  # what an idle server already holds: the code paths and the VAD of one sample
        try:
            validate_sample(open(warm, "rb").read())
        except PersonaError:
            pass
    for path in sys.stdin.read().split():
        data = open(path, "rb").read()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # the kernel resets VmHWM to the current resident size
        before = status("VmRSS")
        try:
            validate_sample(data)
            verdict = "accepted"
        except PersonaError as exc:
            verdict = exc.field
        out[path] = {"growth_mb": round(status("VmHWM") - before, 1), "verdict": verdict}
    print(json.dumps(out))
""")


def _peak_growth(paths: list[Path], warm: Path | None = None) -> dict[str, dict[str, object]]:
    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("/proc/self/clear_refs cannot be written here: the peak cannot be reset")
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, *([str(warm)] if warm else [])], cwd=REPO, env=env,
                         input=" ".join(str(p) for p in paths), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    result: dict[str, dict[str, object]] = json.loads(run.stdout.strip().splitlines()[-1])
    return result


def test_refused_uploads_cost_almost_nothing(tmp_path: Path, probe_flac: bytes) -> None:
    files = {"probe.flac": probe_flac, "unknown.flac": unknown_length(silent_flac(2, 48000, 120))}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    got = _peak_growth([tmp_path / name for name in files])
    verdicts = {Path(k).name: v["verdict"] for k, v in got.items()}
    assert verdicts == {"probe.flac": "channels", "unknown.flac": "duration"}
    for path, figures in got.items():
        print(f"{Path(path).name}: {figures['verdict']}, peak growth {figures['growth_mb']} MB")
        assert float(figures["growth_mb"]) <= MAX_GROWTH_MB, (path, figures)  # type: ignore[arg-type]


@pytest.mark.real
def test_the_largest_accepted_sample_stays_within_the_bound(tmp_path: Path) -> None:
    """29.5 s of real speech (LibriVox) as stereo at 96 kHz, 24-bit: the most audio an accepted upload holds; it
    is accepted, every rule having run on the whole decoded sample."""
    clips = [sf.read(str(path), dtype="float32")[0] for path, _ in librivox_clips()[:3]]
    speech = resample(np.concatenate(clips), 16000, 96000)
    mono = np.tile(speech, 3)[: int(96000 * 29.5)]
    big, warm = tmp_path / "big.wav", tmp_path / "warm.wav"
    sf.write(big, np.stack([mono, 0.8 * mono], axis=1), 96000, subtype="PCM_24")
    sf.write(warm, resample(speech, 96000, 24000)[: 24000 * 8], 24000, subtype="PCM_16")
    del clips, speech, mono
    got = _peak_growth([big], warm)
    figures = got[str(big)]
    print(f"largest accepted sample (96 kHz stereo, 29.5 s): peak growth {figures['growth_mb']} MB")
    assert figures["verdict"] == "accepted", figures
    assert float(figures["growth_mb"]) <= MAX_GROWTH_MB, figures  # type: ignore[arg-type]
