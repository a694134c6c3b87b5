"""Attune as a pip user gets it: the wheel built from this checkout, installed (not editable) into a fresh venv, run
from a folder that is not the repository: ``attune --version``, ``attune analyze FILE`` and ``attune serve``.

The fresh venv takes the third-party packages from this checkout's venv (a ``.pth`` line after its own
site-packages), so the test needs no network and fits CI's time (~1 min); Attune itself comes only from the wheel,
which the test checks. ``ATTUNE_TEST_FULL_INSTALL=1`` installs the dependencies too, from the package index and
the llama-cpp-python wheel cache (minutes, needs the index). Skipped quickly where setuptools >= 77 (the build
backend, in the dev extra) or the installed models are missing."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx
import pytest

from attune.config import Config, cache_home
from tests.engines_util import LIBRIVOX_DIR, installed_model

LAYER = "real"  # STYLE.md layer 4: the real package, real models, real processes

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False, **kw)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    try:
        import setuptools
    except ImportError:
        pytest.skip("setuptools not installed (the dev extra pins it)")
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip(f"setuptools {setuptools.__version__} < 77 cannot build this pyproject (make setup)")
    installed_model("whisper-tiny.en")  # skips when the models are not installed
    tmp = tmp_path_factory.mktemp("pkg")
    src = tmp / "src"  # a copy: setuptools leaves build/ behind, and a stale build/ leaks old files into wheels
    shutil.copytree(REPO, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "models", "build", "*.egg-info", "__pycache__", "*_cache", "out", "data", "node_modules"))
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                  str(tmp / "dist"), str(src)], cwd=tmp)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next((tmp / "dist").glob("attune-*.whl"))
    venv = tmp / "venv"
    made = _run([sys.executable, "-m", "venv", str(venv)])
    assert made.returncode == 0, made.stderr[-2000:]
    py = venv / "bin" / "python"
    if os.environ.get("ATTUNE_TEST_FULL_INSTALL") == "1":
        step = _run([str(py), "-m", "pip", "install", "-q", "--find-links", str(cache_home() / "wheels"),
                     f"{wheel}[embedded]"])
    else:
        step = _run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)])
        site = _run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
        Path(site, "zz-attune-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    assert step.returncode == 0, step.stderr[-2000:]
    home = tmp / "home"  # a pip user's machine: nothing configured, models where `attune setup` puts them
    (home / "data" / "attune").mkdir(parents=True)
    (home / "data" / "attune" / "models").symlink_to(Config().models_dir().resolve())
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATTUNE_") or k == "ATTUNE_SPEECH_CACHE__DIR"}
    env.update(XDG_DATA_HOME=str(home / "data"), XDG_CONFIG_HOME=str(home / "config"),
               XDG_STATE_HOME=str(home / "state"), HF_HUB_OFFLINE="1", PYTHONPATH="")
    work = tmp / "elsewhere"
    work.mkdir()
    return {"bin": venv / "bin", "env": env, "cwd": work, "home": home}


def test_the_wheel_installs_attune_outside_the_repository(installed: dict[str, object]) -> None:
    bin_, env, cwd = Path(str(installed["bin"])), installed["env"], installed["cwd"]
    version = _run([str(bin_ / "attune"), "--version"], env=env, cwd=cwd)
    assert version.returncode == 0 and re.fullmatch(r"attune \d+\.\d+\.\d+\n", version.stdout), version
    where = _run([str(bin_ / "python"), "-c", "import attune, attune.config as c; print(attune.__file__); "
                  "print(c.default_config_path()); print(c.Config().references_dir())"], env=env, cwd=cwd)
    module, config_path, references = where.stdout.split("\n")[:3]
    assert module.startswith(str(bin_.parent)) and str(REPO) not in module  # the wheel's copy, not the checkout
    assert config_path == "None" and Path(references, "manifest.json").is_file()
    helped = _run([str(bin_ / "attune"), "--help"], env=env, cwd=cwd)
    for command in ("mic", "file", "serve", "client", "analyze", "transcribe", "speak", "kiosk", "setup"):
        assert command in helped.stdout


def test_analyze_reads_a_recording_with_the_models_in_xdg_data(installed: dict[str, object]) -> None:
    clips = sorted(LIBRIVOX_DIR.glob("*.wav")) if LIBRIVOX_DIR.is_dir() else []
    if not clips:
        pytest.skip("pocketsphinx-testdata not installed")
    bin_, env, cwd = Path(str(installed["bin"])), installed["env"], installed["cwd"]
    shutil.copy(clips[0], Path(str(cwd)) / "speech.wav")
    out = _run([str(bin_ / "attune"), "analyze", "speech.wav", "--json"], env=env, cwd=cwd)
    assert out.returncode == 0, out.stderr[-2000:]
    assert '"confidence"' in out.stdout and '"backend": "hybrid"' in out.stdout  # the Whisper head found its model


def test_serve_starts_answers_health_and_stops_cleanly(installed: dict[str, object]) -> None:
    bin_, env, cwd = Path(str(installed["bin"])), installed["env"], installed["cwd"]
    env = {**dict(env), "ATTUNE_LLM__MODEL": "qwen2.5-0.5b", "ATTUNE_SPEECH_CACHE__PREWARM": "false"}  # type: ignore[arg-type]
    proc = subprocess.Popen([str(bin_ / "attune"), "serve", "--port", "0"], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        deadline = time.monotonic() + 300
        assert proc.stdout is not None
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
            if m := re.search(r"serving on (http://\S+?)/ ", line):
                url = m.group(1)
        assert url, proc.stderr.read()[-2000:] if proc.stderr and proc.poll() is not None else "no start line"
        health = httpx.get(f"{url}/health", timeout=10)
        assert health.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0
